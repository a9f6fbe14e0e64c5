# domU phase, sourced by dom0-init.sh when run is given --domu. xenlab's variant for three vbds and three
# vifs (overlaid on /xenlab-run/domu-phase.sh): three 16 MB disks, and the wait covers all six devices.
# Creates the PV domU (vbd xvda on a loop-backed 16 MB file, vif on bridge xenbr0), waits until both
# devices are Connected (XenbusState 4) on both ends, captures, then "xl destroy".
modprobe loop; modprobe bridge
ip link add name xenbr0 type bridge; ip link set xenbr0 up
mkdir -p /xenlab; truncate -s 16M /xenlab/disk.img; truncate -s 16M /xenlab/disk-xvdb.img; truncate -s 16M /xenlab/disk-xvdc.img
DLOG=/var/log/xen/console/guest-xenlab-domu.log
cp $RT/xenlab-domu.cfg /tmp/domu.cfg
capsh D01-xl-create-vbd+vif 'cat /tmp/domu.cfg; T0=$(cut -d" " -f1 /proc/uptime); time timeout 300 xl -v create /tmp/domu.cfg; echo "xl create rc=$? began at dom0 uptime $T0, ended at $(cut -d" " -f1 /proc/uptime)"; xl list'
DOMID=$(xl domid xenlab-domu 2>/dev/null)
result "domu-domid=${DOMID:-none}"
if [ -n "$DOMID" ]; then
  st() { timeout 10 xenstore-read "$1" 2>/dev/null || echo "?"; }
  T0=$(up); ok=no
  for i in $(seq 1 240); do     # up to ~120 s
    a=$(st /local/domain/$DOMID/device/vbd/51712/state); b=$(st /local/domain/0/backend/vbd/$DOMID/51712/state)
    c=$(st /local/domain/$DOMID/device/vif/0/state);     d=$(st /local/domain/0/backend/vif/$DOMID/0/state)
    e=$(st /local/domain/$DOMID/device/vbd/51728/state); f=$(st /local/domain/0/backend/vbd/$DOMID/51728/state)
    g=$(st /local/domain/$DOMID/device/vif/1/state);     h=$(st /local/domain/0/backend/vif/$DOMID/1/state)
    i2=$(st /local/domain/$DOMID/device/vbd/51744/state); j=$(st /local/domain/0/backend/vbd/$DOMID/51744/state)
    k=$(st /local/domain/$DOMID/device/vif/2/state);     l=$(st /local/domain/0/backend/vif/$DOMID/2/state)
    [ "$a$b$c$d$e$f$g$h$i2$j$k$l" = 444444444444 ] && { ok=yes; break; }
    sleep 0.5
  done
  result "domu-connected=$ok after $(awk "BEGIN{printf \"%.1f\", $(up) - $T0}")s"
  result "domu-device vbd/51712 frontend=$a backend=$b"
  result "domu-device vif/0 frontend=$c backend=$d"
  result "domu-device vbd/51728 frontend=$e backend=$f"
  result "domu-device vif/1 frontend=$g backend=$h"
  result "domu-device vbd/51744 frontend=$i2 backend=$j"
  result "domu-device vif/2 frontend=$k backend=$l"
  for i in $(seq 1 90); do grep -q "DOMU CAPTURES DONE" $DLOG 2>/dev/null && break; sleep 1; done
  echo "XENLAB: domU captures done after ${i}s (dom0 uptime $(up))"
fi
capsh D02-xl-list 'xl list; xl list -l xenlab-domu | head -c 6000'
cap D03-xenstore-ls-f-with-domU xenstore-ls -f
cap D04-xenstore-ls-fp-with-domU xenstore-ls -f -p
capsh D05-dom0-backend-devices 'for d in /sys/bus/xen-backend/devices/*; do echo "$d: nodename=$(cat $d/nodename) devtype=$(cat $d/devtype) state=$(cat $d/state 2>/dev/null) driver=$(basename $(readlink $d/driver) 2>/dev/null)"; done; ls /sys/bus/xen-backend/drivers; ip link; losetup -a'
cap D06-dom0-proc-interrupts-with-domU cat /proc/interrupts
capsh D07-lsevtchn-0-and-1 'echo "== dom0"; '"$XL"'/lsevtchn 0; echo "== domU"; '"$XL"'/lsevtchn '"${DOMID:-1}"
capsh D08-xen-evtchn-dump 'xl debug-keys e; xl dmesg | grep -A40 "dumping event-channel" | tail -n 60'
capsh D09-domU-console-log "cat $DLOG"
capsh D10-dom0-dmesg-tail 'dmesg | tail -n 40'
capsh D11-xl-destroy 'xl destroy xenlab-domu; echo "xl destroy rc=$?"; sleep 2; xl list; xenstore-ls -f; ls /sys/bus/xen-backend/devices'
result "domu-destroyed=$(xl domid xenlab-domu >/dev/null 2>&1 && echo no || echo yes)"

"""Drive the frontend/backend handshake to Connected yourself: you are the block hotplug script.

``Handshake(flavour)`` runs ``xl create`` for a PV domU with one disk exactly as the lab's
toolstack does (xenlab.sim.guest.create_domU), except that the step libxl hands to
``/etc/xen/scripts/block`` is left to the student: the image is on ``/dev/loop0`` (losetup
done), the backend driver waits in InitWait, and nothing else happens until the right keys are
written under the backend's xenstore directory. ``write(path, value)`` goes through the
toolstack's own xenstore client (an XsClient on xenstored's socket), then lets the machine run.
``check_handshake`` says where each end is, the keys the backend has, and what the drivers are
waiting for.
"""

from __future__ import annotations

from xenlab.abi.xenbus import XenbusStateConnected, XenbusStateInitWait
from xenlab.exercises.kernel_tasks import Verdict
from xenlab.linux.genhd import BlockDevice, add_disk
from xenlab.sim import boot
from xenlab.sim.guest import _wait, device_states, make_config, toolstack
from xenlab.sim.machine import Domain, Machine
from xenlab.sim.toolstack import LOOP_MAJOR, BuiltDomain
from xenlab.sim.xsclient import XsError

#: what driving the handshake to Connected earns (both ends Connected, or nothing)
HANDSHAKE_POINTS = 3
STATE_NAMES = {0: "Unknown", 1: "Initialising", 2: "InitWait", 3: "Initialised", 4: "Connected",
               5: "Closing", 6: "Closed", 7: "Reconfiguring", 8: "Reconfigured"}


class Handshake:
    """A machine whose domU's disk waits for the hotplug script's writes, which the student makes."""

    def __init__(self, flavour: str = "2.6.18") -> None:
        from xenlab.linux.kernels import new_kernel

        m = self.machine = Machine(flavour=flavour, seed=0)
        m.start_xenstored()
        domid = self.domid = m.alloc_domid()
        cfg = make_config(m, "xenlab-domu", 1, 256, ["xvda"], 0)
        ts = toolstack(m)
        m.trace.begin_stage(f"xl create d{domid}: domain")
        ts.xc_domain_create(domid, cfg)
        ts.libxl__domain_make(domid, cfg)
        b = self.built = BuiltDomain(domid, cfg)
        ts.xc_dom_build(domid, b)
        ts.built[domid] = b
        kernel = new_kernel(m.hv, domid, m.flavour, sched=m.sched, trace=m.trace, name=f"domU{domid}")
        m.add_domain(Domain(m, domid, "xenlab-domu", kernel, 256, 1, info=b))
        ts.libxl__build_post(domid, b)
        m.settle()
        m.trace.begin_stage(f"xl create d{domid}: devices")
        ts.libxl__device_console_add(domid, b)
        disk = cfg.disks[0]
        ts.libxl__device_disk_add(domid, disk)
        m.settle()
        self.devid = disk.devid
        self.backend = f"/local/domain/0/backend/vbd/{domid}/{disk.devid}"
        self.frontend = f"/local/domain/{domid}/device/vbd/{disk.devid}"
        _wait(m, lambda: self.states()[1] >= XenbusStateInitWait)
        m.trace.begin_stage(f"xl create d{domid}: hotplug (by hand)")
        loop = ts.losetup_find()
        add_disk(m.dom0.kernel, LOOP_MAJOR, loop, BlockDevice(f"loop{loop}", disk.sectors))
        ts.loops[(domid, disk.devid)] = loop
        self.loop = loop
        boot.boot_kernel(m, kernel, initdomain=False, userspace=True)
        m.settle()

    def states(self) -> tuple[int, int]:
        """(frontend state, backend state) as xenstore holds them."""
        return device_states(self.machine, self.domid, self.built)[f"vbd/{self.devid}"]

    def write(self, path: str, value: str) -> None:
        """xenstore-write through the toolstack's client, then let the drivers react."""
        toolstack(self.machine).xs.write(path, str(value))
        self.machine.trace.record("xenstore-write", f"{path} = {value!r} (by hand)", actor="toolstack",
                                  source="tools/xenstore/xenstore_client.c")
        _wait(self.machine, lambda: self.states() == (XenbusStateConnected, XenbusStateConnected))

    def ls(self, path: str) -> dict[str, str]:
        """The keys under *path* with their values ({} if there is no such node)."""
        xs = toolstack(self.machine).xs
        try:
            return {k: xs.read(f"{path}/{k}") for k in xs.directory(path)}
        except XsError:
            return {}

    def __repr__(self) -> str:
        fe, be = self.states()
        return (f"d{self.domid}'s disk xvda (vbd {self.devid}): frontend {self.frontend} is "
                f"{STATE_NAMES[fe]}, backend {self.backend} is {STATE_NAMES[be]}; the image is on "
                f"/dev/loop{self.loop} (block device {LOOP_MAJOR}:{self.loop})")


def check_handshake(hs: Handshake) -> Verdict:
    """Connected at both ends, or where each end is and what its driver waits for."""
    fe, be = hs.states()
    connected = (fe, be) == (XenbusStateConnected, XenbusStateConnected)
    v = Verdict("handshake", connected, points=HANDSHAKE_POINTS)
    v.earned = v.points if v.ok else 0
    v.lines.append(f"frontend {hs.frontend}: {STATE_NAMES[fe]}")
    v.lines.append(f"backend {hs.backend}: {STATE_NAMES[be]}")
    keys = hs.ls(hs.backend)
    hotplug = {k: keys[k] for k in ("physical-device", "physical-device-path", "node", "hotplug-status")
               if k in keys}
    v.lines.append("hotplug keys in the backend: " + (", ".join(f"{k}={val!r}" for k, val in hotplug.items())
                                                        or "none"))
    if v.ok:
        v.lines.append("handshake: Connected at both ends")
        return v
    if "physical-device" not in keys:
        v.lines.append("hint: blkback's backend waits in InitWait for the hotplug script: it watches "
                       "physical-device, written as major:minor of the block device in HEX")
    elif keys["physical-device"] != f"{LOOP_MAJOR:x}:{hs.loop:x}":
        v.lines.append(f"hint: physical-device {keys['physical-device']!r} is not the block device holding "
                       "the image (major:minor in hex, as the block script writes it); the backend could "
                       "not open it and failed the device (xenbus_dev_fatal): start again, a new Handshake")
    else:
        v.lines.append("hint: the backend has its device; the rest of the handshake is the drivers' own "
                       "(look at the trace for what the last switch waited on)")
    return v

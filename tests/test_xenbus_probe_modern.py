"""Modern (Linux 6.1) xenbus bring-up: store kinds, the deferred probe, xenfs, held against real captures.

The captures in tests/captures come from a real Xen 4.17 + Linux 6.1 machine; the
values compared here are computed by the lab and only checked against those files.
"""

from __future__ import annotations

import re

import pytest
from real_captures import CAPTURES
from xenbus_harness import BE, FE, Rig, load_frontends, make_pair, tasks_of

from xenlab.abi.errno import ENOENT, ENOMEM
from xenlab.abi.hvm import HVM_PARAM_STORE_PFN
from xenlab.linux.kernel import Kernel
from xenlab.linux.pvops.xen_blkfront import xlblk_init
from xenlab.linux.pvops.xen_netfront import netif_init
from xenlab.linux.pvops.xenbus_probe import (
    XS_HVM,
    XS_LOCAL,
    XS_PV,
    XS_UNKNOWN,
    xenbus_init,
    xenbus_probe_initcall,
    xenbus_probe_ran,
)
from xenlab.linux.pvops.xenbus_probe_backend import xenbus_probe_backend_init
from xenlab.linux.pvops.xenbus_probe_frontend import xenbus_probe_frontend_init
from xenlab.linux.pvops.xenfs_super import proc_xen_entries, xenfs_fill_super
from xenlab.linux.sysfs import sysfs


def capture(name: str) -> str:
    return (CAPTURES / name).read_text()


def dom0(faults: tuple[str, ...] = ()) -> tuple[Kernel, Rig]:
    """A Linux 6.1 dom0 with *faults* injected, not booted yet."""
    rig = Rig("modern", dom0_faults=faults)
    return rig.dom0, rig


def boot(k: Kernel, rig: Rig) -> None:
    """Its initcalls (no user space: xenfs not mounted, no backend modules, no xenstored)."""
    rig.boot(k)


def xenbus_dmesg_lines(text: str) -> list[str]:
    """The xenbus lines of a dmesg, timestamps dropped."""
    out = []
    for line in text.splitlines():
        m = re.match(r"\[\s*[\d.]+\] (.*)$", line)
        if m and m.group(1).startswith(("xenbus", "XENBUS")):
            out.append(m.group(1))
    return out


def test_dom0_is_xs_local_and_waits_in_the_xenbus_probe_thread() -> None:
    k, rig = dom0()
    boot(k, rig)
    assert k.xb.xen_store_domain_type == XS_LOCAL
    port = k.xb.xen_store_evtchn
    assert rig.hv.domains[0].chns[port].summary() == ("unbound", 0)  # alloc_unbound(SELF, remote SELF)
    assert k.xb.xenstored_ready == 0 and not xenbus_probe_ran(k)
    probe = [t for t in k.sched.tasks if t.name == "xenbus_probe"][0]
    assert probe.state == "sleeping" and probe.wchan == "dom0:xb_waitq"
    # before xenstored: the dmesg shows the two subsys_initcalls only, as capture 01 does
    real_before = xenbus_dmesg_lines(capture("oxenstored/01-dmesg-xen-grep-before-xenstored.txt"))
    assert xenbus_dmesg_lines(k.dmesg()) == real_before
    rig.boot(k, after="drivers", userspace=True)  # /init: mount xenfs (/proc/xen/xsd_port), backends
    rig.start_xenstored()  # its first notify on the store port wakes the "xenbus_probe" thread
    assert xenbus_probe_ran(k) and k.xb.xenstored_ready == 1
    real_after = xenbus_dmesg_lines(capture("oxenstored/13-dmesg-after-xenstored.txt"))
    assert xenbus_dmesg_lines(k.dmesg()) == real_after


def test_proc_xen_is_empty_until_xenfs_is_mounted_then_has_the_real_modes() -> None:
    k, rig = dom0()
    boot(k, rig)
    assert "xen" in k.proc_dirs and proc_xen_entries(k) == []
    xenfs_fill_super(k)
    real = {}
    for line in capture("oxenstored/08-proc-xen-listing.txt").splitlines():
        m = re.match(r"/proc/xen/(\S+) (\S+) 0$", line)
        if m:
            real[m.group(1)] = m.group(2)
    assert {name: _mode_text(mode) for name, mode in proc_xen_entries(k)} == real
    assert k.proc["xen/xsd_port"].read() == str(k.xb.xen_store_evtchn)
    assert k.proc["xen/capabilities"].read() == "control_d\n"


def _mode_text(mode: int) -> str:
    bits = "rwxrwxrwx"
    return "-" + "".join(b if mode & (1 << (8 - i)) else "-" for i, b in enumerate(bits))


def test_a_pv_domU_is_xs_pv_ready_at_once_and_its_devices_wait_for_drivers() -> None:
    pair = make_pair("modern")
    k = pair.domU
    assert k.xb.xen_store_domain_type == XS_PV and k.xb.xenstored_ready == 1
    lines = []
    for name in sysfs(k).listdir("/sys/bus/xen/devices"):
        d = f"/sys/bus/xen/devices/{name}"
        attr = {a: sysfs(k).read(f"{d}/{a}").strip() for a in ("nodename", "devtype", "state")}
        lines.append(f"{d}: nodename={attr['nodename']} devtype={attr['devtype']} state={attr['state']}")
    lines.append("drivers: " + " ".join(sysfs(k).listdir("/sys/bus/xen/drivers")))
    real = capture("domU/domU-03-sys-bus-xen-before-frontends.txt").splitlines()[1:-1]
    assert lines == real


def test_after_insmod_the_domU_and_dom0_sysfs_match_the_real_machine() -> None:
    pair = make_pair("modern")
    pair.xs.tool_write(f"{BE}/console/1/0/frontend", "/local/domain/1/console")  # xl's console backend
    pair.xs.tool_write(f"{BE}/console/1/0/frontend-id", "1")
    pair.xs.tool_write("/local/domain/1/console/type", "xenconsoled")
    pair.xs.tool_write(f"{BE}/console/1/0/state", "1")
    load_frontends(pair)
    pair.settle()

    def show(k: Kernel, bus: str) -> list[str]:
        out = []
        for name in sysfs(k).listdir(f"/sys/bus/{bus}/devices"):
            d = f"/sys/bus/{bus}/devices/{name}"
            drv = sysfs(k).readlink(d + "/driver").rsplit("/", 1)[1] if sysfs(k).kind(d + "/driver") else ""
            out.append(f"{d}: nodename={sysfs(k).read(d + '/nodename').strip()} devtype="
                       f"{sysfs(k).read(d + '/devtype').strip()} state={sysfs(k).read(d + '/state').strip()} "
                       f"driver={drv}")
        return out

    real_domU = capture("domU/domU-05-sys-bus-xen-after-frontends.txt").splitlines()
    drivers = "drivers: " + " ".join(sysfs(pair.domU).listdir("/sys/bus/xen/drivers"))
    assert show(pair.domU, "xen") + [drivers] == real_domU[1:4]
    real_dom0 = capture("domU/D05-dom0-backend-devices.txt").splitlines()
    assert show(pair.dom0, "xen-backend") == real_dom0[1:4]
    backend_drivers = sysfs(pair.dom0).listdir("/sys/bus/xen-backend/drivers")
    assert backend_drivers == real_dom0[4].split()


def test_the_frontend_and_backend_keys_match_the_real_tree() -> None:
    pair = make_pair("modern")
    load_frontends(pair)
    real = {}
    for line in capture("domU/D03-xenstore-ls-f-with-domU.txt").splitlines():
        m = re.match(r'(/\S+) = "(.*)"$', line)
        if m:
            real[m.group(1)] = m.group(2)
    written_by_drivers = [
        f"{FE}/vbd/51712/{k}" for k in ("state", "protocol", "feature-persistent", "ring-ref")] + [
        f"{BE}/vbd/1/51712/{k}" for k in (
            "state", "feature-max-indirect-segments", "multi-queue-max-queues", "max-ring-page-order",
            "feature-flush-cache", "discard-granularity", "discard-alignment", "discard-secure",
            "feature-discard", "feature-barrier", "feature-persistent", "sectors", "info", "sector-size",
            "physical-sector-size")] + [
        f"{FE}/vif/0/{k}" for k in (
            "state", "tx-ring-ref", "rx-ring-ref", "request-rx-copy", "feature-rx-notify", "feature-sg",
            "feature-gso-tcpv4", "feature-gso-tcpv6", "feature-ipv6-csum-offload", "multi-queue-num-queues",
            "xdp-headroom")] + [
        f"{BE}/vif/1/0/{k}" for k in (
            "state", "feature-sg", "feature-gso-tcpv4", "feature-gso-tcpv6", "feature-ipv6-csum-offload",
            "feature-rx-copy", "feature-rx-flip", "feature-xdp-headroom", "feature-multicast-control",
            "feature-dynamic-multicast-control", "feature-split-event-channels", "multi-queue-max-queues",
            "feature-ctrl-ring")]
    ours = {p: pair.read(p) for p in written_by_drivers}
    assert ours == {p: real[p] for p in written_by_drivers}
    # keys under the device directories that the real drivers wrote and ours did not (or vice versa)
    for base in (f"{FE}/vbd/51712", f"{FE}/vif/0"):
        real_keys = {p.rsplit("/", 1)[1] for p in real if p.startswith(base + "/")}
        ours_keys = set(pair.xs.tool_directory(base))
        assert ours_keys == real_keys, base


def test_xs_init_failure_is_reported_with_the_modern_prefix() -> None:
    k, rig = dom0(("xs_init",))
    rig.boot(k, until="xenbus init")
    logged = len(k.log)
    assert xenbus_init(k) == -ENOMEM
    assert [line.text for line in k.log[logged:]] == ["xenbus: Error initializing xenstore comms: -12"]
    assert k.xb.xen_store_domain_type == XS_UNKNOWN


def test_an_hvm_guest_without_a_store_pfn_gets_enoent() -> None:
    rig = Rig("modern")
    k = rig.create_domU(3, hvm=True)
    assert rig.hv.hvm_set_param(0, 3, HVM_PARAM_STORE_PFN, 0) == 0  # a builder that set no store page
    rig.boot(k, until="xenbus init")
    assert xenbus_init(k) == -ENOENT
    assert k.xb.xen_store_domain_type == XS_UNKNOWN
    assert XS_HVM != XS_UNKNOWN


def test_dom0_has_the_real_xen_buses() -> None:
    k, rig = dom0()
    boot(k, rig)
    real = [line.split()[-1] for line in capture("oxenstored/05-sys-bus-xen-before.txt").splitlines()
            if line.startswith("drwx")]
    assert [b for b in sysfs(k).listdir("/sys/bus") if "xen" in b] == real[:4]
    assert sysfs(k).listdir("/sys/bus/xen/drivers") == ["xenconsole"]  # no vfb/vkbd in dom0
    assert sysfs(k).listdir("/sys/bus/xen-backend/drivers") == []  # backends are modules, loaded later


def test_insmod_of_the_frontends_prints_what_the_real_domU_printed() -> None:
    pair = make_pair("modern")  # the domU booted: boot_wait_for_devices (late_initcall) ran
    before = len(pair.domU.log)
    assert xlblk_init(pair.domU) == 0 and netif_init(pair.domU) == 0
    ours = [line.text for line in pair.domU.log[before:]]
    real = [re.sub(r"^\[\s*[\d.]+\] ", "", line)
            for line in capture("domU/domU-04-insmod-frontends.txt").splitlines()[1:]]
    end = next(i for i, line in enumerate(real) if line.startswith("vif vif-0: xenbus: state is 4")) + 1
    assert ours[:end] == real[:end]


def test_dom0_backends_print_what_the_real_dom0_printed() -> None:
    pair = make_pair("modern")
    load_frontends(pair)
    keep = ("vbd ", "vif ", "xen-blkback", "xenbus")
    real = [re.sub(r"^\[\s*[\d.]+\] ", "", line)
            for line in capture("domU/D10-dom0-dmesg-tail.txt").splitlines()[1:]]
    real = [line for line in real if line.startswith(keep)]
    start = next(i for i, line in enumerate(real) if line.startswith("vbd vbd-1-51712: xenbus: state is 3"))
    ours = [line.text for line in pair.dom0.log if line.text.startswith(keep)]
    first = next(i for i, line in enumerate(ours) if line.startswith("vbd vbd-1-51712: xenbus: state is 3"))
    assert ours[first:] == real[start:]


@pytest.mark.parametrize(("fault", "err"), [("get_zeroed_page", -ENOMEM), ("alloc_unbound_enosys", -38)])
def test_modern_dom0_store_setup_failures_leave_xenbus_unknown(fault: str, err: int) -> None:
    k, rig = dom0((fault,))
    rig.boot(k, until="xenbus init")
    logged = len(k.log)
    assert xenbus_init(k) == err
    assert k.xb.xen_store_domain_type == XS_UNKNOWN and k.xb.xen_store_evtchn == 0
    assert [line.text for line in k.log[logged:]] == []  # xenstored_local_init fails silently
    assert xenbus_probe_backend_init(k) == 0 and xenbus_probe_frontend_init(k) == 0  # buses still come
    rig.boot(k, after="xenbus init")  # late IRQs, then the drivers' stage runs xenbus_probe_initcall
    # no xen_store_interface: !XS_INTERFACE_READY, so the initcall starts a "xenbus_probe" thread that
    # waits on xb_waitq (no xenwatch: xs_init never ran)
    assert tasks_of(k) == ["xenbus_probe"]
    assert k.xb.probed == 0
    assert fault != "alloc_unbound_enosys" or len(k.free_pages) == 1


def test_when_the_frontends_vanish_dom0_removes_its_backends_as_the_real_one_did() -> None:
    pair = make_pair("modern")
    load_frontends(pair)
    before = len(pair.dom0.log)
    for path in (f"{FE}/vbd/51712", f"{FE}/vif/0"):  # xl destroy: the guest's nodes go
        pair.xs.tool_rm(path)
        pair.settle()
    assert sysfs(pair.dom0).listdir("/sys/bus/xen-backend/devices") == []
    skip = ("xenbus: (backend_changed", "xenbus: xenbus_probe (cleanup_dev")
    ours = [line.text for line in pair.dom0.log[before:] if not line.text.startswith(skip)]
    real = [re.sub(r"^\[\s*[\d.]+\] ", "", line) for line in capture("domU/D11-xl-destroy.txt").splitlines()]
    real = [ln for ln in real if ln.startswith(("vbd ", "vif ", "xenbus")) and not ln.startswith(skip)]
    start = next(i for i, line in enumerate(real) if line.startswith("vbd vbd-1-51712: xenbus: state is 0"))
    assert ours == real[start:]  # (before that the console's backend, which only the toolstack removes)


def test_an_hvm_guest_defers_xs_init_to_xenbus_probe() -> None:
    rig = Rig("modern")
    k = rig.create_domU(3, hvm=True)
    d, guest = rig.hv.domains[3], rig.guests[3]
    assert d.hvm_params[HVM_PARAM_STORE_PFN] != 0  # pfn 0 (start_info here) would mean "no store"
    rig.boot(k, until="xenbus init")
    assert xenbus_init(k) == 0
    assert (k.xb.xen_store_domain_type, k.xb.xenstored_ready, k.xb.xen_store_mfn) == (
        XS_HVM, 0, d.mfn_to_pfn(guest.store_mfn))  # xen_store_gfn: an HVM guest's is the pfn
    assert tasks_of(k) == []  # no xs_init yet: the callback may not work this early
    assert xenbus_probe_initcall(k) == 0
    assert k.xb.xenstored_ready == 1 and tasks_of(k) == ["xenbus", "xenwatch"]

"""The 1-vCPU comparisons of test_vs_captures.py held against the 2-vCPU and several-device sets.

The same commands, the same masks (what varies between real runs: interrupt counts, timestamps,
grant refs, UUIDs, MACs, the loop device a disk got), on machines of each set's shape: 2 vCPUs
in dom0 and the guest, 1, 2 or 3 disks and vifs, oxenstored or C xenstored. Which vCPU counted
an IRQ is compared in test_vs_captures_2vcpu.py (per_cpu); here only the IRQ rows themselves.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

import pytest
import test_vs_captures as vs1
from real_captures import CAPTURES
from test_vs_captures import log_text, ring_fields, sysfs_devices, tree
from xenbus_harness import Rig

from xenlab.linux.sysfs import sysfs
from xenlab.sim.machine import Machine
from xenlab.sim.scenarios import build

# set -> (disks, vifs, xenstored)
SETS = {"oxenstored-2vcpu": (1, 1, "oxenstored"), "cxenstored-2vcpu": (1, 1, "cxenstored"),
        "oxenstored-2vcpu-2disk-2vif": (2, 2, "oxenstored"),
        "oxenstored-2vcpu-3disk-3vif": (3, 3, "oxenstored"),
        "oxenstored-2vcpu-3disk-3vif-traced": (3, 3, "oxenstored")}
ALL = list(SETS)
# wait_for_devices's report after 5 wall-clock seconds, and the newline that ends it
WALL_CLOCK = re.compile(r"(xenbus_probe_frontend: Waiting for devices to initialise: .*)?")
WITH_DEVICES = ["oxenstored-2vcpu-2disk-2vif", "oxenstored-2vcpu-3disk-3vif",
                "oxenstored-2vcpu-3disk-3vif-traced"]


def capture(kind: str, name: str) -> list[str]:
    """The output lines of capture *name* (without its `$ command` line and `[rc=N]`)."""
    (path,) = (CAPTURES / kind).glob(f"{name}*.txt")
    return [ln for ln in path.read_text().splitlines()[1:] if not ln.startswith("[rc=")]


_machines: dict[tuple[str, int, int, str], Machine] = {}


@pytest.fixture(scope="module")
def machines() -> Iterator[dict[tuple[str, int, int, str], Machine]]:
    """The booted machines of this module, one per (scenario, disks, vifs, xenstored), shared."""
    yield _machines
    for m in _machines.values():
        m.shutdown()
    _machines.clear()


def lab(machines: dict[tuple[str, int, int, str], Machine], kind: str, scenario: str) -> Machine:
    disks, vifs, daemon = SETS[kind]
    if scenario != "domU":  # dom0 alone: the guest's devices play no part yet
        disks = vifs = 1
    key = (scenario, disks, vifs, daemon)
    if key not in machines:
        machines[key] = build(scenario, flavour="modern", seed=0, dom0_vcpus=2, guest_vcpus=2,
                              disks=disks, vifs=vifs, xenstored=daemon)
    return machines[key]


def irq_rows(lines: list[str]) -> list[tuple[str, ...]]:
    """The numbered IRQ rows of a 2-CPU /proc/interrupts as (irq, chip, type, name), counts dropped."""
    return vs1.irq_rows(lines, cpus=2)


# -- dom0 before and after xenstored (01, 02, 13) ---------------------------------------------------
@pytest.mark.parametrize("kind", ALL)
def test_dom0_xenbus_lines_before_and_after_xenstored(kind: str, machines: dict) -> None:
    """01/13: xenbus's lines before xenstored, then the deferred probe's; the FIFO ABI line between
    the banner and the grant tables."""
    def xenbus_lines(lines: list[str]) -> list[str]:
        return [ln for ln in log_text(lines) if ln.startswith("xenbus")]

    def order(lines: list[str]) -> list[str]:
        keys = ("Xen version", "xen:events: Using", "xen:grant_table: Grant tables using")
        return [ln for ln in log_text(lines) if ln.startswith(keys)]

    early, dom0 = lab(machines, kind, "dom0-early"), lab(machines, kind, "dom0")
    assert xenbus_lines(early.dom0.run("dmesg").splitlines()) == xenbus_lines(capture(kind, "01-"))
    assert xenbus_lines(dom0.dom0.run("dmesg").splitlines()) == xenbus_lines(capture(kind, "13-"))
    assert order(early.dom0.run("dmesg").splitlines()) == order(capture(kind, "01-"))


@pytest.mark.parametrize("kind", ALL)
def test_dom0_irq_rows_before_xenstored(kind: str, machines: dict) -> None:
    """02: every IRQ row (number, chip, type, name) before xenstored, the xenbus IRQ 36 among them."""
    early = lab(machines, kind, "dom0-early")
    real = irq_rows(capture(kind, "02-"))
    assert ("36", "xen-dyn", "event", "xenbus") in real
    assert irq_rows(early.dom0.run("cat /proc/interrupts").splitlines()) == real


# -- sysfs and /proc/xen (05, 08, 20) --------------------------------------------------------------
@pytest.mark.parametrize("kind", ALL)
def test_dom0_xen_buses_and_drivers_before_and_after_xenstored(kind: str, machines: dict) -> None:
    """05 (taken before /init's modprobe, so read on a dom0 that ran its initcalls only): the
    four xen buses, no devices, xenconsole only, no backend driver; 20: after modprobe, vbd and
    vif on xen-backend, still no devices."""
    rig = Rig("modern", vcpus=2)
    rig.boot(rig.dom0)
    real05 = capture(kind, "05-")
    buses = [ln.split()[-1] for ln in real05 if ln.startswith("drwx") and ln.split()[-1].startswith("xen")]
    assert [b for b in sysfs(rig.dom0).listdir("/sys/bus") if "xen" in b] == buses
    assert " ".join(sysfs(rig.dom0).listdir("/sys/bus/xen/drivers")) == \
        real05[real05.index("-- /sys/bus/xen/drivers:") + 1]
    assert real05[-1] == "-- /sys/bus/xen-backend/drivers:"  # nothing listed
    assert sysfs(rig.dom0).listdir("/sys/bus/xen-backend/drivers") == []
    real20 = capture(kind, "20-")
    dom0 = lab(machines, kind, "dom0")
    assert dom0.dom0.run("ls /sys/bus/xen/drivers") == real20[real20.index("-- /sys/bus/xen/drivers:") + 1]
    assert dom0.dom0.run("ls /sys/bus/xen-backend/drivers") == real20[-1]
    assert dom0.dom0.run("ls /sys/bus/xen/devices") == dom0.dom0.run("ls /sys/bus/xen-backend/devices") == ""


@pytest.mark.parametrize("kind", ALL)
def test_proc_xen_after_mounting_xenfs(kind: str, machines: dict) -> None:
    """08: the files of /proc/xen and their modes."""
    def modes(lines: list[str]) -> list[tuple[str, str]]:
        return [(ln.split()[0], ln.split()[-1]) for ln in lines if ln.startswith("-")]

    real = capture(kind, "08-")
    real = real[: real.index("")]  # the `ls -la /proc/xen` part
    early = lab(machines, kind, "dom0-early")
    assert modes(early.dom0.run("ls -l /proc/xen").splitlines()) == modes(real)


# -- xenstore through the tools (19, 21, 22) ---------------------------------------------------------
@pytest.mark.parametrize("kind", ALL)
def test_xenstore_read_and_list_in_dom0(kind: str, machines: dict) -> None:
    """19: what dom0 has and has not got, and relative paths (domid, name)."""
    dom0 = lab(machines, kind, "dom0").dom0
    out = []
    for k in ("domid", "name", "vm", "memory/target", "memory/static-max",
              "control/platform-feature-multiprocessor-suspend", "device", "backend"):
        out.append(f"/local/domain/0/{k} = {dom0.run(f'xenstore-read /local/domain/0/{k}')}")
    for k in ("/tool/xenstored", "/vm", "/local/domain/0/backend"):
        listed = dom0.run(f"xenstore-list {k}")
        out.append(f"{k} -> " + "".join(ln + " " for ln in listed.splitlines()))
    out += [dom0.run("xenstore-read domid"), dom0.run("xenstore-read name")]
    assert out == capture(kind, "19-")


@pytest.mark.parametrize("daemon", ["oxenstored", "cxenstored"])
def test_tools_through_dev_xen_xenbus_move_dom0s_ring_like_the_real_one(daemon: str) -> None:
    """21/22 of every 2-vCPU set of *daemon*: a socket write leaves the ring alone; through
    /dev/xen/xenbus each step moves the indices by the bytes of its requests and replies, from
    the 2-vCPU starting point (the boot's extra READ of cpu/1/availability)."""
    kinds = [k for k, (_d, _v, x) in SETS.items() if x == daemon]
    reals = {k: ([ln for ln in capture(k, "21-") if ln.startswith("RING ")],
                 [ring_fields(ln) for ln in capture(k, "22-") if ln.startswith("RING ")]) for k in kinds}
    m = build("dom0", flavour="modern", seed=0, dom0_vcpus=2, xenstored=daemon)
    try:
        d0 = m.dom0
        d0.run("xenstore-write /xenlab/sock-a hello")
        w1 = ring_fields(d0.run("xsring w1"))
        k = "XENSTORED_PATH=/dev/xen/xenbus"
        steps = [f"{k} xenstore-write /xenlab/a 1", f"{k} xenstore-write /xenlab/b hello-ring",
                 f"{k} xenstore-read /xenlab/b", f"{k} xenstore-rm /xenlab/a", f"{k} xenstore-ls -f /xenlab"]
        indices = [ring_fields(d0.run("xsring k0"))]
        outputs = []
        for cmd in steps:
            outputs.append(d0.run(cmd))
            indices.append(ring_fields(d0.run("xsring k")))
    finally:
        m.shutdown()
    for kind, (real21, real22) in reals.items():
        assert (kind, w1) == (kind, ring_fields(real21[1]))
        assert (kind, indices) == (kind, real22)
        printed = [ln for ln in capture(kind, "22-") if not ln.startswith(("RING ", "RINGPAGE "))]
        assert (kind, [outputs[2], *outputs[4].splitlines()]) == (kind, printed)


def device_of(line: str) -> str | None:
    """The device a log line is about ("vbd/51712", "vif/0"), from either end; None for none.

    blkfront names its disks xvda, xvdb, ...: minors 0, 16, ... of major 202, the vbd's number
    being (202 << 8) | minor (xen-blkfront.c's xlvbd_alloc_gendisk for the xvd scheme)."""
    if (d := re.search(r"\b(vbd|vif)[-/](?:1[-/])?(\d+)\b", line)):
        return f"{d[1]}/{d[2]}"
    if (v := re.search(r"\bvif1\.(\d+)\b", line)):
        return f"vif/{v[1]}"
    if (x := re.search(r"\bxvd([a-z]):", line)):
        return f"vbd/{(202 << 8) | ((ord(x[1]) - ord('a')) << 4)}"
    return None


def per_device(lines: list[str]) -> dict[str, list[str]]:
    """Each device's lines in the order they were printed."""
    out: dict[str, list[str]] = {}
    for ln in lines:
        if (dev := device_of(ln)) is not None:
            out.setdefault(dev, []).append(ln)
    return out


# -- with the guest (D02, D10, domU-01, domU-04, domU-07) ----------------------------------------------
@pytest.mark.parametrize("kind", ALL)
def test_xl_list_columns(kind: str, machines: dict) -> None:
    """D02: both domains, 2 VCPUs each; Time(s) varies."""
    def cols(line: str) -> list[str]:
        return line.split()[:-1]

    real = capture(kind, "D02-")[:3]
    out = lab(machines, kind, "domU").dom0.run("xl list").splitlines()
    assert out[0] == real[0]
    assert [cols(ln) for ln in out[1:]] == [cols(ln) for ln in real[1:]]
    assert [len(ln) for ln in out[1:]] == [len(ln) for ln in real[1:]]


@pytest.mark.parametrize("kind", ALL)
def test_dom0_backends_print_what_the_real_dom0_printed(kind: str, machines: dict) -> None:
    """D10 (`dmesg | tail -n 40` once every device is Connected): dom0's backend lines at the end
    of its log. The loop device and bridge port a device got are masked (hotplug scripts race:
    test_vs_captures_hotplug.py). With one device the tail is compared line for line; with
    several, each device's own lines (the last of them, as many as the real tail holds): how
    the devices interleave is the timing of the guest's and dom0's threads, which differed
    between real runs (README.md, "Seen to vary")."""
    keep = ("vbd ", "vif ", "xen-blkback", "xenbus", "xenbr0")

    def lines(log: list[str]) -> list[str]:
        return [re.sub(r"port \d+\(", "port N(", ln) for ln in log_text(log) if ln.startswith(keep)]

    real = lines(capture(kind, "D10-"))
    ours = lines(lab(machines, kind, "domU").dom0.run("dmesg").splitlines())
    if kind not in WITH_DEVICES:
        assert ours[-len(real):] == real
        return
    mine = per_device(ours)
    assert {dev: mine[dev][-len(seq):] for dev, seq in per_device(real).items()} == per_device(real)
    assert len(per_device(real)) > 1


@pytest.mark.parametrize("kind", ALL)
def test_guest_xenbus_boot_messages(kind: str, machines: dict) -> None:
    """domU-01: what the guest's xenbus prints while it boots, before its frontends are loaded,
    and the FIFO ABI between the banner and the grant tables. backend_changed is xenwatch's (the
    backend watch registered by the probe fires at once): where it falls among the probing
    thread's lines is the timing of two threads (real runs differ), so it is compared apart."""
    real = log_text(capture(kind, "domU-01"))
    ours = log_text(lab(machines, kind, "domU").domain(1).run("dmesg").splitlines())

    def probe_thread(log: list[str]) -> list[str]:
        return [ln for ln in log if ln.startswith("xenbus") and "(backend_changed:" not in ln]

    xb = probe_thread(real)
    assert probe_thread(ours)[: len(xb)] == xb
    watch = [ln for ln in real if "(backend_changed:" in ln]
    assert [ln for ln in ours if "(backend_changed:" in ln][: len(watch)] == watch
    keys = ("Xen version", "xen:events: Using", "xen:grant_table: Grant tables using")
    assert [ln for ln in ours if ln.startswith(keys)] == [ln for ln in real if ln.startswith(keys)]


@pytest.mark.parametrize("kind", ALL)
def test_guest_frontend_handshake_messages(kind: str, machines: dict) -> None:
    """domU-04: insmod of blkfront and netfront, up to the last vif's Connected, message for message
    with one disk and one vif; with several, each device's lines in order and all lines as a
    multiset (the devices interleave by the timing of the guest's and dom0's threads: README.md,
    "Seen to vary"). `Waiting for devices to initialise: 25s...` is wait_for_devices reporting 5
    wall-clock seconds (a loaded TCG host; the lab's clock does not run that slow): dropped.

    The capture is the guest's console (the kernel's printks as they happen) followed by the
    `dmesg | tail` of the command, which repeats the last of them: only the console part is
    compared (it ends where the timestamps go back).
    """
    stamped = [ln for ln in capture(kind, "domU-04") if ln.startswith("[")]
    stamps = [float(re.match(r"\[\s*([\d.]+)\]", ln)[1]) for ln in stamped]  # type: ignore[index]
    console = stamped[: next((i for i in range(1, len(stamps)) if stamps[i] < stamps[i - 1]), len(stamps))]
    real = [ln for ln in log_text(console) if not WALL_CLOCK.fullmatch(ln.strip())]
    end = max(i for i, ln in enumerate(real) if re.match(r"vif vif-\d+: xenbus: state is 4", ln))
    real = real[: end + 1]
    ours = log_text(lab(machines, kind, "domU").domain(1).run("dmesg").splitlines())
    ours = ours[ours.index(real[0]):]
    if kind not in WITH_DEVICES:
        assert ours[: len(real)] == real
        return
    ours = ours[: max(i for i, ln in enumerate(ours) if re.match(r"vif vif-\d+: xenbus: state is 4", ln)) + 1]
    assert per_device(ours) == per_device(real)
    assert Counter(ours) == Counter(real)


@pytest.mark.parametrize("kind", ALL)
def test_the_guest_reads_its_own_subtree_through_its_ring(kind: str, machines: dict) -> None:
    """domU-07: domid, name and /local/domain/1 as the guest reads them (cpu/0 and cpu/1)."""
    # the guest's console carries its printks too (a timer warning in one run): not the command's output
    real = [ln for ln in capture(kind, "domU-07") if not re.match(r"\[\s*\d+\.\d+\] ", ln)]
    guest = lab(machines, kind, "domU").domain(1)
    assert guest.run("xenstore-read domid") == real[0]
    assert guest.run("xenstore-read name") == real[1]
    assert tree(guest.run("xenstore-ls -f /local/domain/1").splitlines()) == tree(real[2:])


# -- the guest before and after it loads its frontends (domU-02, 03, 05) ---------------------------------
@pytest.mark.parametrize("kind", ALL)
def test_guest_before_and_after_insmod_of_the_frontends(kind: str) -> None:
    """domU-02/03: before insmod every device exists in Initialising, no vbd/vif driver, no device
    IRQs; domU-05: after it, all Connected, the drivers bound."""
    disks, vifs, daemon = SETS[kind]
    m = build("dom0", flavour="modern", seed=0, dom0_vcpus=2, xenstored=daemon)
    try:
        m.create_domU(vcpus=2, disks=disks, vifs=vifs, frontends=False)
        guest = m.domain(1)
        real02 = irq_rows(capture(kind, "domU-02"))
        assert ("12", "xen-dyn", "event", "xenbus") in real02
        assert ("11", "xen-percpu", "ipi", "spinlock1") in real02
        assert irq_rows(guest.run("cat /proc/interrupts").splitlines()) == real02
        real03 = capture(kind, "domU-03")
        assert sysfs_devices(m, 1, "xen") == [ln for ln in real03 if ln.startswith("/sys/bus")]
        assert f"drivers: {' '.join(guest.run('ls /sys/bus/xen/drivers').split())}" == real03[-1]
        m.load_frontends(1)
        real05 = capture(kind, "domU-05")
        devices = [ln.split(" driver=")[0] for ln in real05 if ln.startswith("/sys/bus")]
        assert len(devices) == disks + vifs
        assert sysfs_devices(m, 1, "xen") == devices
        drivers = next(ln for ln in real05 if ln.startswith("drivers:"))
        assert f"drivers: {' '.join(guest.run('ls /sys/bus/xen/drivers').split())}" == drivers
    finally:
        m.shutdown()


# -- xl destroy (D11) ---------------------------------------------------------------------------------
# Not the untraced 3-disk run: on a host at load 11 its `xl destroy` killed the hotplug scripts on
# libxl's timeout, leaving backend/vbd/1/51744's hotplug-error behind (README.md there).
@pytest.mark.parametrize("kind", [k for k in ALL if k != "oxenstored-2vcpu-3disk-3vif"])
def test_xl_destroy_leaves_the_tree_and_buses_as_the_real_one(kind: str) -> None:
    """D11: after `xl destroy` only dom0 is listed, the guest's paths are gone, dom0's backend
    devices are unregistered and every port of the guest is closed."""
    disks, vifs, daemon = SETS[kind]
    m = build("domU", flavour="modern", seed=0, dom0_vcpus=2, guest_vcpus=2, disks=disks, vifs=vifs,
              xenstored=daemon)
    try:
        m.destroy_domU(1)
        real = capture(kind, "D11-")
        start = real.index("Name                                        ID   Mem VCPUs\tState\tTime(s)")
        rows = real[start:]
        tree_start = next(i for i, ln in enumerate(rows) if ln.startswith("/"))
        assert [ln.split()[:-1] for ln in m.dom0.run("xl list").splitlines()[1:]] == [
            ln.split()[:-1] for ln in rows[1:tree_start]]
        assert tree(m.dom0.run("xenstore-ls -f").splitlines()) == tree(rows[tree_start:])
        assert m.dom0.run("ls /sys/bus/xen-backend/devices") == ""
        assert "Remote Domain 1" not in m.dom0.run("lsevtchn 0")
    finally:
        m.shutdown()

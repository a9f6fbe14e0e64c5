"""`xl create` with several disks and vifs against real runs (tests/captures/*disk*vif*, README.md there).

What libxl decides is compared as it is: the watches it sets (path and token), the order it
forks the hotplug scripts in (the traced run's `xl -vvv` log), the device groups (disks, their
scripts, then the vifs). What dom0's scheduler decides is masked: the scripts libxl forked run
at once, so which one takes the block script's lock first (and `losetup -f`'s lowest loop
device) or joins the bridge first is a race; real runs differ (xvdb got loop0 in the 2-disk
run, xvda, xvdc, xvdb got loop0, 1, 2 in the traced 3-disk run, xvdc, xvdb, xvda in the
untraced one). The lab runs them in fork
order. Masked therefore: which disk has which loop device, which vif has which bridge port.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from real_captures import CAPTURES
from test_vs_captures import tree

from xenlab.sim.machine import Machine
from xenlab.sim.scenarios import build

SETS = {"oxenstored-2vcpu": (1, 1), "oxenstored-2vcpu-2disk-2vif": (2, 2),
        "oxenstored-2vcpu-3disk-3vif-traced": (3, 3), "oxenstored-2vcpu-3disk-3vif": (3, 3)}
TRACED = "oxenstored-2vcpu-3disk-3vif-traced"


def capture(kind: str, name: str) -> list[str]:
    """The output lines of capture *name* (without its `$ command` line and `[rc=N]`)."""
    (path,) = (CAPTURES / kind).glob(f"{name}*.txt")
    return [ln for ln in path.read_text().splitlines()[1:] if not ln.startswith("[rc=")]


_machines: dict[tuple[int, int], Machine] = {}


@pytest.fixture(scope="module")
def machines() -> Iterator[dict[tuple[int, int], Machine]]:
    yield _machines
    for m in _machines.values():
        m.shutdown()
    _machines.clear()


def lab(machines: dict[tuple[int, int], Machine], kind: str) -> Machine:
    shape = SETS[kind]
    if shape not in machines:
        machines[shape] = build("domU", flavour="modern", seed=0, dom0_vcpus=2, guest_vcpus=2,
                                disks=shape[0], vifs=shape[1])
    return machines[shape]


# -- what libxl does, in its order --------------------------------------------------------------
def real_libxl(kind: str) -> tuple[list[tuple[str, str]], list[str]]:
    """From `xl -vvv create`: the watches registered (path, token) and the XENBUS_PATH of each fork."""
    watches, forks, path = [], [], ""
    for ln in capture(kind, "D01-"):
        if (w := re.search(r"libxl__ev_xswatch_register: watch w=\S+ wpath=(\S+) token=(\S+): register", ln)):
            watches.append((w[1], w[2]))
        elif (x := re.search(r"\tXENBUS_PATH: (\S+)", ln)):
            path = x[1]
        elif "libxl__async_exec_start: forking to execute" in ln:
            forks.append(f"/local/domain/0/{path}")
    return watches, forks


def lab_libxl(m: Machine) -> tuple[list[tuple[str, str]], list[str]]:
    watches, forks = [], []
    for s in m.trace.steps:
        if s.function == "libxl__ev_xswatch_register":
            w = re.match(r"watch (\S+) token=(\S+): slot", s.summary)
            assert w
            watches.append((w[1], w[2]))
        elif s.function == "libxl__async_exec_start":
            f = re.search(r"\((/local/domain/0/backend/\S+)\) \(pid", s.summary)
            assert f
            forks.append(f[1])
    return watches, forks


def test_libxl_sets_watches_and_forks_the_scripts_in_the_real_order(machines: dict) -> None:
    """Slots from a stack (3, 2, 1 for the disks; the freed 1, 2, 3 for the vifs), the counter
    in hex; each backend's InitWait seen in the order the watch events arrive: config order;
    the vifs only after every disk's script exited; the console tty last."""
    real_watches, real_forks = real_libxl(TRACED)
    assert real_watches[0] == ("/local/domain/0/backend/vbd/1/51712/state", "3/0")
    assert lab_libxl(lab(machines, TRACED)) == (real_watches, real_forks)


def test_every_disk_script_exits_before_the_first_vif_is_added(machines: dict) -> None:
    """domcreate_launch_dm runs when the disks' multidev is done: all loop lines before any vif probe."""
    for kind in SETS:
        m = lab(machines, kind)
        for lines in (capture(kind, "26-"), m.dom0.run("dmesg").splitlines()):
            events = [t for ln in lines for t in (device_event(ln),) if t]
            loops = [i for i, e in enumerate(events) if e.startswith("loop")]
            vifs = [i for i, e in enumerate(events) if e.startswith("probe backend/vif")]
            assert loops and vifs and max(loops) < min(vifs), (kind, events)


# -- dom0's log: the device events, with what the race decides masked ----------------------------
DEVICE_EVENTS = [
    (re.compile(r"xenbus_dev_probe:\d+\) (backend/\S+)\.$"), r"probe \1"),
    (re.compile(r"^(loop)\d+(: detected capacity change from 0 to \d+)$"), r"\1N\2"),
    (re.compile(r"^(xenbr0: port )\d+\(vif\d+\.\d+\)( entered (?:blocking|disabled) state)$"), r"\1P(vif)\2"),
    (re.compile(r"^device vif\d+\.\d+ (entered promiscuous mode)$"), r"device vif \1"),
]


def device_event(line: str) -> str | None:
    """A line of dom0's log about a backend probe, a loop device or a vif joining the bridge,
    with the loop number and the vif/port (decided by the scripts' race) masked."""
    text = re.sub(r"^\[[\d. ]+\] ", "", line).rstrip()
    for pat, rep in DEVICE_EVENTS:
        if (m := pat.search(text)):
            return m.expand(rep)
    return None


def hotplug_events(lines: list[str]) -> list[str]:
    """The device events up to the first Connected (what xl destroy prints later is not modelled)."""
    out = []
    for ln in lines:
        if "(Connected)" in ln:
            break
        if (e := device_event(ln)):
            out.append(e)
    return out


@pytest.mark.parametrize("kind", list(SETS))
def test_dom0_log_probes_loops_and_bridge_joins_in_libxl_order(kind: str, machines: dict) -> None:
    """vbd probes, one loop per disk (numbered from 0 in the order they are set up), vif probes,
    one bridge port per vif (numbered from 1 in the order they join)."""
    real = hotplug_events(capture(kind, "26-"))
    assert hotplug_events(lab(machines, kind).dom0.run("dmesg").splitlines()) == real
    disks, vifs = SETS[kind]
    lines = capture(kind, "26-")
    lines = lines[: next(i for i, ln in enumerate(lines) if "(Connected)" in ln)]
    numbers = [int(n) for ln in lines for n in re.findall(r"\] loop(\d+): detected", ln)]
    ports = [int(n) for ln in lines for n in re.findall(r"xenbr0: port (\d+)\(vif\S+ entered disabled", ln)]
    assert numbers == list(range(disks)) and ports == list(range(1, vifs + 1))


# -- which disk got which loop device: a permutation, each disk its own -------------------------
def disk_loops(lines: list[str]) -> dict[str, str]:
    """vbd devid -> its loop node, from `xenstore-ls -f` (the block script's `node`)."""
    return {m[1]: m[2] for ln in lines
            if (m := re.match(r'/local/domain/0/backend/vbd/\d+/(\d+)/node = "(/dev/loop\d+)"', ln))}


@pytest.mark.parametrize("kind", list(SETS))
def test_each_disk_on_its_own_loop_device(kind: str, machines: dict) -> None:
    real = disk_loops(capture(kind, "D03-"))
    labm = disk_loops(lab(machines, kind).dom0.run("xenstore-ls -f").splitlines())
    assert sorted(labm) == sorted(real)
    assert sorted(labm.values()) == sorted(real.values()) == [f"/dev/loop{i}" for i in range(SETS[kind][0])]
    losetup = [ln.split(":")[0] for ln in capture(kind, "D05-") if ln.startswith("/dev/loop")]
    assert sorted(losetup) == sorted(real.values())


LOOP = [(re.compile(r'/dev/loop\d+'), "/dev/loopN"), (re.compile(r'physical-device = "7:\d+"'),
                                                      'physical-device = "7:N"')]


def masked_tree(lines: list[str]) -> list[str]:
    """tree() (test_vs_captures) with the loop device of each disk masked, and today's ramdisk path."""
    out = []
    for ln in tree(lines):
        for pat, rep in LOOP:
            ln = pat.sub(rep, ln)
        out.append(ln.replace("/xenlab-run/domu-initrd.cpio", "/xenlab/domu-initrd.cpio"))
    return out


@pytest.mark.parametrize("kind", list(SETS))
def test_tree_with_several_disks_and_vifs(kind: str, machines: dict) -> None:
    m = lab(machines, kind)
    assert masked_tree(m.dom0.run("xenstore-ls -f").splitlines()) == masked_tree(capture(kind, "D03-"))
    assert masked_tree(m.dom0.run("xenstore-ls -f -p").splitlines()) == masked_tree(capture(kind, "D04-"))


@pytest.mark.parametrize("kind", list(SETS))
def test_lsevtchn_of_dom0_and_the_guest(kind: str, machines: dict) -> None:
    m = lab(machines, kind)
    real = capture(kind, "D07-")
    i = real.index("== domU")
    assert m.dom0.run("lsevtchn 0").splitlines() == real[1:i]
    assert m.dom0.run("lsevtchn 1").splitlines() == real[i + 1:]


def test_cxenstored_lists_the_devices_in_the_order_libxl_adds_them() -> None:
    """C xenstored keeps children in creation order: backend/vbd, then console, then vif
    (domcreate_rebuild_done's disks, domcreate_launch_dm's console, then the vifs)."""
    m = build("domU", flavour="modern", seed=0, dom0_vcpus=2, guest_vcpus=2, xenstored="cxenstored")
    try:
        assert masked_tree(m.dom0.run("xenstore-ls -f").splitlines()) == \
            masked_tree(capture("cxenstored-2vcpu", "D03-"))
    finally:
        m.shutdown()

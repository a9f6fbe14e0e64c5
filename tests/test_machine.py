"""The Machine as a learner drives it: boot, start xenstored, create a guest, look inside."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from xenlab.sim.machine import Machine, MachineError
from xenlab.sim.scenarios import build


@pytest.fixture(scope="module")
def two_disks_two_vifs() -> Iterator[Machine]:
    m = build("domU", seed=3, dom0_vcpus=2, guest_vcpus=2, disks=2, vifs=2)
    yield m
    m.shutdown()


def test_same_seed_same_trace_byte_for_byte() -> None:
    a, b = build("domU", seed=5), build("domU", seed=5)
    try:
        assert a.trace.dump(changes=True) == b.trace.dump(changes=True)
        assert a.dom0.run("xenstore-ls -f -p") == b.dom0.run("xenstore-ls -f -p")
    finally:
        a.shutdown()
        b.shutdown()


def test_another_seed_changes_uuid_and_mac_but_not_the_shape() -> None:
    a, b = build("domU", seed=1), build("domU", seed=2)
    try:
        ta, tb = a.dom0.run("xenstore-ls -f"), b.dom0.run("xenstore-ls -f")
        assert ta != tb
        mask = re.compile(r"[0-9a-f]{8}-[0-9a-f-]{27}|00:16:3e:[0-9a-f:]{8}")
        assert mask.sub("X", ta) == mask.sub("X", tb)
    finally:
        a.shutdown()
        b.shutdown()


def test_before_xenstored_dom0_waits_and_has_no_tree() -> None:
    m = build("dom0-early")
    try:
        assert m.daemon is None
        assert m.dom0.run("xsring").endswith("req_cons=0 req_prod=0 rsp_cons=0 rsp_prod=0 "
                                             "server_features=0x0 connection=0 error=0")
        with pytest.raises(MachineError, match="xenstored is not running"):
            m.xs_client(0)
    finally:
        m.shutdown()


def test_xenstored_start_binds_dom_exc_then_the_ring(two_disks_two_vifs: Machine) -> None:
    lsevtchn = two_disks_two_vifs.dom0.run("lsevtchn 0").splitlines()
    assert any("Virtual IRQ 3" in ln for ln in lsevtchn)  # VIRQ_DOM_EXC for @releaseDomain
    xsd_port = int(two_disks_two_vifs.dom0.run("cat /proc/xen/xsd_port"))
    assert any(f"Remote Domain 0, Port {xsd_port}" in ln for ln in lsevtchn)


def test_devices_follow_the_config(two_disks_two_vifs: Machine) -> None:
    m = two_disks_two_vifs
    assert m.domain(1).run("ls /sys/bus/xen/devices").split() == ["vbd-51712", "vbd-51728", "vif-0", "vif-1"]
    for dev in ("vbd-51712", "vbd-51728", "vif-0", "vif-1"):
        assert m.domain(1).run(f"cat /sys/bus/xen/devices/{dev}/state") == "Connected"
    assert m.dom0.run("xenstore-read /local/domain/1/cpu/1/availability") == "online"
    assert m.dom0.run("xenstore-read /local/domain/0/backend/vbd/1/51728/physical-device") == "7:1"


def test_guest_ports_follow_the_devices(two_disks_two_vifs: Machine) -> None:
    """Store 1, console 2, then per-vcpu VIRQ/IPIs, then per vbd one port per queue and per vif a
    tx and an rx port per queue (queues = min(the backend's multi-queue-max-queues, which follows
    dom0's vcpus, and the guest's vcpus))."""
    m = two_disks_two_vifs
    lines = m.dom0.run("lsevtchn 1").splitlines()
    # select_target_cpu: xenbus's store port goes to vcpu 1 (fewer channels), the console's to vcpu 0
    assert lines[0].startswith("   1: VCPU 1: Interdomain (Connected) - Remote Domain 0")
    assert lines[1].startswith("   2: VCPU 0: Interdomain (Connected) - Remote Domain 0")
    queues = int(m.dom0.run("xenstore-read /local/domain/1/device/vif/0/multi-queue-num-queues"))
    assert queues == min(m.dom0_vcpus, m.vcpus(1)) == 2
    vbd_queues = int(m.dom0.run("xenstore-read /local/domain/1/device/vbd/51712/multi-queue-num-queues"))
    assert vbd_queues == 2
    interdomain = [ln for ln in lines if "Interdomain" in ln]
    assert len(interdomain) == 2 + 2 * vbd_queues + 2 * (2 * queues)


def test_dom0_vcpus_move_every_later_irq_and_port() -> None:
    """A second dom0 vcpu binds its timer and IPIs early, so xenbus and xsd_port move up."""
    one, two = build("dom0-early"), build("dom0-early", dom0_vcpus=2)
    try:
        def xenbus_irq(m: Machine) -> int:
            (line,) = [ln for ln in m.dom0.run("cat /proc/interrupts").splitlines() if ln.endswith("xenbus")]
            return int(line.split(":")[0])

        assert xenbus_irq(two) > xenbus_irq(one)
        assert int(two.dom0.run("cat /proc/xen/xsd_port")) > int(one.dom0.run("cat /proc/xen/xsd_port"))
        assert "CPU1" in two.dom0.run("cat /proc/interrupts").splitlines()[0]
    finally:
        one.shutdown()
        two.shutdown()


def test_unknown_command_names_the_valid_ones() -> None:
    m = build("dom0-early")
    try:
        out = m.dom0.run("frobnicate")
        assert m.dom0.last_rc == 127
        assert out.startswith("xenlab: unknown command 'frobnicate'; valid commands: cat, dmesg,")
        assert "\n" not in out
    finally:
        m.shutdown()


def test_unknown_flavour_and_fault_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown fault 'nope'; valid faults: "):
        Machine(faults=["nope"])
    with pytest.raises(ValueError, match="unknown scenario 'x'; valid scenarios: dom0-early, dom0, domU"):
        build("x")


def test_a_2618_guest_connects_too() -> None:
    """The 2.6.18 flavour: Dynamic-irq IRQs from 256, one event channel per vif, Connected on both ends."""
    m = build("domU", flavour="2.6.18")
    try:
        guest = m.domain(1)
        assert "state" not in guest.run("ls /sys/bus/xen/devices/vbd-51712").split()  # not in 2.6.18
        assert guest.run("xenstore-read device/vbd/51712/state") == "4"
        assert guest.run("xenstore-read device/vif/0/state") == "4"
        assert m.dom0.run("xenstore-read /local/domain/0/backend/vif/1/0/state") == "4"
        irqs = guest.run("cat /proc/interrupts")
        assert "Dynamic-irq  xenbus" in irqs and irqs.splitlines()[1].lstrip().startswith("256:")
        assert guest.run("xenstore-read device/vif/0/event-channel").isdigit()
    finally:
        m.shutdown()


def test_guest_writes_where_libxl_let_it_and_nowhere_else(two_disks_two_vifs: Machine) -> None:
    """data/ is (n1): the guest owns it; name is (n0,r1): read-only for the guest -> EACCES."""
    guest = two_disks_two_vifs.domain(1)
    assert guest.run("xenstore-write data/greeting hello") == "" and guest.last_rc == 0
    assert two_disks_two_vifs.dom0.run("xenstore-read /local/domain/1/data/greeting") == "hello"
    assert guest.run("xenstore-write name evil") == "xenstore-write: could not write path name"
    assert guest.last_rc == 1
    denied = "xenstore-read: couldn't read path /local/domain/0/name"
    assert guest.run("xenstore-read /local/domain/0/name") == denied


def test_xsring_decodes_dom0s_boot_conversation() -> None:
    m = build("dom0")
    try:
        out = m.dom0.run("xsring -d").splitlines()
        req = out[out.index("  req ring bytes [0,630):") + 1: out.index("  rsp ring bytes [0,645):")]
        assert len(req) == 19 and sum("WATCH " in ln for ln in req) == 6
    finally:
        m.shutdown()


def test_a_second_guest_gets_domid_2_new_loop_devices_and_its_own_irqs() -> None:
    m = build("domU")
    try:
        m.create_domU(name="second", disks=["xvda", "xvdc"], vifs=1)
        assert [ln.split()[:2] for ln in m.dom0.run("xl list").splitlines()[1:]] == [
            ["Domain-0", "0"], ["xenlab-domu", "1"], ["second", "2"]]
        assert m.dom0.run("xenstore-read /local/domain/0/backend/vbd/2/51712/physical-device") == "7:1"
        assert m.dom0.run("xenstore-read /local/domain/0/backend/vbd/2/51744/physical-device") == "7:2"
        assert m.domain(2).run("ls /sys/bus/xen/devices") == "vbd-51712  vbd-51744  vif-0"
        names = m.dom0.run("cat /proc/interrupts")
        assert "vif2.0-q0-tx" in names and "vif1.0-q0-tx" in names
    finally:
        m.shutdown()


def test_the_trace_does_not_depend_on_hash_order() -> None:
    """Another interpreter with another PYTHONHASHSEED prints the very same trace."""
    import os
    import subprocess
    import sys

    m = build("dom0")
    try:
        here = m.trace.dump(changes=True)
    finally:
        m.shutdown()
    env = dict(os.environ, PYTHONHASHSEED="7")
    out = subprocess.run([sys.executable, "-m", "xenlab", "trace", "--scenario", "dom0", "--changes"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert out.rstrip("\n") == here


@pytest.mark.parametrize("flavour", ["modern", "2.6.18"])
@pytest.mark.parametrize("xenstored", ["oxenstored", "cxenstored"])
def test_every_flavour_and_daemon_brings_a_bigger_guest_up(flavour: str, xenstored: str) -> None:
    """3 guest vcpus, 3 disks, 2 vifs on a 2-vcpu dom0: everything Connected. A 6.1 dom0's extra
    vcpu costs exactly one more boot READ (cpu/1/availability) and its ENOENT reply; a 2.6.18 dom0
    reads no cpu/N/availability at all (drivers/xen/core/cpu_hotplug.c:94 setup_cpu_watcher,
    `if (!is_initial_xendomain())`), so its ring indices do not grow with its vcpus."""
    from xenlab.sim.guest import device_states

    m = build("domU", flavour=flavour, xenstored=xenstored, dom0_vcpus=2, guest_vcpus=3, disks=3, vifs=2)
    try:
        states = device_states(m, 1, m.toolstack.built[1])
        assert sorted(states) == ["vbd/51712", "vbd/51728", "vbd/51744", "vif/0", "vif/1"]
        assert set(states.values()) == {(4, 4)}
        one = build("dom0", flavour=flavour, xenstored=xenstored)
        two = build("dom0", flavour=flavour, xenstored=xenstored, dom0_vcpus=2)
        a, b = one.store_interface(0), two.store_interface(0)
        extra = (0, 0) if flavour == "2.6.18" else (16 + len("cpu/1/availability\0"), 16 + len("ENOENT\0"))
        assert (b.req_prod - a.req_prod, b.rsp_prod - a.rsp_prod) == extra
        one.shutdown()
        two.shutdown()
    finally:
        m.shutdown()


@pytest.mark.parametrize("flavour", ["modern", "2.6.18"])
def test_a_tool_write_after_boot_reaches_the_guest_watch_that_covers_it(flavour: str) -> None:
    """xenstored's main loop polls its sockets as well as /dev/xen/evtchn: a write by a dom0 tool
    (here `xenstore-write memory/target`) queues a watch event for the guest, and the daemon's next
    turn puts it on the guest's ring, so the guest's balloon watch runs without any event channel
    having fired first."""
    m = Machine(flavour=flavour, seed=0)
    m.start_xenstored()
    m.create_domU(disks=["xvda"], vifs=1)
    try:
        start = len(m.trace)
        m.xs_client(0).write("/local/domain/1/memory/target", "131072")
        m.settle()
        ran = [(s.actor, s.function) for s in m.trace.steps[start:]]
        assert ("domU1", "watch_target") in ran
    finally:
        m.shutdown()

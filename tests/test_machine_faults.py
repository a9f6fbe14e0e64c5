"""Faults injected through the Machine: what the kernel says and what it leaves behind."""

from __future__ import annotations

import pytest

from xenlab.sim.faults import all_faults, check_fault
from xenlab.sim.scenarios import build


def test_every_probe_fault_is_offered() -> None:
    from xenlab.linux.pvops.kernel import PvopsKernel
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel

    names = all_faults()
    for name, _what in XenLinuxKernel.FAULTS + PvopsKernel.FAULTS:
        assert name in names
    assert {"ring-not-quiescent", "exhaust-irqs"} <= set(names)


def test_a_fault_can_target_the_guest_kernel() -> None:
    assert check_fault("domU:xs_init").target == "domU"
    assert check_fault("xs_init").target == "dom0"
    with pytest.raises(ValueError, match="valid faults"):
        check_fault("domX:xs_init")


@pytest.mark.parametrize("flavour", ["modern", "2.6.18"])
def test_xs_init_failure_leaves_dom0_without_a_xenbus_irq(flavour: str) -> None:
    m = build("dom0-early", flavour=flavour, faults=["xs_init"])
    try:
        assert "Error initializing xenstore comms: -12" in m.dom0.run("dmesg")
        assert "xenbus" not in m.dom0.run("cat /proc/interrupts")
    finally:
        m.shutdown()


def test_frontend_bus_registration_failure_is_printed_and_kept() -> None:
    m = build("dom0-early", flavour="2.6.18", faults=["bus_register_frontend"])
    try:
        assert "XENBUS: Error registering frontend bus: -12" in m.dom0.run("dmesg")
        assert m.dom0.run("ls /sys/bus/xen") .startswith("ls: cannot access")
        assert m.dom0.run("ls /sys/bus/xen-backend/devices") == ""
    finally:
        m.shutdown()


def test_exhausted_irqs_leave_xenbus_unbound_2618() -> None:
    m = build("dom0-early", flavour="2.6.18", faults=["exhaust-irqs"])
    try:
        dmesg = m.dom0.run("dmesg")
        assert "No available IRQ to bind to: increase NR_DYNIRQS." in dmesg
        assert "xenbus" not in m.dom0.run("cat /proc/interrupts")
    finally:
        m.shutdown()


def test_non_quiescent_guest_ring_is_reported_and_fixed_up() -> None:
    m = build("domU", faults=["ring-not-quiescent"])
    try:
        dmesg = m.domain(1).run("dmesg")
        assert "not quiescent" in dmesg
        assert m.domain(1).run("cat /sys/bus/xen/devices/vif-0/state") == "Connected"
    finally:
        m.shutdown()


def test_a_stale_request_is_answered_by_xenstored_and_its_reply_skipped_by_the_guest() -> None:
    """req's consumer (xenstored) drains the stale request; rsp's consumer (the guest) skips the answer."""
    m = build("domU", faults=["ring-not-quiescent"])
    try:
        t = m.trace
        dirty = next(s.index for s in t.steps if s.function == "fault ring-not-quiescent")
        fixup = next(s for s in t.steps if s.actor == "domU1" and s.function == "xb_init_comms")
        daemon = [s for s in t.steps[dirty:fixup.index]
                  if s.actor.endswith("xenstored") and s.summary.startswith("d1:")]
        assert [s.function for s in daemon][-3:] == ["ml_interface_read", "ml_interface_read",
                                                      "ml_interface_write"]
        assert t.state_at(fixup.index - 1)["xenstored/ring/d1"]["req_cons"] == 47  # req drained: 24 -> 47
        assert (fixup.printk or "").endswith("response ring is not quiescent (00000010:00000038): fixing up")
        assert not any("request ring is not quiescent" in (s.printk or "") for s in t.steps)
        assert m.domain(1).run("cat /sys/bus/xen/devices/vbd-51712/state") == "Connected"
    finally:
        m.shutdown()


@pytest.mark.parametrize("fault", ["get_zeroed_page", "alloc_unbound_enosys"])
def test_without_a_store_page_or_port_xenstored_cannot_start(fault: str) -> None:
    """dom0's kernel gave up on its store: xenstored's dom0_init fails, so no tree, no guest."""
    m = build("domU", faults=[fault])
    try:
        assert m.daemon is None and "dom0_init failed" in m.xenstored_error
        assert sorted(m.hv.domains) == [0]
        assert "xenstored is not running" in m.dom0.run("xenstore-ls")
    finally:
        m.shutdown()


def test_a_guest_whose_xs_init_fails_hangs_and_never_connects() -> None:
    m = build("domU", faults=["domU:xs_init"])
    try:
        assert "Error initializing xenstore comms: -12" in m.domain(1).run("dmesg")
        assert any("boot hung" in e for e in m.errors)
        assert m.dom0.run("xenstore-read /local/domain/1/device/vif/0/state") == "1"
    finally:
        m.shutdown()

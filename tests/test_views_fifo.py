"""FifoView: what a learner sees of FIFO delivery (and of 2-level, where a kernel stays on it)."""

from __future__ import annotations

from xenlab.abi.event_channel import VIRQ_TIMER
from xenlab.linux.pvops import events_base, xen_asm
from xenlab.linux.pvops.kernel import PvopsKernel
from xenlab.sim.machine import Machine
from xenlab.sim.scenarios import build
from xenlab.views import FifoView, IrqView, Stepper


def queued_guest() -> tuple[Machine, PvopsKernel, int, int]:
    """A booted guest with interrupts off on vcpu 0 while xenstored, an IPI and the timer raise ports."""
    m = build("domU")
    k = m.kernel(1)
    assert isinstance(k, PvopsKernel)
    store = k.xb.xen_store_evtchn
    resched = events_base.evtchn_from_irq(k, k.irq.ipi_to_irq[0][events_base.XEN_RESCHEDULE_VECTOR])
    xen_asm.xen_irq_disable_direct(k, 0)
    m.hv.evtchn_send(0, m.hv.domains[1].chns[store].remote_port)  # xenstored's notify
    m.hv.evtchn_send(1, resched)  # smp_send_reschedule to itself
    m.hv.send_guest_virq(1, VIRQ_TIMER, vcpu=0)
    return m, k, store, resched


def test_the_queues_as_xen_linked_them_and_the_timer_first() -> None:
    m, k, store, resched = queued_guest()
    try:
        timer = k.irq.info[k.irq.virq_to_irq[0][VIRQ_TIMER]].evtchn
        text = FifoView(1, ports=[store]).text_at(m.trace)
        assert "d1 runs the FIFO ABI" in text
        assert f"READY {{0, 7}}; head[0] = {timer}, head[7] = {store}" in text  # xen_setup_timer: priority 0
        assert f"  7         {store} -> {resched} " in text
        assert f"* 0         {timer} " in text  # "*": the last step linked it
        assert f"  {store}     P . L .  {resched}     7" in text  # linked to the next in its queue
        xen_asm.xen_irq_enable_direct(k, 0)  # the upcall consumes priority 0, then 7 in order
        after = FifoView(1, ports=[store]).text_at(m.trace)
        assert "READY 0" in after and "(empty)" in after and "evtchn_upcall_pending = 0" in after
    finally:
        m.shutdown()


def test_a_stepper_over_the_consumption_marks_what_each_step_changed() -> None:
    m, k, store, _ = queued_guest()
    try:
        start = len(m.trace)
        xen_asm.xen_irq_enable_direct(k, 0)
        s = Stepper(m.trace, [FifoView(1, ports=[store])], steps=range(start, len(m.trace)))
        consumed = next(st.index for st in m.trace.steps[start:] if st.function == "consume_one_event")
        s.go(consumed)
        assert "* 0         (empty)" in s.text()  # the priority-0 queue this step emptied
    finally:
        m.shutdown()


def test_a_2_level_kernel_is_shown_as_2_level() -> None:
    m = build("domU", fifo_events=False)
    try:
        k = m.kernel(1)
        assert isinstance(k, PvopsKernel)
        text = FifoView(1, ports=[k.xb.xen_store_evtchn]).text_at(m.trace)
        assert "d1 runs the 2-level ABI" in text and "evtchn_pending_sel" in text and "pending  mask" in text
    finally:
        m.shutdown()


def test_the_irq_view_does_not_list_free_ports_for_their_default_priority() -> None:
    m = build("dom0")
    try:
        text = IrqView("dom0", domains=[0]).text_at(m.trace)
        listed = [ln for ln in text.split("Xen: domain 0 ports:")[1].splitlines()[2:] if ln.strip()]
        in_use = len(m.hv.domains[0].ports_in_use())
        assert len(listed) == in_use or "more ports" in text
        assert "evtchn_priority" in text
    finally:
        m.shutdown()

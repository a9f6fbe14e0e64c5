"""Linux 6.1's FIFO event-channel ABI (events_fifo.py) against Xen's (xen/event_fifo.py).

FIFO is Linux 6.1's default ABI (xen_init_IRQ: xen_evtchn_fifo_init unless
xen.fifo_events=0). These tests put a lone domU kernel on it through xen_init_IRQ's
port-ABI seam and bind IPI ports by hand; the booted machines are at the end.
"""

from __future__ import annotations

import pytest

from xenlab.abi import event_channel as ev
from xenlab.base.trace import Trace
from xenlab.linux.irq import IRQ_HANDLED
from xenlab.linux.kernels import new_kernel
from xenlab.linux.pvops import events_2l, events_base, events_fifo
from xenlab.linux.pvops.kernel import PvopsKernel
from xenlab.sim.machine import Machine, MachineError
from xenlab.sim.scenarios import build
from xenlab.xen.hypervisor import Hypervisor


def fifo_domU() -> tuple[Hypervisor, PvopsKernel, list[int], list[int]]:
    hv = Hypervisor(trace=Trace(), bits=64)
    hv.domain_create(0, "Domain-0", privileged=True, initdomain=True)
    hv.domain_create(1, "guest")
    k = new_kernel(hv, 1, flavour="modern", trace=hv.trace)
    assert isinstance(k, PvopsKernel)
    events_base.xen_init_IRQ(k, events_fifo.xen_evtchn_fifo_or_2l_init)
    seen: list[int] = []
    ports = []
    for _ in range(3):
        port = hv.evtchn_bind_ipi(1, 0)  # the binding's xen_evtchn_port_setup grows the array
        irq = events_base.bind_evtchn_to_irqhandler(
            k, port, lambda i, d: (seen.append(i), IRQ_HANDLED)[1], 0, f"t{port}", None)
        assert irq >= 0
        ports.append(port)
    return hv, k, ports, seen


def test_init_switches_the_domain_and_prints_the_fifo_line() -> None:
    hv, k, ports, _ = fifo_domU()
    assert k.irq.evtchn_ops is events_fifo.evtchn_ops_fifo
    assert "xen:events: Using FIFO-based ABI" in k.dmesg()
    assert events_fifo.evtchn_fifo_nr_channels(k) == 1024  # one page: the ports bound so far
    assert events_fifo.evtchn_fifo_max_channels(k) == 1 << 17


def held(hv: Hypervisor, k: PvopsKernel, sends: list[int]) -> None:
    """Raise *sends* while the kernel is inside its upcall (queued, not handled), then run the upcall."""
    k.irq.in_upcall = True
    for p in sends:
        hv.evtchn_send(1, p)
    k.irq.in_upcall = False
    events_base.xen_evtchn_do_upcall(k, 0)


def test_events_are_handled_in_queue_order() -> None:
    hv, k, ports, seen = fifo_domU()
    order = [ports[2], ports[0], ports[1]]
    held(hv, k, order)
    assert seen == [events_base.irq_from_evtchn(k, p) for p in order]
    rows = [c for s in hv.trace.steps if s.function == "consume_one_event" for c in s.changes
            if c.table == "xen/d1/fifo_queue/v0"]
    assert [r.before for r in rows] == [tuple(order), tuple(order[1:]), tuple(order[2:])]


def test_higher_priority_is_consumed_first() -> None:
    hv, k, ports, seen = fifo_domU()
    assert hv.evtchn_set_priority(1, ports[2], 0) == 0
    held(hv, k, ports)
    assert seen[0] == events_base.irq_from_evtchn(k, ports[2])
    assert seen[1:] == [events_base.irq_from_evtchn(k, p) for p in ports[:2]]


def test_masked_event_is_not_handled_and_unmask_delivers_it() -> None:
    hv, k, ports, seen = fifo_domU()
    events_fifo.evtchn_fifo_mask(k, ports[0])
    hv.evtchn_send(1, ports[0])
    assert seen == [] and events_fifo.evtchn_fifo_is_pending(k, ports[0])
    events_fifo.evtchn_fifo_unmask(k, ports[0])  # pending: EVTCHNOP_unmask, Xen links and raises it
    assert seen == [events_base.irq_from_evtchn(k, ports[0])]


def test_a_failed_fifo_init_falls_back_to_2_level(monkeypatch: pytest.MonkeyPatch) -> None:
    hv = Hypervisor(trace=Trace(), bits=64)
    hv.domain_create(0, "Domain-0", privileged=True, initdomain=True)
    hv.domain_create(1, "guest")
    k = new_kernel(hv, 1, flavour="modern", trace=hv.trace)
    assert isinstance(k, PvopsKernel)
    monkeypatch.setattr(hv, "event_channel_op", lambda *a: -38)  # a Xen without FIFO: -ENOSYS
    st = events_base.xen_init_IRQ(k, events_fifo.xen_evtchn_fifo_or_2l_init)
    assert st.evtchn_ops is events_2l.evtchn_ops_2l and not st.fifo_events
    assert "FIFO" not in k.dmesg() and "xen:events: Using 2-level ABI" in k.dmesg()


def test_array_grows_a_page_for_a_port_past_the_first() -> None:
    hv, k, ports, _ = fifo_domU()
    assert events_fifo.evtchn_fifo_nr_channels(k) == 1024
    assert events_fifo.evtchn_fifo_setup(k, 1024) == 0
    assert events_fifo.evtchn_fifo_nr_channels(k) == 2048
    assert events_fifo.evtchn_fifo_setup(k, 1 << 17) == -22  # past MAX_EVENT_ARRAY_PAGES: -EINVAL
    assert events_fifo.evtchn_fifo_is_masked(k, 1500)


def test_an_init_control_that_fails_leaves_the_booted_kernel_on_2_level(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """xen_init_IRQ: xen_evtchn_fifo_init < 0 -> xen_evtchn_2l_init, xen_fifo_events = false: the
    kernel then binds a debug VIRQ per cpu as any 2-level kernel does (xen_smp_intr_init)."""
    hv = Hypervisor(trace=Trace(), bits=64)
    hv.domain_create(0, "Domain-0", privileged=True, initdomain=True)
    k = new_kernel(hv, 0, flavour="modern", trace=hv.trace)
    assert isinstance(k, PvopsKernel) and k.fifo_events
    real_op = hv.event_channel_op
    monkeypatch.setattr(hv, "event_channel_op", lambda caller, cmd, arg: (
        -38 if cmd == ev.EVTCHNOP_init_control else real_op(caller, cmd, arg)))  # a Xen without FIFO
    dict(k.boot_stages(initdomain=True))["early IRQs"]()
    assert hv.domains[0].evtchn_port_ops.name == "2-level" and not k.irq.fifo_events
    names = [d.actions[0].name for _, d in sorted(k.irq.core.descs.items()) if d.actions]
    assert "debug0" in names and "FIFO" not in k.dmesg() and "xen:events: Using 2-level ABI" in k.dmesg()


# -- a booted machine ----------------------------------------------------------------------------
def test_xen_fifo_events_0_boots_both_kernels_on_2_level() -> None:
    m = build("domU", fifo_events=False)
    try:
        for dom in m.domains.values():
            k = dom.kernel
            assert isinstance(k, PvopsKernel) and "xen.fifo_events=0" in k.cmdline and not k.fifo_events
            assert k.irq.evtchn_ops is events_2l.evtchn_ops_2l
            assert "Using FIFO-based ABI" not in k.dmesg() and "debug0" in k.show_interrupts()
            assert "xen:events: Using 2-level ABI" in k.dmesg()  # xen_evtchn_2l_init's pr_info
            assert m.hv.domains[dom.domid].evtchn_fifo is None
    finally:
        m.shutdown()


def test_2_6_18_has_no_fifo_to_switch_on() -> None:
    with pytest.raises(MachineError, match="2.6.18.*2-level only"):
        Machine(flavour="2.6.18", fifo_events=True)
    m = Machine(flavour="2.6.18", fifo_events=False)  # what 2.6.18 does anyway: no parameter to pass
    try:
        assert m.dom0.kernel.cmdline == "" and m.hv.domains[0].evtchn_port_ops.name == "2-level"
    finally:
        m.shutdown()


def test_every_vcpu_gets_its_control_block_as_it_comes_up() -> None:
    """xen_evtchn_fifo_init: cpu0's; CPUHP_XEN_EVTCHN_PREPARE (xen_evtchn_cpu_prepare ->
    evtchn_fifo_percpu_init) cpu1's, after CPUHP_XEN_PREPARE bound its timer and IPIs. Without it
    Xen would drop every event of the ports select_target_cpu puts on vcpu 1."""
    m = build("domU", dom0_vcpus=2, guest_vcpus=2)
    try:
        for domid, name in ((0, "dom0"), (1, "domU1")):
            d = m.hv.domains[domid]
            assert [v.control_block is not None for v in d.evtchn_fifo.vcpu] == [True, True]
            steps = [s for s in m.trace if s.actor == name]
            fns = [s.function for s in steps]
            prepare = fns.index("xen_evtchn_cpu_prepare")
            assert "cpu1" in steps[prepare].summary
            timer1 = next(i for i, s in enumerate(steps) if s.function == "bind_virq_to_irq"
                          and "VIRQ 0, vcpu 1" in s.summary)
            spinlock1 = next(i for i, s in enumerate(steps) if s.function == "request_irq"
                             and "'spinlock1'" in s.summary)  # xen_cpu_up_online: xen_init_lock_cpu
            assert timer1 < prepare < spinlock1
            assert not any("no FIFO event channel control block" in (s.printk or "") for s in m.trace)
        # the xenbus port is on vcpu 1 (select_target_cpu) and its events got there: xenbus works
        k = m.kernel(0)
        irq = events_base.irq_from_evtchn(k, k.xb.xen_store_evtchn)
        assert k.irq.info[irq].cpu == 1 and k.irq.core.descs[irq].kstat[1] > 0
    finally:
        m.shutdown()


def test_binding_port_1024_expands_the_event_array_by_one_page() -> None:
    """evtchn_fifo_setup: the first port of a new page needs a new page of MASKED words
    (init_array_page), handed to Xen with EVTCHNOP_expand_array; startup unmasks the port."""
    m = build("dom0")
    try:
        k, d = m.kernel(0), m.hv.domains[0]
        assert isinstance(k, PvopsKernel)
        assert d.evtchn_fifo.num_evtchns == events_fifo.evtchn_fifo_nr_channels(k) == 1024
        def handler(irq: int, dev_id: object) -> int:
            return IRQ_HANDLED

        with m.trace.muted():
            while (port := m.hv.evtchn_alloc_unbound(0, 0, 0)) < 1023:
                assert events_base.bind_evtchn_to_irqhandler(k, port, handler, 0, "p", None) > 0
        start = len(m.trace)
        port = m.hv.evtchn_bind_ipi(0, 0)  # a port that raises itself when sent on
        assert port == 1024
        irq = events_base.bind_evtchn_to_irqhandler(k, port, handler, 0, "p1024", None)
        steps = m.trace.steps[start:]
        fns = [s.function for s in steps]
        assert fns.index("init_array_page") < fns.index("evtchn_fifo_expand_array") < fns.index(
            "evtchn_fifo_unmask")
        assert d.evtchn_fifo.num_evtchns == events_fifo.evtchn_fifo_nr_channels(k) == 2048
        state = m.trace.state_at(len(m.trace) - 1)
        assert sorted(state["xen/d0/fifo_event_array"]) == ["0", "1"]
        assert state["xen/d0/event_word"]["1025"] == ("-M--", 0)  # the new page's next port: masked
        assert "1024" not in state["xen/d0/event_word"]  # unmasked by the IRQ's startup, not pending
        m.hv.evtchn_send(0, port)
        assert k.irq.core.descs[irq].kstat == [1]
    finally:
        m.shutdown()


def test_a_booted_guest_handles_its_queue_in_order_and_by_priority() -> None:
    """dom0's backends kick the guest's three vbd/vif ports while its upcall is busy: one upcall
    takes them from the queue in the order Xen linked them, the priority-0 port first."""
    m = build("domU", vifs=1)
    try:
        k = m.kernel(1)
        assert isinstance(k, PvopsKernel)
        names = {"blkif": 0, "vif0-q0-tx": 0, "vif0-q0-rx": 0}
        descs = {a.name: d for d in k.irq.core.descs.values() for a in d.actions if a.name in names}
        ports = {n: events_base.evtchn_from_irq(k, d.irq) for n, d in descs.items()}
        before = {n: d.kstat[0] for n, d in descs.items()}
        assert m.hv.evtchn_set_priority(1, ports["vif0-q0-rx"], 0) == 0
        start = len(m.trace)
        k.irq.in_upcall = True  # the guest is busy: Xen only links
        for n in ("blkif", "vif0-q0-tx", "vif0-q0-rx"):  # notify_remote_via_irq in dom0's backends
            m.hv.evtchn_send(0, m.hv.domains[1].chns[ports[n]].remote_port)
        k.irq.in_upcall = False
        events_base.xen_evtchn_do_upcall(k, 0)
        consumed = [s.summary for s in m.trace.steps[start:] if s.function == "consume_one_event"]
        assert consumed == [f"vcpu 0 priority 0: port {ports['vif0-q0-rx']}",
                            f"vcpu 0 priority 7: port {ports['blkif']}",
                            f"vcpu 0 priority 7: port {ports['vif0-q0-tx']}"]
        assert all(descs[n].kstat[0] == before[n] + 1 for n in names)
    finally:
        m.shutdown()

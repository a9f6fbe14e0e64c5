"""Linux 6.1's FIFO event-channel ABI (events_fifo.py) against Xen's (xen/event_fifo.py).

The module is not yet the kernel's default ABI: these tests put a domU's kernel on it
through xen_init_IRQ's port-ABI seam and bind IPI ports by hand.
"""

from __future__ import annotations

import pytest

from xenlab.base.trace import Trace
from xenlab.linux.irq import IRQ_HANDLED
from xenlab.linux.kernels import new_kernel
from xenlab.linux.pvops import events_2l, events_base, events_fifo
from xenlab.linux.pvops.kernel import PvopsKernel
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
    assert "FIFO" not in k.dmesg()


def test_array_grows_a_page_for_a_port_past_the_first() -> None:
    hv, k, ports, _ = fifo_domU()
    assert events_fifo.evtchn_fifo_nr_channels(k) == 1024
    assert events_fifo.evtchn_fifo_setup(k, 1024) == 0
    assert events_fifo.evtchn_fifo_nr_channels(k) == 2048
    assert events_fifo.evtchn_fifo_setup(k, 1 << 17) == -22  # past MAX_EVENT_ARRAY_PAGES: -EINVAL
    assert events_fifo.evtchn_fifo_is_masked(k, 1500)

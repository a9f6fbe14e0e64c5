"""FIFO event channels in the simulated Xen 4.17, lesson by lesson (xen/common/event_fifo.c).

A domain is born on the 2-level ABI. Its guest switches it to FIFO with
EVTCHNOP_init_control (a control block per vCPU in its own page), gives Xen pages of
event words with EVTCHNOP_expand_array, and from then on Xen links each raised port
into a queue per vCPU and priority, through the LINK fields of the words, and sets the
priority's READY bit. ``FifoGuest`` (tests/fifo_guest.py) does by hand what Linux 6.1's events_fifo.c
does with its own memory (fill a new array page with MASKED words, unmask, consume a
queue from its head), recording its writes in the same trace tables, as a guest must.
"""

from __future__ import annotations

import re

import pytest
from fifo_guest import WORDS, B, FifoGuest, L, M, P, fifo_domain
from real_captures import CAPTURES

from xenlab.abi import event_channel as ev
from xenlab.abi.errno import EACCES, EINVAL, ENOENT, ENOSPC, ENOSYS, EOPNOTSUPP
from xenlab.abi.event_channel import EVTCHN_FIFO_LINK_MASK, event_word_bits
from xenlab.base.trace import Trace
from xenlab.xen import Hypervisor, dump_evtchn_info
from xenlab.xen.event_fifo import EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES


def test_two_level_is_the_default_until_the_guest_asks() -> None:
    """evtchn_init puts every new domain on the 2-level ABI: no priorities, no array, 4096 ports."""
    hv = Hypervisor(trace=Trace())
    d = hv.domain_create(0, "Domain-0", privileged=True, initdomain=True)
    assert d.evtchn_port_ops is not None and d.evtchn_port_ops.name == "2-level"
    assert d.evtchn_fifo is None and d.max_evtchns == 4096
    port = hv.evtchn_bind_ipi(0, 0)
    assert hv.evtchn_set_priority(0, port, 3) == -ENOSYS
    expand = ev.evtchn_expand_array(array_gfn=0)
    assert hv.event_channel_op(0, ev.EVTCHNOP_expand_array, expand) == -EOPNOTSUPP
    hv.evtchn_send(0, port)
    assert d.shared_info.test_pending(port)  # delivered through the 2-level bits


@pytest.mark.parametrize(("flavour", "fifo", "abi"), [
    ("modern", None, "FIFO"),  # Linux 6.1's xen_init_IRQ: xen_evtchn_fifo_init, as on the real machines
    ("modern", False, "2-level"),  # xen.fifo_events=0: xen_evtchn_2l_init
    ("2.6.18", None, "2-level"),  # XenLinux 2.6.18 never calls EVTCHNOP_init_control
])
def test_a_booted_machine_runs_the_abi_its_kernels_choose(flavour: str, fifo: bool | None, abi: str) -> None:
    from xenlab import Machine

    m = Machine(flavour=flavour, seed=0, fifo_events=fifo)
    try:
        m.start_xenstored()
        m.create_domU()
        assert {d.domid: d.evtchn_port_ops.name for d in m.hv.domains.values()} == {0: abi, 1: abi}
    finally:
        m.shutdown()


def test_init_control_switches_the_domain_to_fifo() -> None:
    hv = Hypervisor(trace=Trace())
    hv.domain_create(1, "guest", vcpus=2)
    g = FifoGuest(hv, 1)
    assert g.init_control(vcpu=0, offset=64) == 0
    d = g.d
    assert d.evtchn_port_ops is not None and d.evtchn_port_ops.name == "FIFO"
    assert d.max_evtchns == 131072 and d.evtchn_fifo is not None and d.evtchn_fifo.num_evtchns == 0
    step = hv.trace[-1]
    assert step.function == "evtchn_fifo_init_control" and "switches to the FIFO ABI" in step.summary
    rows = {(c.table, c.key): c.after for c in step.changes}
    assert rows[("xen/d1/evtchn_port_ops", "abi")] == "FIFO"
    assert rows[("xen/d1/fifo_control_block", "0")] == (g.cb_gfn[0], 64)
    # vcpu 1 has queues but no control block until its own init_control
    assert d.evtchn_fifo.vcpu[1].control_block is None and len(d.evtchn_fifo.vcpu[1].queue) == 16
    assert g.init_control(vcpu=1) == 0


def test_init_control_checks_its_arguments() -> None:
    hv = Hypervisor(trace=Trace())
    hv.domain_create(0, "Domain-0", privileged=True, initdomain=True)
    hv.domain_create(1, "guest")
    g = FifoGuest(hv, 1)
    assert g.init_control(vcpu=1) == -ENOENT
    assert g.init_control(offset=4096 - 72 + 8) == -EINVAL  # would cross the page
    assert g.init_control(offset=12) == -EINVAL  # not 8-byte aligned
    other = hv.populate_physmap(0)  # dom0's frame: not the guest's to give
    bad = ev.evtchn_init_control(control_gfn=other.mfn, link_bits=0)
    assert hv.event_channel_op(1, ev.EVTCHNOP_init_control, bad) == -EINVAL and bad.link_bits == 0
    assert g.d.evtchn_fifo is None and g.d.evtchn_port_ops is not None
    assert g.d.evtchn_port_ops.name == "2-level"  # every failure left the domain as it was
    assert g.init_control(offset=4096 - 72) == 0  # the last place a control block fits
    assert g.init_control() == -EINVAL  # vcpu 0's is mapped already


def test_events_queue_in_the_order_they_were_raised() -> None:
    """Three sends: one queue, head -> LINK -> LINK, READY bit 7, one upcall; consumed in order."""
    hv, g, (a, b, c) = fifo_domain()
    for p in (b, a, c):
        hv.evtchn_send(1, p)
    cb = g.cb[0]
    assert cb.head[7] == b and cb.ready == 1 << 7
    assert (g.word(b), g.word(a), g.word(c)) == (P | L | a, P | L | c, P | L)
    assert g.queue(0, 7) == (b, a, c) and g.upcalls == [0]
    assert [g.consume(0, 7) for _ in range(3)] == [b, a, c]
    assert cb.ready == 0 and g.queue(0, 7) == ()  # the guest took READY, and its queue is drained
    # a drained queue starts afresh at the head: Xen finds its old tail no longer LINKED
    hv.evtchn_send(1, a)
    assert cb.head[7] == a and cb.ready == 1 << 7 and g.upcalls == [0, 0]


def test_a_tail_that_was_consumed_is_forgotten() -> None:
    """The old queue's tail is invalidated when that port is linked again, here or on another queue."""
    hv, g, (a, b, _) = fifo_domain()
    hv.evtchn_send(1, a)
    assert g.consume(0, 7) == a  # a was the tail; the queue is empty
    hv.evtchn_send(1, a)  # linked again: the head of a fresh queue, not linked after itself
    assert g.word(a) == P | L and g.cb[0].head[7] == a and g.queue(0, 7) == (a,)
    assert g.consume(0, 7) == a
    hv.evtchn_set_priority(1, a, 1)
    hv.evtchn_send(1, a)  # now on priority 1: priority 7's tail must not still name a
    hv.evtchn_send(1, b)
    assert g.queue(0, 1) == (a,) and g.queue(0, 7) == (b,) and g.word(a) & EVTCHN_FIFO_LINK_MASK == 0


def test_each_priority_has_its_own_queue_and_ready_bit() -> None:
    hv, g, (a, b, c) = fifo_domain()
    assert hv.evtchn_set_priority(1, b, 3) == 0 and hv.evtchn_set_priority(1, c, 15) == 0
    for p in (a, b, c):
        hv.evtchn_send(1, p)
    cb = g.cb[0]
    assert cb.ready == 1 << 3 | 1 << 7 | 1 << 15
    assert (cb.head[3], cb.head[7], cb.head[15]) == (b, a, c)
    assert g.upcalls == [0, 0, 0]  # each new READY bit marks events pending (the guest had cleared it)
    assert hv.evtchn_set_priority(1, a, 16) == -EINVAL
    assert hv.evtchn_set_priority(1, 999, 1) == -EINVAL  # no such port
    free = g.d.chns[10].port
    assert hv.evtchn_set_priority(1, free, 1) == -EACCES  # not bound


def test_a_new_priority_applies_to_the_next_event() -> None:
    """A queued event stays on its queue; when it is linked again it goes to the new one."""
    hv, g, (a, b, _) = fifo_domain()
    hv.evtchn_send(1, a)
    hv.evtchn_send(1, b)
    assert hv.evtchn_set_priority(1, a, 2) == 0
    assert g.queue(0, 7) == (a, b) and g.queue(0, 2) == ()
    assert g.consume(0, 7) == a
    g.handle(a)
    hv.evtchn_send(1, a)
    assert g.queue(0, 2) == (a,) and g.queue(0, 7) == (b,)
    assert g.d.chns[a].fifo_lastq == (0, 2)


def test_a_masked_event_is_pending_but_not_linked_until_unmask() -> None:
    hv, g, (a, b, _) = fifo_domain()
    g.mask(a)
    hv.evtchn_send(1, a)
    assert g.word(a) == P | M and g.queue(0, 7) == () and g.cb[0].ready == 0 and g.upcalls == []
    hv.evtchn_send(1, b)
    g.unmask(a)  # PENDING: the guest may not clear MASKED itself, Xen does and links it
    assert g.word(a) == P | L and g.queue(0, 7) == (b, a)
    assert hv.trace[-2].function == "evtchn_unmask" and "linked now" in hv.trace[-2].summary


def test_ports_beyond_the_event_array_have_no_word() -> None:
    """No word: raising only saves the pending state, the port reads masked, unmask does nothing."""
    hv = Hypervisor(trace=Trace())
    hv.domain_create(0, "Domain-0", privileged=True, initdomain=True)
    hv.domain_create(1, "guest", max_evtchn_port=1023)
    g = FifoGuest(hv, 1)
    assert g.init_control() == 0
    offer = hv.evtchn_alloc_unbound(0, ev.DOMID_SELF, 1)
    port = hv.evtchn_bind_interdomain(1, 0, offer)  # bind sets the local port pending: no word yet
    chn = g.d.chns[port]
    assert chn.pending and "no event word yet" in hv.trace[-1].summary
    assert f"    {port:4d} [0/1/?     ]: s=3 n=0 x=0 d=0 p={offer}" in dump_evtchn_info(hv).splitlines()
    assert hv.evtchn_unmask(1, port) == 0 and "nothing to unmask" in hv.trace[-1].summary
    assert g.expand() == 0  # the page comes: the saved event is raised, onto a MASKED word
    assert g.word(port) == P | M and "re-raising saved ports" in hv.trace[-2].summary
    g.unmask(port)
    assert g.queue(0, 7) == (port,)
    assert chn.pending  # Xen 4.17 never clears evtchn->pending: it only matters once per page


def test_the_array_grows_a_page_at_a_time() -> None:
    hv = Hypervisor(trace=Trace())
    hv.domain_create(0, "Domain-0", privileged=True, initdomain=True)
    g = FifoGuest(hv, 0)
    assert g.init_control() == 0
    fifo = g.d.evtchn_fifo
    assert fifo is not None
    with hv.trace.muted():
        for n in range(1, EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES + 1):
            assert g.expand(init=False) == 0 and fifo.num_evtchns == n * 1024
        assert g.expand(init=False) == -ENOSPC  # 128 pages hold all 2^17 words
    assert hv.event_channel_op(0, ev.EVTCHNOP_expand_array, ev.evtchn_expand_array(array_gfn=1)) in (
        -ENOSPC, -EINVAL)


def test_the_fifo_abi_allows_131072_ports() -> None:
    """dom0 (max_evtchn_port INT_MAX) gets ports 4096.. once on FIFO, up to 131071; a guest keeps its 1023."""
    hv = Hypervisor(trace=Trace())
    hv.domain_create(0, "Domain-0", privileged=True, initdomain=True)
    hv.domain_create(1, "guest", max_evtchn_port=1023)
    d0 = hv.domains[0]
    with hv.trace.muted():
        while hv.evtchn_alloc_unbound(0, ev.DOMID_SELF, 0) > 0:
            pass
        assert len(d0.ports_in_use()) == 4096  # the 2-level limit (port 0 included)
        assert FifoGuest(hv, 0).init_control() == 0
        last = 0
        while (port := hv.evtchn_alloc_unbound(0, ev.DOMID_SELF, 0)) > 0:
            last = port
    assert (last, port) == (131071, -ENOSPC)
    g1 = FifoGuest(hv, 1)
    assert g1.init_control() == 0
    with hv.trace.muted():
        while (port := hv.evtchn_alloc_unbound(1, ev.DOMID_SELF, 0)) > 0:
            last = port
    assert (last, port) == (1023, -ENOSPC)


def test_a_closed_port_still_linked_is_busy() -> None:
    """evtchn_fifo_is_busy: a closed port whose word is still LINKED is not handed out again."""
    hv, g, (a, b, c) = fifo_domain()
    hv.evtchn_send(1, b)
    assert hv.evtchn_close(1, b) == 0
    assert g.word(b) == L  # close cleared PENDING only; the guest has not reached it yet
    assert hv.evtchn_bind_ipi(1, 0) == c + 1  # b is skipped
    assert g.consume(0, 7) == b  # the guest unlinks it (and ignores it: not pending)
    assert hv.evtchn_bind_ipi(1, 0) == b


def test_linking_clears_a_busy_bit_on_the_tail() -> None:
    """BUSY is Xen's lock on a tail word while it links; its new word clears it. The dump shows 'B'."""
    hv, g, (a, b, _) = fifo_domain()
    hv.evtchn_send(1, a)
    g.write("test", a, g.word(a) | B)  # as a concurrent linker would have left it
    assert f"    {a:4d} [1/0/B 0   ]: s=6 n=0 x=0" in dump_evtchn_info(hv).splitlines()
    hv.evtchn_send(1, b)
    assert g.word(a) == P | L | b


def test_switching_a_domain_with_bound_ports() -> None:
    """setup_ports: existing ports keep their 2-level PENDING in evtchn->pending and get priority 7."""
    hv = Hypervisor(trace=Trace())
    hv.domain_create(0, "Domain-0", privileged=True, initdomain=True)
    hv.domain_create(1, "guest", max_evtchn_port=1023)
    offer = hv.evtchn_alloc_unbound(0, ev.DOMID_SELF, 1)
    pending = hv.evtchn_bind_interdomain(1, 0, offer)  # pending from the bind, in the 2-level bits
    quiet = hv.evtchn_bind_ipi(1, 0)
    d = hv.domains[1]
    assert d.shared_info.test_pending(pending) and not d.shared_info.test_pending(quiet)
    g = FifoGuest(hv, 1)
    assert g.init_control() == 0
    assert (d.chns[pending].pending, d.chns[quiet].pending) == (True, False)
    assert (d.chns[pending].priority, d.chns[quiet].priority) == (7, 7)
    assert "pending saved for ports 1" in hv.trace[-1].summary
    assert g.expand() == 0
    assert (g.word(pending), g.word(quiet)) == (P | M, M)


def test_reset_tears_fifo_down_and_destroy_too() -> None:
    hv, g, (a, _, _) = fifo_domain()
    hv.evtchn_send(1, a)
    assert hv.evtchn_reset(1, ev.DOMID_SELF) == 0
    d = g.d
    assert d.evtchn_fifo is None and d.evtchn_port_ops is not None and d.evtchn_port_ops.name == "2-level"
    rows = {(c.table, c.key): (c.before, c.after) for c in hv.trace[-1].changes}
    assert rows[("xen/d1/evtchn_port_ops", "abi")] == ("FIFO", None)
    assert rows[("xen/d1/fifo_queue/v0", "7")] == ((a,), None)
    assert hv.evtchn_set_priority(1, hv.evtchn_bind_ipi(1, 0), 1) == -ENOSYS
    hv2, g2, _ = fifo_domain()
    hv2.domain_destroy(1)
    assert ("xen/d1/evtchn_port_ops", "abi", "FIFO") in [(c.table, c.key, c.before)
                                                         for c in hv2.trace[-2].changes]


def test_a_vcpu_without_a_control_block_drops_its_events() -> None:
    """Only vcpu 0 registered a control block: an event for vcpu 1 is lost, with Xen's warning."""
    hv = Hypervisor(trace=Trace())
    hv.domain_create(1, "guest", vcpus=2)
    g = FifoGuest(hv, 1)
    assert g.init_control(vcpu=0) == 0 and g.expand() == 0
    port = hv.evtchn_bind_ipi(1, 1)
    g.unmask(port)
    hv.evtchn_send(1, port)
    assert g.word(port) == 0 and hv.trace[-1].printk == "d1v1 has no FIFO event channel control block"


def real_dom0_lines() -> list[str]:
    """The first lines of the real 2-vCPU dom0's 'e' dump (Linux 6.1 on FIFO), without the prefix."""
    text = (CAPTURES / "cxenstored-2vcpu" / "24-xl-debug-keys-e-q.txt").read_text().splitlines()
    return [re.sub(r"^\(XEN\) \[\s*[\d.]+\] ", "", ln) for ln in text[1:17]]


def test_debug_key_e_prints_the_fifo_column_as_the_real_dom0() -> None:
    """dom0's first 12 ports as Linux 6.1 binds them on 2 vCPUs, in the states of the real dump:
    a pending masked IPI ([1/1/  -   ]), a pending timer VIRQ linked as a queue's tail ([1/0/  0   ]),
    and idle unmasked ports ([0/0/  -   ])."""
    hv = Hypervisor(trace=Trace())
    hv.domain_create(0, "Domain-0", vcpus=2, privileged=True, initdomain=True)
    g = FifoGuest(hv, 0)
    assert g.init_control(0) == 0 and g.init_control(1) == 0 and g.expand() == 0
    ports = []
    for v in (0, 1):  # per cpu: the timer VIRQ, then five IPIs (xen_smp_intr_init)
        ports.append(hv.evtchn_bind_virq(0, ev.VIRQ_TIMER, v))
        ports += [hv.evtchn_bind_ipi(0, v) for _ in range(5)]
    assert ports == list(range(1, 13))
    for p in ports:
        if p not in (2, 12):
            g.unmask(p)
    hv.evtchn_send(0, 2)
    hv.evtchn_send(0, 12)
    hv.send_guest_virq(0, ev.VIRQ_TIMER, vcpu=1)
    assert dump_evtchn_info(hv).splitlines()[:16] == real_dom0_lines()


def test_the_trace_replays_words_queues_and_ready_bits() -> None:
    """Xen and the guest each record what they change: a replay shows the queues as they were."""
    hv, g, (a, b, c) = fifo_domain(vcpus=2)
    hv.evtchn_set_priority(1, c, 4)
    for p in (a, b, c):
        hv.evtchn_send(1, p)
    mid = len(hv.trace) - 1
    g.consume(0, 7)
    g.handle(a)
    hv.evtchn_send(1, a)
    state = hv.trace.state_at(len(hv.trace) - 1)
    assert state["xen/d1/fifo_queue/v0"] == {"7": (b, a), "4": (c,)}
    assert hv.trace.state_at(mid)["xen/d1/fifo_queue/v0"] == {"7": (a, b), "4": (c,)}
    words = {int(k): v for k, v in state["xen/d1/event_word"].items()}
    assert words == {p: event_word_bits(g.word(p)) for p in range(WORDS) if g.word(p)}
    # the guest took READY (4 and 7) when it consumed; a was linked after b: no new head, no READY
    assert "fifo_ready" not in state["xen/d1/vcpu0"] and g.cb[0].ready == 0
    assert hv.trace.state_at(mid)["xen/d1/vcpu0"]["fifo_ready"] == 1 << 4 | 1 << 7
    assert state["xen/d1/fifo_tail/v0"] == {"7": a, "4": c}

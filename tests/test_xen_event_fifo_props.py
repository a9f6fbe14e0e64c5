"""Property test: Xen's FIFO event channels against a small reference model of the ABI.

A guest on FIFO with two vCPUs and three IPI ports (two on vCPU 0) does anything, in any
order: Xen sends, the guest masks, unmasks, changes a priority, consumes a queue from
its head, clears PENDING. The reference model is the ABI as the public header states
it, with no links and no tails: a port's PENDING/MASKED/LINKED flags, one plain list
per (vCPU, priority), a READY bit set when an event starts an empty list (and an upcall
if it was clear) and taken whole by the guest's handler, as Linux 6.1 does. After every
step the words, the queues the guest would walk (head, then LINK by LINK), the READY
bits and the upcalls must agree; at the end, replaying the trace gives the event words
and queues of the machine.
``XENLAB_FUZZ_EXAMPLES`` raises the number of examples.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from fifo_guest import WORDS, FifoGuest, L, M, P, fifo_domain
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xenlab.abi.event_channel import event_word_bits

EXAMPLES = int(os.environ.get("XENLAB_FUZZ_EXAMPLES", "60"))
NPORTS = 3
VCPUS = (0, 0, 1)  # the notify vcpu of each port
idx = st.integers(min_value=0, max_value=NPORTS - 1)
prio = st.sampled_from([0, 3, 7, 7, 15])
# sending and consuming again and again is where a queue's tail goes stale: weight them up
churn = st.one_of(st.tuples(st.just("send"), idx), st.tuples(st.just("consume"), idx))
ops = st.one_of(
    churn, churn, churn, st.tuples(st.just("mask"), idx), st.tuples(st.just("unmask"), idx),
    st.tuples(st.just("handle"), idx), st.tuples(st.just("priority"), idx, prio),
)


@dataclass
class Model:
    """The FIFO ABI with plain lists: what a guest may observe."""

    vcpu: dict[int, int]  # port -> notify vcpu
    prio: dict[int, int] = field(default_factory=dict)
    flags: dict[int, int] = field(default_factory=dict)  # port -> P|M|L
    queues: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    ready: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0})  # the control block's READY
    upcalls: list[int] = field(default_factory=list)

    def set_pending(self, port: int) -> None:
        self.flags[port] |= P
        if self.flags[port] & (M | L):
            return
        self.flags[port] |= L
        v = self.vcpu[port]
        q = self.queues.setdefault((v, self.prio[port]), [])
        if not q and not self.ready[v] >> self.prio[port] & 1:  # a new head sets READY: 0 -> 1 kicks
            self.ready[v] |= 1 << self.prio[port]
            self.upcalls.append(v)
        q.append(port)


def check(g: FifoGuest, m: Model) -> None:
    for port, flags in m.flags.items():
        assert g.word(port) & (P | M | L) == flags, f"port {port}"
    for v in (0, 1):
        assert int(g.cb[v].ready) == m.ready[v]
        for p in range(16):
            assert g.queue(v, p) == tuple(m.queues.get((v, p), ())), f"vcpu {v} priority {p}"
    assert g.upcalls == m.upcalls


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=8, max_size=40))
def test_xen_fifo_agrees_with_the_reference_model(steps: list[tuple]) -> None:
    hv, g, ports = fifo_domain(vcpus=2, ipis=0)
    ports = [hv.evtchn_bind_ipi(1, v) for v in VCPUS]
    for p in ports:
        g.unmask(p)
    m = Model(vcpu=dict(zip(ports, VCPUS, strict=True)))
    m.prio = dict.fromkeys(ports, 7)
    m.flags = dict.fromkeys(ports, 0)
    check(g, m)
    for op, i, *rest in steps:
        port = ports[i]
        if op == "send":
            assert hv.evtchn_send(1, port) == 0
            m.set_pending(port)
        elif op == "mask":
            g.mask(port)
            m.flags[port] |= M
        elif op == "unmask":
            g.unmask(port)
            if m.flags[port] & M:
                m.flags[port] &= ~M
                if m.flags[port] & P:
                    m.set_pending(port)
        elif op == "handle":
            g.handle(port)
            m.flags[port] &= ~P
        elif op == "priority":
            assert hv.evtchn_set_priority(1, port, rest[0]) == 0
            m.prio[port] = rest[0]
        else:  # consume the first non-empty queue of this port's vcpu, highest priority first (as Linux)
            v = m.vcpu[port]
            ready = [(qv, p) for (qv, p), q in sorted(m.queues.items()) if qv == v and q]
            if not ready:
                continue
            got = g.consume(*ready[0])
            m.ready[v] = 0  # the handler took every READY bit of its vcpu first
            assert got == m.queues[ready[0]].pop(0)
            m.flags[got] &= ~L
        check(g, m)
    state = hv.trace.state_at(len(hv.trace) - 1)
    words = {int(k): w for k, w in state.get("xen/d1/event_word", {}).items()}
    assert words == {p: event_word_bits(g.word(p)) for p in range(WORDS) if g.word(p)}
    for v in (0, 1):
        replayed = {int(k): q for k, q in state.get(f"xen/d1/fifo_queue/v{v}", {}).items()}
        assert replayed == {p: tuple(q) for (qv, p), q in m.queues.items() if qv == v and q}

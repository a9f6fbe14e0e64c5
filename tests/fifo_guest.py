"""A FIFO guest done by hand, for the tests of Xen's FIFO event channels.

``FifoGuest`` does in the guest's own pages what Linux 6.1's events_fifo.c does (fill a
new event array page with MASKED words, unmask, consume a queue from its head, clear
PENDING), and records each write in the trace tables Xen uses, as a guest must
(DEVELOPERS.md, "FIFO event channels"). ``fifo_domain`` builds a guest already on FIFO.
"""

from __future__ import annotations

import ctypes

from xenlab.abi import event_channel as ev
from xenlab.abi.event_channel import (
    EVTCHN_FIFO_BUSY,
    EVTCHN_FIFO_LINK_MASK,
    EVTCHN_FIFO_LINKED,
    EVTCHN_FIFO_MASKED,
    EVTCHN_FIFO_PENDING,
    event_word_bits,
)
from xenlab.base.trace import Trace
from xenlab.xen import Hypervisor

P, M, L, B = (1 << EVTCHN_FIFO_PENDING, 1 << EVTCHN_FIFO_MASKED, 1 << EVTCHN_FIFO_LINKED,
              1 << EVTCHN_FIFO_BUSY)
WORDS = 1024
SRC_LINUX = "drivers/xen/events/events_fifo.c"


class FifoGuest:
    """A guest's side of the FIFO ABI, done by hand in the guest's own pages, recorded as the guest."""

    def __init__(self, hv: Hypervisor, domid: int) -> None:
        self.hv, self.domid = hv, domid
        self.d = hv.domains[domid]
        self.cb: dict[int, ev.evtchn_fifo_control_block] = {}
        self.cb_gfn: dict[int, int] = {}
        self.pages: list[ctypes.Array[ctypes.c_uint32]] = []
        self.head: dict[tuple[int, int], int] = {}  # Linux's per-cpu q->head[priority]
        self.ready: dict[int, int] = {}  # the READY bits the handler took (its local `ready`)
        self.upcalls: list[int] = []
        self.d.upcall = self._upcall

    def _upcall(self, vcpu: int) -> None:
        self.upcalls.append(vcpu)
        self.d.shared_info.vcpu_info[vcpu].evtchn_upcall_pending = 0  # as the upcall handler does first

    def record(self, function: str, summary: str, rows: list) -> None:
        self.hv.trace.record(function, summary, actor=f"d{self.domid}", source=SRC_LINUX, changes=rows)

    def init_control(self, vcpu: int = 0, offset: int = 0) -> int:
        page = self.hv.populate_physmap(self.domid)
        arg = ev.evtchn_init_control(control_gfn=page.mfn, offset=offset, vcpu=vcpu)  # PV: gfn = mfn
        rc = self.hv.event_channel_op(self.domid, ev.EVTCHNOP_init_control, arg)
        if rc == 0:
            assert arg.link_bits == 17
            self.cb[vcpu] = ev.evtchn_fifo_control_block.from_buffer(page.buf, offset)
            self.cb_gfn[vcpu] = page.mfn
        return rc

    def expand(self, init: bool = True) -> int:
        """evtchn_fifo_setup's part: a new page, every word MASKED (init_array_page), then the hypercall."""
        page = self.hv.populate_physmap(self.domid)
        words = (ctypes.c_uint32 * WORDS).from_buffer(page.buf)
        base = len(self.pages) * WORDS
        if init:
            for i in range(WORDS):
                words[i] = M
            self.record("init_array_page", f"ports {base}..{base + WORDS - 1} masked",
                        [(self.table("event_word"), base + i, None, event_word_bits(M))
                         for i in range(WORDS)])
        rc = self.hv.event_channel_op(self.domid, ev.EVTCHNOP_expand_array,
                                      ev.evtchn_expand_array(array_gfn=page.mfn))
        if rc == 0:
            self.pages.append(words)
        return rc

    def table(self, name: str) -> str:
        return f"xen/d{self.domid}/{name}"

    def word(self, port: int) -> int:
        return int(self.pages[port // WORDS][port % WORDS])

    def write(self, function: str, port: int, value: int) -> None:
        old = self.word(port)
        self.pages[port // WORDS][port % WORDS] = value
        self.record(function, f"port {port}", [(self.table("event_word"), port, event_word_bits(old),
                                                event_word_bits(value))])

    def mask(self, port: int) -> None:
        self.write("evtchn_fifo_mask", port, self.word(port) | M)

    def unmask(self, port: int) -> None:
        """evtchn_fifo_unmask: clear MASKED ourselves unless PENDING (or BUSY); then Xen must do it."""
        w = self.word(port)
        if not w & M:  # clear_masked_cond: nothing to do
            return
        if w & (P | B):
            assert self.hv.evtchn_unmask(self.domid, port) == 0
        else:
            self.write("evtchn_fifo_unmask", port, w & ~M)

    def chain(self, port: int) -> tuple[int, ...]:
        """The queue from *port*: follow LINK while the word is LINKED."""
        out = []
        while port and self.word(port) & L:
            out.append(port)
            port = self.word(port) & EVTCHN_FIFO_LINK_MASK
        return tuple(out)

    def queue(self, vcpu: int, prio: int) -> tuple[int, ...]:
        """What the guest would consume next on (vcpu, prio), in order."""
        if not (self.ready.get(vcpu, 0) | self.cb[vcpu].ready) >> prio & 1:
            return ()
        return self.chain(self.head.get((vcpu, prio)) or self.cb[vcpu].head[prio])

    def take_ready(self, vcpu: int) -> None:
        """__evtchn_fifo_handle_events' ``ready |= xchg(&control_block->ready, 0)``."""
        ready = int(self.cb[vcpu].ready)
        if ready:
            self.cb[vcpu].ready = 0
            self.ready[vcpu] = self.ready.get(vcpu, 0) | ready
            self.record("evtchn_fifo_handle_events", f"vcpu {vcpu} takes READY {ready:#x}",
                        [(self.table(f"vcpu{vcpu}"), "fifo_ready", ready, None)])

    def consume(self, vcpu: int, prio: int) -> int:
        """consume_one_event: take the head, unlink it (LINKED and LINK cleared); drained: READY off."""
        self.take_ready(vcpu)
        before = self.queue(vcpu, prio)
        port = before[0]
        w = self.word(port)
        nxt = w & EVTCHN_FIFO_LINK_MASK
        rows = [(self.table("event_word"), port, event_word_bits(w),
                 event_word_bits(w & ~(L | EVTCHN_FIFO_LINK_MASK)))]
        self.pages[port // WORDS][port % WORDS] = w & ~(L | EVTCHN_FIFO_LINK_MASK)
        if nxt == 0:  # clear_bit(priority, ready): the handler's own copy
            self.ready[vcpu] &= ~(1 << prio)
        self.head[(vcpu, prio)] = nxt
        rows.append((self.table(f"fifo_queue/v{vcpu}"), prio, before, before[1:] or None))
        self.record("consume_one_event", f"port {port}", rows)
        return port

    def handle(self, port: int) -> None:
        """The irq's ack: clear PENDING."""
        self.write("evtchn_fifo_clear_pending", port, self.word(port) & ~P)


def fifo_domain(vcpus: int = 1, ipis: int = 3) -> tuple[Hypervisor, FifoGuest, list[int]]:
    """A guest d1 on FIFO with one array page and *ipis* IPI ports on vcpu 0, each unmasked and idle."""
    hv = Hypervisor(trace=Trace())
    hv.domain_create(0, "Domain-0", privileged=True, initdomain=True)
    hv.domain_create(1, "guest", vcpus=vcpus, max_evtchn_port=1023)
    g = FifoGuest(hv, 1)
    for v in range(vcpus):
        assert g.init_control(v) == 0
    assert g.expand() == 0
    ports = [hv.evtchn_bind_ipi(1, 0) for _ in range(ipis)]
    for p in ports:
        g.unmask(p)
    return hv, g, ports

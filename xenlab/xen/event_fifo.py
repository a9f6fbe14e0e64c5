"""FIFO event channels as Xen 4.17 implements them (xen/common/event_fifo.c).

Theory of operation
-------------------
A domain starts on the 2-level ABI. Its guest's first ``EVTCHNOP_init_control``
gives Xen a per-vCPU *control block* in a guest page (gfn + offset: a READY bit per
priority and ``head[16]``, the first port of each queue); Xen then sets up 16 queues
on every vCPU, an event array with no pages yet, switches ``d.evtchn_port_ops`` to
the FIFO hooks and saves the 2-level PENDING bit of every existing port in
``chn.pending`` (``setup_ports``). ``EVTCHNOP_expand_array`` maps one more guest page
of 1024 32-bit *event words* (port = page * 1024 + index) and re-raises the saved
pending ports it now covers. A port beyond the array has no word: raising it only
saves ``chn.pending``, it reads as masked and not pending, and unmask does nothing.

An event word holds PENDING, MASKED, LINKED, BUSY and a 17-bit LINK (the next port of
its queue). ``evtchn_fifo_set_pending`` sets PENDING; if the word is not MASKED and
not yet LINKED it sets LINKED and appends the port to the queue of its notify vCPU at
its priority: the old tail's LINK gets the port if that tail is still LINKED,
otherwise the queue was empty (the guest consumed it) and ``head[priority]`` in the
control block gets the port. Starting a queue also sets the priority's READY bit and,
if that bit was clear, ``vcpu_mark_events_pending`` (upcall). A masked pending port is
not linked; ``evtchn_fifo_unmask`` clears MASKED and, if PENDING, links it then. The
guest consumes a queue from its head, clearing LINKED (and LINK) of each word; a
closed port that is still LINKED is *busy* and ``get_free_port`` passes it over.
Xen links lock-free with cmpxchg on words the guest may change at the same time, and
sets BUSY on the tail word to hold off the guest's unmask while it retries; the lab
runs one thing at a time, so the first cmpxchg always succeeds and Xen never leaves
BUSY set (linking clears a BUSY it finds, as Xen's new word does).

The trace (actor "xen"; N = domid, V = vcpu): ``xen/dN/evtchn_port_ops`` ("abi" ->
"FIFO"; absent = 2-level), ``xen/dN/fifo_control_block`` (V -> (gfn, offset)),
``xen/dN/fifo_event_array`` (page slot -> gfn), ``xen/dN/event_word`` (port ->
``event_word_bits``: ("P-L-", LINK), absent when 0), ``xen/dN/vcpuV`` (``fifo_ready``
bitmask, ``fifo_head[P]``), ``xen/dN/fifo_queue/vV`` (priority -> tuple of ports
from the head the guest reads next to the tail), ``xen/dN/fifo_tail/vV`` (priority ->
Xen's tail port), ``xen/dN/evtchn_priority`` and ``xen/dN/fifo_lastq`` (port ->
priority / (vcpu, priority) last queued on; absent = 0 / (0, 0), a zeroed struct
evtchn's), ``xen/dN/fifo_pending_saved`` (port -> 1: raised with no event word). A
guest that changes a word, READY, or consumes a queue records the same tables itself
(DEVELOPERS.md, "FIFO event channels").
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from xenlab.abi.errno import EINVAL, ENOENT, ENOSPC, EOPNOTSUPP
from xenlab.abi.event_channel import (
    EVTCHN_FIFO_BUSY,
    EVTCHN_FIFO_LINK_MASK,
    EVTCHN_FIFO_LINKED,
    EVTCHN_FIFO_MASKED,
    EVTCHN_FIFO_MAX_QUEUES,
    EVTCHN_FIFO_NR_CHANNELS,
    EVTCHN_FIFO_PENDING,
    EVTCHN_FIFO_PRIORITY_DEFAULT,
    EVTCHN_FIFO_PRIORITY_MIN,
    event_word_bits,
    event_word_t,
    evtchn_fifo_control_block,
)
from xenlab.xen.domain import Channel, Domain
from xenlab.xen.event import EvtchnPortOps, Rows, vcpu_kick, vcpu_mark_events_pending
from xenlab.xen.memory import PAGE_SIZE, MachineMemory, Page
from xenlab.xen.record import Row, XenPart, domain_table

SRC_FIFO = "xen/common/event_fifo.c"

EVTCHN_FIFO_EVENT_WORDS_PER_PAGE = PAGE_SIZE // ctypes.sizeof(event_word_t)  # 1024
EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES = EVTCHN_FIFO_NR_CHANNELS // EVTCHN_FIFO_EVENT_WORDS_PER_PAGE  # 128
EventArrayPage = event_word_t * EVTCHN_FIFO_EVENT_WORDS_PER_PAGE


@dataclass
class EvtchnFifoQueue:
    """struct evtchn_fifo_queue: one priority's queue on one vcpu (its head is in the control block)."""

    vcpu_id: int
    priority: int
    tail: int = 0
    #: Not in Xen: the LINKED chain from the head the guest reads next, as the trace records it.
    ports: list[int] = field(default_factory=list)


@dataclass
class EvtchnFifoVcpu:
    """struct evtchn_fifo_vcpu: the vcpu's control block once mapped, and its 16 queues."""

    vcpu_id: int
    queue: list[EvtchnFifoQueue]
    control_block: evtchn_fifo_control_block | None = None
    control_gfn: int = 0  # not in Xen (it keeps the mapping only): for the trace and reprs
    control_offset: int = 0


@dataclass
class EvtchnFifoDomain:
    """struct evtchn_fifo_domain: the event array pages mapped so far; (lab) each vcpu's FIFO state.

    Xen hangs ``struct evtchn_fifo_vcpu`` off ``struct vcpu``; the lab's domain has no
    vcpu objects, so they live here, made and freed together as Xen makes and frees them.
    """

    vcpu: list[EvtchnFifoVcpu]
    event_array: list[Any] = field(default_factory=list)  # EventArrayPage over each guest page
    event_array_gfns: list[int] = field(default_factory=list)
    num_evtchns: int = 0


class EventWord:
    """One event_word_t in a mapped event array page, with the guest_*_bit operations Xen uses."""

    __slots__ = ("_page", "_i")

    def __init__(self, page: Any, index: int) -> None:
        self._page, self._i = page, index

    @property
    def value(self) -> int:
        """read_atomic(word)."""
        return int(self._page[self._i])

    @value.setter
    def value(self, v: int) -> None:
        self._page[self._i] = v

    def test_bit(self, bit: int) -> bool:
        """guest_test_bit."""
        return bool(self.value >> bit & 1)

    def test_and_set_bit(self, bit: int) -> bool:
        """guest_test_and_set_bit: set *bit*, return its old value."""
        old = self.test_bit(bit)
        self.value = self.value | 1 << bit
        return old

    def clear_bit(self, bit: int) -> None:
        """guest_clear_bit."""
        self.value = self.value & ~(1 << bit)

    @property
    def link(self) -> int:
        """word & EVTCHN_FIFO_LINK_MASK."""
        return self.value & EVTCHN_FIFO_LINK_MASK


def evtchn_fifo_word_from_port(d: Domain, port: int) -> EventWord | None:
    """evtchn_fifo_word_from_port (event_fifo.c): the port's event word, None beyond the array."""
    fifo = d.evtchn_fifo
    if fifo is None or port >= fifo.num_evtchns:
        return None
    return EventWord(fifo.event_array[port // EVTCHN_FIFO_EVENT_WORDS_PER_PAGE],
                     port % EVTCHN_FIFO_EVENT_WORDS_PER_PAGE)


def evtchn_fifo_is_pending(d: Domain, chn: Channel) -> bool:
    """evtchn_fifo_is_pending (event_fifo.c): the word's PENDING (no word: not pending)."""
    word = evtchn_fifo_word_from_port(d, chn.port)
    return word is not None and word.test_bit(EVTCHN_FIFO_PENDING)


def evtchn_fifo_is_masked(d: Domain, chn: Channel) -> bool:
    """evtchn_fifo_is_masked (event_fifo.c): the word's MASKED (no word: masked)."""
    word = evtchn_fifo_word_from_port(d, chn.port)
    return word is None or word.test_bit(EVTCHN_FIFO_MASKED)


def evtchn_fifo_is_busy(d: Domain, chn: Channel) -> bool:
    """evtchn_fifo_is_busy (event_fifo.c): still LINKED on a queue, so not free for reuse yet."""
    word = evtchn_fifo_word_from_port(d, chn.port)
    return word is not None and word.test_bit(EVTCHN_FIFO_LINKED)


def evtchn_fifo_print_state(d: Domain, chn: Channel) -> str:
    """evtchn_fifo_print_state (event_fifo.c): "?" without a word, else B(USY) and LINK when LINKED."""
    word = evtchn_fifo_word_from_port(d, chn.port)
    if word is None:
        return "?     "
    busy = "B" if word.test_bit(EVTCHN_FIFO_BUSY) else " "
    if word.test_bit(EVTCHN_FIFO_LINKED):
        return f"{busy} {word.link:<4d}"
    return f"{busy} -   "


def try_set_link(word: EventWord, link: int) -> int:
    """try_set_link (event_fifo.c): LINK := *link* (BUSY cleared) iff still LINKED; 1 linked, 0 not.

    Xen's cmpxchg returns -EAGAIN when the guest changed the word since it was read;
    nothing runs in between here, so it never does.
    """
    w = word.value
    if not w >> EVTCHN_FIFO_LINKED & 1:
        return 0
    word.value = (w & ~(1 << EVTCHN_FIFO_BUSY | EVTCHN_FIFO_LINK_MASK)) | link
    return 1


def evtchn_fifo_set_link(word: EventWord, link: int) -> bool:
    """evtchn_fifo_set_link (event_fifo.c): link the old tail to *link*; False if it is no longer LINKED."""
    return bool(try_set_link(word, link))


class EventFifo(XenPart):
    """The FIFO ABI: EVTCHNOP_init_control / expand_array and the FIFO port ops; mixed into Hypervisor."""

    memory: MachineMemory

    @cached_property
    def evtchn_port_ops_fifo(self) -> EvtchnPortOps:
        """evtchn_port_ops_fifo (event_fifo.c): this hypervisor's table of the FIFO hooks."""
        return EvtchnPortOps("FIFO", set_pending=self.evtchn_fifo_set_pending,
                             clear_pending=self.evtchn_fifo_clear_pending, unmask=self.evtchn_fifo_unmask,
                             is_pending=evtchn_fifo_is_pending, is_masked=evtchn_fifo_is_masked,
                             print_state=evtchn_fifo_print_state, init=self.evtchn_fifo_init,
                             is_busy=evtchn_fifo_is_busy, set_priority=self.evtchn_fifo_set_priority)

    # -- the port ops ------------------------------------------------------------------
    @staticmethod
    def evtchn_fifo_init(d: Domain, chn: Channel, rows: Rows) -> None:
        """evtchn_fifo_init (event_fifo.c): a newly bound port gets the default priority.

        (A debug Xen also warns when the port is still on a queue; a release build, as
        Debian's, prints nothing.)
        """
        _set_priority(d, chn, EVTCHN_FIFO_PRIORITY_DEFAULT, rows)

    def evtchn_fifo_set_pending(self, d: Domain, vcpu_id: int, chn: Channel) -> None:
        """evtchn_fifo_set_pending (event_fifo.c): PENDING; queue it unless MASKED or LINKED; READY."""
        fn, port = "evtchn_fifo_set_pending", chn.port
        fifo = d.evtchn_fifo
        assert fifo is not None
        word = evtchn_fifo_word_from_port(d, port)
        rows: list[Row] = []
        if word is None:
            if not chn.pending:
                rows.append((domain_table(d, "fifo_pending_saved"), port, None, 1))
            chn.pending = True
            self._rec(fn, f"d{d.domid} port {port}: no event word yet (the array holds {fifo.num_evtchns} "
                      "words): pending saved for when its page comes", rows, source=SRC_FIFO)
            return
        efv = fifo.vcpu[vcpu_id]
        q = efv.queue[chn.priority]
        last_v, last_p = chn.fifo_lastq
        old_q = fifo.vcpu[last_v].queue[last_p]
        cb = efv.control_block
        if cb is None:
            msg = f"d{d.domid}v{vcpu_id} has no FIFO event channel control block"
            self.trace.record(fn, f"{msg}: port {port} dropped", actor="xen", source=SRC_FIFO, printk=msg)
            return
        _sync_queue(d, q)
        _sync_queue(d, old_q)
        words = {port: word.value}
        queued = {id(q): (q, tuple(q.ports), q.tail), id(old_q): (old_q, tuple(old_q.ports), old_q.tail)}
        newly = not word.test_and_set_bit(EVTCHN_FIFO_PENDING)
        linked = True
        what = "pending" if newly else "already pending"
        if word.test_bit(EVTCHN_FIFO_MASKED):
            what += ", MASKED: not linked (unmask links it)"
        elif word.test_and_set_bit(EVTCHN_FIFO_LINKED):
            what += ", already LINKED: stays where it is"
        else:
            if old_q.tail == port:  # it was the old queue's tail: that queue is empty now
                old_q.tail = 0
            if old_q is not q:
                rows.append((domain_table(d, "fifo_lastq"), port, _lastq_row(chn.fifo_lastq),
                             _lastq_row((vcpu_id, q.priority))))
                chn.fifo_lastq = (vcpu_id, q.priority)
            linked = False
            if q.tail:
                tail_word = evtchn_fifo_word_from_port(d, q.tail)
                assert tail_word is not None
                words.setdefault(q.tail, tail_word.value)
                linked = evtchn_fifo_set_link(tail_word, port)
            where = f"vcpu {vcpu_id}'s priority-{q.priority} queue"
            if linked:
                what += f", linked after port {q.tail} on {where}"
            else:
                before = cb.head[q.priority]
                cb.head[q.priority] = port
                rows.append((domain_table(d, f"vcpu{vcpu_id}"), f"fifo_head[{q.priority}]", before or None,
                             port))
                what += f", LINKED as head of {where}"
            q.tail = port
            q.ports.append(port)
        kick = False
        if not linked:
            ready = int(cb.ready)
            if not ready >> q.priority & 1:
                cb.ready = ready | 1 << q.priority
                rows.append((domain_table(d, f"vcpu{vcpu_id}"), "fifo_ready", ready or None, int(cb.ready)))
                kick = vcpu_mark_events_pending(d, vcpu_id, rows)
                what += f"; READY bit {q.priority} set" + ("; upcall" if kick else "")
        rows[:0] = _word_rows(d, words) + _queue_rows(d, queued.values())
        self._rec(fn, f"d{d.domid} port {port}: {what}", rows, source=SRC_FIFO)
        if kick:
            vcpu_kick(d, vcpu_id)

    @staticmethod
    def evtchn_fifo_clear_pending(d: Domain, chn: Channel, rows: Rows) -> None:
        """evtchn_fifo_clear_pending (event_fifo.c): clear PENDING only; the guest unlinks the word itself."""
        word = evtchn_fifo_word_from_port(d, chn.port)
        if word is None:
            return
        before = word.value
        word.clear_bit(EVTCHN_FIFO_PENDING)
        rows += _word_rows(d, {chn.port: before})

    def evtchn_fifo_unmask(self, d: Domain, chn: Channel) -> None:
        """evtchn_fifo_unmask (event_fifo.c): clear MASKED; if PENDING, set it pending again (links it)."""
        word = evtchn_fifo_word_from_port(d, chn.port)
        if word is None:
            self._rec("evtchn_unmask", f"d{d.domid} port {chn.port}: no event word yet: nothing to unmask",
                      source=SRC_FIFO)
            return
        before = word.value
        word.clear_bit(EVTCHN_FIFO_MASKED)
        pending = word.test_bit(EVTCHN_FIFO_PENDING)
        note = "unmasked" if before >> EVTCHN_FIFO_MASKED & 1 else "was not masked"
        self._rec("evtchn_unmask", f"d{d.domid} port {chn.port} {note}"
                  + (": PENDING, so it is linked now" if pending else ""),
                  _word_rows(d, {chn.port: before}), source=SRC_FIFO)
        if pending:
            self.evtchn_fifo_set_pending(d, chn.notify_vcpu_id, chn)

    @staticmethod
    def evtchn_fifo_set_priority(d: Domain, chn: Channel, priority: int) -> int:
        """evtchn_fifo_set_priority (event_fifo.c): 0..15 or -EINVAL; a queued event stays where it is."""
        if not 0 <= priority <= EVTCHN_FIFO_PRIORITY_MIN:
            return -EINVAL
        chn.priority = priority
        return 0

    # -- control block and event array ---------------------------------------------------
    def map_guest_page(self, d: Domain, gfn: int) -> Page | None:
        """map_guest_page (event_fifo.c): the domain's own page at *gfn* (a PV guest's gfn is its mfn)."""
        mfn = d.p2m.get(gfn) if d.hvm else gfn
        page = self.memory.page(mfn) if mfn is not None else None
        if page is None or page.owner != d.domid:
            return None
        return page

    def map_control_block(self, d: Domain, vcpu: int, gfn: int, offset: int, rows: Rows) -> int:
        """map_control_block (event_fifo.c): the control block over gfn + offset; -EINVAL: mapped, no page."""
        fifo = d.evtchn_fifo
        assert fifo is not None
        efv = fifo.vcpu[vcpu]
        if efv.control_block is not None:
            return -EINVAL
        page = self.map_guest_page(d, gfn)
        if page is None:
            return -EINVAL
        efv.control_block = evtchn_fifo_control_block.from_buffer(page.buf, offset)
        efv.control_gfn, efv.control_offset = gfn, offset
        rows.append((domain_table(d, "fifo_control_block"), vcpu, None, (gfn, offset)))
        return 0

    def setup_ports(self, d: Domain, prev_evtchns: int, rows: Rows) -> list[int]:
        """setup_ports (event_fifo.c): keep each port's 2-level PENDING bit, default priority; the saved."""
        saved = []
        for port in range(1, min(prev_evtchns, d.valid_evtchns)):
            chn = d.chns[port]
            if d.shared_info.evtchn_pending[port]:
                if not chn.pending:
                    rows.append((domain_table(d, "fifo_pending_saved"), port, None, 1))
                chn.pending = True
                saved.append(port)
            _set_priority(d, chn, EVTCHN_FIFO_PRIORITY_DEFAULT, rows)
        return saved

    def evtchn_fifo_init_control(self, caller: int, control_gfn: int, offset: int, vcpu: int) -> int:
        """evtchn_fifo_init_control (event_fifo.c): map *vcpu*'s control block; the first switches to FIFO.

        The hypercall's OUT field link_bits is EVTCHN_FIFO_LINK_BITS (``event_channel_op`` fills it).
        """
        d = self.domains[caller]
        fn = "evtchn_fifo_init_control"
        what = f"d{caller}: init_control(vcpu={vcpu}, control_gfn={control_gfn:#x}, offset={offset})"
        if not 0 <= vcpu < d.max_vcpus:
            return self._fifo_fail(fn, f"{what}: no vcpu {vcpu}", -ENOENT)
        if not 0 <= offset <= PAGE_SIZE - ctypes.sizeof(evtchn_fifo_control_block):
            return self._fifo_fail(fn, f"{what}: the control block would cross the page", -EINVAL)
        if offset & 7:
            return self._fifo_fail(fn, f"{what}: offset not 8-byte aligned", -EINVAL)
        rows: list[Row] = []
        if d.evtchn_fifo is not None:
            rc = self.map_control_block(d, vcpu, control_gfn, offset, rows)
            if rc:
                mapped = d.evtchn_fifo.vcpu[vcpu].control_block is not None
                why = "already mapped" if mapped else "no such page"
                return self._fifo_fail(fn, f"{what}: {why}", rc)
            self._rec(fn, f"{what}: vcpu {vcpu}'s control block mapped", rows, source=SRC_FIFO)
            return 0
        prev_evtchns = d.max_evtchns
        # setup_control_block for every vcpu, setup_event_array (no pages yet)
        d.evtchn_fifo = EvtchnFifoDomain([EvtchnFifoVcpu(v, [EvtchnFifoQueue(v, p)
                                                             for p in range(EVTCHN_FIFO_MAX_QUEUES)])
                                          for v in range(d.max_vcpus)])
        rc = self.map_control_block(d, vcpu, control_gfn, offset, rows)
        if rc:
            d.evtchn_fifo = None  # evtchn_fifo_destroy: nothing was mapped
            return self._fifo_fail(fn, f"{what}: no such page", rc)
        d.evtchn_port_ops = self.evtchn_port_ops_fifo
        rows.append((domain_table(d, "evtchn_port_ops"), "abi", None, "FIFO"))
        saved = self.setup_ports(d, prev_evtchns, rows)
        self._rec(fn, f"{what}: d{caller} switches to the FIFO ABI (up to {d.max_evtchns} ports; no event "
                  f"array page yet); vcpu {vcpu}'s control block mapped"
                  + (f"; pending saved for ports {', '.join(map(str, saved))}" if saved else ""),
                  rows, source=SRC_FIFO)
        return 0

    def add_page_to_event_array(self, d: Domain, gfn: int, rows: Rows) -> tuple[int, list[Channel]]:
        """add_page_to_event_array (event_fifo.c): one more page of words; the saved-pending ports in it."""
        fifo = d.evtchn_fifo
        assert fifo is not None
        port = fifo.num_evtchns
        slot = port // EVTCHN_FIFO_EVENT_WORDS_PER_PAGE
        if slot >= EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES:
            return -ENOSPC, []
        page = self.map_guest_page(d, gfn)
        if page is None:
            return -EINVAL, []
        fifo.event_array.append(EventArrayPage.from_buffer(page.buf))
        fifo.event_array_gfns.append(gfn)
        fifo.num_evtchns += EVTCHN_FIFO_EVENT_WORDS_PER_PAGE
        rows.append((domain_table(d, "fifo_event_array"), slot, None, gfn))
        reraise = []
        for p in range(port, fifo.num_evtchns):
            if not d.port_is_valid(p):
                break
            if d.chns[p].pending:
                reraise.append(d.chns[p])
        return 0, reraise

    def evtchn_fifo_expand_array(self, caller: int, array_gfn: int) -> int:
        """evtchn_fifo_expand_array (event_fifo.c): one more array page; -EOPNOTSUPP before init_control."""
        d = self.domains[caller]
        fn, what = "evtchn_fifo_expand_array", f"d{caller}: expand_array(array_gfn={array_gfn:#x})"
        if d.evtchn_fifo is None:
            return self._fifo_fail(fn, f"{what}: not using the FIFO ABI", -EOPNOTSUPP)
        rows: list[Row] = []
        rc, reraise = self.add_page_to_event_array(d, array_gfn, rows)
        if rc:
            why = (f"already {EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES} pages" if rc == -ENOSPC else "no such page")
            return self._fifo_fail(fn, f"{what}: {why}", rc)
        n = d.evtchn_fifo.num_evtchns
        again = f"; re-raising saved ports {', '.join(str(c.port) for c in reraise)}" if reraise else ""
        self._rec(fn, f"{what}: page {n // EVTCHN_FIFO_EVENT_WORDS_PER_PAGE - 1}, ports "
                  f"{n - EVTCHN_FIFO_EVENT_WORDS_PER_PAGE}..{n - 1} have event words{again}", rows,
                  source=SRC_FIFO)
        for chn in reraise:
            self.evtchn_fifo_set_pending(d, chn.notify_vcpu_id, chn)
        return 0

    def evtchn_fifo_destroy(self, d: Domain, rows: Rows) -> None:
        """evtchn_fifo_destroy (event_fifo.c): unmap control blocks and array pages, forget the queues."""
        fifo = d.evtchn_fifo
        if fifo is None:
            return
        for efv in fifo.vcpu:  # cleanup_control_block
            if efv.control_block is not None:
                rows.append((domain_table(d, "fifo_control_block"), efv.vcpu_id,
                             (efv.control_gfn, efv.control_offset), None))
            for q in efv.queue:
                _sync_queue(d, q)
                if q.ports:
                    rows.append((domain_table(d, f"fifo_queue/v{q.vcpu_id}"), q.priority, tuple(q.ports),
                                 None))
                if q.tail:
                    rows.append((domain_table(d, f"fifo_tail/v{q.vcpu_id}"), q.priority, q.tail, None))
        for slot, gfn in enumerate(fifo.event_array_gfns):  # cleanup_event_array
            rows.append((domain_table(d, "fifo_event_array"), slot, gfn, None))
        d.evtchn_fifo = None

    def _fifo_fail(self, function: str, summary: str, rc: int) -> int:
        from xenlab.abi.errno import errno_name

        self._rec(function, f"{summary} -> -{errno_name(rc)}", source=SRC_FIFO)
        return rc


def _lastq_row(lastq: tuple[int, int]) -> tuple[int, int] | None:
    """A fifo_lastq value as the trace writes it: (0, 0), the zeroed struct evtchn's, is absent."""
    return lastq if lastq != (0, 0) else None


def _set_priority(d: Domain, chn: Channel, priority: int, rows: Rows) -> None:
    """chn->priority = *priority*, with its trace row when it changes (0, the zeroed struct's, is absent)."""
    if chn.priority != priority:
        rows.append((domain_table(d, "evtchn_priority"), chn.port, chn.priority or None, priority or None))
        chn.priority = priority


def _sync_queue(d: Domain, q: EvtchnFifoQueue) -> None:
    """Lab bookkeeping: drop the ports the guest has consumed (no longer LINKED) from the front of q.ports."""
    while q.ports:
        word = evtchn_fifo_word_from_port(d, q.ports[0])
        if word is not None and word.test_bit(EVTCHN_FIFO_LINKED):
            break
        q.ports.pop(0)


def _word_rows(d: Domain, before: dict[int, int]) -> list[Row]:
    """``xen/dN/event_word`` rows for the words in *before* (port -> old value) that changed."""
    rows: list[Row] = []
    for port, old in before.items():
        word = evtchn_fifo_word_from_port(d, port)
        new = word.value if word is not None else 0
        if new != old:
            rows.append((domain_table(d, "event_word"), port, event_word_bits(old), event_word_bits(new)))
    return rows


def _queue_rows(d: Domain, queues: Iterable[tuple[EvtchnFifoQueue, tuple[int, ...], int]]) -> list[Row]:
    """Queue and tail rows for each (queue, ports before, tail before) whose list or tail changed."""
    rows: list[Row] = []
    for q, ports, tail in queues:
        if tuple(q.ports) != ports:
            rows.append((domain_table(d, f"fifo_queue/v{q.vcpu_id}"), q.priority, ports or None,
                         tuple(q.ports) or None))
        if q.tail != tail:
            rows.append((domain_table(d, f"fifo_tail/v{q.vcpu_id}"), q.priority, tail or None,
                         q.tail or None))
    return rows


"""drivers/xen/events/events_fifo.c, Linux 6.1: the FIFO event-channel ABI (guest half).

Theory of operation
-------------------
Each vCPU registers a control block page with Xen (EVTCHNOP_init_control): a READY word
and one ``head`` per priority. Every port has a 32-bit event word (PENDING, MASKED,
LINKED, BUSY and a 17-bit LINK) in event array pages the guest hands Xen one at a time
(EVTCHNOP_expand_array) as bound ports need them, each page first filled with MASKED.
Xen links a raised event onto the tail of its (vCPU, priority) queue and sets READY
only when that queue was empty. The upcall takes READY (xchg), consumes the highest
priority first, one event at a time (``consume_one_event``: the per-cpu head, or the
control block's head when it reached the tail; clear LINKED and LINK), and takes READY
again after each event. Unmask clears MASKED itself unless the word is PENDING; then
EVTCHNOP_unmask lets Xen link the waiting event.

Trace: every write to an event word is a row on ``xen/dN/event_word``; the READY word
taken, on ``xen/dN/vcpuV`` ("fifo_ready"); a consumed event, on ``xen/dN/fifo_queue/vV``
(DEVELOPERS.md, "FIFO event channels").
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xenlab.abi import event_channel as ev
from xenlab.abi.event_channel import (
    EVTCHN_FIFO_LINK_MASK,
    EVTCHN_FIFO_LINKED,
    EVTCHN_FIFO_MASKED,
    EVTCHN_FIFO_MAX_QUEUES,
    EVTCHN_FIFO_NR_CHANNELS,
    EVTCHN_FIFO_PENDING,
    event_word_bits,
)
from xenlab.linux.kernel import KERN_INFO, ChangeRow
from xenlab.linux.mm import get_zeroed_page
from xenlab.linux.pvops.events_base import handle_irq_for_port
from xenlab.linux.pvops.events_internal import evtchn_ops

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel
    from xenlab.xen.memory import Page

SRC = "drivers/xen/events/events_fifo.c"
EVENT_WORDS_PER_PAGE = 4096 // 4
MAX_EVENT_ARRAY_PAGES = EVTCHN_FIFO_NR_CHANNELS // EVENT_WORDS_PER_PAGE
P, M, L = 1 << EVTCHN_FIFO_PENDING, 1 << EVTCHN_FIFO_MASKED, 1 << EVTCHN_FIFO_LINKED


@dataclass
class EvtchnFifoState:
    """events_fifo.c's statics: cpu_control_block, cpu_queue heads, event_array, event_array_pages."""

    control_block: dict[int, ev.evtchn_fifo_control_block] = field(default_factory=dict)
    head: dict[int, list[int]] = field(default_factory=dict)  # per-cpu q->head[priority]
    event_array: list[ctypes.Array[ctypes.c_uint32]] = field(default_factory=list)


def _st(kernel: PvopsKernel) -> EvtchnFifoState:
    st = getattr(kernel.irq, "events_fifo", None)
    assert st is not None, f"{kernel.name}: no FIFO ABI"
    return st


def _word(kernel: PvopsKernel, port: int) -> int:
    return int(_st(kernel).event_array[port // EVENT_WORDS_PER_PAGE][port % EVENT_WORDS_PER_PAGE])


def _write(kernel: PvopsKernel, port: int, new: int, rows: list[ChangeRow]) -> int:
    """A write to the port's event word, its change row into *rows*; the old word."""
    old = _word(kernel, port)
    if old != new:
        _st(kernel).event_array[port // EVENT_WORDS_PER_PAGE][port % EVENT_WORDS_PER_PAGE] = new
        rows.append((f"xen/d{kernel.domid}/event_word", port, event_word_bits(old), event_word_bits(new)))
    return old


def virt_to_gfn(kernel: PvopsKernel, page: Page) -> int:
    """virt_to_gfn (include/xen/page.h): a PV guest's gfn is the machine frame, an HVM guest's its pfn."""
    d = kernel.hv.domains[kernel.domid]
    return d.mfn_to_pfn(page.mfn) if d.hvm else page.mfn


def evtchn_fifo_max_channels(kernel: PvopsKernel) -> int:
    """evtchn_fifo_max_channels: EVTCHN_FIFO_NR_CHANNELS (1 << 17)."""
    return EVTCHN_FIFO_NR_CHANNELS


def evtchn_fifo_nr_channels(kernel: PvopsKernel) -> int:
    """evtchn_fifo_nr_channels: event_array_pages * EVENT_WORDS_PER_PAGE."""
    return len(_st(kernel).event_array) * EVENT_WORDS_PER_PAGE


def init_control_block(kernel: PvopsKernel, cpu: int) -> int:
    """init_control_block: a zeroed page, local heads reset, EVTCHNOP_init_control for *cpu*."""
    st = _st(kernel)
    page = get_zeroed_page(kernel)  # evtchn_fifo_alloc_control_block's page; clear_page
    st.head[cpu] = [0] * EVTCHN_FIFO_MAX_QUEUES
    rc = kernel.hv.event_channel_op(kernel.domid, ev.EVTCHNOP_init_control,
                                    ev.evtchn_init_control(control_gfn=virt_to_gfn(kernel, page), offset=0,
                                                           vcpu=cpu))
    if rc == 0:
        st.control_block[cpu] = ev.evtchn_fifo_control_block.from_buffer(page.buf, 0)
    return rc


def evtchn_fifo_percpu_init(kernel: PvopsKernel, cpu: int) -> int:
    """evtchn_fifo_percpu_init: a control block for *cpu* unless it has one."""
    return 0 if cpu in _st(kernel).control_block else init_control_block(kernel, cpu)


def evtchn_fifo_setup(kernel: PvopsKernel, port: int) -> int:
    """evtchn_fifo_setup: grow the event array (MASKED pages, EVTCHNOP_expand_array) to cover *port*."""
    st = _st(kernel)
    new_array_pages = port // EVENT_WORDS_PER_PAGE + 1
    if new_array_pages > MAX_EVENT_ARRAY_PAGES:
        return -22  # -EINVAL
    while len(st.event_array) < new_array_pages:
        page = get_zeroed_page(kernel)  # __get_free_page
        words = (ctypes.c_uint32 * EVENT_WORDS_PER_PAGE).from_buffer(page.buf)
        base = len(st.event_array) * EVENT_WORDS_PER_PAGE
        rows: list[ChangeRow] = []
        for i in range(EVENT_WORDS_PER_PAGE):  # init_array_page
            words[i] = M
            rows.append((f"xen/d{kernel.domid}/event_word", base + i, None, event_word_bits(M)))
        kernel.record("init_array_page", f"ports {base}..{base + EVENT_WORDS_PER_PAGE - 1} masked", SRC,
                      changes=rows)
        rc = kernel.hv.event_channel_op(kernel.domid, ev.EVTCHNOP_expand_array,
                                        ev.evtchn_expand_array(array_gfn=virt_to_gfn(kernel, page)))
        if rc < 0:
            return rc
        st.event_array.append(words)
    return 0


def evtchn_fifo_bind_to_cpu(kernel: PvopsKernel, evtchn: int, cpu: int, old_cpu: int) -> None:
    """evtchn_fifo_bind_to_cpu: nothing to do (Xen queues on the port's notify vCPU)."""


def evtchn_fifo_remove(kernel: PvopsKernel, evtchn: int, cpu: int) -> None:
    """FIFO has no .remove: the port's word stays as it is."""


def evtchn_fifo_clear_pending(kernel: PvopsKernel, port: int, why: str) -> None:
    """evtchn_fifo_clear_pending: sync_clear_bit(PENDING, word)."""
    rows: list[ChangeRow] = []
    _write(kernel, port, _word(kernel, port) & ~P, rows)
    if rows:
        kernel.record("evtchn_fifo_clear_pending", f"port {port}: PENDING cleared ({why})", SRC, changes=rows)


def evtchn_fifo_set_pending(kernel: PvopsKernel, port: int) -> None:
    """evtchn_fifo_set_pending: sync_set_bit(PENDING, word)."""
    rows: list[ChangeRow] = []
    _write(kernel, port, _word(kernel, port) | P, rows)
    if rows:
        kernel.record("evtchn_fifo_set_pending", f"port {port}: PENDING set", SRC, changes=rows)


def evtchn_fifo_is_pending(kernel: PvopsKernel, port: int) -> bool:
    """evtchn_fifo_is_pending: sync_test_bit(PENDING, word)."""
    return bool(_word(kernel, port) & P)


def evtchn_fifo_is_masked(kernel: PvopsKernel, port: int) -> bool:
    """evtchn_fifo_is_masked: sync_test_bit(MASKED, word)."""
    return bool(_word(kernel, port) & M)


def evtchn_fifo_mask(kernel: PvopsKernel, port: int, rows: list[ChangeRow] | None = None) -> None:
    """evtchn_fifo_mask: sync_set_bit(MASKED, word) (its row into *rows*, else a step of its own)."""
    own: list[ChangeRow] = [] if rows is None else rows
    _write(kernel, port, _word(kernel, port) | M, own)
    if rows is None and own:
        kernel.record("evtchn_fifo_mask", f"port {port} masked", SRC, changes=own)


def evtchn_fifo_unmask(kernel: PvopsKernel, port: int) -> None:
    """evtchn_fifo_unmask: clear_masked_cond; a PENDING word needs EVTCHNOP_unmask (Xen links it)."""
    w = _word(kernel, port)
    if not w & M:
        return
    if w & P:
        kernel.hv.evtchn_unmask(kernel.domid, port)
        kernel.record("evtchn_fifo_unmask", f"port {port} pending: EVTCHNOP_unmask", SRC)
        return
    rows: list[ChangeRow] = []
    _write(kernel, port, w & ~M, rows)
    kernel.record("evtchn_fifo_unmask", f"port {port} unmasked", SRC, changes=rows)


def _chain(kernel: PvopsKernel, port: int) -> tuple[int, ...]:
    """The queue from *port*, LINK by LINK while LINKED."""
    out: list[int] = []
    while port and _word(kernel, port) & L:
        out.append(port)
        port = _word(kernel, port) & EVTCHN_FIFO_LINK_MASK
    return tuple(out)


def consume_one_event(kernel: PvopsKernel, cpu: int, priority: int, ready: int) -> int:
    """consume_one_event: take the queue's head, clear_linked; LINK 0: drop *priority* from *ready*."""
    st = _st(kernel)
    head = st.head[cpu][priority] or int(st.control_block[cpu].head[priority])
    port = head
    before = _chain(kernel, port)
    rows: list[ChangeRow] = []
    w = _write(kernel, port, _word(kernel, port) & ~(L | EVTCHN_FIFO_LINK_MASK), rows)  # clear_linked
    head = w & EVTCHN_FIFO_LINK_MASK
    if head == 0:
        ready &= ~(1 << priority)
    rows.append((f"xen/d{kernel.domid}/fifo_queue/v{cpu}", priority, before or None, before[1:] or None))
    kernel.record("consume_one_event", f"vcpu {cpu} priority {priority}: port {port}", SRC, changes=rows)
    if evtchn_fifo_is_pending(kernel, port) and not evtchn_fifo_is_masked(kernel, port):
        handle_irq_for_port(kernel, port, cpu)
    st.head[cpu][priority] = head
    return ready


def _take_ready(kernel: PvopsKernel, cpu: int) -> int:
    """xchg(&control_block->ready, 0), recorded on the vCPU's table."""
    cb = _st(kernel).control_block[cpu]
    ready = int(cb.ready)
    if ready:
        cb.ready = 0
        kernel.record("__evtchn_fifo_handle_events", f"vcpu {cpu} takes READY {ready:#x}", SRC,
                      changes=[(f"xen/d{kernel.domid}/vcpu{cpu}", "fifo_ready", ready, None)])
    return ready


def evtchn_fifo_handle_events(kernel: PvopsKernel, cpu: int) -> int:
    """__evtchn_fifo_handle_events: READY taken, lowest set priority first, READY again after each."""
    if cpu not in _st(kernel).control_block:
        return 0
    ready = _take_ready(kernel, cpu)
    n = 0
    while ready:
        q = (ready & -ready).bit_length() - 1
        ready = consume_one_event(kernel, cpu, q, ready)
        n += 1
        ready |= _take_ready(kernel, cpu)
    return n


evtchn_ops_fifo = evtchn_ops(
    name="FIFO",
    max_channels=evtchn_fifo_max_channels,
    nr_channels=evtchn_fifo_nr_channels,
    remove=evtchn_fifo_remove,
    bind_to_cpu=evtchn_fifo_bind_to_cpu,
    clear_pending=evtchn_fifo_clear_pending,
    set_pending=evtchn_fifo_set_pending,
    is_pending=evtchn_fifo_is_pending,
    mask=evtchn_fifo_mask,
    unmask=evtchn_fifo_unmask,
    handle_events=evtchn_fifo_handle_events,
    setup=evtchn_fifo_setup,
    percpu_init=evtchn_fifo_percpu_init,
)


def xen_evtchn_fifo_init(kernel: PvopsKernel) -> int:
    """xen_evtchn_fifo_init: this cpu's control block, "Using FIFO-based ABI"; <0: the caller uses 2-level."""
    assert kernel.irq is not None
    kernel.irq.events_fifo = EvtchnFifoState()
    rc = init_control_block(kernel, kernel.irq.this_cpu)
    if rc < 0:
        kernel.irq.events_fifo = None
        return rc
    kernel.printk(KERN_INFO, "xen:events: Using FIFO-based ABI")
    kernel.irq.evtchn_ops = evtchn_ops_fifo
    return 0


def xen_evtchn_fifo_or_2l_init(kernel: PvopsKernel) -> evtchn_ops:
    """xen_init_IRQ's choice with fifo_events: xen_evtchn_fifo_init, and xen_evtchn_2l_init if it fails."""
    from xenlab.linux.pvops.events_2l import xen_evtchn_2l_init  # events_2l imports events_base too

    assert kernel.irq is not None
    if xen_evtchn_fifo_init(kernel) == 0:
        return evtchn_ops_fifo
    kernel.irq.fifo_events = False  # xen_init_IRQ: fifo_events = false
    return xen_evtchn_2l_init(kernel)

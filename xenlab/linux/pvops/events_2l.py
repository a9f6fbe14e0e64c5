"""drivers/xen/events/events_2l.c, Linux 6.1: the 2-level event-channel ABI.

Theory of operation
-------------------
Every port has a pending and a mask bit in the shared_info page; a vcpu's
``evtchn_pending_sel`` says which words of pending bits may hold work. Linux flips the
bits itself (``sync_set_bit`` & co; ``SharedBits`` is the guest's view of them) and makes
the EVTCHNOP_unmask hypercall only for a port that belongs to another vcpu. Which vcpu
delivers a port is ``cpu_evtchn_mask`` (one bit per port per cpu, set by
``evtchn_2l_bind_to_cpu``).

``evtchn_2l_handle_events`` is what the upcall runs: the cpu's timer VIRQ first (it has
the highest priority), then the selector taken with xchg, scanned from where the last
scan stopped (``current_word_idx`` / ``current_bit_idx``), so that no port starves
another; the starting word is scanned twice (its upper bits first, then all of it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xenlab.abi.event_channel import VIRQ_TIMER
from xenlab.linux.kernel import KERN_INFO, ChangeRow
from xenlab.linux.pvops.events_base import (
    cpu_from_evtchn,
    handle_irq_for_port,
    irq_evtchn_from_virq,
    xen_evtchn_do_upcall,
)
from xenlab.linux.pvops.events_internal import evtchn_ops

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel

SRC = "drivers/xen/events/events_2l.c"


class SharedBits:
    """The guest's view of its shared_info: 2-level pending/mask bits, selector, upcall flag.

    Linux touches these bits itself with sync_set_bit & co; here the hypervisor's
    ``shared_info`` object holds them, and this class is the handful of bit operations
    the 2-level code uses. The page is Xen's, so the trace keeps the bits in Xen's tables
    (``xen/d<N>/evtchn_pending``, ``/evtchn_mask``: port -> 1; ``xen/d<N>/vcpu<V>``:
    ``evtchn_upcall_pending``, ``evtchn_pending_sel``; absent = 0); every write appends its
    change row to *rows*, which the caller records in its own step.
    """

    def __init__(self, kernel: PvopsKernel) -> None:
        self.sh = kernel.hv.domains[kernel.domid].shared_info
        self.bits = 64 if kernel.hv.bits == 64 else 32  # BITS_PER_EVTCHN_WORD
        self.domid = kernel.domid
        self.pending_table = f"xen/d{kernel.domid}/evtchn_pending"
        self.mask_table = f"xen/d{kernel.domid}/evtchn_mask"

    def vcpu_table(self, cpu: int) -> str:
        """The trace table of vcpu_info[cpu] (upcall_pending, pending_sel)."""
        return f"xen/d{self.domid}/vcpu{cpu}"

    @staticmethod
    def _bit(array: Any, table: str, port: int, value: int, rows: list[ChangeRow]) -> int:
        old = array[port]
        if old != value:
            array[port] = value
            rows.append((table, port, old or None, value or None))
        return old

    def test_pending(self, port: int) -> bool:
        """sync_test_bit(port, evtchn_pending)."""
        return bool(self.sh.evtchn_pending[port])

    def clear_pending(self, port: int, rows: list[ChangeRow]) -> None:
        """sync_clear_bit(port, evtchn_pending)."""
        self._bit(self.sh.evtchn_pending, self.pending_table, port, 0, rows)

    def set_pending(self, port: int, rows: list[ChangeRow]) -> None:
        """sync_set_bit(port, evtchn_pending)."""
        self._bit(self.sh.evtchn_pending, self.pending_table, port, 1, rows)

    def test_mask(self, port: int) -> bool:
        """sync_test_bit(port, evtchn_mask)."""
        return bool(self.sh.evtchn_mask[port])

    def set_mask(self, port: int, rows: list[ChangeRow]) -> bool:
        """sync_test_and_set_bit on the mask: True if it was already set."""
        return bool(self._bit(self.sh.evtchn_mask, self.mask_table, port, 1, rows))

    def clear_mask(self, port: int, rows: list[ChangeRow]) -> None:
        """sync_clear_bit(port, evtchn_mask)."""
        self._bit(self.sh.evtchn_mask, self.mask_table, port, 0, rows)

    def pending_and_unmasked(self, idx: int) -> int:
        """evtchn_pending[idx] & ~evtchn_mask[idx] as one machine word."""
        return self.sh.evtchn_pending.word(idx) & ~self.sh.evtchn_mask.word(idx) & ((1 << self.bits) - 1)

    def vcpu(self, cpu: int) -> Any:
        """The vcpu_info of *cpu* (upcall_pending, upcall_mask, pending_sel): read it, write via below."""
        return self.sh.vcpu_info[cpu]

    def set_upcall_pending(self, cpu: int, value: int, rows: list[ChangeRow]) -> None:
        """vcpu_info->evtchn_upcall_pending = value."""
        v = self.sh.vcpu_info[cpu]
        old = int(v.evtchn_upcall_pending)
        if old != value:
            v.evtchn_upcall_pending = value
            rows.append((self.vcpu_table(cpu), "evtchn_upcall_pending", old or None, value or None))

    def xchg_pending_sel(self, cpu: int, rows: list[ChangeRow]) -> int:
        """xchg_xen_ulong(&vcpu_info->evtchn_pending_sel, 0)."""
        v = self.sh.vcpu_info[cpu]
        old = int(v.evtchn_pending_sel)
        if old:
            v.evtchn_pending_sel = 0
            rows.append((self.vcpu_table(cpu), "evtchn_pending_sel", old, None))
        return old

    def test_and_set_sel(self, cpu: int, idx: int, rows: list[ChangeRow]) -> bool:
        """sync_test_and_set_bit(idx, &vcpu_info->evtchn_pending_sel)."""
        v = self.sh.vcpu_info[cpu]
        old = int(v.evtchn_pending_sel)
        if not old >> idx & 1:
            v.evtchn_pending_sel = old | (1 << idx)
            rows.append((self.vcpu_table(cpu), "evtchn_pending_sel", old or None, old | (1 << idx)))
        return bool(old >> idx & 1)


@dataclass
class Evtchn2lState:
    """What events_2l.c keeps per kernel: the shared bits, cpu_evtchn_mask, the scan positions."""

    shared: SharedBits
    cpu_evtchn_mask: list[set[int]] = field(default_factory=list)
    current_word_idx: list[int] = field(default_factory=list)
    current_bit_idx: list[int] = field(default_factory=list)


def _st(kernel: PvopsKernel) -> Evtchn2lState:
    assert kernel.irq is not None and kernel.irq.events_2l is not None, f"{kernel.name}: no 2-level ABI"
    return kernel.irq.events_2l


def evtchn_2l_max_channels(kernel: PvopsKernel) -> int:
    """evtchn_2l_max_channels: EVTCHN_2L_NR_CHANNELS, BITS_PER_EVTCHN_WORD squared."""
    bits = _st(kernel).shared.bits
    return bits * bits


def evtchn_2l_remove(kernel: PvopsKernel, evtchn: int, cpu: int) -> None:
    """evtchn_2l_remove: clear the port's bit in the cpu's cpu_evtchn_mask."""
    _st(kernel).cpu_evtchn_mask[cpu].discard(evtchn)


def evtchn_2l_bind_to_cpu(kernel: PvopsKernel, evtchn: int, cpu: int, old_cpu: int) -> None:
    """evtchn_2l_bind_to_cpu: move the port's cpu_evtchn_mask bit from *old_cpu* to *cpu*."""
    st = _st(kernel)
    st.cpu_evtchn_mask[old_cpu].discard(evtchn)
    st.cpu_evtchn_mask[cpu].add(evtchn)


def evtchn_2l_clear_pending(kernel: PvopsKernel, port: int, why: str) -> None:
    """evtchn_2l_clear_pending: sync_clear_bit(port, evtchn_pending), recorded as the change to Xen's bit."""
    rows: list[ChangeRow] = []
    _st(kernel).shared.clear_pending(port, rows)
    if rows:
        kernel.record("clear_evtchn", f"port {port}: pending bit cleared ({why})", "include/xen/events.h",
                      changes=rows)


def evtchn_2l_set_pending(kernel: PvopsKernel, port: int) -> None:
    """evtchn_2l_set_pending: sync_set_bit(port, evtchn_pending)."""
    rows: list[ChangeRow] = []
    _st(kernel).shared.set_pending(port, rows)
    if rows:
        kernel.record("evtchn_2l_set_pending", f"port {port}: pending bit set", SRC, changes=rows)


def evtchn_2l_is_pending(kernel: PvopsKernel, port: int) -> bool:
    """evtchn_2l_is_pending: sync_test_bit(port, evtchn_pending)."""
    return _st(kernel).shared.test_pending(port)


def evtchn_2l_mask(kernel: PvopsKernel, port: int, rows: list[ChangeRow] | None = None) -> None:
    """evtchn_2l_mask: sync_set_bit(port, evtchn_mask).

    With *rows* the change row goes to the caller's step (xen_init_IRQ masks every port
    in one), else this is a step of its own.
    """
    own: list[ChangeRow] = [] if rows is None else rows
    if not _st(kernel).shared.set_mask(port, own) and rows is None:
        kernel.record("evtchn_2l_mask", f"port {port} masked", SRC, changes=own)


def evtchn_2l_unmask(kernel: PvopsKernel, port: int) -> None:
    """evtchn_2l_unmask: clear the mask; re-raise a pending edge; hypercall if another vcpu's port."""
    assert kernel.irq is not None
    sb = _st(kernel).shared
    cpu = kernel.irq.this_cpu
    owner = cpu_from_evtchn(kernel, port)
    if owner != cpu:
        kernel.hv.evtchn_unmask(kernel.domid, port)
        kernel.record("evtchn_2l_unmask", f"port {port} is vcpu {owner}'s: EVTCHNOP_unmask", SRC)
        return
    rows: list[ChangeRow] = []
    sb.clear_mask(port, rows)
    refire = sb.test_pending(port) and not sb.test_and_set_sel(cpu, port // sb.bits, rows)
    if refire:
        sb.set_upcall_pending(cpu, 1, rows)
    kernel.record("evtchn_2l_unmask",
                  f"port {port} unmasked" + (" and pending: upcall re-raised" if refire else ""),
                  SRC, changes=rows)
    if refire:
        if not kernel.irq.in_upcall and not sb.vcpu(cpu).evtchn_upcall_mask:  # events on: the callback now
            xen_evtchn_do_upcall(kernel, cpu)


def active_evtchns(kernel: PvopsKernel, cpu: int, idx: int) -> int:
    """active_evtchns: pending & cpu_evtchn_mask[cpu] & ~mask, word *idx*."""
    st = _st(kernel)
    w = st.shared.pending_and_unmasked(idx)
    base = idx * st.shared.bits
    out = 0
    while w:
        low = w & -w
        if base + low.bit_length() - 1 in st.cpu_evtchn_mask[cpu]:
            out |= low
        w ^= low
    return out


def evtchn_2l_handle_events(kernel: PvopsKernel, cpu: int) -> int:
    """evtchn_2l_handle_events: the timer VIRQ first, then the selector scan from the last position."""
    st = _st(kernel)
    bits = st.shared.bits
    full = (1 << bits) - 1
    handled = 0

    irq, evtchn = irq_evtchn_from_virq(kernel, cpu, VIRQ_TIMER)
    if irq != -1 and active_evtchns(kernel, cpu, evtchn // bits) & (1 << (evtchn % bits)):
        handle_irq_for_port(kernel, evtchn, cpu)
        handled += 1

    rows: list[ChangeRow] = []
    pending_words = st.shared.xchg_pending_sel(cpu, rows)
    if rows:
        kernel.record("evtchn_2l_handle_events", f"vcpu {cpu}: pending_sel {pending_words:#x} taken (xchg)",
                      SRC, changes=rows)
    start_word_idx = st.current_word_idx[cpu]
    start_bit_idx = st.current_bit_idx[cpu]
    word_idx = start_word_idx
    i = 0
    while pending_words:
        words = pending_words & ((full << word_idx) & full)
        if not words:  # masked out all events: wrap to the beginning
            word_idx = 0
            i += 1
            continue
        word_idx = (words & -words).bit_length() - 1
        pending_bits = active_evtchns(kernel, cpu, word_idx)
        bit_idx = start_bit_idx if word_idx == start_word_idx and i == 0 else 0
        while True:
            bits_left = pending_bits & ((full << bit_idx) & full)
            if not bits_left:
                break
            bit_idx = (bits_left & -bits_left).bit_length() - 1
            handle_irq_for_port(kernel, word_idx * bits + bit_idx, cpu)
            handled += 1
            bit_idx = (bit_idx + 1) % bits
            st.current_word_idx[cpu] = word_idx if bit_idx else (word_idx + 1) % bits
            st.current_bit_idx[cpu] = bit_idx
            if bit_idx == 0:
                break
        if word_idx != start_word_idx or i != 0:  # scan the starting word twice, all others once
            pending_words &= ~(1 << word_idx)
        word_idx = (word_idx + 1) % bits
        i += 1
    return handled


evtchn_ops_2l = evtchn_ops(
    name="2-level",
    max_channels=evtchn_2l_max_channels,
    nr_channels=evtchn_2l_max_channels,
    remove=evtchn_2l_remove,
    bind_to_cpu=evtchn_2l_bind_to_cpu,
    clear_pending=evtchn_2l_clear_pending,
    set_pending=evtchn_2l_set_pending,
    is_pending=evtchn_2l_is_pending,
    mask=evtchn_2l_mask,
    unmask=evtchn_2l_unmask,
    handle_events=evtchn_2l_handle_events,
)


def xen_evtchn_2l_init(kernel: PvopsKernel) -> evtchn_ops:
    """xen_evtchn_2l_init: "Using 2-level ABI"; evtchn_ops = &evtchn_ops_2l."""
    assert kernel.irq is not None
    n = kernel.irq.nr_cpus
    kernel.irq.events_2l = Evtchn2lState(SharedBits(kernel), [set() for _ in range(n)], [0] * n, [0] * n)
    kernel.printk(KERN_INFO, "xen:events: Using 2-level ABI")
    return evtchn_ops_2l

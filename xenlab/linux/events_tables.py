"""Modern (6.1) IRQ bookkeeping: struct irq_info, the paged evtchn_to_irq, the IRQ allocator.

From drivers/xen/events/events_base.c: ``IrqInfo`` (type, refcnt, port, cpu, VIRQ/IPI/
PIRQ number), ``ModernIrq`` (``kernel.irq``: the irq_desc table, the two-level
``evtchn_to_irq`` with page-sized rows allocated on first use, the per-cpu VIRQ/IPI
maps) and ``xen_allocate_irq_dynamic`` (``irq_alloc_descs_from(0)``: lowest free number
at or above the first non-legacy IRQ, from a heap of freed numbers, so a bind never
scans). ``xenlab.linux.events`` (the binders) re-exports everything here.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

from xenlab.abi.errno import ENOMEM
from xenlab.linux.irq import IrqChip, IrqCore, SharedBits

SRC = "drivers/xen/events/events_base.c"
SRC_2L = "drivers/xen/events/events_2l.c"

IRQT_UNBOUND, IRQT_PIRQ, IRQT_VIRQ, IRQT_IPI, IRQT_EVTCHN = range(5)
IRQT_NAMES = ("IRQT_UNBOUND", "IRQT_PIRQ", "IRQT_VIRQ", "IRQT_IPI", "IRQT_EVTCHN")

# arch/x86/include/asm/xen/events.h enum ipi_vector
(
    XEN_RESCHEDULE_VECTOR,
    XEN_CALL_FUNCTION_VECTOR,
    XEN_CALL_FUNCTION_SINGLE_VECTOR,
    XEN_SPIN_UNLOCK_VECTOR,
    XEN_IRQ_WORK_VECTOR,
    XEN_NMI_VECTOR,
) = range(6)
XEN_NR_IPIS = 6

EVTCHN_PER_ROW = 4096 // 4  # PAGE_SIZE / sizeof(*evtchn_to_irq[0])
IOAPIC_PINS = 24  # one IO-APIC with 24 pins (what a PC, and qemu's pc/q35, has)
NR_IRQS_LEGACY = 16


@dataclass
class IrqInfo:
    """struct irq_info: binding type, refcnt, port, vcpu, VIRQ/IPI/PIRQ number, lateeoi state."""

    type: int = IRQT_UNBOUND
    refcnt: int = -1
    evtchn: int = 0
    cpu: int = 0
    index: int = 0  # virq, ipi, or pirq
    gsi: int = -1
    is_static: bool = False
    eoi_pending: bool = False

    def row(self) -> tuple[str, int, int, int, int]:
        """The trace row: (type name, port, cpu, refcnt, VIRQ/IPI/PIRQ number)."""
        return (IRQT_NAMES[self.type], self.evtchn, self.cpu, self.refcnt, self.index)


@dataclass
class ModernIrq:
    """The IRQ state of a modern kernel (``kernel.irq``)."""

    kernel: Any
    nr_cpus: int
    gsi_top: int
    core: IrqCore
    shared: SharedBits
    fifo_events: bool = True
    info: dict[int, IrqInfo] = field(default_factory=dict)
    evtchn_rows: dict[int, list[int]] = field(default_factory=dict)
    virq_to_irq: list[list[int]] = field(default_factory=list)
    ipi_to_irq: list[list[int]] = field(default_factory=list)
    evtchn_cpu: dict[int, int] = field(default_factory=dict)
    free_irqs: list[int] = field(default_factory=list)  # heap of freed numbers below next_irq
    next_irq: int = 0
    this_cpu: int = 0
    in_upcall: bool = False
    scan_state: list[dict[str, int]] = field(default_factory=list)
    chips: dict[str, IrqChip] = field(default_factory=dict)
    device_ports: dict[int, Any] = field(default_factory=dict)

    @property
    def flavour(self) -> str:
        return "modern"

    def __repr__(self) -> str:
        dyn = sorted(i for i in self.core.descs if i >= self.gsi_top)
        return (f"ModernIrq({self.kernel.name}, dynamic IRQs from {self.gsi_top}: {len(dyn)} allocated"
                + (f", highest {dyn[-1]})" if dyn else ")"))

    @property
    def nr_irqs(self) -> int:
        """nr_irqs as x86 arch_probe_nr_irqs sizes it, grown when descriptors go past it."""
        legacy = NR_IRQS_LEGACY if self.gsi_top else 0
        nr = self.gsi_top + legacy + 8 * self.nr_cpus
        nr += 8 * self.nr_cpus if self.gsi_top <= NR_IRQS_LEGACY else self.gsi_top * 16
        return max(nr, max(self.core.descs, default=-1) + 1)


def _t(kernel: Any, table: str) -> str:
    return f"{kernel.name}/{table}"


def _rec(kernel: Any, fn: str, summary: str, changes: Any = (), source: str = SRC) -> None:
    kernel.record(fn, summary, source, changes=changes)


def _st(kernel: Any) -> ModernIrq:
    return kernel.irq


def get_evtchn_to_irq(kernel: Any, port: int) -> int:
    """get_evtchn_to_irq: the IRQ of a port, -1 if its row was never allocated or it is unbound."""
    row = _st(kernel).evtchn_rows.get(port // EVTCHN_PER_ROW)
    return -1 if row is None else row[port % EVTCHN_PER_ROW]


def set_evtchn_to_irq(kernel: Any, port: int, irq: int) -> None:
    """set_evtchn_to_irq: store the mapping, allocating (and -1 filling) the row's page on first use."""
    st = _st(kernel)
    r, c = divmod(port, EVTCHN_PER_ROW)
    row = st.evtchn_rows.get(r)
    if row is None:
        if irq == -1:
            return
        row = st.evtchn_rows[r] = [-1] * EVTCHN_PER_ROW
        _rec(
            kernel,
            "set_evtchn_to_irq",
            f"row {r} (ports {r * EVTCHN_PER_ROW}..{(r + 1) * EVTCHN_PER_ROW - 1}) "
            "allocated: one page, filled with -1",
        )
    old = row[c]
    row[c] = irq
    _rec(
        kernel,
        "set_evtchn_to_irq",
        f"evtchn_to_irq[{port}] = {irq}",
        [(_t(kernel, "evtchn_to_irq"), port, old, irq)],
    )


def _set_info(kernel: Any, irq: int, info: IrqInfo | None) -> None:
    st = _st(kernel)
    old = st.info.get(irq)
    before = old.row() if old else None
    if info is None:
        st.info.pop(irq, None)
    else:
        st.info[irq] = info
    after = info.row() if info else None
    if before != after:
        fn = (
            "xen_irq_init"
            if after and after[0] == "IRQT_UNBOUND"
            else ("xen_free_irq" if after is None else "xen_irq_info_common_setup")
        )
        _rec(kernel, fn, f"irq_info[{irq}] = {after}", [(_t(kernel, "irq_info"), irq, before, after)])


# -- allocation -------------------------------------------------------------------------
def xen_allocate_irq_dynamic(kernel: Any) -> int:
    """xen_allocate_irqs_dynamic(1): the lowest free IRQ >= the first non-legacy IRQ, a fresh irq_info."""
    st = _st(kernel)
    if kernel.fault("xen_allocate_irq"):
        _rec(kernel, "xen_allocate_irqs_dynamic", "irq_alloc_descs_from(0) failed: no descriptor -> -ENOMEM")
        return -ENOMEM
    if st.free_irqs:
        irq = heapq.heappop(st.free_irqs)
        how = "lowest freed number"
    else:
        irq = st.next_irq
        st.next_irq += 1
        how = "next never-used number" if irq > st.gsi_top else f"first non-legacy IRQ (gsi_top {st.gsi_top})"
    st.core.alloc_desc(irq)
    _rec(kernel, "xen_allocate_irqs_dynamic", f"irq_alloc_descs_from(0) -> IRQ {irq} ({how})")
    _set_info(kernel, irq, IrqInfo())
    return irq


def xen_allocate_irq_gsi(kernel: Any, gsi: int) -> int:
    """xen_allocate_irq_gsi: a legacy GSI keeps its number as IRQ (dom0 with an IO-APIC)."""
    st = _st(kernel)
    if gsi >= st.gsi_top:
        return xen_allocate_irq_dynamic(kernel)
    if gsi not in st.core.descs:
        st.core.alloc_desc(gsi)
    _set_info(kernel, gsi, IrqInfo())
    return gsi


def xen_free_irq(kernel: Any, irq: int) -> None:
    """xen_free_irq: drop irq_info and give the descriptor (and its number) back."""
    st = _st(kernel)
    _set_info(kernel, irq, None)
    st.core.free_desc(irq)
    if irq >= st.gsi_top:
        heapq.heappush(st.free_irqs, irq)
    _rec(kernel, "xen_free_irq", f"IRQ {irq} freed")

def evtchn_from_irq(kernel: Any, irq: int) -> int:
    """evtchn_from_irq: the IRQ's port (0 if none)."""
    info = _st(kernel).info.get(irq)
    return info.evtchn if info else 0

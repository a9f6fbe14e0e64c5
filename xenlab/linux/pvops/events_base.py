"""drivers/xen/events/events_base.c, Linux 6.1: event channels bound to IRQs, the irq_chips, the upcall.

Theory of operation
-------------------
Linux 6.1 has no fixed DYNIRQ window: every event channel gets an IRQ descriptor from the
generic allocator (``xen_allocate_irq_dynamic`` -> ``irq_alloc_desc_from(0)``), which hands
out the lowest free number at or above the first non-legacy IRQ. On x86 that bound is
``gsi_top`` once the IO-APICs are known (``arch_dynirq_lower_bound``): a PV dom0 sees the
host's IO-APIC pins (GSIs 0..23 on a one-IO-APIC PC), so its first event-channel IRQ is
24; a PV domU has no IO-APIC and no legacy PIC, so it starts at 0. Legacy PIRQs in dom0
keep their GSI numbers (``xen_allocate_irq_gsi``).

Per IRQ a ``struct irq_info`` holds the binding type (IRQT_UNBOUND 0, PIRQ 1, VIRQ 2,
IPI 3, EVTCHN 4), a refcount, the port, the vcpu and the VIRQ/IPI/PIRQ number.
``evtchn_to_irq`` is two-level: rows of one page (1024 ints) allocated on first use and
filled with -1. The chips: "xen-dyn" (edge, ordinary ports and global VIRQs),
"xen-percpu" (timer VIRQ and IPIs), "xen-pirq" (physical IRQs, named
"ioapic-edge"/"ioapic-level"), "xen-dyn-lateeoi" (ports whose EOI the driver or user
space signals late: /dev/xen/evtchn, hvc, blkback/netback). A lateeoi chip's ack masks
the port for EVT_MASK_REASON_EOI_PENDING; it stays masked until ``xen_irq_lateeoi``.

The port ABI is behind ``evtchn_ops`` (events_internal.h). ``xen_init_IRQ`` tries the FIFO
ABI first (events_fifo.c: what the captured dom0 and domU run, "Using FIFO-based ABI") and
takes the 2-level one (events_2l.c) when ``xen.fifo_events=0`` or FIFO's init fails;
``EventsState.fifo_events`` keeps the outcome (with 2-level, ``xen_smp_intr_init`` also binds
a "debug%d" VIRQ per cpu). Each cpu that comes up later gets the ABI's per-cpu state from
``xen_evtchn_cpu_prepare`` (CPUHP_XEN_EVTCHN_PREPARE: FIFO's control block).

Trace tables: ``<kernel>/evtchn_to_irq`` (port -> IRQ, rows recorded when allocated),
``/irq_info`` (IRQ -> (type, port, cpu, refcnt, index)), ``/virq_to_irq``, ``/ipi_to_irq``,
``/irq_action``, ``/kstat_irqs``; the upcall flag on ``xen/d<N>/vcpu<V>``; mask and pending
state where it lives, recorded in this kernel's own steps: on FIFO the event words
(``xen/d<N>/event_word``), READY and the queues (events_fifo.py); on 2-level the bits of
the shared_info page (``xen/d<N>/evtchn_mask``, ``/evtchn_pending``, the selector).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xenlab.abi.errno import EINVAL, ENOENT, ENOMEM
from xenlab.abi.event_channel import (
    BIND_PIRQ__WILL_SHARE,
    DOMID_SELF,
    EVTCHN_FIFO_PRIORITY_MAX,
    NR_VIRQS,
    EVTCHNOP_set_priority,
    evtchn_set_priority,
)
from xenlab.abi.hvm import (
    HVM_PARAM_CALLBACK_IRQ,
    HVM_PARAM_CALLBACK_TYPE_VECTOR,
    XEN_HVM_CPUID_UPCALL_VECTOR,
    HVMOP_set_evtchn_upcall_vector,
    HVMOP_set_param,
    xen_hvm_evtchn_upcall_vector,
    xen_hvm_param,
)
from xenlab.abi.version import XENFEAT_hvm_callback_vector, XENVER_get_features
from xenlab.linux import irq as irqcore
from xenlab.linux.irq import IRQF_NOBALANCING, IRQF_PERCPU, IRQF_SHARED, Handler, IrqChip, IrqCore
from xenlab.linux.kernel import KERN_ERR, KERN_INFO, ChangeRow
from xenlab.linux.locking import Mutex
from xenlab.linux.pvops.events_internal import (
    clear_evtchn,
    evtchn_ops,
    mask_evtchn,
    unmask_evtchn,
    xen_evtchn_handle_events,
    xen_evtchn_max_channels,
    xen_evtchn_port_bind_to_cpu,
    xen_evtchn_port_remove,
    xen_evtchn_port_setup,
)

if TYPE_CHECKING:
    from xenlab.linux.pvops.events_2l import Evtchn2lState
    from xenlab.linux.pvops.events_fifo import EvtchnFifoState
    from xenlab.linux.pvops.kernel import PvopsKernel
    from xenlab.linux.pvops.xenbus_probe import xenbus_device

SRC = "drivers/xen/events/events_base.c"

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
NR_VECTORS = 256  # arch/x86/include/asm/irq_vectors.h
XEN_EOI_FLAG_SPURIOUS = 1  # include/xen/events.h: the event brought no work
XEN_IRQ_PRIORITY_MAX = EVTCHN_FIFO_PRIORITY_MAX  # include/xen/events.h: 0, the highest


@dataclass
class irq_info:
    """struct irq_info: binding type, refcnt, port, vcpu, VIRQ/IPI/PIRQ number, lateeoi state."""

    type: int = IRQT_UNBOUND
    refcnt: int = -1
    evtchn: int = 0
    cpu: int = 0
    index: int = 0  # virq, ipi, or pirq
    gsi: int = -1
    is_static: bool = False
    eoi_pending: bool = False  # mask_reason & EVT_MASK_REASON_EOI_PENDING
    is_accounted: bool = False  # counted in channels_on_cpu[cpu]

    def row(self) -> tuple[str, int, int, int, int]:
        """The trace row: (type name, port, cpu, refcnt, VIRQ/IPI/PIRQ number)."""
        return (IRQT_NAMES[self.type], self.evtchn, self.cpu, self.refcnt, self.index)


@dataclass
class EventsState:
    """What events_base.c keeps: irq_info per IRQ, evtchn_to_irq, the per-cpu VIRQ/IPI maps, the ABI."""

    name: str
    nr_cpus: int
    gsi_top: int
    core: IrqCore
    fifo_events: bool = True
    evtchn_ops: evtchn_ops | None = None
    #: the 2-level ABI's per-kernel state (events_2l.c), set by xen_evtchn_2l_init
    events_2l: Evtchn2lState | None = None
    #: the FIFO ABI's per-kernel state (events_fifo.c), set by xen_evtchn_fifo_init
    events_fifo: EvtchnFifoState | None = None
    info: dict[int, irq_info] = field(default_factory=dict)
    evtchn_rows: dict[int, list[int]] = field(default_factory=dict)
    virq_to_irq: list[list[int]] = field(default_factory=list)
    ipi_to_irq: list[list[int]] = field(default_factory=list)
    free_irqs: list[int] = field(default_factory=list)  # heap of freed numbers below next_irq
    next_irq: int = 0
    this_cpu: int = 0
    in_upcall: bool = False
    chips: dict[str, IrqChip] = field(default_factory=dict)
    #: channels_on_cpu[]: the ports bound to each vcpu (what select_target_cpu balances). Not a
    #: trace table of its own: it is the count of irq_info rows per cpu with a port.
    channels_on_cpu: list[int] = field(default_factory=list)
    #: static DEFINE_MUTEX(irq_mapping_update_lock): held by every bind_* / unbind_from_irq
    irq_mapping_update_lock: Mutex | None = None

    def __repr__(self) -> str:
        dyn = sorted(i for i in self.core.descs if i >= self.gsi_top)
        return (f"EventsState({self.name}, dynamic IRQs from {self.gsi_top}: {len(dyn)} allocated"
                + (f", highest {dyn[-1]})" if dyn else ")"))

    @property
    def nr_irqs(self) -> int:
        """nr_irqs as x86 arch_probe_nr_irqs sizes it, grown when descriptors go past it.

        At early_irq_init the legacy PIC is still the default one (16 IRQs, a domU's too: its
        probe finds no PIC only afterwards, "preallocated irqs: 0"); nr_irqs starts at NR_IRQS
        capped to NR_VECTORS (256) per possible cpu, and only a smaller estimate lowers it.
        """
        nr = self.gsi_top + NR_IRQS_LEGACY + 8 * self.nr_cpus
        nr += 8 * self.nr_cpus if self.gsi_top <= NR_IRQS_LEGACY else self.gsi_top * 16  # CONFIG_PCI_MSI
        nr = min(nr, NR_VECTORS * self.nr_cpus)
        return max(nr, max(self.core.descs, default=-1) + 1)


def _st(kernel: PvopsKernel) -> EventsState:
    assert kernel.irq is not None, f"{kernel.name}: no event-channel layer before xen_init_IRQ"
    return kernel.irq


def _rec(kernel: PvopsKernel, fn: str, summary: str, changes: Any = ()) -> None:
    kernel.record(fn, summary, SRC, changes=changes)


# -- the tables ---------------------------------------------------------------------------
def set_evtchn_to_irq(kernel: PvopsKernel, port: int, irq: int) -> int:
    """set_evtchn_to_irq: store the mapping, allocating (and -1 filling) the row's page on first use."""
    st = _st(kernel)
    if port >= xen_evtchn_max_channels(kernel):
        return -EINVAL
    r, c = divmod(port, EVTCHN_PER_ROW)
    row = st.evtchn_rows.get(r)
    if row is None:
        if irq == -1:
            return 0
        row = st.evtchn_rows[r] = [-1] * EVTCHN_PER_ROW
        _rec(kernel, "set_evtchn_to_irq",
             f"row {r} (ports {r * EVTCHN_PER_ROW}..{(r + 1) * EVTCHN_PER_ROW - 1}) allocated: one page, "
             "filled with -1",
             [(kernel.table("evtchn_to_irq"), p, None, -1)
              for p in range(r * EVTCHN_PER_ROW, (r + 1) * EVTCHN_PER_ROW)])
    old = row[c]
    row[c] = irq
    _rec(kernel, "set_evtchn_to_irq", f"evtchn_to_irq[{port}] = {irq}",
         [(kernel.table("evtchn_to_irq"), port, old, irq)])
    return xen_evtchn_port_setup(kernel, port) if irq != -1 else 0  # xen_irq_info_common_setup's


def set_info_for_irq(kernel: PvopsKernel, irq: int, info: irq_info | None) -> None:
    """set_info_for_irq: attach (or drop) the IRQ's irq_info, recording the row."""
    st = _st(kernel)
    old = st.info.get(irq)
    before = old.row() if old else None
    if info is None:
        st.info.pop(irq, None)
    else:
        st.info[irq] = info
    after = info.row() if info else None
    if before != after:
        fn = ("xen_irq_init" if after and after[0] == "IRQT_UNBOUND"
              else ("xen_free_irq" if after is None else "xen_irq_info_common_setup"))
        _rec(kernel, fn, f"irq_info[{irq}] = {after}", [(kernel.table("irq_info"), irq, before, after)])


def evtchn_to_info(kernel: PvopsKernel, evtchn: int) -> irq_info | None:
    """evtchn_to_info: the irq_info of the port's IRQ, None if its row is missing or it is unbound."""
    irq = irq_from_evtchn(kernel, evtchn)
    return None if irq < 0 else _st(kernel).info.get(irq)


def evtchn_from_irq(kernel: PvopsKernel, irq: int) -> int:
    """evtchn_from_irq: the IRQ's port (0 if none)."""
    info = _st(kernel).info.get(irq)
    return info.evtchn if info else 0


def irq_from_evtchn(kernel: PvopsKernel, evtchn: int) -> int:
    """irq_from_evtchn: the IRQ of a port, -1 if its row was never allocated or it is unbound."""
    row = _st(kernel).evtchn_rows.get(evtchn // EVTCHN_PER_ROW)
    return -1 if row is None else row[evtchn % EVTCHN_PER_ROW]


def irq_evtchn_from_virq(kernel: PvopsKernel, cpu: int, virq: int) -> tuple[int, int]:
    """irq_evtchn_from_virq: (the IRQ of *virq* on *cpu* or -1, its port)."""
    irq = _st(kernel).virq_to_irq[cpu][virq]
    return irq, evtchn_from_irq(kernel, irq)


def cpu_from_evtchn(kernel: PvopsKernel, evtchn: int) -> int:
    """cpu_from_evtchn: the vcpu the port is bound to (0 if it has no IRQ)."""
    info = evtchn_to_info(kernel, evtchn)
    return info.cpu if info else 0


def do_mask(kernel: PvopsKernel, info: irq_info, eoi_pending: bool = False) -> None:
    """do_mask: mask the port (EVT_MASK_REASON_EXPLICIT, or EOI_PENDING for a late EOI)."""
    if eoi_pending:
        info.eoi_pending = True
    mask_evtchn(kernel, info.evtchn)


def do_unmask(kernel: PvopsKernel, info: irq_info, eoi_pending: bool = False) -> None:
    """do_unmask: drop a mask reason; unmask once none is left (a pending late EOI keeps it masked)."""
    if eoi_pending:
        info.eoi_pending = False
    elif info.eoi_pending:
        return
    unmask_evtchn(kernel, info.evtchn)


def channels_on_cpu_dec(kernel: PvopsKernel, info: irq_info) -> None:
    """channels_on_cpu_dec: the port no longer counts on its vcpu."""
    if not info.is_accounted:
        return
    info.is_accounted = False
    st = _st(kernel)
    st.channels_on_cpu[info.cpu] = max(0, st.channels_on_cpu[info.cpu] - 1)


def channels_on_cpu_inc(kernel: PvopsKernel, info: irq_info) -> None:
    """channels_on_cpu_inc: the port counts on info->cpu."""
    _st(kernel).channels_on_cpu[info.cpu] += 1
    info.is_accounted = True


def bind_evtchn_to_cpu(kernel: PvopsKernel, info: irq_info, cpu: int, force_affinity: bool = False,
                       irq: int = -1) -> None:
    """bind_evtchn_to_cpu: tell the ABI which vcpu's upcall delivers the port; info->cpu = cpu, counted.

    (*force_affinity*: the per-cpu IRQs also set their affinity masks, which the lab does not
    print.) *irq*, when given, is the IRQ whose irq_info row the trace updates (a rebind).
    """
    xen_evtchn_port_bind_to_cpu(kernel, info.evtchn, cpu, info.cpu)
    channels_on_cpu_dec(kernel, info)
    before = info.row()
    info.cpu = cpu
    channels_on_cpu_inc(kernel, info)
    if irq >= 0 and before != info.row():
        _rec(kernel, "bind_evtchn_to_cpu", f"IRQ {irq} (port {info.evtchn}): vcpu {before[2]} -> {cpu}",
             [(kernel.table("irq_info"), irq, before, info.row())])


def notify_remote_via_evtchn(kernel: PvopsKernel, port: int) -> int:
    """notify_remote_via_evtchn: EVTCHNOP_send (include/xen/events.h)."""
    rc = kernel.hv.evtchn_send(kernel.domid, port)
    _rec(kernel, "notify_remote_via_evtchn", f"EVTCHNOP_send port {port} -> {rc}")
    return rc


def notify_remote_via_irq(kernel: PvopsKernel, irq: int) -> None:
    """notify_remote_via_irq: send on the IRQ's port if it has one."""
    port = evtchn_from_irq(kernel, irq)
    if port:
        notify_remote_via_evtchn(kernel, port)


def xen_irq_lateeoi(kernel: PvopsKernel, irq: int, eoi_flags: int = 0) -> None:
    """xen_irq_lateeoi: the late EOI -- clear the EOI_PENDING mask reason and unmask the port."""
    info = _st(kernel).info.get(irq)
    if info is None or not info.evtchn:
        return
    _rec(kernel, "xen_irq_lateeoi", f"IRQ {irq}: late EOI, port {info.evtchn} unmasked")
    do_unmask(kernel, info, eoi_pending=True)


# -- allocation -------------------------------------------------------------------------
def xen_irq_init(kernel: PvopsKernel, irq: int) -> irq_info:
    """xen_irq_init: a fresh irq_info (IRQT_UNBOUND, refcnt -1) for the IRQ."""
    info = irq_info()
    set_info_for_irq(kernel, irq, info)
    return info


def xen_allocate_irq_dynamic(kernel: PvopsKernel) -> int:
    """xen_allocate_irq_dynamic: irq_alloc_desc_from(0), the lowest free IRQ >= the first non-legacy one."""
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
    desc = st.core.alloc_desc(irq)
    _rec(kernel, "xen_allocate_irqs_dynamic", f"irq_alloc_descs_from(0) -> IRQ {irq} ({how})",
         [(kernel.table("kstat_irqs"), f"{irq}/cpu{cpu}", None, 0) for cpu in range(len(desc.kstat))])
    xen_irq_init(kernel, irq)
    return irq


def xen_allocate_irq_gsi(kernel: PvopsKernel, gsi: int) -> int:
    """xen_allocate_irq_gsi: a legacy GSI keeps its number as IRQ (dom0 with an IO-APIC)."""
    st = _st(kernel)
    if gsi >= st.gsi_top:
        return xen_allocate_irq_dynamic(kernel)
    if gsi not in st.core.descs:
        st.core.alloc_desc(gsi)
    xen_irq_init(kernel, gsi)
    return gsi


def xen_free_irq(kernel: PvopsKernel, irq: int) -> None:
    """xen_free_irq: drop irq_info and give the descriptor (and its number) back."""
    st = _st(kernel)
    set_info_for_irq(kernel, irq, None)
    desc = st.core.descs.get(irq)
    counts = [(kernel.table("kstat_irqs"), f"{irq}/cpu{cpu}", n, None)  # its counters go with it
              for cpu, n in enumerate(desc.kstat if desc is not None else ()) if n]
    st.core.free_desc(irq)
    if irq >= st.gsi_top:
        heapq.heappush(st.free_irqs, irq)
    _rec(kernel, "xen_free_irq", f"IRQ {irq} freed", counts)


def xen_evtchn_close(kernel: PvopsKernel, port: int) -> None:
    """xen_evtchn_close: EVTCHNOP_close."""
    rc = kernel.hv.evtchn_close(kernel.domid, port)
    _rec(kernel, "xen_evtchn_close", f"EVTCHNOP_close port {port} -> {rc}")


def event_handler_exit(kernel: PvopsKernel, info: irq_info, why: str) -> None:
    """event_handler_exit: the handler is done with the port: clear its pending bit."""
    clear_evtchn(kernel, info.evtchn, why)


# -- the chips ------------------------------------------------------------------------------
def startup_pirq(kernel: PvopsKernel, irq: int) -> None:
    """startup_pirq: EVTCHNOP_bind_pirq on first use, then unmask."""
    st = _st(kernel)
    info = st.info[irq]
    if not info.evtchn:
        desc = st.core.descs[irq]
        flags = BIND_PIRQ__WILL_SHARE if desc.actions and desc.actions[0].flags & IRQF_SHARED else 0
        p = kernel.hv.evtchn_bind_pirq(kernel.domid, info.index, flags)
        _rec(kernel, "startup_pirq", f"EVTCHNOP_bind_pirq(PIRQ {info.index}) -> {p}")
        if p < 0:
            return
        info = irq_info(IRQT_PIRQ, info.refcnt, p, 0, info.index, info.gsi)
        set_info_for_irq(kernel, irq, info)
        set_evtchn_to_irq(kernel, p, irq)
        bind_evtchn_to_cpu(kernel, info, 0)
    enable_dynirq(kernel, irq)


def shutdown_pirq(kernel: PvopsKernel, irq: int) -> None:
    """shutdown_pirq: mask and close the port, forget the mapping."""
    info = _st(kernel).info[irq]
    if info.evtchn:
        mask_evtchn(kernel, info.evtchn)
        kernel.hv.evtchn_close(kernel.domid, info.evtchn)
        channels_on_cpu_dec(kernel, info)  # xen_irq_info_cleanup
        set_evtchn_to_irq(kernel, info.evtchn, -1)
        set_info_for_irq(kernel, irq, irq_info(IRQT_PIRQ, info.refcnt, 0, 0, info.index, info.gsi))


def __unbind_from_irq(kernel: PvopsKernel, info: irq_info, irq: int) -> None:
    """__unbind_from_irq: refcnt--; at the end close the port (unless static), clear maps, free the IRQ."""
    st = _st(kernel)
    if info.refcnt > 0:
        before = info.row()
        info.refcnt -= 1
        _rec(kernel, "unbind_from_irq", f"IRQ {irq}: refcnt -> {info.refcnt}",
             [(kernel.table("irq_info"), irq, before, info.row())])
        if info.refcnt != 0:
            return
    port = info.evtchn
    if port:
        cpu = info.cpu
        if not info.is_static:
            xen_evtchn_close(kernel, port)
        if info.type == IRQT_VIRQ:
            st.virq_to_irq[cpu][info.index] = -1
            _rec(kernel, "unbind_from_irq", f"virq_to_irq[cpu{cpu}][{info.index}] = -1",
                 [(kernel.table("virq_to_irq"), f"{cpu}/{info.index}", irq, -1)])
        elif info.type == IRQT_IPI:
            st.ipi_to_irq[cpu][info.index] = -1
            _rec(kernel, "unbind_from_irq", f"ipi_to_irq[cpu{cpu}][{info.index}] = -1",
                 [(kernel.table("ipi_to_irq"), f"{cpu}/{info.index}", irq, -1)])
        xen_irq_info_cleanup(kernel, info)
    xen_free_irq(kernel, irq)


def xen_irq_info_cleanup(kernel: PvopsKernel, info: irq_info) -> None:
    """xen_irq_info_cleanup: forget the port's IRQ and its vcpu binding (the irq_info itself goes next)."""
    set_evtchn_to_irq(kernel, info.evtchn, -1)
    xen_evtchn_port_remove(kernel, info.evtchn, info.cpu)
    channels_on_cpu_dec(kernel, info)


def xen_bind_pirq_gsi_to_irq(kernel: PvopsKernel, gsi: int, pirq: int, shareable: bool, name: str) -> int:
    """xen_bind_pirq_gsi_to_irq: IRQ = GSI for legacy pins, chip "xen-pirq" named ioapic-edge/-level
    (under irq_mapping_update_lock)."""
    lock = _st(kernel).irq_mapping_update_lock
    assert lock is not None, "xen_init_IRQ makes it"
    lock.lock()
    irq = xen_allocate_irq_gsi(kernel, gsi)
    _set_chip(kernel, irq, "xen-pirq", "fasteoi", name)
    set_info_for_irq(kernel, irq, irq_info(IRQT_PIRQ, -1, 0, 0, pirq, gsi))
    lock.unlock()
    return irq


def _set_chip(kernel: PvopsKernel, irq: int, chip: str, flow: str, name: str) -> None:
    """irq_set_chip_and_handler_name (kernel/irq/chip.c)."""
    st = _st(kernel)
    desc = st.core.descs[irq]
    desc.chip, desc.flow, desc.name = st.chips[chip], flow, name


# -- binding ------------------------------------------------------------------------------
def _lock(st: EventsState) -> Mutex:
    assert st.irq_mapping_update_lock is not None, "xen_init_IRQ makes it"
    return st.irq_mapping_update_lock


def bind_evtchn_to_irq_chip(kernel: PvopsKernel, evtchn: int, chip: str) -> int:
    """bind_evtchn_to_irq_chip: the port's IRQ if it has one, else a new IRQ on *chip* bound to vcpu 0."""
    st = _st(kernel)
    if evtchn <= 0 or evtchn >= xen_evtchn_max_channels(kernel):
        return -EINVAL
    _lock(st).lock()
    irq = irq_from_evtchn(kernel, evtchn)
    if irq != -1:
        _rec(kernel, "bind_evtchn_to_irq_chip", f"port {evtchn} already IRQ {irq}")
    else:
        irq = xen_allocate_irq_dynamic(kernel)
        if irq >= 0:
            _set_chip(kernel, irq, chip, "edge", "event")
            info = irq_info(IRQT_EVTCHN, -1, evtchn, 0)
            set_info_for_irq(kernel, irq, info)
            set_evtchn_to_irq(kernel, evtchn, irq)
            bind_evtchn_to_cpu(kernel, st.info[irq], 0)
    _lock(st).unlock()  # out:
    return irq


def bind_ipi_to_irq(kernel: PvopsKernel, ipi: int, cpu: int) -> int:
    """bind_ipi_to_irq: reuse the per-cpu mapping or allocate (xen-percpu, "ipi") + EVTCHNOP_bind_ipi."""
    st = _st(kernel)
    _lock(st).lock()
    irq = st.ipi_to_irq[cpu][ipi]
    if irq == -1:
        irq = _bind_ipi_to_irq_new(kernel, st, ipi, cpu)
    _lock(st).unlock()  # out:
    return irq


def _bind_ipi_to_irq_new(kernel: PvopsKernel, st: EventsState, ipi: int, cpu: int) -> int:
    """bind_ipi_to_irq for an IPI with no IRQ on this vcpu yet (under irq_mapping_update_lock)."""
    irq = xen_allocate_irq_dynamic(kernel)
    if irq < 0:
        return irq
    _set_chip(kernel, irq, "xen-percpu", "percpu", "ipi")
    port = kernel.hv.evtchn_bind_ipi(kernel.domid, cpu)
    _rec(kernel, "bind_ipi_to_irq", f"EVTCHNOP_bind_ipi(vcpu {cpu}) -> {port}")
    if port < 0:  # the kernel BUG()s here; the model gives the IRQ back and returns the error
        xen_free_irq(kernel, irq)
        return port
    set_info_for_irq(kernel, irq, irq_info(IRQT_IPI, -1, port, cpu, ipi))
    set_evtchn_to_irq(kernel, port, irq)
    st.ipi_to_irq[cpu][ipi] = irq
    _rec(kernel, "bind_ipi_to_irq", f"ipi_to_irq[cpu{cpu}][{ipi}] = {irq}",
         [(kernel.table("ipi_to_irq"), f"{cpu}/{ipi}", -1, irq)])
    bind_evtchn_to_cpu(kernel, st.info[irq], cpu, True)
    return irq


def bind_interdomain_evtchn_to_irq_chip(kernel: PvopsKernel, dev: xenbus_device, remote_port: int,
                                        chip: str) -> int:
    """bind_interdomain_evtchn_to_irq_chip: EVTCHNOP_bind_interdomain to the device's other end, then bind."""
    port = kernel.hv.evtchn_bind_interdomain(kernel.domid, dev.otherend_id, remote_port)
    _rec(kernel, "bind_interdomain_evtchn_to_irq_chip",
         f"EVTCHNOP_bind_interdomain(dom {dev.otherend_id}, port {remote_port}) -> {port}")
    if port < 0:
        return port
    return bind_evtchn_to_irq_chip(kernel, port, chip)


def bind_virq_to_irq(kernel: PvopsKernel, virq: int, cpu: int, percpu: bool) -> int:
    """bind_virq_to_irq: reuse the per-cpu mapping or allocate + EVTCHNOP_bind_virq."""
    st = _st(kernel)
    _lock(st).lock()
    irq = st.virq_to_irq[cpu][virq]
    if irq == -1:
        irq = _bind_virq_to_irq_new(kernel, st, virq, cpu, percpu)
    _lock(st).unlock()  # out:
    return irq


def _bind_virq_to_irq_new(kernel: PvopsKernel, st: EventsState, virq: int, cpu: int, percpu: bool) -> int:
    """bind_virq_to_irq for a VIRQ with no IRQ on this vcpu yet (under irq_mapping_update_lock)."""
    irq = xen_allocate_irq_dynamic(kernel)
    if irq < 0:
        return irq
    if percpu:
        _set_chip(kernel, irq, "xen-percpu", "percpu", "virq")
    else:
        _set_chip(kernel, irq, "xen-dyn", "edge", "virq")
    port = kernel.hv.evtchn_bind_virq(kernel.domid, virq, cpu)
    _rec(kernel, "bind_virq_to_irq", f"EVTCHNOP_bind_virq(VIRQ {virq}, vcpu {cpu}) -> {port}")
    if port < 0:  # the kernel BUG()s here; the model gives the IRQ back and returns the error
        xen_free_irq(kernel, irq)
        return port
    set_info_for_irq(kernel, irq, irq_info(IRQT_VIRQ, -1, port, cpu, virq))
    set_evtchn_to_irq(kernel, port, irq)
    st.virq_to_irq[cpu][virq] = irq
    _rec(kernel, "bind_virq_to_irq", f"virq_to_irq[cpu{cpu}][{virq}] = {irq}",
         [(kernel.table("virq_to_irq"), f"{cpu}/{virq}", -1, irq)])
    bind_evtchn_to_cpu(kernel, st.info[irq], cpu, percpu)
    return irq


def unbind_from_irq(kernel: PvopsKernel, irq: int) -> None:
    """unbind_from_irq: __unbind_from_irq of the IRQ's irq_info (if any), under irq_mapping_update_lock."""
    st = _st(kernel)
    info = st.info.get(irq)
    if info is not None:
        _lock(st).lock()
        __unbind_from_irq(kernel, info, irq)
        _lock(st).unlock()


def bind_evtchn_to_irqhandler_chip(kernel: PvopsKernel, evtchn: int, handler: Handler, irqflags: int,
                                   devname: str, dev_id: Any, chip: str) -> int:
    """bind_evtchn_to_irqhandler_chip: bind, then request_irq; on failure unbind_from_irq.

    If the port was already bound (a second bind of the same port), that unbind drops the
    existing IRQ and closes the port under its first user: what 6.1 does (the refcnt of a
    plain port is -1, "not counted").
    """
    irq = bind_evtchn_to_irq_chip(kernel, evtchn, chip)
    if irq < 0:
        return irq
    retval = irqcore.request_irq(kernel, irq, handler, irqflags, devname, dev_id)
    if retval != 0:
        unbind_from_irq(kernel, irq)
        return retval
    return irq


def bind_evtchn_to_irqhandler(kernel: PvopsKernel, evtchn: int, handler: Handler, irqflags: int,
                              devname: str, dev_id: Any) -> int:
    """bind_evtchn_to_irqhandler: a "xen-dyn" IRQ for a port we hold (xenbus: "xenbus"); IRQ or -errno."""
    return bind_evtchn_to_irqhandler_chip(kernel, evtchn, handler, irqflags, devname, dev_id, "xen-dyn")


def bind_evtchn_to_irqhandler_lateeoi(kernel: PvopsKernel, evtchn: int, handler: Handler, irqflags: int,
                                      devname: str, dev_id: Any) -> int:
    """bind_evtchn_to_irqhandler_lateeoi: the same on the "xen-dyn-lateeoi" chip (EOI via xen_irq_lateeoi)."""
    return bind_evtchn_to_irqhandler_chip(kernel, evtchn, handler, irqflags, devname, dev_id,
                                          "xen-dyn-lateeoi")


def bind_interdomain_evtchn_to_irqhandler_chip(kernel: PvopsKernel, dev: xenbus_device, remote_port: int,
                                               handler: Handler, irqflags: int, devname: str, dev_id: Any,
                                               chip: str) -> int:
    """bind_interdomain_evtchn_to_irqhandler_chip: bind the other end's port, then request_irq."""
    irq = bind_interdomain_evtchn_to_irq_chip(kernel, dev, remote_port, chip)
    if irq < 0:
        return irq
    retval = irqcore.request_irq(kernel, irq, handler, irqflags, devname, dev_id)
    if retval != 0:
        unbind_from_irq(kernel, irq)
        return retval
    return irq


def bind_interdomain_evtchn_to_irqhandler_lateeoi(kernel: PvopsKernel, dev: xenbus_device, remote_port: int,
                                                  handler: Handler, irqflags: int, devname: str,
                                                  dev_id: Any) -> int:
    """bind_interdomain_evtchn_to_irqhandler_lateeoi: the backends' form (blkback, netback)."""
    return bind_interdomain_evtchn_to_irqhandler_chip(kernel, dev, remote_port, handler, irqflags, devname,
                                                      dev_id, "xen-dyn-lateeoi")


def bind_virq_to_irqhandler(kernel: PvopsKernel, virq: int, cpu: int, handler: Handler, irqflags: int,
                            devname: str, dev_id: Any) -> int:
    """bind_virq_to_irqhandler: per-cpu chip if IRQF_PERCPU, else "xen-dyn"; request_irq."""
    irq = bind_virq_to_irq(kernel, virq, cpu, bool(irqflags & IRQF_PERCPU))
    if irq < 0:
        return irq
    retval = irqcore.request_irq(kernel, irq, handler, irqflags, devname, dev_id)
    if retval != 0:
        unbind_from_irq(kernel, irq)
        return retval
    return irq


def bind_ipi_to_irqhandler(kernel: PvopsKernel, ipi: int, cpu: int, handler: Handler, irqflags: int,
                           devname: str, dev_id: Any) -> int:
    """bind_ipi_to_irqhandler: bind_ipi_to_irq + request_irq."""
    irq = bind_ipi_to_irq(kernel, ipi, cpu)
    if irq < 0:
        return irq
    retval = irqcore.request_irq(kernel, irq, handler, irqflags, devname, dev_id)
    if retval != 0:
        unbind_from_irq(kernel, irq)
        return retval
    return irq


def unbind_from_irqhandler(kernel: PvopsKernel, irq: int, dev_id: Any) -> None:
    """unbind_from_irqhandler: free_irq + unbind_from_irq."""
    irqcore.free_irq(kernel, irq, dev_id)
    unbind_from_irq(kernel, irq)


def xen_set_irq_priority(kernel: PvopsKernel, irq: int, priority: int) -> int:
    """xen_set_irq_priority: EVTCHNOP_set_priority on the IRQ's port (FIFO; 2-level answers -ENOSYS)."""
    port = evtchn_from_irq(kernel, irq)
    rc = kernel.hv.event_channel_op(kernel.domid, EVTCHNOP_set_priority,
                                    evtchn_set_priority(port=port, priority=priority))
    _rec(kernel, "xen_set_irq_priority",
         f"IRQ {irq} (port {port}): EVTCHNOP_set_priority({priority}) -> {rc}")
    return rc


def evtchn_make_refcounted(kernel: PvopsKernel, evtchn: int) -> int:
    """evtchn_make_refcounted: refcnt -1 ("not counted") -> 1 (the evtchn device's ports)."""
    irq = irq_from_evtchn(kernel, evtchn)
    info = _st(kernel).info.get(irq)
    if info is None:
        return -ENOENT
    before = info.row()
    info.refcnt = 1
    _rec(kernel, "evtchn_make_refcounted", f"port {evtchn}: IRQ {irq} refcnt = 1",
         [(kernel.table("irq_info"), irq, before, info.row())])
    return 0


# -- the upcall ---------------------------------------------------------------------------
def handle_irq_for_port(kernel: PvopsKernel, port: int, cpu: int) -> None:
    """handle_irq_for_port: generic_handle_irq of the port's IRQ (a port with no IRQ is left alone)."""
    irq = irq_from_evtchn(kernel, port)
    if irq == -1:
        return
    _rec(kernel, "handle_irq_for_port", f"port {port} pending -> generic_handle_irq({irq})")
    irqcore.do_IRQ(kernel, irq, cpu)


def xen_evtchn_do_upcall(kernel: PvopsKernel, cpu: int = 0) -> int:
    """xen_evtchn_do_upcall: clear upcall_pending, let the ABI handle the events; again while it is set."""
    st = _st(kernel)
    vcpu = kernel.hv.domains[kernel.domid].shared_info.vcpu_info[cpu]
    if st.in_upcall:
        return 0
    st.in_upcall, old_cpu, st.this_cpu = True, st.this_cpu, cpu
    old_umask = int(vcpu.evtchn_upcall_mask)
    vcpu.evtchn_upcall_mask = 1
    handled = 0
    try:
        while True:
            rows: list[ChangeRow] = []
            if vcpu.evtchn_upcall_pending:  # a write to Xen's vcpu_info, recorded on its table
                vcpu.evtchn_upcall_pending = 0
                rows.append((f"xen/d{kernel.domid}/vcpu{cpu}", "evtchn_upcall_pending", 1, None))
            sel = int(vcpu.evtchn_pending_sel)  # 2-level's selector; FIFO leaves it 0 (READY is its own)
            _rec(kernel, "xen_evtchn_do_upcall",
                 f"vcpu {cpu}: upcall_pending cleared" + (f", pending_sel {sel:#x}" if sel else ""), rows)
            handled += xen_evtchn_handle_events(kernel, cpu)
            if not vcpu.evtchn_upcall_pending:
                break
    finally:
        vcpu.evtchn_upcall_mask = old_umask
        st.in_upcall, st.this_cpu = False, old_cpu
    return handled


def enable_dynirq(kernel: PvopsKernel, irq: int) -> None:
    """enable_dynirq: unmask the port (EVT_MASK_REASON_EXPLICIT), unless a late EOI is pending."""
    info = _st(kernel).info.get(irq)
    if info is not None and info.evtchn:
        do_unmask(kernel, info)


def disable_dynirq(kernel: PvopsKernel, irq: int) -> None:
    """disable_dynirq: mask the port (EVT_MASK_REASON_EXPLICIT)."""
    info = _st(kernel).info.get(irq)
    if info is not None and info.evtchn:
        do_mask(kernel, info)


def xen_rebind_evtchn_to_cpu(kernel: PvopsKernel, irq: int, tcpu: int) -> int:
    """xen_rebind_evtchn_to_cpu: mask, EVTCHNOP_bind_vcpu, move the binding (a VIRQ's slot too), unmask."""
    st = _st(kernel)
    info = st.info.get(irq)
    if info is None or not info.evtchn:
        return -1
    do_mask(kernel, info)  # EVT_MASK_REASON_TEMPORARY: no delivery on an unexpected vcpu meanwhile
    rc = kernel.hv.evtchn_bind_vcpu(kernel.domid, info.evtchn, tcpu)
    _rec(kernel, "xen_rebind_evtchn_to_cpu", f"EVTCHNOP_bind_vcpu(port {info.evtchn}, vcpu {tcpu}) -> {rc}")
    if rc >= 0:  # a per-vcpu VIRQ or an IPI refuses (-EINVAL): it stays where it is
        old_cpu = info.cpu
        bind_evtchn_to_cpu(kernel, info, tcpu, irq=irq)
        if info.type == IRQT_VIRQ and old_cpu != tcpu:
            virq = info.index
            st.virq_to_irq[old_cpu][virq], st.virq_to_irq[tcpu][virq] = -1, irq
            _rec(kernel, "xen_rebind_evtchn_to_cpu",
                 f"VIRQ {virq}: virq_to_irq moves cpu{old_cpu} -> cpu{tcpu}",
                 [(kernel.table("virq_to_irq"), f"{old_cpu}/{virq}", irq, -1),
                  (kernel.table("virq_to_irq"), f"{tcpu}/{virq}", -1, irq)])
    do_unmask(kernel, info)
    return 0


def select_target_cpu(kernel: PvopsKernel, dest: list[int]) -> int:
    """select_target_cpu: the online cpu of *dest* with the fewest channels (the lowest on a tie)."""
    st = _st(kernel)
    online = [c for c in dest if c < st.nr_cpus]
    if not online:
        return select_target_cpu(kernel, list(range(st.nr_cpus)))
    return min(online, key=lambda c: (st.channels_on_cpu[c], c))


def set_affinity_irq(kernel: PvopsKernel, irq: int, dest: list[int]) -> int:
    """set_affinity_irq (.irq_set_affinity of xen-dyn, -lateeoi, -pirq): rebind to select_target_cpu."""
    tcpu = select_target_cpu(kernel, dest)
    _rec(kernel, "select_target_cpu",
         f"IRQ {irq}: channels_on_cpu {_st(kernel).channels_on_cpu} -> cpu {tcpu}")
    return xen_rebind_evtchn_to_cpu(kernel, irq, tcpu)


def irq_setup_affinity(kernel: PvopsKernel, irq: int) -> int:
    """irq_setup_affinity (kernel/irq/manage.c): after startup, aim a balanceable IRQ at every online cpu.

    irq_startup (kernel/irq/chip.c) calls it right after the chip's startup unmasked the
    port, so an event already pending is delivered on vcpu 0 first; IRQF_PERCPU and
    IRQF_NOBALANCING IRQs are left alone (__irq_can_set_affinity).
    """
    desc = _st(kernel).core.descs[irq]
    if any(a.flags & (IRQF_PERCPU | IRQF_NOBALANCING) for a in desc.actions):
        return 0
    return set_affinity_irq(kernel, irq, list(range(kernel.num_online_cpus())))


def ack_dynirq(kernel: PvopsKernel, irq: int) -> None:
    """ack_dynirq: event_handler_exit -> clear the port's pending bit."""
    info = _st(kernel).info.get(irq)
    if info is not None and info.evtchn:
        event_handler_exit(kernel, info, "ack_dynirq")


def lateeoi_ack_dynirq(kernel: PvopsKernel, irq: int) -> None:
    """lateeoi_ack_dynirq: mask the port for EOI_PENDING, clear it; xen_irq_lateeoi unmasks it later."""
    info = _st(kernel).info.get(irq)
    if info is not None and info.evtchn:
        do_mask(kernel, info, eoi_pending=True)
        clear_evtchn(kernel, info.evtchn, "lateeoi_ack_dynirq: masked until the late EOI")


def _chips(kernel: PvopsKernel) -> dict[str, IrqChip]:
    """xen_dynamic_chip, xen_lateeoi_chip, xen_percpu_chip and xen_pirq_chip of this kernel."""
    def enable(irq: int) -> None:
        enable_dynirq(kernel, irq)

    def disable(irq: int) -> None:
        disable_dynirq(kernel, irq)

    def ack(irq: int) -> None:
        ack_dynirq(kernel, irq)

    def startup(irq: int) -> None:  # irq_startup: __irq_startup (irq_enable), then irq_setup_affinity
        enable_dynirq(kernel, irq)
        irq_setup_affinity(kernel, irq)

    def startup_pirq_affine(irq: int) -> None:  # irq_startup: the chip's irq_startup, then the affinity
        startup_pirq(kernel, irq)
        irq_setup_affinity(kernel, irq)

    return {
        "xen-dyn": IrqChip("xen-dyn", startup=startup, shutdown=disable, ack=ack, mask=disable,
                           unmask=enable),
        "xen-dyn-lateeoi": IrqChip("xen-dyn-lateeoi", startup=startup, shutdown=disable,
                                   ack=lambda irq: lateeoi_ack_dynirq(kernel, irq), mask=disable,
                                   unmask=enable),
        "xen-percpu": IrqChip("xen-percpu", startup=enable, shutdown=disable, ack=ack, mask=disable,
                              unmask=enable),
        "xen-pirq": IrqChip("xen-pirq", startup=startup_pirq_affine,
                            shutdown=lambda irq: shutdown_pirq(kernel, irq), ack=ack, end=enable,
                            mask=disable, unmask=enable),
    }


# -- init ---------------------------------------------------------------------------------
def xen_evtchn_cpu_prepare(kernel: PvopsKernel, cpu: int) -> int:
    """xen_evtchn_cpu_prepare (CPUHP_XEN_EVTCHN_PREPARE): the ABI's percpu_init for a cpu coming up."""
    ops = _st(kernel).evtchn_ops
    assert ops is not None
    if ops.percpu_init is None:
        return 0
    rc = ops.percpu_init(kernel, cpu)
    _rec(kernel, "xen_evtchn_cpu_prepare", f"cpu{cpu}: {ops.name} percpu_init -> {rc}")
    return rc


def xen_init_IRQ(kernel: PvopsKernel, port_abi_init: Callable[[PvopsKernel], evtchn_ops], *,
                 fifo_events: bool = True) -> EventsState:
    """xen_init_IRQ: pick the event ABI, mask every port, set the upcall; IRQs below gsi_top stay legacy.

    *port_abi_init* is the ABI's init: ``events_fifo.xen_evtchn_fifo_or_2l_init`` (xen_fifo_events:
    FIFO, 2-level if its init fails) or ``events_2l.xen_evtchn_2l_init`` (xen.fifo_events=0); it
    returns the ``evtchn_ops`` the kernel uses from now on. With FIFO no event array page exists
    yet (nr_channels 0), so no port is masked here: each page is MASKED as a binding needs it.
    """
    d = kernel.hv.domains[kernel.domid]
    pv_dom0 = d.initdomain and not d.hvm
    gsi_top = IOAPIC_PINS if pv_dom0 else 0
    n = kernel.num_possible_cpus()
    st = EventsState(kernel.name, n, gsi_top, IrqCore(kernel, n), fifo_events)
    kernel.irq = st
    kernel.irq_core = st.core
    st.evtchn_ops = port_abi_init(kernel)
    st.next_irq = gsi_top
    st.virq_to_irq = [[-1] * NR_VIRQS for _ in range(n)]
    st.ipi_to_irq = [[-1] * XEN_NR_IPIS for _ in range(n)]
    st.chips = _chips(kernel)
    st.channels_on_cpu = [0] * n
    st.irq_mapping_update_lock = Mutex(kernel.sched, f"{kernel.name}:irq_mapping_update_lock",
                                       trace=kernel.trace, table=kernel.table("locks"),
                                       source=kernel.MUTEX_SOURCE)
    nports = st.evtchn_ops.nr_channels(kernel)
    masks: list[ChangeRow] = [(kernel.table(t), f"{cpu}/{i}", None, -1)  # the per-cpu arrays as filled
                              for t, k in (("virq_to_irq", NR_VIRQS), ("ipi_to_irq", XEN_NR_IPIS))
                              for cpu in range(n) for i in range(k)]
    masks.append(st.irq_mapping_update_lock.init_row())  # the static mutex, as the image holds it
    for evtchn in range(nports):
        mask_evtchn(kernel, evtchn, masks)
    if d.hvm:  # CONFIG_X86: the vector events arrive on (a PV guest's upcall is its callback)
        xen_init_setup_upcall_vector(kernel)
        xen_alloc_callback_vector(kernel)
    d.upcall = lambda vcpu: xen_evtchn_do_upcall(kernel, vcpu)
    _rec(kernel, "xen_init_IRQ",
         f"{st.evtchn_ops.name} event ABI chosen; all {nports} ports masked; dynamic IRQs from {gsi_top} "
         + (f"(GSIs 0..{gsi_top - 1} are the IO-APIC's)" if gsi_top else "(no legacy IRQs in a PV domU)"),
         masks)
    return st



# -- CONFIG_XEN_PVHVM: how events reach an HVM guest ---------------------------------------------
HYPERVISOR_CALLBACK_VECTOR = 0xF3  # arch/x86/include/asm/irq_vectors.h
HVM_CALLBACK_VIA_TYPE_SHIFT = 56  # include/xen/hvm.h


def HVM_CALLBACK_VECTOR(x: int) -> int:  # noqa: N802 (the C macro's name)
    """HVM_CALLBACK_VECTOR (include/xen/hvm.h): a callback via of type vector."""
    return (HVM_PARAM_CALLBACK_TYPE_VECTOR << HVM_CALLBACK_VIA_TYPE_SHIFT) | x


def xen_set_callback_via(kernel: PvopsKernel, via: int) -> int:
    """xen_set_callback_via: HVMOP_set_param HVM_PARAM_CALLBACK_IRQ = via on DOMID_SELF; 0 or -errno."""
    a = xen_hvm_param(domid=DOMID_SELF, index=HVM_PARAM_CALLBACK_IRQ, value=via)
    ret = kernel.hv.hvm_op(kernel.domid, HVMOP_set_param, a)
    _rec(kernel, "xen_set_callback_via", f"HVM_PARAM_CALLBACK_IRQ = {via:#x}: {ret}")
    return ret


def xen_setup_callback_vector(kernel: PvopsKernel) -> None:
    """xen_setup_callback_vector: the domain-wide callback via, a vector (HYPERVISOR_CALLBACK_VECTOR)."""
    if kernel.xen_have_vector_callback:
        if xen_set_callback_via(kernel, HVM_CALLBACK_VECTOR(HYPERVISOR_CALLBACK_VECTOR)):
            kernel.printk(KERN_ERR, "Request for Xen HVM callback vector failed")
            kernel.xen_have_vector_callback = False


def xen_init_setup_upcall_vector(kernel: PvopsKernel) -> None:
    """xen_init_setup_upcall_vector: a per-vCPU vector if Xen's CPUID offers it, else the global one."""
    if not kernel.xen_have_vector_callback:
        return
    eax, _, _ = kernel.hv.cpuid_hypervisor_leaf4(kernel.domid, 0)  # cpuid_eax(xen_cpuid_base() + 4)
    features = kernel.hv.xen_version(kernel.domid, XENVER_get_features)
    assert isinstance(features, int)
    if eax & XEN_HVM_CPUID_UPCALL_VECTOR and not xen_set_upcall_vector(kernel, 0):
        kernel.xen_percpu_upcall = True
    elif features >> XENFEAT_hvm_callback_vector & 1:
        xen_setup_callback_vector(kernel)
    else:
        kernel.xen_have_vector_callback = False
    _rec(kernel, "xen_init_setup_upcall_vector",
         "per-vCPU upcall vector" if kernel.xen_percpu_upcall else
         "global callback vector" if kernel.xen_have_vector_callback else "no vector callback")


def xen_set_upcall_vector(kernel: PvopsKernel, cpu: int) -> int:
    """xen_set_upcall_vector: HVMOP_set_evtchn_upcall_vector for *cpu*; cpu 0 also sets CALLBACK_IRQ to 1
    ("trick toolstack to think we are enlightened"). 0 or -errno."""
    op = xen_hvm_evtchn_upcall_vector(vcpu=cpu, vector=HYPERVISOR_CALLBACK_VECTOR)
    rc = kernel.hv.hvm_op(kernel.domid, HVMOP_set_evtchn_upcall_vector, op)
    if rc:
        return rc
    if not cpu:
        rc = xen_set_callback_via(kernel, 1)
    return rc


def xen_alloc_callback_vector(kernel: PvopsKernel) -> None:
    """xen_alloc_callback_vector: pr_info that the vector is on; its gate runs the upcall (d.upcall)."""
    if not kernel.xen_have_vector_callback:
        return
    line = "Xen HVM callback vector for event delivery is enabled"
    kernel.printk(KERN_INFO, line)
    _rec(kernel, "xen_alloc_callback_vector", f"alloc_intr_gate({HYPERVISOR_CALLBACK_VECTOR:#x})", ())

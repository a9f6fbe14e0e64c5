"""Modern Linux (6.1) event channels bound to IRQs (drivers/xen/events/events_base.c + events_2l.c).

Theory of operation
-------------------
A modern kernel has no fixed DYNIRQ window: every event channel gets an IRQ descriptor
from the generic allocator (``xen_allocate_irqs_dynamic`` -> ``irq_alloc_descs_from(0)``),
which hands out the lowest free number at or above the first non-legacy IRQ. On x86
that bound is ``gsi_top`` once the IO-APICs are known (``arch_dynirq_lower_bound``): a
PV dom0 sees the host's IO-APIC pins (GSIs 0..23 on a one-IO-APIC PC), so its first
event-channel IRQ is 24; a PV domU has no IO-APIC and no legacy PIC, so it starts at 0.
Legacy PIRQs in dom0 keep their GSI numbers (``xen_allocate_irq_gsi``).

Per IRQ a ``struct irq_info`` holds the binding type (IRQT_UNBOUND 0, PIRQ 1, VIRQ 2,
IPI 3, EVTCHN 4), a refcount, the port, the vcpu and the VIRQ/IPI/PIRQ number.
``evtchn_to_irq`` is two-level: rows of one page (1024 ints) allocated on first use and
filled with -1. The chips: "xen-dyn" (edge, ordinary ports and global VIRQs),
"xen-percpu" (timer VIRQ and IPIs), "xen-pirq" (physical IRQs, named
"ioapic-edge"/"ioapic-level"), "xen-dyn-lateeoi" (ports whose EOI the driver or user
space signals late: /dev/xen/evtchn, hvc, blkback/netback).

The kernel on the captured machine used the FIFO ABI (Xen 4.17 offers it); that is why
``xen_smp_intr_init`` bound no "debug%d" VIRQ. ``ModernIrq.fifo_events`` keeps that
choice (default True) for what the kernel binds; delivery in the model always goes
through the hypervisor's 2-level bits (events_2l.c), which the upcall scans.

Trace tables: ``<kernel>/evtchn_to_irq`` (port -> IRQ, rows recorded when allocated),
``/irq_info`` (IRQ -> (type, port, cpu, refcnt, index)), ``/virq_to_irq``, ``/ipi_to_irq``,
``/irq_action``, ``/kstat_irqs``; mask and pending bits are rows on Xen's
``xen/d<N>/evtchn_mask`` and ``/evtchn_pending`` (the shared_info page), in this kernel's steps.
"""

from __future__ import annotations

from typing import Any

from xenlab.abi.errno import EINVAL, ENOENT
from xenlab.abi.event_channel import NR_VIRQS
from xenlab.linux import irq as irqcore
from xenlab.linux.events_tables import (  # noqa: F401  (part of this module's API)
    EVTCHN_PER_ROW,
    IOAPIC_PINS,
    IRQT_EVTCHN,
    IRQT_IPI,
    IRQT_NAMES,
    IRQT_PIRQ,
    IRQT_UNBOUND,
    IRQT_VIRQ,
    NR_IRQS_LEGACY,
    SRC,
    SRC_2L,
    XEN_CALL_FUNCTION_SINGLE_VECTOR,
    XEN_CALL_FUNCTION_VECTOR,
    XEN_IRQ_WORK_VECTOR,
    XEN_NMI_VECTOR,
    XEN_NR_IPIS,
    XEN_RESCHEDULE_VECTOR,
    XEN_SPIN_UNLOCK_VECTOR,
    IrqInfo,
    ModernIrq,
    _rec,
    _set_info,
    _st,
    _t,
    evtchn_from_irq,
    get_evtchn_to_irq,
    set_evtchn_to_irq,
    xen_allocate_irq_dynamic,
    xen_allocate_irq_gsi,
    xen_free_irq,
)
from xenlab.linux.irq import IRQF_SHARED, IrqCore, Row, SharedBits


def notify_remote_via_evtchn(kernel: Any, port: int) -> int:
    """notify_remote_via_evtchn: EVTCHNOP_send (include/xen/events.h)."""
    rc = kernel.hv.evtchn_send(kernel.domid, port)
    _rec(kernel, "notify_remote_via_evtchn", f"EVTCHNOP_send port {port} -> {rc}")
    return rc


def notify_remote_via_irq(kernel: Any, irq: int) -> None:
    """notify_remote_via_irq: send on the IRQ's port if it has one."""
    info = _st(kernel).info.get(irq)
    if info and info.evtchn:
        notify_remote_via_evtchn(kernel, info.evtchn)




def _set_chip(kernel: Any, irq: int, chip: str, flow: str, name: str) -> None:
    """irq_set_chip_and_handler_name."""
    desc = _st(kernel).core.descs[irq]
    desc.chip, desc.flow, desc.name = kernel.irq.chips[chip], flow, name


# -- init ---------------------------------------------------------------------------------
def xen_init_IRQ(kernel: Any, *, fifo_events: bool = True) -> ModernIrq:
    """xen_init_IRQ: pick the event ABI, mask every port, set the upcall; IRQs below gsi_top stay legacy."""
    from xenlab.linux.evtchn import nr_vcpus

    d = kernel.hv.domains[kernel.domid]
    pv_dom0 = bool(getattr(d, "initdomain", kernel.domid == 0)) and not getattr(d, "hvm", False)
    gsi_top = getattr(kernel.hv, "ioapic_pins", IOAPIC_PINS) if pv_dom0 else 0
    n = nr_vcpus(kernel)
    st = ModernIrq(kernel, n, gsi_top, IrqCore(kernel, n), SharedBits(kernel), fifo_events)
    st.next_irq = gsi_top
    st.virq_to_irq = [[-1] * NR_VIRQS for _ in range(n)]
    st.ipi_to_irq = [[-1] * XEN_NR_IPIS for _ in range(n)]
    st.scan_state = [{} for _ in range(n)]
    kernel.irq = st
    st.chips = _chips(kernel)
    nports = st.shared.bits * st.shared.bits
    masks: list[Row] = []
    for p in range(nports):
        st.shared.set_mask(p, masks)
    d.upcall = lambda vcpu: xen_evtchn_do_upcall(kernel, vcpu)
    _rec(
        kernel,
        "xen_init_IRQ",
        f"{'FIFO' if fifo_events else '2-level'} event ABI chosen (delivery modelled "
        f"2-level); all {nports} ports masked; dynamic IRQs from {gsi_top} "
        + (f"(GSIs 0..{gsi_top - 1} are the IO-APIC's)" if gsi_top else "(no legacy IRQs in a PV domU)"),
        masks,
    )
    return st


# -- binding ------------------------------------------------------------------------------
def bind_evtchn_to_cpu(kernel: Any, port: int, cpu: int) -> None:
    """bind_evtchn_to_cpu: which vcpu's upcall scans the port."""
    st = _st(kernel)
    if cpu:
        st.evtchn_cpu[port] = cpu
    else:
        st.evtchn_cpu.pop(port, None)
    irq = get_evtchn_to_irq(kernel, port)
    if irq != -1 and irq in st.info:
        st.info[irq].cpu = cpu


def bind_evtchn_to_irq_chip(kernel: Any, evtchn: int, chip: str, shared: bool) -> int:
    """bind_evtchn_to_irq_chip: reuse the port's IRQ (refcnt++ only if shared) or allocate one."""
    st = _st(kernel)
    if evtchn <= 0 or evtchn >= st.shared.bits * st.shared.bits:
        return -EINVAL
    irq = get_evtchn_to_irq(kernel, evtchn)
    if irq == -1:
        irq = xen_allocate_irq_dynamic(kernel)
        if irq < 0:
            return irq
        _set_chip(kernel, irq, chip, "edge", "event")
        _set_info(kernel, irq, IrqInfo(IRQT_EVTCHN, -1, evtchn, 0))
        set_evtchn_to_irq(kernel, evtchn, irq)
        bind_evtchn_to_cpu(kernel, evtchn, 0)
    else:
        info = st.info[irq]
        if shared and info.refcnt >= 0:
            before = info.row()
            info.refcnt += 1
            _rec(
                kernel,
                "bind_evtchn_to_irq_chip",
                f"port {evtchn} already IRQ {irq}: shared, refcnt {info.refcnt - 1} -> {info.refcnt}",
                [(_t(kernel, "irq_info"), irq, before, info.row())],
            )
        else:
            _rec(kernel, "bind_evtchn_to_irq_chip", f"port {evtchn} already IRQ {irq} (not shared)")
    return irq


def bind_virq_to_irq(kernel: Any, virq: int, cpu: int, percpu: bool) -> int:
    """bind_virq_to_irq: reuse the per-cpu mapping or allocate + EVTCHNOP_bind_virq."""
    st = _st(kernel)
    irq = st.virq_to_irq[cpu][virq]
    if irq != -1:
        return irq
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
    _set_info(kernel, irq, IrqInfo(IRQT_VIRQ, -1, port, cpu, virq))
    set_evtchn_to_irq(kernel, port, irq)
    st.virq_to_irq[cpu][virq] = irq
    _rec(
        kernel,
        "bind_virq_to_irq",
        f"virq_to_irq[cpu{cpu}][{virq}] = {irq}",
        [(_t(kernel, "virq_to_irq"), f"{cpu}/{virq}", -1, irq)],
    )
    bind_evtchn_to_cpu(kernel, port, cpu)
    return irq


def bind_ipi_to_irq(kernel: Any, ipi: int, cpu: int) -> int:
    """bind_ipi_to_irq: reuse the per-cpu mapping or allocate (xen-percpu, "ipi") + EVTCHNOP_bind_ipi."""
    st = _st(kernel)
    irq = st.ipi_to_irq[cpu][ipi]
    if irq != -1:
        return irq
    irq = xen_allocate_irq_dynamic(kernel)
    if irq < 0:
        return irq
    _set_chip(kernel, irq, "xen-percpu", "percpu", "ipi")
    port = kernel.hv.evtchn_bind_ipi(kernel.domid, cpu)
    _rec(kernel, "bind_ipi_to_irq", f"EVTCHNOP_bind_ipi(vcpu {cpu}) -> {port}")
    if port < 0:  # the kernel BUG()s here; the model gives the IRQ back and returns the error
        xen_free_irq(kernel, irq)
        return port
    _set_info(kernel, irq, IrqInfo(IRQT_IPI, -1, port, cpu, ipi))
    set_evtchn_to_irq(kernel, port, irq)
    st.ipi_to_irq[cpu][ipi] = irq
    _rec(
        kernel,
        "bind_ipi_to_irq",
        f"ipi_to_irq[cpu{cpu}][{ipi}] = {irq}",
        [(_t(kernel, "ipi_to_irq"), f"{cpu}/{ipi}", -1, irq)],
    )
    bind_evtchn_to_cpu(kernel, port, cpu)
    return irq


def xen_bind_pirq_gsi_to_irq(kernel: Any, gsi: int, pirq: int, shareable: bool, name: str) -> int:
    """xen_bind_pirq_gsi_to_irq: IRQ = GSI for legacy pins, chip "xen-pirq" named ioapic-edge/-level."""
    irq = xen_allocate_irq_gsi(kernel, gsi)
    _set_chip(kernel, irq, "xen-pirq", "fasteoi", name)
    _set_info(kernel, irq, IrqInfo(IRQT_PIRQ, -1, 0, 0, pirq, gsi))
    return irq


def unbind_from_irq(kernel: Any, irq: int) -> None:
    """unbind_from_irq: refcnt--; at the end close the port (unless static), clear maps, free the IRQ."""
    st = _st(kernel)
    info = st.info.get(irq)
    if info is None:
        return
    if info.refcnt > 0:
        before = info.row()
        info.refcnt -= 1
        _rec(
            kernel,
            "unbind_from_irq",
            f"IRQ {irq}: refcnt -> {info.refcnt}",
            [(_t(kernel, "irq_info"), irq, before, info.row())],
        )
        if info.refcnt != 0:
            return
    port = info.evtchn
    if port:
        cpu = st.evtchn_cpu.get(port, 0)
        if not info.is_static:
            rc = kernel.hv.evtchn_close(kernel.domid, port)
            _rec(kernel, "xen_evtchn_close", f"EVTCHNOP_close port {port} -> {rc}")
        if info.type == IRQT_VIRQ:
            st.virq_to_irq[cpu][info.index] = -1
            _rec(
                kernel,
                "unbind_from_irq",
                f"virq_to_irq[cpu{cpu}][{info.index}] = -1",
                [(_t(kernel, "virq_to_irq"), f"{cpu}/{info.index}", irq, -1)],
            )
        elif info.type == IRQT_IPI:
            st.ipi_to_irq[cpu][info.index] = -1
            _rec(
                kernel,
                "unbind_from_irq",
                f"ipi_to_irq[cpu{cpu}][{info.index}] = -1",
                [(_t(kernel, "ipi_to_irq"), f"{cpu}/{info.index}", irq, -1)],
            )
        bind_evtchn_to_cpu(kernel, port, 0)
        set_evtchn_to_irq(kernel, port, -1)
    xen_free_irq(kernel, irq)


def _with_handler(kernel: Any, irq: int, handler: Any, irqflags: int, devname: str, dev_id: Any) -> int:
    """request_irq on the bound IRQ; on failure unbind_from_irq, as events_base.c does.

    If the port was already bound (a second, non-shared bind of the same port), that
    unbind drops the existing IRQ and closes the port under its first user: what 6.1
    does (the refcnt of a plain port is -1, "not counted").
    """
    if irq < 0:
        return irq
    rc = irqcore.request_irq(kernel, irq, handler, irqflags, devname, dev_id)
    if rc != 0:
        unbind_from_irq(kernel, irq)
        return rc
    return irq


def bind_evtchn_to_irqhandler(
    kernel: Any, evtchn: int, handler: Any, irqflags: int, devname: str, dev_id: Any
) -> int:
    """bind_evtchn_to_irqhandler: a "xen-dyn" IRQ for a port we hold (xenbus: "xenbus"); IRQ or -errno."""
    return _with_handler(
        kernel,
        bind_evtchn_to_irq_chip(kernel, evtchn, "xen-dyn", bool(irqflags & IRQF_SHARED)),
        handler,
        irqflags,
        devname,
        dev_id,
    )


def bind_evtchn_to_irqhandler_lateeoi(
    kernel: Any, evtchn: int, handler: Any, irqflags: int, devname: str, dev_id: Any
) -> int:
    """bind_evtchn_to_irqhandler_lateeoi: the same on the "xen-dyn-lateeoi" chip (EOI via xen_irq_lateeoi)."""
    irq = bind_evtchn_to_irq_chip(kernel, evtchn, "xen-dyn-lateeoi", bool(irqflags & IRQF_SHARED))
    return _with_handler(kernel, irq, handler, irqflags, devname, dev_id)


def _interdomain(kernel: Any, remote: Any, remote_port: int, chip: str, irqflags: int) -> int:
    remote_dom = getattr(remote, "otherend_id", remote)
    port = kernel.hv.evtchn_bind_interdomain(kernel.domid, remote_dom, remote_port)
    _rec(
        kernel,
        "bind_interdomain_evtchn_to_irq_chip",
        f"EVTCHNOP_bind_interdomain(dom {remote_dom}, port {remote_port}) -> {port}",
    )
    if port < 0:
        return port
    return bind_evtchn_to_irq_chip(kernel, port, chip, bool(irqflags & IRQF_SHARED))


def bind_interdomain_evtchn_to_irqhandler(
    kernel: Any, remote_dom: Any, remote_port: int, handler: Any, irqflags: int, devname: str, dev_id: Any
) -> int:
    """bind_interdomain_evtchn_to_irqhandler: bind_interdomain + a "xen-dyn" IRQ + request_irq."""
    return _with_handler(
        kernel,
        _interdomain(kernel, remote_dom, remote_port, "xen-dyn", irqflags),
        handler,
        irqflags,
        devname,
        dev_id,
    )


def bind_interdomain_evtchn_to_irqhandler_lateeoi(
    kernel: Any, remote_dom: Any, remote_port: int, handler: Any, irqflags: int, devname: str, dev_id: Any
) -> int:
    """bind_interdomain_evtchn_to_irqhandler_lateeoi: the backends' form (blkback, netback)."""
    return _with_handler(
        kernel,
        _interdomain(kernel, remote_dom, remote_port, "xen-dyn-lateeoi", irqflags),
        handler,
        irqflags,
        devname,
        dev_id,
    )


def bind_virq_to_irqhandler(
    kernel: Any, virq: int, cpu: int, handler: Any, irqflags: int, devname: str, dev_id: Any
) -> int:
    """bind_virq_to_irqhandler: per-cpu chip if IRQF_PERCPU, else "xen-dyn"; request_irq."""
    irq = bind_virq_to_irq(kernel, virq, cpu, bool(irqflags & irqcore.IRQF_PERCPU))
    return _with_handler(kernel, irq, handler, irqflags, devname, dev_id)


def bind_ipi_to_irqhandler(
    kernel: Any, ipi: int, cpu: int, handler: Any, irqflags: int, devname: str, dev_id: Any
) -> int:
    """bind_ipi_to_irqhandler: bind_ipi_to_irq + request_irq."""
    return _with_handler(kernel, bind_ipi_to_irq(kernel, ipi, cpu), handler, irqflags, devname, dev_id)


def unbind_from_irqhandler(kernel: Any, irq: int, dev_id: Any) -> None:
    """unbind_from_irqhandler: free_irq + unbind_from_irq."""
    irqcore.free_irq(kernel, irq, dev_id)
    unbind_from_irq(kernel, irq)


def evtchn_make_refcounted(kernel: Any, evtchn: int) -> int:
    """evtchn_make_refcounted: refcnt -1 ("not counted") -> 1, so shared rebinds count (evtchn device)."""
    irq = get_evtchn_to_irq(kernel, evtchn)
    info = _st(kernel).info.get(irq)
    if info is None:
        return -ENOENT
    before = info.row()
    info.refcnt = 1
    _rec(
        kernel,
        "evtchn_make_refcounted",
        f"port {evtchn}: IRQ {irq} refcnt = 1",
        [(_t(kernel, "irq_info"), irq, before, info.row())],
    )
    return 0


def xen_irq_lateeoi(kernel: Any, irq: int, eoi_flags: int = 0) -> None:
    """xen_irq_lateeoi: the late EOI -- clear the EOI_PENDING mask reason and unmask the port."""
    info = _st(kernel).info.get(irq)
    if info is None or not info.evtchn:
        return
    info.eoi_pending = False
    _rec(kernel, "xen_irq_lateeoi", f"IRQ {irq}: late EOI, port {info.evtchn} unmasked")
    unmask_evtchn(kernel, info.evtchn)


# The delivery half lives in events_delivery.py; its names are part of this API.
from xenlab.linux.events_delivery import _chips, mask_evtchn, unmask_evtchn, xen_evtchn_do_upcall  # noqa: E402, F401

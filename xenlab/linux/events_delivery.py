"""Modern event delivery: 2-level mask/unmask, the irq_chips, and the upcall.

From drivers/xen/events/events_2l.c (``evtchn_2l_mask``/``_unmask``, the selector scan)
and the delivery half of events_base.c (the "xen-dyn", "xen-dyn-lateeoi", "xen-percpu"
and "xen-pirq" chips, ``xen_evtchn_do_upcall``). ``xenlab.linux.events`` (binding and
the tables) re-exports the public names. A lateeoi chip's ack masks the port with the
EOI_PENDING reason; it stays masked until ``xen_irq_lateeoi`` (events.py) unmasks it.
"""

from __future__ import annotations

from typing import Any

from xenlab.abi.event_channel import BIND_PIRQ__WILL_SHARE
from xenlab.linux import irq as irqcore
from xenlab.linux.events_tables import (
    IRQT_PIRQ,
    IrqInfo,
    _set_info,
    _st,
    evtchn_from_irq,
    get_evtchn_to_irq,
    set_evtchn_to_irq,
)
from xenlab.linux.irq import IRQF_SHARED, IrqChip

SRC = "drivers/xen/events/events_base.c"
SRC_2L = "drivers/xen/events/events_2l.c"



def _t(kernel: Any, table: str) -> str:
    return f"{kernel.name}/{table}"


def _rec(kernel: Any, fn: str, summary: str, changes: Any = (), source: str = SRC) -> None:
    kernel.record(fn, summary, source, changes=changes)


# -- mask / unmask (events_2l.c) --------------------------------------------------------
def mask_evtchn(kernel: Any, port: int) -> None:
    """evtchn_2l_mask: sync_set_bit(port, evtchn_mask)."""
    rows: list[irqcore.Row] = []
    if not _st(kernel).shared.set_mask(port, rows):
        _rec(kernel, "evtchn_2l_mask", f"port {port} masked", rows, SRC_2L)


def unmask_evtchn(kernel: Any, port: int) -> None:
    """evtchn_2l_unmask: clear the mask; re-raise a pending edge; hypercall if another vcpu's port."""
    st = _st(kernel)
    sb = st.shared
    cpu = st.this_cpu
    if st.evtchn_cpu.get(port, 0) != cpu:
        kernel.hv.evtchn_unmask(kernel.domid, port)
        _rec(
            kernel,
            "evtchn_2l_unmask",
            f"port {port} is vcpu {st.evtchn_cpu.get(port, 0)}'s: EVTCHNOP_unmask",
            source=SRC_2L,
        )
        return
    rows: list[irqcore.Row] = []
    sb.clear_mask(port, rows)
    refire = sb.test_pending(port) and not sb.test_and_set_sel(cpu, port // sb.bits, rows)
    if refire:
        sb.set_upcall_pending(cpu, 1, rows)
    _rec(
        kernel,
        "evtchn_2l_unmask",
        f"port {port} unmasked" + (" and pending: upcall re-raised" if refire else ""),
        rows,
        SRC_2L,
    )
    if refire:
        if not st.in_upcall and not sb.vcpu(cpu).evtchn_upcall_mask:  # events on: the callback comes now
            xen_evtchn_do_upcall(kernel, cpu)


# -- chips --------------------------------------------------------------------------------
def _chips(kernel: Any) -> dict[str, IrqChip]:
    st = _st(kernel)

    def port(irq: int) -> int:
        return evtchn_from_irq(kernel, irq)

    def enable(irq: int) -> None:
        info = st.info.get(irq)
        if port(irq) and not (info and info.eoi_pending):
            unmask_evtchn(kernel, port(irq))

    def disable(irq: int) -> None:
        if port(irq):
            mask_evtchn(kernel, port(irq))

    def ack(irq: int) -> None:  # ack_dynirq: event_handler_exit -> clear_evtchn
        if port(irq):
            irqcore.clear_evtchn_pending(kernel, st.shared, port(irq), "ack_dynirq")

    def lateeoi_ack(irq: int) -> None:  # lateeoi_ack_dynirq: mask for EOI_PENDING, clear
        p = port(irq)
        if p:
            st.info[irq].eoi_pending = True
            irqcore.mask_and_clear_evtchn(kernel, st.shared, p, "lateeoi_ack_dynirq",
                                          "masked until the late EOI, xen_irq_lateeoi", SRC)

    def startup_pirq(irq: int) -> None:
        """startup_pirq: EVTCHNOP_bind_pirq on first use, then unmask (drivers/xen/events/events_base.c)."""
        info = st.info[irq]
        if not info.evtchn:
            flags = (
                BIND_PIRQ__WILL_SHARE
                if len(st.core.descs[irq].actions) and st.core.descs[irq].actions[0].flags & IRQF_SHARED
                else 0
            )
            p = kernel.hv.evtchn_bind_pirq(kernel.domid, info.index, flags)
            _rec(kernel, "startup_pirq", f"EVTCHNOP_bind_pirq(PIRQ {info.index}) -> {p}")
            if p < 0:
                return
            new = IrqInfo(IRQT_PIRQ, info.refcnt, p, 0, info.index, info.gsi)
            _set_info(kernel, irq, new)
            set_evtchn_to_irq(kernel, p, irq)
        enable(irq)

    def shutdown_pirq(irq: int) -> None:
        """shutdown_pirq: mask and close the port, forget the mapping (drivers/xen/events/events_base.c)."""
        info = st.info[irq]
        if info.evtchn:
            mask_evtchn(kernel, info.evtchn)
            kernel.hv.evtchn_close(kernel.domid, info.evtchn)
            set_evtchn_to_irq(kernel, info.evtchn, -1)
            _set_info(kernel, irq, IrqInfo(IRQT_PIRQ, info.refcnt, 0, 0, info.index, info.gsi))

    return {
        "xen-dyn": IrqChip("xen-dyn", startup=enable, shutdown=disable, ack=ack, mask=disable, unmask=enable),
        "xen-dyn-lateeoi": IrqChip(
            "xen-dyn-lateeoi", startup=enable, shutdown=disable, ack=lateeoi_ack, mask=disable, unmask=enable
        ),
        "xen-percpu": IrqChip(
            "xen-percpu", startup=enable, shutdown=disable, ack=ack, mask=disable, unmask=enable
        ),
        "xen-pirq": IrqChip(
            "xen-pirq",
            startup=startup_pirq,
            shutdown=shutdown_pirq,
            ack=ack,
            end=enable,
            mask=disable,
            unmask=enable,
        ),
    }


# -- the upcall ---------------------------------------------------------------------------
def xen_evtchn_do_upcall(kernel: Any, cpu: int = 0) -> int:
    """xen_evtchn_do_upcall: timer VIRQ first, then the 2-level scan; repeat while upcall_pending."""
    st = _st(kernel)
    sb = st.shared
    vcpu = sb.vcpu(cpu)
    if st.in_upcall:
        return 0
    st.in_upcall, old_cpu, st.this_cpu = True, st.this_cpu, cpu
    old_umask = int(vcpu.evtchn_upcall_mask)
    vcpu.evtchn_upcall_mask = 1
    handled = 0

    def mine(p: int) -> bool:
        return st.evtchn_cpu.get(p, 0) == cpu

    def handle(p: int) -> None:
        irq = get_evtchn_to_irq(kernel, p)
        _rec(kernel, "handle_irq_for_port", f"port {p} pending -> generic_handle_irq({irq})", source=SRC)
        if irq != -1:
            irqcore.do_IRQ(kernel, irq, cpu)
        else:
            irqcore.mask_and_clear_evtchn(kernel, sb, p, "handle_irq_for_port", "no IRQ for the port", SRC)

    try:
        while True:
            rows: list[irqcore.Row] = []
            sb.set_upcall_pending(cpu, 0, rows)
            _rec(
                kernel,
                "xen_evtchn_do_upcall",
                f"vcpu {cpu}: upcall_pending cleared, pending_sel {int(vcpu.evtchn_pending_sel):#x}",
                rows,
                source=SRC,
            )
            timer = st.virq_to_irq[cpu][0]
            if timer != -1:
                tp = st.info[timer].evtchn
                if sb.test_pending(tp) and not sb.test_mask(tp):
                    handle(tp)
                    handled += 1
            rows = []
            sel = sb.xchg_pending_sel(cpu, rows)
            if rows:
                _rec(kernel, "evtchn_2l_handle_events", f"vcpu {cpu}: pending_sel {sel:#x} taken (xchg)",
                     rows, SRC_2L)
            handled += irqcore.evtchn_2l_scan(kernel, cpu, st.scan_state[cpu], mine, handle, sel)
            if not vcpu.evtchn_upcall_pending:
                break
    finally:
        vcpu.evtchn_upcall_mask = old_umask
        st.in_upcall, st.this_cpu = False, old_cpu
    return handled

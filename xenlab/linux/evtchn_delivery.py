"""2.6.18 event delivery: mask/unmask, the "Dynamic-irq"/"Phys-irq" chips, evtchn_do_upcall.

The second half of drivers/xen/core/evtchn.c (the first half, tables and binders, is
``xenlab.linux.evtchn``, which re-exports everything here). The guest masks and unmasks
ports by setting bits in its shared_info itself; ``unmask_evtchn`` re-raises an event
that became pending while masked (the lost "edge") and uses the EVTCHNOP_unmask
hypercall only for a port bound to another vcpu. ``evtchn_do_upcall`` is installed as
the domain's ``upcall``: it clears ``evtchn_upcall_pending``, takes the selector word
with xchg and walks the pending & ~mask words, calling ``do_IRQ`` for each port's IRQ.
"""

from __future__ import annotations

from typing import Any

from xenlab.abi.event_channel import BIND_PIRQ__WILL_SHARE
from xenlab.linux import irq as irqcore
from xenlab.linux.evtchn_tables import IRQ_UNBOUND, IRQT_PIRQ, evtchn_from_irq_info, mk_irq_info
from xenlab.linux.irq import IrqChip

SRC = "drivers/xen/core/evtchn.c"



def _state(kernel: Any) -> Any:
    return kernel.irq


def _rec(kernel: Any, fn: str, summary: str, changes: Any = (), printk: str | None = None) -> None:
    kernel.record(fn, summary, SRC, changes=changes, printk=printk)


def _t(kernel: Any, table: str) -> str:
    return f"{kernel.name}/{table}"


# -- mask / unmask / notify ------------------------------------------------------------
def mask_evtchn(kernel: Any, port: int) -> None:
    """mask_evtchn: sync_set_bit(port, shared_info->evtchn_mask) -- the guest does it itself."""
    rows: list[irqcore.Row] = []
    if not _state(kernel).shared.set_mask(port, rows):
        _rec(kernel, "mask_evtchn", f"port {port} masked", rows)


def unmask_evtchn(kernel: Any, port: int) -> None:
    """unmask_evtchn: clear the mask bit; re-raise a missed edge; hypercall if another vcpu's port."""
    st = _state(kernel)
    sb = st.shared
    cpu = st.this_cpu
    if st.cpu_evtchn.get(port, 0) != cpu:
        kernel.hv.evtchn_unmask(kernel.domid, port)
        _rec(
            kernel,
            "unmask_evtchn",
            f"port {port} belongs to vcpu {st.cpu_evtchn.get(port, 0)}: EVTCHNOP_unmask hypercall",
        )
        return
    rows: list[irqcore.Row] = []
    sb.clear_mask(port, rows)
    refire = sb.test_pending(port) and not sb.test_and_set_sel(cpu, port // sb.bits, rows)
    if refire:
        sb.set_upcall_pending(cpu, 1, rows)
    _rec(
        kernel,
        "unmask_evtchn",
        f"port {port} unmasked"
        + (" and still pending: missed edge re-raised (upcall_pending = 1)" if refire else ""),
        rows,
    )
    if refire:
        if not st.in_upcall and not sb.vcpu(cpu).evtchn_upcall_mask:  # events on: the callback comes now
            evtchn_do_upcall(kernel, cpu)


def clear_evtchn(kernel: Any, port: int) -> None:
    """clear_evtchn: sync_clear_bit(port, shared_info->evtchn_pending)."""
    irqcore.clear_evtchn_pending(kernel, _state(kernel).shared, port, "clear_evtchn")


def notify_remote_via_evtchn(kernel: Any, port: int) -> int:
    """notify_remote_via_evtchn: EVTCHNOP_send on the port (include/xen/evtchn.h)."""
    rc = kernel.hv.evtchn_send(kernel.domid, port)
    _rec(kernel, "notify_remote_via_evtchn", f"EVTCHNOP_send port {port} -> {rc}")
    return rc


def notify_remote_via_irq(kernel: Any, irq: int) -> None:
    """notify_remote_via_irq: send on the port behind the IRQ, if it has one."""
    port = evtchn_from_irq_info(_state(kernel).irq_info[irq])
    if port:
        notify_remote_via_evtchn(kernel, port)


def irq_to_evtchn_port(kernel: Any, irq: int) -> int:
    """irq_to_evtchn_port: the port in irq_info[irq]."""
    return evtchn_from_irq_info(_state(kernel).irq_info[irq])


def bind_evtchn_to_cpu(kernel: Any, port: int, cpu: int) -> None:
    """bind_evtchn_to_cpu: remember which vcpu's upcall scans the port (cpu_evtchn[])."""
    st = _state(kernel)
    if cpu:
        st.cpu_evtchn[port] = cpu
    else:
        st.cpu_evtchn.pop(port, None)


# -- the chips --------------------------------------------------------------------------
def _dynirq_chip(kernel: Any) -> IrqChip:
    """dynirq_type "Dynamic-irq": startup/enable unmask, ack masks+clears, end unmasks."""
    st = _state(kernel)

    def port_of(irq: int) -> int:
        return evtchn_from_irq_info(st.irq_info[irq])

    def startup(irq: int) -> None:
        if port_of(irq):
            unmask_evtchn(kernel, port_of(irq))

    def shutdown(irq: int) -> None:
        if port_of(irq):
            mask_evtchn(kernel, port_of(irq))

    def ack(irq: int) -> None:  # ack_dynirq: mask_evtchn + clear_evtchn
        if port_of(irq):
            irqcore.mask_and_clear_evtchn(kernel, st.shared, port_of(irq), "ack_dynirq", "ack", SRC)

    def end(irq: int) -> None:  # end_dynirq: unmask_evtchn unless the IRQ was disabled
        if port_of(irq) and not st.core.descs[irq].disabled:
            port, sb, rows = port_of(irq), st.shared, []
            sb.clear_mask(port, rows)
            if sb.test_pending(port) and not sb.test_and_set_sel(st.this_cpu, port // sb.bits, rows):
                sb.set_upcall_pending(st.this_cpu, 1, rows)
            _rec(kernel, "end_dynirq", f"IRQ {irq}: port {port} unmasked", rows)

    return IrqChip(
        "Dynamic-irq", startup=startup, shutdown=shutdown, ack=ack, end=end, mask=shutdown, unmask=startup
    )


def _pirq_chip(kernel: Any) -> IrqChip:
    """pirq_type "Phys-irq": startup binds the PIRQ to a fresh port (EVTCHNOP_bind_pirq)."""
    st = _state(kernel)

    def startup(irq: int) -> None:
        port = evtchn_from_irq_info(st.irq_info[irq])
        if not port:
            pirq = irq - st.space.PIRQ_BASE
            flags = BIND_PIRQ__WILL_SHARE if st.core.descs[irq].actions else 0
            port = kernel.hv.evtchn_bind_pirq(kernel.domid, pirq, flags)
            if port < 0:
                from xenlab.linux.kernel import KERN_INFO

                msg = f"Failed to obtain physical IRQ {irq}"
                kernel.printk(KERN_INFO, msg)
                _rec(kernel, "startup_pirq", f"EVTCHNOP_bind_pirq {pirq} -> {port}", printk=msg)
                return
            old_i, old_e = st.irq_info[irq], st.evtchn_to_irq[port]
            st.evtchn_to_irq[port] = irq
            st.irq_info[irq] = mk_irq_info(IRQT_PIRQ, irq & 0xFF, port)
            _rec(
                kernel,
                "startup_pirq",
                f"PIRQ {pirq} bound to port {port} (IRQ {irq})",
                [
                    (_t(kernel, "evtchn_to_irq"), port, old_e, irq),
                    (_t(kernel, "irq_info"), irq, old_i, st.irq_info[irq]),
                ],
            )
        unmask_evtchn(kernel, port)

    def shutdown(irq: int) -> None:
        port = evtchn_from_irq_info(st.irq_info[irq])
        if not port:
            return
        mask_evtchn(kernel, port)
        kernel.hv.evtchn_close(kernel.domid, port)
        old_i = st.irq_info[irq]
        st.evtchn_to_irq[port] = -1
        st.irq_info[irq] = IRQ_UNBOUND
        _rec(
            kernel,
            "shutdown_pirq",
            f"IRQ {irq}: port {port} closed",
            [
                (_t(kernel, "evtchn_to_irq"), port, irq, -1),
                (_t(kernel, "irq_info"), irq, old_i, IRQ_UNBOUND),
            ],
        )

    dyn = _dynirq_chip(kernel)
    return IrqChip(
        "Phys-irq",
        startup=startup,
        shutdown=shutdown,
        ack=dyn.ack,
        end=dyn.end,
        mask=lambda irq: None,
        unmask=startup,
    )


# -- the upcall -------------------------------------------------------------------------
def evtchn_do_upcall(kernel: Any, cpu: int = 0) -> int:
    """evtchn_do_upcall: clear upcall_pending, xchg the selector, scan pending&~mask, do_IRQ each port."""
    st = _state(kernel)
    sb = st.shared
    vcpu = sb.vcpu(cpu)
    if st.in_upcall:
        st.upcall_count[cpu] += 1  # "Nested invocations bail immediately."
        return 0
    st.in_upcall, old_cpu, st.this_cpu = True, st.this_cpu, cpu
    old_umask = int(vcpu.evtchn_upcall_mask)
    vcpu.evtchn_upcall_mask = 1
    handled = 0
    try:
        while True:
            rows: list[irqcore.Row] = []
            sb.set_upcall_pending(cpu, 0, rows)
            sel = sb.xchg_pending_sel(cpu, rows)
            _rec(
                kernel, "evtchn_do_upcall", f"vcpu {cpu}: upcall_pending cleared, pending_sel {sel:#x} taken",
                rows,
            )

            def handle(port: int) -> None:
                irq = st.evtchn_to_irq[port]
                if irq != -1:
                    _rec(kernel, "evtchn_do_upcall", f"port {port} pending and unmasked -> do_IRQ({irq})")
                    irqcore.do_IRQ(kernel, irq, cpu)
                else:
                    from xenlab.linux.evtchn_dev import evtchn_device_upcall

                    evtchn_device_upcall(kernel, port)
                    _rec(kernel, "evtchn_do_upcall", f"port {port} has no IRQ: evtchn_device_upcall")

            handled += irqcore.evtchn_2l_scan(
                kernel, cpu, st.scan_state[cpu], lambda p: st.cpu_evtchn.get(p, 0) == cpu, handle, sel
            )
            if not vcpu.evtchn_upcall_pending:
                break
    finally:
        vcpu.evtchn_upcall_mask = old_umask
        st.in_upcall, st.this_cpu = False, old_cpu
    return handled

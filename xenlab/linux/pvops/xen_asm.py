"""arch/x86/xen/xen-asm.S, Linux 6.1: local_irq_disable / _enable on a Xen PV vcpu (the upcall mask)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.linux.pvops.events_base import xen_evtchn_do_upcall

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel


def xen_irq_disable_direct(kernel: PvopsKernel, cpu: int) -> None:
    """xen_irq_disable_direct: set evtchn_upcall_mask (Xen still marks events pending, but no upcall)."""
    kernel.hv.domains[kernel.domid].shared_info.vcpu_info[cpu].evtchn_upcall_mask = 1
    kernel.record("xen_irq_disable", f"vcpu {cpu}: evtchn_upcall_mask set (interrupts off)",
                  "arch/x86/xen/xen-asm.S")


def xen_irq_enable_direct(kernel: PvopsKernel, cpu: int) -> None:
    """xen_irq_enable_direct: clear evtchn_upcall_mask; if an upcall is pending, xen_force_evtchn_callback."""
    vcpu = kernel.hv.domains[kernel.domid].shared_info.vcpu_info[cpu]
    if vcpu.evtchn_upcall_mask:
        vcpu.evtchn_upcall_mask = 0
        kernel.record("xen_irq_enable", f"vcpu {cpu}: evtchn_upcall_mask cleared (interrupts on)",
                      "arch/x86/xen/xen-asm.S")
        if vcpu.evtchn_upcall_pending:  # xen_force_evtchn_callback: Xen delivers it on the way back
            xen_evtchn_do_upcall(kernel, cpu)

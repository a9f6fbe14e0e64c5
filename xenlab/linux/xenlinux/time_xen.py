"""arch/i386/kernel/time-xen.c (built for x86_64 too), XenLinux 2.6.18: the per-cpu timer VIRQ.

``time_init`` leaves ``setup_cpu0_timer_irq`` as ``late_time_init``: cpu0's VIRQ_TIMER
becomes the IRQ "timer0". A secondary vcpu binds its own in ``local_setup_timer``,
called from ``xen_smp_intr_init`` (drivers/xen/core/smpboot.c) after its IPIs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xenlab.abi.event_channel import VIRQ_TIMER
from xenlab.linux.irq import IRQ_HANDLED, SA_INTERRUPT
from xenlab.linux.kernel import KERN_ERR
from xenlab.linux.xenlinux.evtchn import bind_virq_to_irqhandler

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel


def timer_interrupt(irq: int, dev_id: Any) -> int:
    """timer_interrupt: account the ticks Xen reports (nothing to account in the lab)."""
    return IRQ_HANDLED


def _timer_irq(kernel: XenLinuxKernel, cpu: int) -> int:
    """bind_virq_to_irqhandler(VIRQ_TIMER, cpu, timer_interrupt, SA_INTERRUPT, "timer<cpu>")."""
    irq = bind_virq_to_irqhandler(kernel, VIRQ_TIMER, cpu, timer_interrupt, SA_INTERRUPT, f"timer{cpu}", None)
    if irq < 0:
        kernel.printk(KERN_ERR, f"timer failed: {irq}")
    return irq


def setup_cpu0_timer_irq(kernel: XenLinuxKernel) -> int:
    """setup_cpu0_timer_irq (late_time_init): cpu0's VIRQ_TIMER as IRQ "timer0"; the IRQ or -errno."""
    return _timer_irq(kernel, 0)


def local_setup_timer(kernel: XenLinuxKernel, cpu: int) -> int:
    """local_setup_timer: a secondary vcpu's VIRQ_TIMER as "timer<cpu>"; 0 or -errno."""
    irq = _timer_irq(kernel, cpu)
    return irq if irq < 0 else 0

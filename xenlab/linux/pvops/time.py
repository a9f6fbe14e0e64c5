"""arch/x86/xen/time.c, Linux 6.1: each vcpu's timer VIRQ, "timer<cpu>"."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xenlab.abi.event_channel import VIRQ_TIMER
from xenlab.linux.irq import (
    IRQ_HANDLED,
    IRQF_EARLY_RESUME,
    IRQF_FORCE_RESUME,
    IRQF_NOBALANCING,
    IRQF_PERCPU,
    IRQF_TIMER,
)
from xenlab.linux.kernel import KERN_ERR
from xenlab.linux.pvops.events_base import XEN_IRQ_PRIORITY_MAX, bind_virq_to_irqhandler, xen_set_irq_priority

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel


def xen_timer_interrupt(irq: int, dev_id: Any) -> int:
    """xen_timer_interrupt: run the clockevent (nothing to count in the lab)."""
    return IRQ_HANDLED


def xen_setup_timer(kernel: PvopsKernel, cpu: int) -> int:
    """xen_setup_timer: VIRQ_TIMER on *cpu* as the per-cpu IRQ "timer<cpu>", priority 0; the IRQ or -errno."""
    flags = IRQF_PERCPU | IRQF_NOBALANCING | IRQF_TIMER | IRQF_FORCE_RESUME | IRQF_EARLY_RESUME
    irq = bind_virq_to_irqhandler(kernel, VIRQ_TIMER, cpu, xen_timer_interrupt, flags, f"timer{cpu}", None)
    if irq < 0:
        kernel.printk(KERN_ERR, f"xen_setup_timer failed: {irq}")
        return irq
    xen_set_irq_priority(kernel, irq, XEN_IRQ_PRIORITY_MAX)  # (void): 2-level's -ENOSYS is ignored
    return irq

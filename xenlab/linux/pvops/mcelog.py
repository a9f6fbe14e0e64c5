"""drivers/xen/mcelog.c, Linux 6.1: dom0's machine-check log: VIRQ_MCA "mce"."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xenlab.abi.event_channel import VIRQ_MCA
from xenlab.linux.irq import IRQ_HANDLED
from xenlab.linux.kernel import KERN_ERR
from xenlab.linux.pvops.events_base import bind_virq_to_irqhandler

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel


def xen_mce_interrupt(irq: int, dev_id: Any) -> int:
    """xen_mce_interrupt: fetch the machine-check records from Xen (not modelled)."""
    return IRQ_HANDLED


def bind_virq_for_mce(kernel: PvopsKernel) -> int:
    """bind_virq_for_mce: bind VIRQ_MCA to "mce"; 0 or -errno."""
    irq = bind_virq_to_irqhandler(kernel, VIRQ_MCA, 0, xen_mce_interrupt, 0, "mce", None)
    if irq < 0:
        kernel.printk(KERN_ERR, f"bind_virq_for_mce failed: {irq}")
        return irq
    return 0

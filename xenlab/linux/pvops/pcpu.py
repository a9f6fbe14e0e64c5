"""drivers/xen/pcpu.c, Linux 6.1: dom0's physical-cpu driver: VIRQ_PCPU_STATE "xen-pcpu", bus "xen_cpu".

``xen_pcpu_init`` binds the VIRQ and registers the "xen_cpu" subsystem; the lab does the
two at the times its boot records them (the IRQ with the late IRQs, the bus with the
built-in drivers), as ``xen_pcpu_init`` and ``xen_pcpu_subsys_register``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xenlab.abi.event_channel import VIRQ_PCPU_STATE
from xenlab.linux.driver_model import bus_register, bus_type
from xenlab.linux.irq import IRQ_HANDLED
from xenlab.linux.kernel import KERN_ERR
from xenlab.linux.pvops.events_base import bind_virq_to_irqhandler

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel


def xen_pcpu_interrupt(irq: int, dev_id: Any) -> int:
    """xen_pcpu_interrupt: schedule the physical-cpu resync (not modelled)."""
    return IRQ_HANDLED


def xen_pcpu_init(kernel: PvopsKernel) -> int:
    """xen_pcpu_init: bind VIRQ_PCPU_STATE to "xen-pcpu" (initial domain only); 0 or -errno."""
    irq = bind_virq_to_irqhandler(kernel, VIRQ_PCPU_STATE, 0, xen_pcpu_interrupt, 0, "xen-pcpu", None)
    if irq < 0:
        kernel.printk(KERN_ERR, f"xen_pcpu_init failed: {irq}")
        return irq
    return 0


def xen_pcpu_subsys_register(kernel: PvopsKernel) -> int:
    """subsys_system_register(&xen_pcpu_subsys): the bus "xen_cpu" (/sys/bus/xen_cpu)."""
    return bus_register(kernel, bus_type("xen_cpu"))

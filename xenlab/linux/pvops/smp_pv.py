"""arch/x86/xen/smp_pv.c, Linux 6.1: the irq_work IPI and cpu0's IRQs in xen_pv_smp_prepare_cpus."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xenlab.linux.irq import IRQ_HANDLED, IRQF_NOBALANCING, IRQF_PERCPU
from xenlab.linux.kernel import KERN_ERR
from xenlab.linux.pvops.events_base import XEN_IRQ_WORK_VECTOR, bind_ipi_to_irqhandler
from xenlab.linux.pvops.smp import xen_smp_intr_init
from xenlab.linux.pvops.spinlock import xen_init_lock_cpu
from xenlab.linux.pvops.x86_irq import inc_irq_stat

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel


def xen_irq_work_interrupt(kernel: PvopsKernel, irq: int, dev_id: Any) -> int:
    """xen_irq_work_interrupt: run the irq_work queue, count IWI."""
    assert kernel.irq is not None
    inc_irq_stat(kernel, "IWI", kernel.irq.this_cpu)
    return IRQ_HANDLED


def xen_smp_intr_init_pv(kernel: PvopsKernel, cpu: int) -> int:
    """xen_smp_intr_init_pv: the irq_work IPI "irqwork<cpu>"; 0 or -errno."""
    rc = bind_ipi_to_irqhandler(kernel, XEN_IRQ_WORK_VECTOR, cpu,
                                lambda irq, dev_id: xen_irq_work_interrupt(kernel, irq, dev_id),
                                IRQF_PERCPU | IRQF_NOBALANCING, f"irqwork{cpu}", None)
    if rc < 0:
        kernel.printk(KERN_ERR, f"xen_smp_intr_init_pv failed: {rc}")
        return rc
    return 0


def xen_pv_smp_prepare_cpus(kernel: PvopsKernel) -> int:
    """xen_pv_smp_prepare_cpus: cpu0's spinlock kicker, then its IPIs (xen_smp_intr_init, _pv)."""
    for fn in (xen_init_lock_cpu, xen_smp_intr_init, xen_smp_intr_init_pv):
        rc = fn(kernel, 0)
        if rc < 0:
            return rc
    return 0

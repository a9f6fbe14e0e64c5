"""arch/x86/xen/spinlock.c, Linux 6.1: the PV spinlock kicker IPI, "spinlock<cpu>"."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xenlab.linux.irq import IRQ_HANDLED, IRQF_NOBALANCING, IRQF_PERCPU
from xenlab.linux.pvops.events_base import XEN_SPIN_UNLOCK_VECTOR, bind_ipi_to_irqhandler

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel


def dummy_handler(irq: int, dev_id: Any) -> int:
    """dummy_handler: never called (the IRQ is disabled; the kicker only wakes a polling vcpu)."""
    return IRQ_HANDLED


def xen_init_lock_cpu(kernel: PvopsKernel, cpu: int) -> int:
    """xen_init_lock_cpu: bind "spinlock<cpu>" and disable it, if PV spinlocks are on (>1 possible cpu)."""
    if kernel.num_possible_cpus() == 1:
        return 0  # xen_init_spinlocks: "PV spinlocks disabled" with one possible cpu (xen_pvspin off)
    irq = bind_ipi_to_irqhandler(kernel, XEN_SPIN_UNLOCK_VECTOR, cpu, dummy_handler,
                                 IRQF_PERCPU | IRQF_NOBALANCING, f"spinlock{cpu}", None)
    if irq >= 0:
        assert kernel.irq_core is not None
        kernel.irq_core.descs[irq].disabled = True  # disable_irq: "make sure it's never delivered"
    return irq if irq < 0 else 0

"""arch/x86/xen/spinlock.c, Linux 6.1: the PV spinlock kicker IPI, "spinlock<cpu>"."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xenlab.linux.irq import IRQ_HANDLED, IRQF_NOBALANCING, IRQF_PERCPU
from xenlab.linux.pvops.events_base import XEN_SPIN_UNLOCK_VECTOR, bind_ipi_to_irqhandler, disable_dynirq

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel


def dummy_handler(irq: int, dev_id: Any) -> int:
    """dummy_handler: never called (the IRQ is disabled; the kicker only wakes a polling vcpu)."""
    return IRQ_HANDLED


def disable_irq(kernel: PvopsKernel, irq: int) -> None:
    """disable_irq (kernel/irq/manage.c): depth+1, then the chip's irq_disable masks the port."""
    assert kernel.irq_core is not None
    desc = kernel.irq_core.descs[irq]
    desc.depth += 1
    if not desc.disabled:
        desc.disabled = True
        disable_dynirq(kernel, irq)  # xen_percpu_chip.irq_disable: masked, [p/1] in 'xl debug-keys e'


def xen_init_lock_cpu(kernel: PvopsKernel, cpu: int) -> int:
    """xen_init_lock_cpu: bind "spinlock<cpu>" and disable it, if PV spinlocks are on (>1 possible cpu)."""
    if kernel.num_possible_cpus() == 1:
        return 0  # xen_init_spinlocks: "PV spinlocks disabled" with one possible cpu (xen_pvspin off)
    irq = bind_ipi_to_irqhandler(kernel, XEN_SPIN_UNLOCK_VECTOR, cpu, dummy_handler,
                                 IRQF_PERCPU | IRQF_NOBALANCING, f"spinlock{cpu}", None)
    if irq >= 0:
        disable_irq(kernel, irq)  # "make sure it's never delivered"
    return irq if irq < 0 else 0

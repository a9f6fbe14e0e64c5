"""drivers/xen/core/smpboot.c, XenLinux 2.6.18: each vcpu's IPIs (and a secondary vcpu's timer).

``xen_smp_intr_init`` binds the two IPIs of a vcpu, "resched<cpu>" (RESCHEDULE_VECTOR)
then "callfunc<cpu>" (CALL_FUNCTION_VECTOR), and for a secondary vcpu then its timer
(``local_setup_timer``). ``smp_prepare_cpus`` runs it for cpu0 (whose timer
``setup_cpu0_timer_irq`` bound before), ``__cpu_up`` for each other vcpu as it comes up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xenlab.linux.irq import IRQ_HANDLED, SA_INTERRUPT
from xenlab.linux.kernel import KERN_ERR
from xenlab.linux.xenlinux.evtchn import CALL_FUNCTION_VECTOR, RESCHEDULE_VECTOR, bind_ipi_to_irqhandler
from xenlab.linux.xenlinux.time_xen import local_setup_timer

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel


def smp_reschedule_interrupt(irq: int, dev_id: Any) -> int:
    """smp_reschedule_interrupt (arch/x86_64/kernel/smp-xen.c): nothing to do but return."""
    return IRQ_HANDLED


def smp_call_function_interrupt(irq: int, dev_id: Any) -> int:
    """smp_call_function_interrupt (smp-xen.c): run the queued function (none in the lab)."""
    return IRQ_HANDLED


def xen_smp_intr_init(kernel: XenLinuxKernel, cpu: int) -> int:
    """xen_smp_intr_init: "resched<cpu>", "callfunc<cpu>", and a secondary vcpu's timer; 0 or -errno."""
    for ipi, name, handler in ((RESCHEDULE_VECTOR, "resched", smp_reschedule_interrupt),
                               (CALL_FUNCTION_VECTOR, "callfunc", smp_call_function_interrupt)):
        rc = bind_ipi_to_irqhandler(kernel, ipi, cpu, handler, SA_INTERRUPT, f"{name}{cpu}", None)
        if rc < 0:
            kernel.printk(KERN_ERR, f"xen_smp_intr_init failed: {rc}")
            return rc
    if cpu != 0:
        return local_setup_timer(kernel, cpu)
    return 0

"""arch/x86/xen/smp.c, Linux 6.1: the per-cpu IPIs (and the debug VIRQ with 2-level events)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xenlab.abi.event_channel import VIRQ_DEBUG
from xenlab.linux.irq import IRQ_HANDLED, IRQF_NOBALANCING, IRQF_PERCPU, Handler
from xenlab.linux.kernel import KERN_ERR
from xenlab.linux.pvops.events_base import (
    XEN_CALL_FUNCTION_SINGLE_VECTOR,
    XEN_CALL_FUNCTION_VECTOR,
    XEN_RESCHEDULE_VECTOR,
    bind_ipi_to_irqhandler,
    bind_virq_to_irqhandler,
)
from xenlab.linux.pvops.x86_irq import inc_irq_stat

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel


def xen_reschedule_interrupt(kernel: PvopsKernel, irq: int, dev_id: Any) -> int:
    """xen_reschedule_interrupt: count RES, scheduler_ipi."""
    assert kernel.irq is not None
    inc_irq_stat(kernel, "RES", kernel.irq.this_cpu)
    return IRQ_HANDLED


def xen_call_function_interrupt(kernel: PvopsKernel, irq: int, dev_id: Any) -> int:
    """xen_call_function_interrupt: run the queued functions, count CAL."""
    assert kernel.irq is not None
    inc_irq_stat(kernel, "CAL", kernel.irq.this_cpu)
    return IRQ_HANDLED


def xen_call_function_single_interrupt(kernel: PvopsKernel, irq: int, dev_id: Any) -> int:
    """xen_call_function_single_interrupt: run the queued function, count CAL."""
    assert kernel.irq is not None
    inc_irq_stat(kernel, "CAL", kernel.irq.this_cpu)
    return IRQ_HANDLED


def xen_debug_interrupt(irq: int, dev_id: Any) -> int:
    """xen_debug_interrupt (events_2l.c): dump the event-channel state (not modelled)."""
    return IRQ_HANDLED


def _handler(kernel: PvopsKernel, fn: Any) -> Handler:
    return lambda irq, dev_id: fn(kernel, irq, dev_id)


def xen_smp_intr_init(kernel: PvopsKernel, cpu: int) -> int:
    """xen_smp_intr_init: resched, callfunc, [debug with 2-level events], callfuncsingle (of *cpu*)."""
    assert kernel.irq is not None
    flags = IRQF_PERCPU | IRQF_NOBALANCING
    rc = bind_ipi_to_irqhandler(kernel, XEN_RESCHEDULE_VECTOR, cpu,
                                _handler(kernel, xen_reschedule_interrupt), flags, f"resched{cpu}", None)
    if rc >= 0:
        rc = bind_ipi_to_irqhandler(kernel, XEN_CALL_FUNCTION_VECTOR, cpu,
                                    _handler(kernel, xen_call_function_interrupt), flags, f"callfunc{cpu}",
                                    None)
    if rc >= 0 and not kernel.irq.fifo_events:
        rc = bind_virq_to_irqhandler(kernel, VIRQ_DEBUG, cpu, xen_debug_interrupt, flags, f"debug{cpu}", None)
    if rc >= 0:
        rc = bind_ipi_to_irqhandler(kernel, XEN_CALL_FUNCTION_SINGLE_VECTOR, cpu,
                                    _handler(kernel, xen_call_function_single_interrupt), flags,
                                    f"callfuncsingle{cpu}", None)
    if rc < 0:
        kernel.printk(KERN_ERR, f"xen_smp_intr_init failed: {rc}")
        return rc
    return 0

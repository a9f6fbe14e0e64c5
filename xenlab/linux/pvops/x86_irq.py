"""arch/x86/kernel/irq.c, Linux 6.1: the per-cpu irq_stat counters and arch_show_interrupts.

``arch_show_interrupts`` prints the x86 summary lines NMI..PIW after the IRQ rows of
/proc/interrupts. In a PV guest their counts are zero except what the model counts: RES,
CAL and IWI from the IPI handlers (``inc_irq_stat``), MCP from each cpu's boot-time
machine-check poll, ERR for IRQs with no descriptor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xenlab.linux.irq import IrqCore
    from xenlab.linux.pvops.kernel import PvopsKernel

ARCH_LINES = (
    ("NMI", "Non-maskable interrupts"),
    ("LOC", "Local timer interrupts"),
    ("SPU", "Spurious interrupts"),
    ("PMI", "Performance monitoring interrupts"),
    ("IWI", "IRQ work interrupts"),
    ("RTR", "APIC ICR read retries"),
    ("RES", "Rescheduling interrupts"),
    ("CAL", "Function call interrupts"),
    ("TLB", "TLB shootdowns"),
    ("TRM", "Thermal event interrupts"),
    ("THR", "Threshold APIC interrupts"),
    ("DFR", "Deferred Error APIC interrupts"),
    ("MCE", "Machine check exceptions"),
    ("MCP", "Machine check polls"),
    ("ERR", ""),
    ("MIS", ""),
    ("PIN", "Posted-interrupt notification event"),
    ("NPI", "Nested posted-interrupt event"),
    ("PIW", "Posted-interrupt wakeup event"),
)


def inc_irq_stat(kernel: PvopsKernel, name: str, cpu: int) -> None:
    """inc_irq_stat (asm/hardirq.h): count one event of kind *name* ("RES", "CAL", ...) on *cpu*."""
    assert kernel.irq_core is not None
    stats = kernel.irq_core.irq_stat.setdefault(name, [0] * kernel.irq_core.nr_cpus)
    stats[cpu] += 1


def arch_show_interrupts(core: IrqCore, prec: int) -> list[str]:
    """arch_show_interrupts: the NMI..PIW lines, ERR and MIS with one count only."""
    out = []
    for key, what in ARCH_LINES:
        if key in ("ERR", "MIS"):
            val = core.irq_err_count if key == "ERR" else 0
            out.append(f"{key:>{prec}}: {val:10d}")
            continue
        counts = core.irq_stat.get(key, [0] * core.nr_cpus)
        out.append(f"{key:>{prec}}: " + "".join(f"{n:10d} " for n in counts) + f"  {what}")
    return out

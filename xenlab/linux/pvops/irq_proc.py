"""kernel/irq/proc.c, Linux 6.1: show_interrupts, the text of /proc/interrupts.

A header of ``prec + 8`` spaces and ``CPU%-8d`` per online cpu; per IRQ that has a handler
or a non-zero count: ``%*d: `` (prec = 3, or more once nr_irqs reaches 1000), ``%10u `` per
cpu, `` %8s`` chip name, the hwirq column (blank: Xen chips have no irq domain),
``-%-8s`` the flow name (desc->name), then ``  name`` and ``, name`` for shared handlers;
then the arch lines (arch/x86/kernel/irq.c, ``x86_irq.arch_show_interrupts``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.linux.pvops.x86_irq import arch_show_interrupts

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel


def _prec(nr_irqs: int) -> int:
    prec, j = 3, 1000
    while prec < 10 and j <= nr_irqs:
        prec += 1
        j *= 10
    return prec


def show_interrupts(kernel: PvopsKernel) -> str:
    """show_interrupts: the text of /proc/interrupts."""
    st = kernel.irq
    if st is None:
        raise RuntimeError(
            f"{kernel.name} has no IRQ layer yet: boot it (xen_init_IRQ) before reading /proc/interrupts")
    core = st.core
    prec = _prec(st.nr_irqs)
    out = [" " * (prec + 8) + "".join(f"CPU{c:<8d}" for c in range(st.nr_cpus))]
    for irq in sorted(core.descs):
        desc = core.descs[irq]
        if not desc.actions and not desc.count:
            continue
        line = f"{irq:>{prec}}: " + "".join(f"{n:10d} " for n in desc.kstat)
        line += f" {desc.chip.name if desc.chip else 'None':>8}"
        line += " " + " " * prec
        if desc.name:
            line += f"-{desc.name:<8}"
        if desc.actions:
            line += "  " + ", ".join(a.name for a in desc.actions)
        out.append(line)
    out += arch_show_interrupts(core, prec)
    return "\n".join(out) + "\n"


def register_proc_interrupts(kernel: PvopsKernel) -> None:
    """proc_create("interrupts", 0444, ...) (fs/proc/interrupts.c): make /proc/interrupts readable."""
    kernel.proc_create("interrupts", 0o444, lambda: show_interrupts(kernel))

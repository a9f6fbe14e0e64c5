"""/proc/interrupts of a simulated kernel, in the exact format of the kernel that prints it.

Modern (kernel/irq/proc.c ``show_interrupts`` + arch/x86/kernel/irq.c
``arch_show_interrupts``, Linux 6.1): a header of ``prec + 8`` spaces and ``CPU%-8d`` per
online cpu; per IRQ that has a handler or a non-zero count: ``%*d: `` (prec = 3, or more
once nr_irqs reaches 1000), ``%10u `` per cpu, `` %8s`` chip name, the hwirq column
(blank: Xen chips have no irq domain), ``-%-8s`` the flow name (desc->name), then
``  name`` and ``, name`` for shared handlers; then the x86 summary lines NMI..PIW, whose
counts in a PV guest are zero except what the model counts (RES/CAL/IWI from the IPI
handlers, MCP from each cpu's boot-time machine-check poll, ERR for IRQs with no
descriptor).

2.6.18 (arch/x86_64/kernel/irq-xen.c): ``%3d: ``, counts, `` %14s`` chip typename,
handler names; then NMI, LOC, ERR and MIS. (Which of LOC/MIS a given 2.6.18 build prints
depends on its config -- X86_LOCAL_APIC, APIC_MISMATCH_DEBUG -- and is not pinned
down by a capture; the x86_64 dom0 form is printed.)
"""

from __future__ import annotations

from typing import Any

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


def _prec(nr_irqs: int) -> int:
    prec, j = 3, 1000
    while prec < 10 and j <= nr_irqs:
        prec += 1
        j *= 10
    return prec


def _show_modern(st: Any) -> str:
    core = st.core
    ncpu = st.nr_cpus
    prec = _prec(st.nr_irqs)
    out = [" " * (prec + 8) + "".join(f"CPU{c:<8d}" for c in range(ncpu))]
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
    for key, what in ARCH_LINES:
        if key in ("ERR", "MIS"):
            val = core.irq_err_count if key == "ERR" else 0
            out.append(f"{key:>{prec}}: {val:10d}")
            continue
        counts = core.irq_stat.get(key, [0] * ncpu)
        out.append(f"{key:>{prec}}: " + "".join(f"{n:10d} " for n in counts) + f"  {what}")
    return "\n".join(out) + "\n"


def _show_2618(st: Any) -> str:
    core = st.core
    ncpu = st.nr_cpus
    out = ["           " + "".join(f"CPU{c:<8d}" for c in range(ncpu))]
    for irq in sorted(core.descs):
        desc = core.descs[irq]
        if not desc.actions:
            continue
        line = f"{irq:3d}: " + "".join(f"{n:10d} " for n in desc.kstat)
        line += f" {desc.chip.name if desc.chip else 'none':>14}"
        line += "  " + ", ".join(a.name for a in desc.actions)
        out.append(line)
    out.append("NMI: " + "".join(f"{0:10d} " for _ in range(ncpu)))
    out.append("LOC: " + "".join(f"{0:10d} " for _ in range(ncpu)))
    out.append(f"ERR: {core.irq_err_count:10d}")
    out.append(f"MIS: {0:10d}")
    return "\n".join(out) + "\n"


def show_interrupts(kernel: Any) -> str:
    """show_interrupts: the text of /proc/interrupts for *kernel* (format of its flavour)."""
    st = getattr(kernel, "irq", None)
    if st is None:
        raise RuntimeError(
            f"{kernel.name} has no IRQ layer yet: boot it (xen_init_IRQ) before reading /proc/interrupts"
        )
    return _show_2618(st) if kernel.flavour == "2.6.18" else _show_modern(st)


def register_proc_interrupts(kernel: Any) -> None:
    """proc_create("interrupts", 0444, ...): make /proc/interrupts readable in the kernel."""
    kernel.proc_create("interrupts", 0o444, lambda: show_interrupts(kernel))

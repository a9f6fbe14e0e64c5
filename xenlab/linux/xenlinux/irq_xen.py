"""arch/x86_64/kernel/irq-xen.c, XenLinux 2.6.18: /proc/interrupts.

``show_interrupts``: a header of eleven spaces and ``CPU%-8d`` per online cpu; per IRQ
that has a handler: ``%3d: ``, ``%10u `` per cpu, `` %14s`` the chip's typename
("Dynamic-irq", "Phys-irq") and the handler names, ``, `` between shared ones; then NMI,
LOC, ERR and MIS. (Which of LOC/MIS a given 2.6.18 build prints depends on its config --
X86_LOCAL_APIC, APIC_MISMATCH_DEBUG -- and is not pinned down by a capture; the x86_64
dom0 form is printed.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.linux.xenlinux.evtchn import evtchn_state

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel


def show_interrupts(kernel: XenLinuxKernel) -> str:
    """show_interrupts: the text of /proc/interrupts."""
    st = evtchn_state(kernel)
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

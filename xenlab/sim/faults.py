"""Fault injection: the names a learner can pass to `--fault`, and where each one bites.

Kernel faults are names the guest kernel checks with ``kernel.fault(name)`` at the
point of failure (the driver model, xenbus probe, the IRQ layer define and check
them; each kernel class lists its own in its ``FAULTS``). The machine adds a
kernel fault to the kernel of the domain it targets before that kernel boots.
Machine faults are done by the machine itself (e.g. the toolstack leaving stale bytes
in a guest's store page, so that guest's ``xb_init_comms`` finds a non-quiescent ring).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    """One injectable fault: its name, which kernel it hits ('dom0'/'domU'/'machine'), what it does."""

    name: str
    target: str
    what: str


#: Faults the machine itself injects (not a kernel switch).
MACHINE_FAULTS: tuple[Fault, ...] = (
    Fault("ring-not-quiescent", "domU",
          "the toolstack leaves a stale request and stale response bytes in the guest's store page: "
          "xenstored answers the request when the domain is introduced, and xb_init_comms reports "
          "the non-quiescent response ring and skips it all"),
    Fault("xenstored-stopped", "domU",
          "with ring-not-quiescent: a debugger stops xenstored (SIGSTOP) after the toolstack's last "
          "request, the stale bytes land after that, and it is continued (SIGCONT) when the guest's "
          "console shows xb_init_comms' quiescence lines: the request ring is still unread then, so the "
          "guest only complains about it, and xenstored answers the stale request afterwards"),
    Fault("exhaust-irqs", "dom0",
          "every dynamic IRQ is taken before xenbus binds its store port: 2.6.18's find_unbound_irq "
          "finds none (-ENOSPC), a modern kernel's irq_alloc_descs fails (-ENOMEM)"),
)

def kernel_faults() -> tuple[tuple[str, str], ...]:
    """(name, what it does) of each kernel fault: every kernel class's FAULTS, first mention first."""
    from xenlab.linux.kernels import KERNELS

    out: dict[str, str] = {}
    for cls in KERNELS.values():
        for name, what in cls.FAULTS:
            out.setdefault(name, what)
    return tuple(out.items())


def kernel_fault_names() -> tuple[str, ...]:
    """The kernel fault names, in the order kernel_faults() lists them."""
    return tuple(name for name, _ in kernel_faults())


def all_faults() -> dict[str, Fault]:
    """Every fault name -> Fault, kernel faults first (default target: dom0)."""
    out = {name: Fault(name, "dom0", what) for name, what in kernel_faults()}
    for f in MACHINE_FAULTS:
        out[f.name] = f
    return out


def check_fault(name: str) -> Fault:
    """The Fault called *name* ("xs_init", or "domU:xs_init" for the guest's kernel), or ValueError."""
    faults = all_faults()
    target, _, base = name.rpartition(":")
    if base in faults and target in ("", "dom0", "domU"):
        f = faults[base]
        return Fault(f.name, target or f.target, f.what)
    raise ValueError(f"unknown fault {name!r}; valid faults: {', '.join(sorted(faults))} "
                     "(prefix domU: for the guest's kernel)")

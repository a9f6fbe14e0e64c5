"""XenLinux 2.6.18 IRQ space and the state of drivers/xen/core/evtchn.c's arrays.

The fixed IRQ windows of include/asm-*/mach-xen/irq_vectors.h per kernel variant, the
``irq_info`` packing (``mk_irq_info``: type<<24 | index<<16 | port) and ``Xen2618Irq``,
the per-kernel state (``kernel.irq``): evtchn_to_irq, irq_info, irq_bindcount, the
per-cpu virq/ipi maps and the irq_desc table. ``xenlab.linux.evtchn`` (the binders)
re-exports everything here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xenlab.linux.irq import IrqCore, SharedBits

SRC = "drivers/xen/core/evtchn.c"

# Binding types (evtchn.c enum). RH5 -8.el5 has IRQT_EVTCHN = 4 and no CALLER/LOCAL split.
IRQT_UNBOUND, IRQT_PIRQ, IRQT_VIRQ, IRQT_IPI, IRQT_LOCAL_PORT, IRQT_CALLER_PORT = range(6)
IRQT_EVTCHN = 4
IRQT_NAMES_L18 = ("IRQT_UNBOUND", "IRQT_PIRQ", "IRQT_VIRQ", "IRQT_IPI", "IRQT_LOCAL_PORT", "IRQT_CALLER_PORT")
IRQT_NAMES_RH5_8 = ("IRQT_UNBOUND", "IRQT_PIRQ", "IRQT_VIRQ", "IRQT_IPI", "IRQT_EVTCHN")

# IPIs of 2.6.18 x86 (include/asm-*/mach-xen/irq_vectors.h)
RESCHEDULE_VECTOR, CALL_FUNCTION_VECTOR = 0, 1
NR_IPIS = 2

VARIANTS = ("L18", "RH5-274", "RH5-8.el5")


@dataclass(frozen=True)
class IrqSpace:
    """The fixed IRQ windows of include/asm-*/mach-xen/irq_vectors.h for one kernel build."""

    PIRQ_BASE: int
    NR_PIRQS: int
    DYNIRQ_BASE: int
    NR_DYNIRQS: int

    @property
    def NR_IRQS(self) -> int:
        """NR_IRQS = NR_PIRQS + NR_DYNIRQS (PIRQ_BASE is 0)."""
        return self.PIRQ_BASE + self.NR_PIRQS + self.NR_DYNIRQS


def irq_space(variant: str, arch: str = "x86_64") -> IrqSpace:
    """The IRQ windows of a variant (reference §4.1; RH5 -8.el5 uses the XenLinux 256/256 layout)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown 2.6.18 variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    if arch not in ("x86_64", "i386"):
        raise ValueError(f"unknown arch {arch!r}; choose x86_64 or i386")
    if variant == "RH5-274":
        return IrqSpace(0, 256, 256, 3840 if arch == "x86_64" else 1280)
    return IrqSpace(0, 256, 256, 256)


def mk_irq_info(type_: int, index: int, evtchn: int) -> int:
    """mk_irq_info: pack type<<24 | index<<16 | evtchn into the u32 kept in irq_info[]."""
    return (type_ << 24) | (index << 16) | evtchn


IRQ_UNBOUND = mk_irq_info(IRQT_UNBOUND, 0, 0)


def type_from_irq_info(info: int) -> int:
    """type_from_irq: bits 31..24 of irq_info."""
    return (info >> 24) & 0xFF


def index_from_irq_info(info: int) -> int:
    """index_from_irq: bits 23..16 (the VIRQ or IPI number)."""
    return (info >> 16) & 0xFF


def evtchn_from_irq_info(info: int) -> int:
    """evtchn_from_irq: bits 15..0 (the port; 0 = none)."""
    return info & 0xFFFF


@dataclass
class Xen2618Irq:
    """The IRQ state of a 2.6.18 kernel: the evtchn.c arrays plus the irq_desc table (``kernel.irq``)."""

    kernel: Any
    variant: str
    arch: str
    space: IrqSpace
    nr_cpus: int
    NR_EVENT_CHANNELS: int
    core: IrqCore
    shared: SharedBits
    evtchn_to_irq: list[int] = field(default_factory=list)
    irq_info: list[int] = field(default_factory=list)
    irq_bindcount: list[int] = field(default_factory=list)
    virq_to_irq: list[list[int]] = field(default_factory=list)
    ipi_to_irq: list[list[int]] = field(default_factory=list)
    cpu_evtchn: dict[int, int] = field(default_factory=dict)
    warned: bool = False
    this_cpu: int = 0
    in_upcall: bool = False
    upcall_count: list[int] = field(default_factory=list)
    scan_state: list[dict[str, int]] = field(default_factory=list)
    last_scan: int = 0  # IRQs find_unbound_irq looked at on its last call
    device_ports: dict[int, Any] = field(default_factory=dict)  # /dev/xen/evtchn ports (no IRQ)

    @property
    def flavour(self) -> str:
        return "2.6.18"

    def __repr__(self) -> str:
        sp = self.space
        bound = sum(1 for i in range(sp.DYNIRQ_BASE, sp.NR_IRQS) if self.irq_bindcount[i])
        return (f"Xen2618Irq({self.kernel.name}, {self.variant}, DYNIRQ {sp.DYNIRQ_BASE}..{sp.NR_IRQS - 1}: "
                f"{bound} bound)")

    @property
    def has_caller_port(self) -> bool:
        """False for RH5 -8.el5, whose binding types have no CALLER_PORT/LOCAL_PORT split."""
        return self.variant != "RH5-8.el5"

    def type_name(self, t: int) -> str:
        """The IRQT_* name of binding type *t* in this variant."""
        names = IRQT_NAMES_RH5_8 if self.variant == "RH5-8.el5" else IRQT_NAMES_L18
        return names[t] if t < len(names) else str(t)

    def describe(self, irq: int) -> str:
        """irq_info[irq] decoded: 'IRQT_CALLER_PORT index 0 port 6'."""
        info = self.irq_info[irq]
        return (
            f"{self.type_name(type_from_irq_info(info))} index {index_from_irq_info(info)} "
            f"port {evtchn_from_irq_info(info)}"
        )


def _domain(kernel: Any) -> Any:
    return kernel.hv.domains[kernel.domid]


def nr_vcpus(kernel: Any) -> int:
    """How many vcpus the kernel's domain has (the hypervisor's domain record)."""
    d = _domain(kernel)
    for attr in ("max_vcpus", "nr_vcpus", "vcpus"):
        v = getattr(d, attr, None)
        if isinstance(v, int):
            return v
        if v is not None:
            return len(v)
    return 1


def _state(kernel: Any) -> Xen2618Irq:
    return kernel.irq


def _rec(kernel: Any, fn: str, summary: str, changes: Any = (), printk: str | None = None) -> None:
    kernel.record(fn, summary, SRC, changes=changes, printk=printk)


def _t(kernel: Any, table: str) -> str:
    return f"{kernel.name}/{table}"

"""One guest kernel: its flavour, its domain, printk/dmesg, /proc entries, fault switches.

Every other module of xenlab.linux hangs its state off a Kernel (``kernel.irq`` for the
IRQ layer, ``kernel.xenbus`` for xenbus, ...), so one simulated domain is one object a
learner can inspect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xenlab.base.sched import Scheduler
from xenlab.base.trace import Trace

if TYPE_CHECKING:  # the hypervisor type is only needed for annotations
    from xenlab.xen.hypervisor import Hypervisor

FLAVOURS = ("2.6.18", "modern")

KERN_EMERG, KERN_ALERT, KERN_CRIT, KERN_ERR = "<0>", "<1>", "<2>", "<3>"
KERN_WARNING, KERN_NOTICE, KERN_INFO, KERN_DEBUG = "<4>", "<5>", "<6>", "<7>"
LEVEL_NAMES = {KERN_EMERG: "emerg", KERN_ALERT: "alert", KERN_CRIT: "crit", KERN_ERR: "err",
               KERN_WARNING: "warn", KERN_NOTICE: "notice", KERN_INFO: "info", KERN_DEBUG: "debug"}


#: What a kernel table holds where nothing was written (the free slot of an array, a zero
#: count, a zeroed ring index). The kernel tells its trace (``Trace.set_initial``), so its
#: rows keep the kernel's own values (``-1 -> 24``) and replay leaves such entries out.
TABLE_INITIAL: dict[str, Any] = {
    "evtchn_to_irq": -1, "virq_to_irq": -1, "ipi_to_irq": -1,  # -1: no IRQ
    "irq_info": 0,  # 2.6.18 mk_irq_info(IRQT_UNBOUND, 0, 0)
    "irq_bindcount": 0, "kstat_irqs": 0, "ring": 0, "xenbus": 0,
}


class KernelPanic(RuntimeError):
    """panic(): the simulated kernel stopped."""


@dataclass
class LogLine:
    """One printk record: virtual time, level and text."""

    time_ns: int
    level: str
    text: str

    def __str__(self) -> str:
        secs, ns = divmod(self.time_ns, 1_000_000_000)
        return f"[{secs:5d}.{ns // 1000:06d}] {self.text}"


@dataclass
class ProcEntry:
    """A /proc file: its mode bits and a function producing its text."""

    mode: int
    read: Any  # Callable[[], str]


@dataclass
class Kernel:
    """A simulated Linux kernel running in domain *domid* of *hv*."""

    hv: Hypervisor
    domid: int
    flavour: str = "modern"
    sched: Scheduler = field(default_factory=Scheduler)
    trace: Trace = field(default_factory=Trace)
    name: str = ""
    faults: set[str] = field(default_factory=set)
    log: list[LogLine] = field(default_factory=list)
    proc: dict[str, ProcEntry] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.flavour not in FLAVOURS:
            raise ValueError(f"unknown kernel flavour {self.flavour!r}; choose one of {', '.join(FLAVOURS)}")
        if not self.name:
            self.name = "dom0" if self.domid == 0 else f"domU{self.domid}"
        for table, value in TABLE_INITIAL.items():
            self.trace.set_initial(f"{self.name}/{table}", value)

    # -- messages ----------------------------------------------------------
    def printk(self, level: str, text: str) -> None:
        """printk: append a message to the kernel log (what dmesg shows)."""
        self.log.append(LogLine(self.sched.now_ns, level, text))

    def panic(self, text: str) -> None:
        """panic: log the message and stop this kernel."""
        self.printk(KERN_EMERG, f"Kernel panic - not syncing: {text}")
        raise KernelPanic(text)

    def dmesg(self) -> str:
        """The kernel log as `dmesg` prints it."""
        return "\n".join(str(line) for line in self.log)

    # -- faults and tracing ------------------------------------------------
    def fault(self, name: str) -> bool:
        """True if fault *name* was injected into this kernel (sim/faults.py lists the names)."""
        return name in self.faults

    def record(self, function: str, summary: str, source: str, changes: Any = (),
               printk: str | None = None) -> None:
        """Record one step of this kernel in the trace."""
        self.trace.record(function, summary, actor=self.name, source=source,
                          changes=changes, printk=printk)

    # -- /proc -------------------------------------------------------------
    def proc_create(self, path: str, mode: int, read: Any) -> None:
        """create_proc_entry / proc_create: make /proc/<path> readable through *read*()."""
        self.proc[path] = ProcEntry(mode, read)

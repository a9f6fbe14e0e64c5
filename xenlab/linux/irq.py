"""The generic IRQ core under a Xen guest's event-channel layer: irq_desc, irqaction, request_irq.

Theory of operation
-------------------
Linux hands every interrupt source a number (the IRQ) and an ``irq_desc``: the chip that
masks/acks it (for a Xen guest the chip talks to event channels: "Dynamic-irq" /
"Phys-irq" in 2.6.18, "xen-dyn" / "xen-percpu" / "xen-pirq" / "xen-dyn-lateeoi" in
modern kernels), the flow handler's name (``desc->name``: "event", "virq", "ipi",
"ioapic-edge"), the list of ``irqaction`` s that ``request_irq`` added, and per-cpu
counts (what ``/proc/interrupts`` prints). ``do_IRQ`` runs the flow: count, ack at the
chip, run every action's handler, end/eoi.

The event-channel layers (XenLinux 2.6.18's drivers/xen/core/evtchn.c in
``xenlinux/evtchn.py``, Linux 6.1's drivers/xen/events/ in ``pvops/events_*.py``) decide
which IRQ a port gets, install the chips and scan the pending bits themselves; this
module is the part both kernels share.

Functions mirror kernel/irq/manage.c and kernel/irq/chip.c (and 2.6.18's
kernel/irq/handle.c ``__do_IRQ``) and take the Kernel as first argument.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xenlab.abi.errno import EBUSY, EINVAL, ENOMEM

if TYPE_CHECKING:
    from xenlab.linux.kernel import Kernel

SRC_MANAGE = "kernel/irq/manage.c"
SRC_CHIP = "kernel/irq/chip.c"
SRC_HANDLE = "kernel/irq/handle.c"

# include/linux/interrupt.h (2.6.18 spells IRQF_SHARED as SA_SHIRQ, same value).
IRQF_SHARED = 0x00000080
IRQF_PROBE_SHARED = 0x00000100
IRQF_TIMER = 0x00000200
IRQF_PERCPU = 0x00000400
IRQF_NOBALANCING = 0x00000800
IRQF_EARLY_RESUME = 0x00020000
IRQF_FORCE_RESUME = 0x00008000
SA_INTERRUPT = 0x20000000  # 2.6.18 IRQF_DISABLED
SA_SHIRQ = IRQF_SHARED

IRQ_NONE = 0
IRQ_HANDLED = 1

Handler = Callable[[int, Any], int]


@dataclass
class IrqChip:
    """struct irq_chip (2.6.18: hw_interrupt_type): the callbacks that talk to the event channel."""

    name: str
    startup: Callable[[int], None] | None = None
    shutdown: Callable[[int], None] | None = None
    ack: Callable[[int], None] | None = None
    end: Callable[[int], None] | None = None  # 2.6.18 .end / modern .irq_eoi
    mask: Callable[[int], None] | None = None
    unmask: Callable[[int], None] | None = None


@dataclass
class IrqAction:
    """struct irqaction: one handler request_irq added to an IRQ."""

    handler: Handler
    flags: int
    name: str
    dev_id: Any


@dataclass
class IrqDesc:
    """struct irq_desc: chip, flow name, action list, per-cpu counts, disable depth."""

    irq: int
    chip: IrqChip | None = None
    name: str = ""  # desc->name, the flow handler name ("event", "virq", "ipi", "ioapic-edge")
    flow: str = "edge"  # "edge" (handle_edge_irq) | "percpu" | "fasteoi" | "do_IRQ" (2.6.18 __do_IRQ)
    actions: list[IrqAction] = field(default_factory=list)
    kstat: list[int] = field(default_factory=list)
    depth: int = 1
    disabled: bool = True
    pending: bool = False  # IRQ_PENDING: fired while disabled

    @property
    def count(self) -> int:
        """Sum of the per-cpu counts (kstat_irqs)."""
        return sum(self.kstat)


class IrqCore:
    """The kernel's irq_desc table (sparse: only IRQs that exist have a descriptor)."""

    def __init__(self, kernel: Kernel, nr_cpus: int) -> None:
        self.kernel = kernel
        self.nr_cpus = nr_cpus
        self.descs: dict[int, IrqDesc] = {}
        self.irq_err_count = 0
        # x86 per-cpu irq_stat counters printed as NMI/LOC/... (arch_show_interrupts)
        self.irq_stat: dict[str, list[int]] = {}

    def alloc_desc(self, irq: int) -> IrqDesc:
        """irq_alloc_desc_at / the static irq_desc[] entry: a fresh descriptor for *irq*."""
        desc = IrqDesc(irq, kstat=[0] * self.nr_cpus)
        self.descs[irq] = desc
        return desc

    def free_desc(self, irq: int) -> None:
        """irq_free_desc: the number becomes free for the allocator."""
        self.descs.pop(irq, None)


def request_irq(
    kernel: Kernel, irq: int, handler: Handler | None, irqflags: int, devname: str, dev_id: Any
) -> int:
    """request_irq: add an irqaction, starting the IRQ up if first; 0 or -errno (kernel/irq/manage.c)."""
    core = kernel.irq_core
    assert core is not None, f"{kernel.name}: no irq_desc table before xen_init_IRQ"
    desc = core.descs.get(irq)
    name = kernel.name
    if desc is None or desc.chip is None or handler is None:
        kernel.record(
            "request_irq", f"IRQ {irq} ({devname}): no such IRQ or no handler -> -EINVAL", SRC_MANAGE
        )
        return -EINVAL
    if kernel.fault("request_irq"):
        kernel.record(
            "request_irq", f"IRQ {irq} ({devname}): kzalloc of the irqaction failed -> -ENOMEM", SRC_MANAGE
        )
        return -ENOMEM
    if desc.actions:
        old = desc.actions[0]
        if not (old.flags & irqflags & IRQF_SHARED):
            msg = kernel.irq_flags_mismatch(irq, irqflags, devname, old.flags, old.name)
            from xenlab.linux.kernel import KERN_ERR

            kernel.printk(KERN_ERR, msg)
            kernel.record(
                "request_irq",
                f"IRQ {irq} ({devname}): already has '{old.name}' and not both IRQF_SHARED -> -EBUSY",
                SRC_MANAGE,
                printk=msg,
            )
            return -EBUSY
    before = ", ".join(a.name for a in desc.actions) or None
    desc.actions.append(IrqAction(handler, irqflags, devname, dev_id))
    after = ", ".join(a.name for a in desc.actions)
    first = len(desc.actions) == 1
    kernel.record(
        "request_irq",
        f"IRQ {irq}: handler '{devname}' added"
        + (" (first: chip startup unmasks the port)" if first else " (shared)"),
        SRC_MANAGE,
        changes=[(f"{name}/irq_action", irq, before, after)],
    )
    if first:
        desc.disabled = False
        desc.depth = 0
        if desc.chip.startup is not None:
            desc.chip.startup(irq)
        elif desc.chip.unmask is not None:
            desc.chip.unmask(irq)
    return 0


def free_irq(kernel: Kernel, irq: int, dev_id: Any) -> int:
    """free_irq: remove the irqaction with *dev_id*; shut the IRQ down if it was the last (manage.c)."""
    core = kernel.irq_core
    assert core is not None, f"{kernel.name}: no irq_desc table before xen_init_IRQ"
    desc = core.descs.get(irq)
    name = kernel.name
    for i, act in enumerate(desc.actions if desc else []):
        if act.dev_id is dev_id:
            before = ", ".join(a.name for a in desc.actions)
            del desc.actions[i]
            after = ", ".join(a.name for a in desc.actions) or None
            kernel.record(
                "free_irq",
                f"IRQ {irq}: handler '{act.name}' removed"
                + ("" if desc.actions else " (last: chip shutdown masks the port)"),
                SRC_MANAGE,
                changes=[(f"{name}/irq_action", irq, before, after)],
            )
            if not desc.actions:
                desc.disabled = True
                desc.depth = 1
                if desc.chip is not None:
                    if desc.chip.shutdown is not None:
                        desc.chip.shutdown(irq)
                    elif desc.chip.mask is not None:
                        desc.chip.mask(irq)
            return 0
    from xenlab.linux.kernel import KERN_ERR

    msg = f"Trying to free already-free IRQ {irq}"
    kernel.printk(KERN_ERR, msg)
    kernel.record("free_irq", f"IRQ {irq}: no handler with that dev_id", SRC_MANAGE, printk=msg)
    return -EINVAL


def handle_irq_event(kernel: Kernel, desc: IrqDesc) -> int:
    """handle_irq_event / handle_IRQ_event: run every action's handler; IRQ_HANDLED if any did."""
    ret = IRQ_NONE
    for act in list(desc.actions):
        r = act.handler(desc.irq, act.dev_id)
        kernel.record(
            "handle_irq_event",
            f"IRQ {desc.irq}: handler '{act.name}' returned "
            f"{'IRQ_HANDLED' if r == IRQ_HANDLED else 'IRQ_NONE'}",
            SRC_HANDLE,
        )
        ret |= r or 0
    return ret


def do_IRQ(kernel: Kernel, irq: int, cpu: int = 0) -> int:
    """do_IRQ / generic_handle_irq: count, ack at the chip, run handlers, end/eoi (kernel/irq/chip.c)."""
    core = kernel.irq_core
    assert core is not None, f"{kernel.name}: no irq_desc table before xen_init_IRQ"
    desc = core.descs.get(irq)
    name = kernel.name
    if desc is None:
        core.irq_err_count += 1
        kernel.record("do_IRQ", f"IRQ {irq}: no descriptor (counted in ERR)", SRC_HANDLE)
        return IRQ_NONE
    chip = desc.chip
    before = desc.kstat[cpu]
    desc.kstat[cpu] += 1
    kernel.record(
        "do_IRQ",
        f"IRQ {irq} on CPU{cpu} ({desc.flow} flow, chip {chip.name if chip else '-'})",
        SRC_CHIP,
        changes=[(f"{name}/kstat_irqs", f"{irq}/cpu{cpu}", before, desc.kstat[cpu])],
    )
    if chip is not None and chip.ack is not None:
        chip.ack(irq)
    if desc.disabled or not desc.actions:
        desc.pending = True  # IRQS_PENDING; the modern flows mask_ack it (2.6.18's ack already masked)
        if desc.flow != "do_IRQ" and chip is not None and chip.mask is not None:
            chip.mask(irq)
        return IRQ_NONE
    ret = handle_irq_event(kernel, desc)
    if chip is not None and chip.end is not None and desc.flow in ("do_IRQ", "percpu", "fasteoi"):
        chip.end(irq)
    return ret

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

The event-channel layers (``evtchn.py`` for 2.6.18, ``events.py`` for modern) decide
which IRQ a port gets and install the chips; this module is the part both share, plus
the guest's view of the 2-level bits in its ``shared_info`` (``SharedBits``) and the
round-robin 2-level scan both upcalls use.

Functions mirror kernel/irq/manage.c and kernel/irq/chip.c (and 2.6.18's
kernel/irq/handle.c ``__do_IRQ``) and take the Kernel as first argument.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xenlab.abi.errno import EBUSY, EINVAL, ENOMEM

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


Row = tuple[str, Any, Any, Any]


class SharedBits:
    """The guest's view of its shared_info: 2-level pending/mask bits, selector, upcall flag.

    Linux touches these bits itself with sync_set_bit & co; here the hypervisor's
    ``shared_info`` object holds them, and this class is the handful of bit operations
    the guest kernel code uses. The bits live in one page that Xen writes too, so the
    trace keeps them in Xen's tables (``xen/d<N>/evtchn_pending``, ``/evtchn_mask``: port
    -> 1; ``xen/d<N>/vcpu<V>``: ``evtchn_upcall_pending``, ``evtchn_pending_sel``; absent =
    0) and every write here appends its change row to *rows*, which the caller records in
    its own step: the guest's write is the guest's step, on the table it changed.
    """

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.sh = kernel.hv.domains[kernel.domid].shared_info
        self.bits = 64 if getattr(kernel.hv, "bits", 64) == 64 else 32
        self.pending_table = f"xen/d{kernel.domid}/evtchn_pending"
        self.mask_table = f"xen/d{kernel.domid}/evtchn_mask"

    def vcpu_table(self, cpu: int) -> str:
        """The trace table of vcpu_info[cpu] (upcall_pending, pending_sel)."""
        return f"xen/d{self.kernel.domid}/vcpu{cpu}"

    @staticmethod
    def _bit(array: Any, table: str, port: int, value: int, rows: list[Row]) -> int:
        old = array[port]
        if old != value:
            array[port] = value
            rows.append((table, port, old or None, value or None))
        return old

    # -- per-port bits (sync_*_bit on evtchn_pending / evtchn_mask) ------------------
    def test_pending(self, port: int) -> bool:
        """sync_test_bit(port, evtchn_pending)."""
        return bool(self.sh.evtchn_pending[port])

    def clear_pending(self, port: int, rows: list[Row]) -> None:
        """sync_clear_bit(port, evtchn_pending) (clear_evtchn)."""
        self._bit(self.sh.evtchn_pending, self.pending_table, port, 0, rows)

    def set_pending(self, port: int, rows: list[Row]) -> None:
        """sync_set_bit(port, evtchn_pending) (resend_irq_on_evtchn)."""
        self._bit(self.sh.evtchn_pending, self.pending_table, port, 1, rows)

    def test_mask(self, port: int) -> bool:
        """sync_test_bit(port, evtchn_mask)."""
        return bool(self.sh.evtchn_mask[port])

    def set_mask(self, port: int, rows: list[Row]) -> bool:
        """sync_test_and_set_bit on the mask: True if it was already set."""
        return bool(self._bit(self.sh.evtchn_mask, self.mask_table, port, 1, rows))

    def clear_mask(self, port: int, rows: list[Row]) -> None:
        """sync_clear_bit(port, evtchn_mask) (no re-raise: see unmask_evtchn)."""
        self._bit(self.sh.evtchn_mask, self.mask_table, port, 0, rows)

    def active_word(self, idx: int) -> int:
        """evtchn_pending[idx] & ~evtchn_mask[idx] as one machine word."""
        return self.sh.evtchn_pending.word(idx) & ~self.sh.evtchn_mask.word(idx) & ((1 << self.bits) - 1)

    # -- per-vcpu ----------------------------------------------------------------------
    def vcpu(self, cpu: int) -> Any:
        """The vcpu_info of *cpu* (upcall_pending, upcall_mask, pending_sel): read it, write via below."""
        return self.sh.vcpu_info[cpu]

    def set_upcall_pending(self, cpu: int, value: int, rows: list[Row]) -> None:
        """vcpu_info->evtchn_upcall_pending = value."""
        v = self.sh.vcpu_info[cpu]
        old = int(v.evtchn_upcall_pending)
        if old != value:
            v.evtchn_upcall_pending = value
            rows.append((self.vcpu_table(cpu), "evtchn_upcall_pending", old or None, value or None))

    def xchg_pending_sel(self, cpu: int, rows: list[Row]) -> int:
        """xchg(&vcpu_info->evtchn_pending_sel, 0)."""
        v = self.sh.vcpu_info[cpu]
        old = int(v.evtchn_pending_sel)
        if old:
            v.evtchn_pending_sel = 0
            rows.append((self.vcpu_table(cpu), "evtchn_pending_sel", old, None))
        return old

    def test_and_set_sel(self, cpu: int, idx: int, rows: list[Row]) -> bool:
        """sync_test_and_set_bit(idx, &vcpu_info->evtchn_pending_sel)."""
        v = self.sh.vcpu_info[cpu]
        old = int(v.evtchn_pending_sel)
        if not old >> idx & 1:
            v.evtchn_pending_sel = old | (1 << idx)
            rows.append((self.vcpu_table(cpu), "evtchn_pending_sel", old or None, old | (1 << idx)))
        return bool(old >> idx & 1)


class IrqCore:
    """The kernel's irq_desc table (sparse: only IRQs that exist have a descriptor)."""

    def __init__(self, kernel: Any, nr_cpus: int) -> None:
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
    kernel: Any, irq: int, handler: Handler | None, irqflags: int, devname: str, dev_id: Any
) -> int:
    """request_irq: add an irqaction, starting the IRQ up if first; 0 or -errno (kernel/irq/manage.c)."""
    core: IrqCore = kernel.irq.core
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
            if kernel.flavour == "2.6.18":
                msg = f"IRQ handler type mismatch for IRQ {irq}"
            else:
                msg = (
                    f"genirq: Flags mismatch irq {irq}. {irqflags:08x} ({devname}) vs. "
                    f"{old.flags:08x} ({old.name})"
                )
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


def free_irq(kernel: Any, irq: int, dev_id: Any) -> int:
    """free_irq: remove the irqaction with *dev_id*; shut the IRQ down if it was the last (manage.c)."""
    core: IrqCore = kernel.irq.core
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


def handle_irq_event(kernel: Any, desc: IrqDesc) -> int:
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


def do_IRQ(kernel: Any, irq: int, cpu: int = 0) -> int:
    """do_IRQ / generic_handle_irq: count, ack at the chip, run handlers, end/eoi (kernel/irq/chip.c)."""
    core: IrqCore = kernel.irq.core
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


def evtchn_2l_scan(
    kernel: Any,
    cpu: int,
    state: dict[str, int],
    port_active: Callable[[int], bool],
    handle_port: Callable[[int], None],
    l1: int,
) -> int:
    """The 2-level round-robin scan shared by L18 evtchn_do_upcall and events_2l.c: selector, then words.

    *l1* is the selector word the caller took with xchg (and recorded); the scan walks
    selector bits and pending&~mask words
    starting after the last port handled (``state`` keeps last l1i/l2i per cpu), calling
    ``handle_port`` for each active port (``port_active`` filters ports bound to other
    cpus). Returns how many ports were handled.
    """
    bits = kernel.irq.shared.bits
    sb: SharedBits = kernel.irq.shared
    l1i = state.setdefault("l1i", bits - 1)
    l2i = state.setdefault("l2i", bits - 1)
    handled = 0
    full = (1 << bits) - 1

    def active(word_idx: int) -> int:
        w = sb.active_word(word_idx)
        if not w:
            return 0
        out = 0
        base = word_idx * bits
        while w:
            low = w & -w
            b = low.bit_length() - 1
            if port_active(base + b):
                out |= low
            w ^= low
        return out

    while l1:
        l1i = (l1i + 1) % bits
        masked_l1 = l1 & ((full << l1i) & full)
        if not masked_l1:
            l1i = bits - 1
            l2i = bits - 1
            continue
        l1i = (masked_l1 & -masked_l1).bit_length() - 1
        while True:
            l2 = active(l1i)
            l2i = (l2i + 1) % bits
            masked_l2 = l2 & ((full << l2i) & full)
            if not masked_l2:
                l2i = bits - 1
                break
            l2i = (masked_l2 & -masked_l2).bit_length() - 1
            handle_port(l1i * bits + l2i)
            handled += 1
            state["l1i"], state["l2i"] = l1i, l2i
            if l2i == bits - 1:
                break
        if not active(l1i):
            l1 &= ~(1 << l1i)
    return handled


def clear_evtchn_pending(kernel: Any, shared: SharedBits, port: int, why: str) -> None:
    """sync_clear_bit(port, shared_info->evtchn_pending), recorded as the change to Xen's bit."""
    rows: list[Row] = []
    shared.clear_pending(port, rows)
    if rows:
        kernel.record("clear_evtchn", f"port {port}: pending bit cleared ({why})",
                      "include/xen/events.h", changes=rows)


def mask_and_clear_evtchn(kernel: Any, shared: SharedBits, port: int, function: str, why: str,
                          source: str) -> None:
    """sync_set_bit on the mask, then sync_clear_bit on pending: one recorded step, *function*'s."""
    rows: list[Row] = []
    shared.set_mask(port, rows)
    shared.clear_pending(port, rows)
    if rows:
        kernel.record(function, f"port {port} masked, pending cleared ({why})", source, changes=rows)

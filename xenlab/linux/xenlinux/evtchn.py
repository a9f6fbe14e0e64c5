"""drivers/xen/core/evtchn.c, XenLinux 2.6.18: event channels bound to IRQs, and the upcall.

Theory of operation
-------------------
The 2.6.18 Xen kernel splits its IRQ space in two fixed windows (reference §4.1):
IRQs ``PIRQ_BASE .. PIRQ_BASE+NR_PIRQS-1`` are physical IRQs (1:1 with Xen PIRQs) and
``DYNIRQ_BASE .. DYNIRQ_BASE+NR_DYNIRQS-1`` are *dynamic* IRQs, handed out to event
channels. Four file-scope arrays carry the binding (``EvtchnState``, ``kernel.evtchn``):

* ``evtchn_to_irq[port]`` -- the IRQ a port raises, -1 if none (all -1 at boot);
* ``irq_info[irq]`` -- one packed u32: ``type<<24 | index<<16 | port`` (``mk_irq_info``);
* ``irq_bindcount[irq]`` -- how many bindings share the IRQ (dynirqs start at 0, PIRQs
  are nailed to 1 so ``find_unbound_irq`` never hands them out);
* per-cpu ``virq_to_irq[cpu][virq]`` and ``ipi_to_irq[cpu][ipi]`` (-1 when unbound).

``find_unbound_irq`` scans for the lowest dynamic IRQ whose bindcount is 0 -- linearly,
on every bind. A port the caller already owns (xenstore, console) is bound with
``bind_caller_port_to_irq`` (type ``IRQT_CALLER_PORT``: a rebind shares the IRQ and
bumps the count; unbinding never closes the port, it is not ours). Ports the kernel
allocates (``bind_listening_port_to_irqhandler``) or binds to a peer
(``bind_interdomain_evtchn_to_irqhandler``) are ``IRQT_LOCAL_PORT`` and are closed
when the last binding goes.

Delivery: the guest masks and unmasks ports by setting bits in its shared_info itself
(``SharedBits``, the synch_*_bit operations); ``unmask_evtchn`` re-raises an event that
became pending while masked (the lost "edge") and uses the EVTCHNOP_unmask hypercall
only for a port bound to another vcpu. ``evtchn_do_upcall`` is installed as the
domain's ``upcall``: it clears ``evtchn_upcall_pending``, takes the selector word with
xchg and walks the pending & ~mask words round-robin from the last port handled,
calling ``do_IRQ`` for each port's IRQ, or ``evtchn_device_upcall``
(drivers/xen/evtchn/evtchn.c) for a port with none.

The two small inlines of include/xen/evtchn.h live here too: ``clear_evtchn`` and
``notify_remote_via_evtchn``.

Variants (``EvtchnState.variant``): ``"L18"`` (the XenLinux tree of reference §0, the
default), ``"RH5-274"`` (RHEL 5.7 2.6.18-274: bigger NR_DYNIRQS, scans to NR_IRQS,
warns "increase NR_IRQS!"), ``"RH5-8.el5"`` (RHEL 5.0: types without CALLER/LOCAL
ports -- IRQT_EVTCHN = 4 --, ``panic`` when exhausted, every unbind closes the port).

Trace tables: ``<kernel>/evtchn_to_irq``, ``/irq_info`` (the packed u32), ``/irq_bindcount``,
``/virq_to_irq`` and ``/ipi_to_irq`` (key ``"<cpu>/<index>"``), ``/irq_action``,
``/kstat_irqs``; mask and pending bits are rows on Xen's ``xen/d<N>/evtchn_mask`` and
``/evtchn_pending`` (port -> 1), the upcall flag and selector on ``xen/d<N>/vcpu<V>`` (the
shared_info page), recorded in this kernel's own steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xenlab.abi.errno import ENOSPC
from xenlab.abi.event_channel import BIND_PIRQ__WILL_SHARE, DOMID_SELF, NR_VIRQS
from xenlab.linux.irq import Handler, IrqChip, IrqCore, do_IRQ, free_irq, request_irq
from xenlab.linux.kernel import KERN_INFO, KERN_WARNING, ChangeRow
from xenlab.linux.locking import SpinLock

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel

SRC = "drivers/xen/core/evtchn.c"
SRC_H = "include/xen/evtchn.h"

# Binding types (the enum of evtchn.c). RH5 -8.el5 has IRQT_EVTCHN = 4 and no CALLER/LOCAL split.
IRQT_UNBOUND, IRQT_PIRQ, IRQT_VIRQ, IRQT_IPI, IRQT_LOCAL_PORT, IRQT_CALLER_PORT = range(6)
IRQT_EVTCHN = 4
IRQT_NAMES_L18 = ("IRQT_UNBOUND", "IRQT_PIRQ", "IRQT_VIRQ", "IRQT_IPI", "IRQT_LOCAL_PORT", "IRQT_CALLER_PORT")
IRQT_NAMES_RH5_8 = ("IRQT_UNBOUND", "IRQT_PIRQ", "IRQT_VIRQ", "IRQT_IPI", "IRQT_EVTCHN")

# IPIs of 2.6.18 x86 (include/asm-x86_64/mach-xen/asm/ipi.h)
RESCHEDULE_VECTOR, CALL_FUNCTION_VECTOR = 0, 1
NR_IPIS = 2

VARIANTS = ("L18", "RH5-274", "RH5-8.el5")  # the .config each stands for: kernel.KCONFIGS
RTC_IRQ = 8


@dataclass(frozen=True)
class IrqSpace:
    """The fixed IRQ windows of include/asm-x86_64/mach-xen/irq_vectors.h for one kernel build."""

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


def evtchn_from_irq_info(info: int) -> int:
    """evtchn_from_irq: bits 15..0 of irq_info (the port; 0 = none)."""
    return info & 0xFFFF


def index_from_irq_info(info: int) -> int:
    """index_from_irq: bits 23..16 (the VIRQ or IPI number)."""
    return (info >> 16) & 0xFF


def type_from_irq_info(info: int) -> int:
    """type_from_irq: bits 31..24 of irq_info."""
    return (info >> 24) & 0xFF


class SharedBits:
    """HYPERVISOR_shared_info as evtchn.c touches it: synch_*_bit on the 2-level bits, the selector.

    The hypervisor's ``shared_info`` object holds the bits; this class is the handful of
    bit operations the 2.6.18 code does on them itself. The page is Xen's, so the trace
    keeps the bits in Xen's tables (``xen/d<N>/evtchn_pending``, ``/evtchn_mask``: port ->
    1; ``xen/d<N>/vcpu<V>``: ``evtchn_upcall_pending``, ``evtchn_pending_sel``; absent = 0);
    every write appends its change row to *rows*, which the caller records in its own step.
    """

    def __init__(self, kernel: XenLinuxKernel) -> None:
        self.sh = kernel.hv.domains[kernel.domid].shared_info
        self.bits = 64 if kernel.hv.bits == 64 else 32  # BITS_PER_LONG
        self.domid = kernel.domid
        self.pending_table = f"xen/d{kernel.domid}/evtchn_pending"
        self.mask_table = f"xen/d{kernel.domid}/evtchn_mask"

    def vcpu_table(self, cpu: int) -> str:
        """The trace table of vcpu_info[cpu] (upcall_pending, pending_sel)."""
        return f"xen/d{self.domid}/vcpu{cpu}"

    @staticmethod
    def _bit(array: Any, table: str, port: int, value: int, rows: list[ChangeRow]) -> int:
        old = array[port]
        if old != value:
            array[port] = value
            rows.append((table, port, old or None, value or None))
        return old

    def test_pending(self, port: int) -> bool:
        """synch_test_bit(port, s->evtchn_pending)."""
        return bool(self.sh.evtchn_pending[port])

    def clear_pending(self, port: int, rows: list[ChangeRow]) -> None:
        """synch_clear_bit(port, s->evtchn_pending)."""
        self._bit(self.sh.evtchn_pending, self.pending_table, port, 0, rows)

    def test_mask(self, port: int) -> bool:
        """synch_test_bit(port, s->evtchn_mask)."""
        return bool(self.sh.evtchn_mask[port])

    def set_mask(self, port: int, rows: list[ChangeRow]) -> bool:
        """synch_test_and_set_bit on the mask: True if it was already set."""
        return bool(self._bit(self.sh.evtchn_mask, self.mask_table, port, 1, rows))

    def clear_mask(self, port: int, rows: list[ChangeRow]) -> None:
        """synch_clear_bit(port, s->evtchn_mask) (no re-raise: see unmask_evtchn)."""
        self._bit(self.sh.evtchn_mask, self.mask_table, port, 0, rows)

    def active_word(self, idx: int) -> int:
        """s->evtchn_pending[idx] & ~s->evtchn_mask[idx] as one machine word."""
        return self.sh.evtchn_pending.word(idx) & ~self.sh.evtchn_mask.word(idx) & ((1 << self.bits) - 1)

    def vcpu(self, cpu: int) -> Any:
        """&s->vcpu_info[cpu] (upcall_pending, upcall_mask, pending_sel): read it, write via below."""
        return self.sh.vcpu_info[cpu]

    def set_upcall_pending(self, cpu: int, value: int, rows: list[ChangeRow]) -> None:
        """vcpu_info->evtchn_upcall_pending = value."""
        v = self.sh.vcpu_info[cpu]
        old = int(v.evtchn_upcall_pending)
        if old != value:
            v.evtchn_upcall_pending = value
            rows.append((self.vcpu_table(cpu), "evtchn_upcall_pending", old or None, value or None))

    def xchg_pending_sel(self, cpu: int, rows: list[ChangeRow]) -> int:
        """xchg(&vcpu_info->evtchn_pending_sel, 0)."""
        v = self.sh.vcpu_info[cpu]
        old = int(v.evtchn_pending_sel)
        if old:
            v.evtchn_pending_sel = 0
            rows.append((self.vcpu_table(cpu), "evtchn_pending_sel", old, None))
        return old

    def test_and_set_sel(self, cpu: int, idx: int, rows: list[ChangeRow]) -> bool:
        """synch_test_and_set_bit(idx, &vcpu_info->evtchn_pending_sel)."""
        v = self.sh.vcpu_info[cpu]
        old = int(v.evtchn_pending_sel)
        if not old >> idx & 1:
            v.evtchn_pending_sel = old | (1 << idx)
            rows.append((self.vcpu_table(cpu), "evtchn_pending_sel", old or None, old | (1 << idx)))
        return bool(old >> idx & 1)


@dataclass
class EvtchnState:
    """The file-scope state of evtchn.c (``kernel.evtchn``), made by xen_init_IRQ."""

    name: str
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
    cpu_evtchn: dict[int, int] = field(default_factory=dict)  # port -> vcpu, when not vcpu 0
    warned: bool = False  # find_unbound_irq's "static int warned"
    this_cpu: int = 0  # smp_processor_id() of the code running now
    in_upcall: bool = False
    upcall_count: list[int] = field(default_factory=list)
    last_processed_l1i: list[int] = field(default_factory=list)
    last_processed_l2i: list[int] = field(default_factory=list)
    last_scan: int = 0  # IRQs find_unbound_irq looked at on its last call
    #: static DEFINE_SPINLOCK(irq_mapping_update_lock): held by every bind_* / unbind_from_irq
    irq_mapping_update_lock: SpinLock | None = None

    def __repr__(self) -> str:
        sp = self.space
        bound = sum(1 for i in range(sp.DYNIRQ_BASE, sp.NR_IRQS) if self.irq_bindcount[i])
        return (f"EvtchnState({self.name}, {self.variant}, DYNIRQ {sp.DYNIRQ_BASE}..{sp.NR_IRQS - 1}: "
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
        return (f"{self.type_name(type_from_irq_info(info))} index {index_from_irq_info(info)} "
                f"port {evtchn_from_irq_info(info)}")


def evtchn_state(kernel: XenLinuxKernel) -> EvtchnState:
    """kernel.evtchn, which xen_init_IRQ made (an error before it ran)."""
    if kernel.evtchn is None:
        raise RuntimeError(f"{kernel.name} has no IRQ layer yet: boot it (xen_init_IRQ) first")
    return kernel.evtchn


def _rec(kernel: XenLinuxKernel, fn: str, summary: str, changes: list[ChangeRow] | tuple[()] = (),
         printk: str | None = None) -> None:
    kernel.record(fn, summary, SRC, changes=changes, printk=printk)


# -- include/xen/evtchn.h ------------------------------------------------------------------
def clear_evtchn(kernel: XenLinuxKernel, port: int, *, caller: str = "clear_evtchn") -> None:
    """clear_evtchn: synch_clear_bit(port, s->evtchn_pending), recorded on Xen's bit (evtchn.h)."""
    rows: list[ChangeRow] = []
    evtchn_state(kernel).shared.clear_pending(port, rows)
    if rows:
        kernel.record("clear_evtchn", f"port {port}: pending bit cleared ({caller})", SRC_H, changes=rows)


def notify_remote_via_evtchn(kernel: XenLinuxKernel, port: int) -> int:
    """notify_remote_via_evtchn: EVTCHNOP_send on the port (include/xen/evtchn.h)."""
    rc = kernel.hv.evtchn_send(kernel.domid, port)
    _rec(kernel, "notify_remote_via_evtchn", f"EVTCHNOP_send port {port} -> {rc}")
    return rc


# -- which vcpu scans a port ------------------------------------------------------------
def cpu_from_evtchn(kernel: XenLinuxKernel, evtchn: int) -> int:
    """cpu_from_evtchn: the vcpu whose upcall handles the port (cpu_evtchn[])."""
    return evtchn_state(kernel).cpu_evtchn.get(evtchn, 0)


def bind_evtchn_to_cpu(kernel: XenLinuxKernel, chn: int, cpu: int) -> None:
    """bind_evtchn_to_cpu: remember which vcpu's upcall scans the port (cpu_evtchn_mask[])."""
    st = evtchn_state(kernel)
    if cpu:
        st.cpu_evtchn[chn] = cpu
    else:
        st.cpu_evtchn.pop(chn, None)


def active_evtchns(kernel: XenLinuxKernel, cpu: int, idx: int) -> int:
    """active_evtchns: word *idx* of pending & ~mask, limited to the ports bound to *cpu*."""
    st = evtchn_state(kernel)
    w = st.shared.active_word(idx)
    out = 0
    base = idx * st.shared.bits
    while w:
        low = w & -w
        if st.cpu_evtchn.get(base + low.bit_length() - 1, 0) == cpu:
            out |= low
        w ^= low
    return out


# -- the upcall -------------------------------------------------------------------------
def evtchn_do_upcall(kernel: XenLinuxKernel, cpu: int = 0) -> int:
    """evtchn_do_upcall: clear upcall_pending, xchg the selector, scan pending&~mask, do_IRQ each port."""
    st = evtchn_state(kernel)
    sb = st.shared
    vcpu = sb.vcpu(cpu)
    if st.in_upcall:
        st.upcall_count[cpu] += 1  # "Nested invocations bail immediately."
        return 0
    st.in_upcall, old_cpu, st.this_cpu = True, st.this_cpu, cpu
    old_umask = int(vcpu.evtchn_upcall_mask)
    vcpu.evtchn_upcall_mask = 1
    handled = 0
    bits = sb.bits
    full = (1 << bits) - 1
    try:
        while True:
            rows: list[ChangeRow] = []
            sb.set_upcall_pending(cpu, 0, rows)
            l1 = sb.xchg_pending_sel(cpu, rows)
            _rec(kernel, "evtchn_do_upcall",
                 f"vcpu {cpu}: upcall_pending cleared, pending_sel {l1:#x} taken", rows)
            l1i, l2i = st.last_processed_l1i[cpu], st.last_processed_l2i[cpu]
            while l1:
                l1i = (l1i + 1) % bits
                masked_l1 = l1 & ((full << l1i) & full)
                if not masked_l1:  # we masked out all events: wrap around to the beginning
                    l1i = l2i = bits - 1
                    continue
                l1i = (masked_l1 & -masked_l1).bit_length() - 1
                while True:
                    l2 = active_evtchns(kernel, cpu, l1i)
                    l2i = (l2i + 1) % bits
                    masked_l2 = l2 & ((full << l2i) & full)
                    if not masked_l2:  # we masked out all events: move on
                        l2i = bits - 1
                        break
                    l2i = (masked_l2 & -masked_l2).bit_length() - 1
                    port = l1i * bits + l2i
                    irq = st.evtchn_to_irq[port]
                    if irq != -1:
                        _rec(kernel, "evtchn_do_upcall", f"port {port} pending and unmasked -> do_IRQ({irq})")
                        do_IRQ(kernel, irq, cpu)
                    else:
                        kernel.evtchn_device_upcall(port)
                        _rec(kernel, "evtchn_do_upcall", f"port {port} has no IRQ: evtchn_device_upcall")
                    handled += 1
                    # the final port processed: pick up at the next one next time
                    st.last_processed_l1i[cpu], st.last_processed_l2i[cpu] = l1i, l2i
                    if l2i == bits - 1:
                        break
                if not active_evtchns(kernel, cpu, l1i):  # all its ports handled: clear the selector bit
                    l1 &= ~(1 << l1i)
            if not vcpu.evtchn_upcall_pending:
                break
    finally:
        vcpu.evtchn_upcall_mask = old_umask
        st.in_upcall, st.this_cpu = False, old_cpu
    return handled


# -- find_unbound_irq and the binders ---------------------------------------------------
def find_unbound_irq(kernel: XenLinuxKernel) -> int:
    """find_unbound_irq: the lowest dynamic IRQ with bindcount 0, else warn once and -ENOSPC."""
    st = evtchn_state(kernel)
    sp = st.space
    count = st.irq_bindcount
    if st.variant == "L18":
        first, last = sp.DYNIRQ_BASE, sp.DYNIRQ_BASE + sp.NR_DYNIRQS
        how = f"dynirq 0..{sp.NR_DYNIRQS - 1} (IRQ {first}..{last - 1})"
    else:
        first, last = sp.DYNIRQ_BASE, sp.NR_IRQS
        how = f"IRQ {first}..{last - 1}"
    scanned = 0
    for irq in range(first, last):  # linear by design: this is what the kernel does on every bind
        scanned += 1
        if count[irq] == 0:
            st.last_scan = scanned
            _rec(kernel, "find_unbound_irq",
                 f"scanned {how}: {scanned - 1} in use before IRQ {irq}, which has bindcount 0 -> IRQ {irq}")
            return irq
    st.last_scan = scanned
    if st.variant == "RH5-8.el5":
        msg = "No available IRQ to bind to: increase NR_IRQS!"
        _rec(kernel, "find_unbound_irq", f"scanned {how}: all {scanned} in use -> panic", printk=msg)
        kernel.panic(msg)
    msg = ("No available IRQ to bind to: increase NR_DYNIRQS." if st.variant == "L18"
           else "No available IRQ to bind to: increase NR_IRQS!")
    if not st.warned:
        st.warned = True
        kernel.printk(KERN_WARNING, msg)
        _rec(kernel, "find_unbound_irq", f"scanned {how}: all {scanned} in use -> warn (once), -ENOSPC",
             printk=msg)
    else:
        _rec(kernel, "find_unbound_irq", f"scanned {how}: all {scanned} in use -> -ENOSPC (already warned)")
    return -ENOSPC


def _bind_port(kernel: XenLinuxKernel, fn: str, port: int, irq: int, type_: int, index: int = 0) -> None:
    """evtchn_to_irq[port] = irq; irq_info[irq] = mk_irq_info(type, index, port)."""
    st = evtchn_state(kernel)
    old_e, old_i = st.evtchn_to_irq[port], st.irq_info[irq]
    st.evtchn_to_irq[port] = irq
    st.irq_info[irq] = mk_irq_info(type_, index, port)
    _rec(kernel, fn, f"port {port} -> IRQ {irq}; irq_info[{irq}] = {st.irq_info[irq]:#010x} "
         f"({st.describe(irq)})",
         [(kernel.table("evtchn_to_irq"), port, old_e, irq),
          (kernel.table("irq_info"), irq, old_i, st.irq_info[irq])])


def _bindcount_inc(kernel: XenLinuxKernel, fn: str, irq: int, why: str) -> None:
    """irq_bindcount[irq]++."""
    st = evtchn_state(kernel)
    old = st.irq_bindcount[irq]
    st.irq_bindcount[irq] += 1
    _rec(kernel, fn, f"irq_bindcount[{irq}] {old} -> {old + 1} ({why})",
         [(kernel.table("irq_bindcount"), irq, old, old + 1)])


def _lock(st: EvtchnState) -> SpinLock:
    assert st.irq_mapping_update_lock is not None, "xen_init_IRQ makes it"
    return st.irq_mapping_update_lock


def bind_caller_port_to_irq(kernel: XenLinuxKernel, caller_port: int) -> int:
    """bind_caller_port_to_irq: map a port we were given (xenstore, console); a rebind shares the IRQ."""
    st = evtchn_state(kernel)
    _lock(st).lock()
    irq = st.evtchn_to_irq[caller_port]
    if irq == -1:
        irq = find_unbound_irq(kernel)
        if irq < 0:
            _lock(st).unlock()
            return irq
        _bind_port(kernel, "bind_caller_port_to_irq", caller_port, irq,
                   IRQT_CALLER_PORT if st.has_caller_port else IRQT_EVTCHN)
        why = "first binding"
    else:
        _rec(kernel, "bind_caller_port_to_irq", f"port {caller_port} already on IRQ {irq}: share it")
        why = "rebind shares the IRQ"
    _bindcount_inc(kernel, "bind_caller_port_to_irq", irq, why)
    _lock(st).unlock()
    return irq


def bind_local_port_to_irq(kernel: XenLinuxKernel, local_port: int) -> int:
    """bind_local_port_to_irq: map a port we allocated; no free IRQ -> close the port, -ENOSPC."""
    st = evtchn_state(kernel)
    _lock(st).lock()
    if st.evtchn_to_irq[local_port] != -1:
        kernel.panic(f"BUG() in bind_local_port_to_irq: port {local_port} already on IRQ "
                     f"{st.evtchn_to_irq[local_port]}")
    irq = find_unbound_irq(kernel)
    if irq < 0:
        rc = kernel.hv.evtchn_close(kernel.domid, local_port)
        _rec(kernel, "bind_local_port_to_irq", f"no IRQ for port {local_port}: EVTCHNOP_close -> {rc}")
        if rc:
            kernel.panic(f"BUG() in bind_local_port_to_irq: EVTCHNOP_close({local_port}) -> {rc}")
        _lock(st).unlock()
        return irq
    _bind_port(kernel, "bind_local_port_to_irq", local_port, irq,
               IRQT_LOCAL_PORT if st.has_caller_port else IRQT_EVTCHN)
    _bindcount_inc(kernel, "bind_local_port_to_irq", irq, "first binding")
    _lock(st).unlock()
    return irq


def bind_listening_port_to_irq(kernel: XenLinuxKernel, remote_domain: int) -> int:
    """bind_listening_port_to_irq: EVTCHNOP_alloc_unbound(DOMID_SELF, remote) then a LOCAL_PORT bind."""
    port = kernel.hv.evtchn_alloc_unbound(kernel.domid, DOMID_SELF, remote_domain)
    _rec(kernel, "bind_listening_port_to_irq", f"EVTCHNOP_alloc_unbound(remote {remote_domain}) -> {port}")
    return port if port < 0 else bind_local_port_to_irq(kernel, port)


def bind_interdomain_evtchn_to_irq(kernel: XenLinuxKernel, remote_domain: int, remote_port: int) -> int:
    """bind_interdomain_evtchn_to_irq: EVTCHNOP_bind_interdomain then a LOCAL_PORT bind."""
    port = kernel.hv.evtchn_bind_interdomain(kernel.domid, remote_domain, remote_port)
    _rec(kernel, "bind_interdomain_evtchn_to_irq",
         f"EVTCHNOP_bind_interdomain(dom {remote_domain}, port {remote_port}) -> {port}")
    return port if port < 0 else bind_local_port_to_irq(kernel, port)


def bind_virq_to_irq(kernel: XenLinuxKernel, virq: int, cpu: int) -> int:
    """bind_virq_to_irq: reuse the per-cpu VIRQ mapping or take an IRQ + EVTCHNOP_bind_virq."""
    st = evtchn_state(kernel)
    _lock(st).lock()
    irq = st.virq_to_irq[cpu][virq]
    if irq == -1:
        irq = find_unbound_irq(kernel)
        if irq < 0:
            _lock(st).unlock()
            return irq
        port = kernel.hv.evtchn_bind_virq(kernel.domid, virq, cpu)
        if port < 0:
            kernel.panic(f"BUG() in bind_virq_to_irq: EVTCHNOP_bind_virq({virq}, {cpu}) -> {port}")
        _rec(kernel, "bind_virq_to_irq", f"EVTCHNOP_bind_virq(VIRQ {virq}, vcpu {cpu}) -> port {port}")
        _bind_port(kernel, "bind_virq_to_irq", port, irq, IRQT_VIRQ, virq)
        st.virq_to_irq[cpu][virq] = irq
        _rec(kernel, "bind_virq_to_irq", f"virq_to_irq[cpu{cpu}][{virq}] = {irq}",
             [(kernel.table("virq_to_irq"), f"{cpu}/{virq}", -1, irq)])
        bind_evtchn_to_cpu(kernel, port, cpu)
    _bindcount_inc(kernel, "bind_virq_to_irq", irq, f"VIRQ {virq} on cpu{cpu}")
    _lock(st).unlock()
    return irq


def bind_ipi_to_irq(kernel: XenLinuxKernel, ipi: int, cpu: int) -> int:
    """bind_ipi_to_irq: reuse the per-cpu IPI mapping or take an IRQ + EVTCHNOP_bind_ipi."""
    st = evtchn_state(kernel)
    _lock(st).lock()
    irq = st.ipi_to_irq[cpu][ipi]
    if irq == -1:
        irq = find_unbound_irq(kernel)
        if irq < 0:
            _lock(st).unlock()
            return irq
        port = kernel.hv.evtchn_bind_ipi(kernel.domid, cpu)
        if port < 0:
            kernel.panic(f"BUG() in bind_ipi_to_irq: EVTCHNOP_bind_ipi({cpu}) -> {port}")
        _rec(kernel, "bind_ipi_to_irq", f"EVTCHNOP_bind_ipi(vcpu {cpu}) -> port {port}")
        _bind_port(kernel, "bind_ipi_to_irq", port, irq, IRQT_IPI, ipi)
        st.ipi_to_irq[cpu][ipi] = irq
        _rec(kernel, "bind_ipi_to_irq", f"ipi_to_irq[cpu{cpu}][{ipi}] = {irq}",
             [(kernel.table("ipi_to_irq"), f"{cpu}/{ipi}", -1, irq)])
        bind_evtchn_to_cpu(kernel, port, cpu)
    _bindcount_inc(kernel, "bind_ipi_to_irq", irq, f"IPI {ipi} on cpu{cpu}")
    _lock(st).unlock()
    return irq


def unbind_from_irq(kernel: XenLinuxKernel, irq: int) -> None:
    """unbind_from_irq: drop one binding; at 0 close the port (not a CALLER_PORT) and clear the maps."""
    st = evtchn_state(kernel)
    _lock(st).lock()
    info = st.irq_info[irq]
    port = evtchn_from_irq_info(info)
    old = st.irq_bindcount[irq]
    st.irq_bindcount[irq] -= 1
    changes: list[ChangeRow] = [(kernel.table("irq_bindcount"), irq, old, old - 1)]
    if st.irq_bindcount[irq] != 0 or not port:
        _rec(kernel, "unbind_from_irq", f"IRQ {irq}: bindcount {old} -> {old - 1}, still bound", changes)
        _lock(st).unlock()
        return
    type_ = type_from_irq_info(info)
    if not (st.has_caller_port and type_ == IRQT_CALLER_PORT):
        rc = kernel.hv.evtchn_close(kernel.domid, port)
        if rc:
            kernel.panic(f"BUG() in unbind_from_irq: EVTCHNOP_close({port}) -> {rc}")
        note = f"EVTCHNOP_close port {port}"
    else:
        note = f"port {port} is the caller's: left open"
    cpu = cpu_from_evtchn(kernel, port)
    if type_ == IRQT_VIRQ:
        st.virq_to_irq[cpu][index_from_irq_info(info)] = -1
        changes.append((kernel.table("virq_to_irq"), f"{cpu}/{index_from_irq_info(info)}", irq, -1))
    elif type_ == IRQT_IPI:
        st.ipi_to_irq[cpu][index_from_irq_info(info)] = -1
        changes.append((kernel.table("ipi_to_irq"), f"{cpu}/{index_from_irq_info(info)}", irq, -1))
    bind_evtchn_to_cpu(kernel, port, 0)  # "Closed ports are implicitly re-bound to VCPU0."
    st.evtchn_to_irq[port] = -1
    st.irq_info[irq] = IRQ_UNBOUND
    changes += [(kernel.table("evtchn_to_irq"), port, irq, -1),
                (kernel.table("irq_info"), irq, info, IRQ_UNBOUND)]
    desc = st.core.descs[irq]
    for cpu_i in range(len(desc.kstat)):  # "Zap stats across IRQ changes of use."
        if desc.kstat[cpu_i]:
            changes.append((kernel.table("kstat_irqs"), f"{irq}/cpu{cpu_i}", desc.kstat[cpu_i], 0))
        desc.kstat[cpu_i] = 0
    _rec(kernel, "unbind_from_irq", f"IRQ {irq}: bindcount {old} -> 0: {note}; evtchn_to_irq[{port}] = -1, "
         "irq_info UNBOUND, stats zapped", changes)
    _lock(st).unlock()


def _request(kernel: XenLinuxKernel, irq: int, handler: Handler, irqflags: int, devname: str,
             dev_id: Any) -> int:
    """The tail every bind_*_to_irqhandler shares: request_irq, and unbind again if it fails."""
    if irq < 0:
        return irq
    rc = request_irq(kernel, irq, handler, irqflags, devname, dev_id)
    if rc != 0:
        unbind_from_irq(kernel, irq)
        return rc
    return irq


def bind_caller_port_to_irqhandler(kernel: XenLinuxKernel, caller_port: int, handler: Handler, irqflags: int,
                                   devname: str, dev_id: Any) -> int:
    """bind_caller_port_to_irqhandler: bind_caller_port_to_irq + request_irq (failure unbinds)."""
    return _request(kernel, bind_caller_port_to_irq(kernel, caller_port), handler, irqflags, devname, dev_id)


def bind_evtchn_to_irqhandler(kernel: XenLinuxKernel, evtchn: int, handler: Handler, irqflags: int,
                              devname: str, dev_id: Any) -> int:
    """bind_evtchn_to_irqhandler: RH5 -8.el5's (Xen 3.0.3) name for binding a port it was given."""
    return bind_caller_port_to_irqhandler(kernel, evtchn, handler, irqflags, devname, dev_id)


def bind_listening_port_to_irqhandler(kernel: XenLinuxKernel, remote_domain: int, handler: Handler,
                                      irqflags: int, devname: str, dev_id: Any) -> int:
    """bind_listening_port_to_irqhandler: alloc_unbound(remote) + LOCAL_PORT bind + request_irq."""
    return _request(kernel, bind_listening_port_to_irq(kernel, remote_domain), handler, irqflags, devname,
                    dev_id)


def bind_interdomain_evtchn_to_irqhandler(kernel: XenLinuxKernel, remote_domain: int, remote_port: int,
                                          handler: Handler, irqflags: int, devname: str, dev_id: Any) -> int:
    """bind_interdomain_evtchn_to_irqhandler: bind_interdomain + LOCAL_PORT bind + request_irq (backends)."""
    return _request(kernel, bind_interdomain_evtchn_to_irq(kernel, remote_domain, remote_port), handler,
                    irqflags, devname, dev_id)


def bind_virq_to_irqhandler(kernel: XenLinuxKernel, virq: int, cpu: int, handler: Handler, irqflags: int,
                            devname: str, dev_id: Any) -> int:
    """bind_virq_to_irqhandler: bind_virq_to_irq + request_irq."""
    return _request(kernel, bind_virq_to_irq(kernel, virq, cpu), handler, irqflags, devname, dev_id)


def bind_ipi_to_irqhandler(kernel: XenLinuxKernel, ipi: int, cpu: int, handler: Handler, irqflags: int,
                           devname: str, dev_id: Any) -> int:
    """bind_ipi_to_irqhandler: bind_ipi_to_irq + request_irq."""
    return _request(kernel, bind_ipi_to_irq(kernel, ipi, cpu), handler, irqflags, devname, dev_id)


def unbind_from_irqhandler(kernel: XenLinuxKernel, irq: int, dev_id: Any) -> None:
    """unbind_from_irqhandler: free_irq + unbind_from_irq."""
    free_irq(kernel, irq, dev_id)
    unbind_from_irq(kernel, irq)


# -- the "Dynamic-irq" chip ------------------------------------------------------------------
def startup_dynirq(kernel: XenLinuxKernel, irq: int) -> None:
    """startup_dynirq: unmask the IRQ's port (request_irq of the first handler)."""
    port = evtchn_from_irq_info(evtchn_state(kernel).irq_info[irq])
    if port:
        unmask_evtchn(kernel, port)


def shutdown_dynirq(kernel: XenLinuxKernel, irq: int) -> None:
    """shutdown_dynirq: mask the IRQ's port (free_irq of the last handler)."""
    port = evtchn_from_irq_info(evtchn_state(kernel).irq_info[irq])
    if port:
        mask_evtchn(kernel, port)


def ack_dynirq(kernel: XenLinuxKernel, irq: int) -> None:
    """ack_dynirq: mask and clear the port before the handlers run (mask_evtchn + clear_evtchn)."""
    st = evtchn_state(kernel)
    port = evtchn_from_irq_info(st.irq_info[irq])
    if port:
        rows: list[ChangeRow] = []
        st.shared.set_mask(port, rows)
        st.shared.clear_pending(port, rows)
        if rows:
            _rec(kernel, "ack_dynirq", f"port {port} masked, pending cleared (ack)", rows)


def end_dynirq(kernel: XenLinuxKernel, irq: int) -> None:
    """end_dynirq: unmask the port again unless the IRQ was disabled meanwhile (re-raising a missed edge)."""
    st = evtchn_state(kernel)
    port = evtchn_from_irq_info(st.irq_info[irq])
    if port and not st.core.descs[irq].disabled:
        sb, rows = st.shared, []
        sb.clear_mask(port, rows)
        if sb.test_pending(port) and not sb.test_and_set_sel(st.this_cpu, port // sb.bits, rows):
            sb.set_upcall_pending(st.this_cpu, 1, rows)
        _rec(kernel, "end_dynirq", f"IRQ {irq}: port {port} unmasked", rows)


def dynirq_type(kernel: XenLinuxKernel) -> IrqChip:
    """dynirq_type, typename "Dynamic-irq"."""
    def startup(irq: int) -> None:
        startup_dynirq(kernel, irq)

    def shutdown(irq: int) -> None:
        shutdown_dynirq(kernel, irq)

    return IrqChip("Dynamic-irq", startup=startup, shutdown=shutdown, ack=lambda irq: ack_dynirq(kernel, irq),
                   end=lambda irq: end_dynirq(kernel, irq), mask=shutdown, unmask=startup)


# -- the "Phys-irq" chip ---------------------------------------------------------------------
def startup_pirq(kernel: XenLinuxKernel, irq: int) -> None:
    """startup_pirq: EVTCHNOP_bind_pirq (WILL_SHARE if shared) to a fresh port, then unmask it."""
    st = evtchn_state(kernel)
    port = evtchn_from_irq_info(st.irq_info[irq])
    if not port:
        pirq = irq - st.space.PIRQ_BASE
        flags = BIND_PIRQ__WILL_SHARE if st.core.descs[irq].actions else 0
        port = kernel.hv.evtchn_bind_pirq(kernel.domid, pirq, flags)
        if port < 0:
            msg = f"Failed to obtain physical IRQ {irq}"
            kernel.printk(KERN_INFO, msg)
            _rec(kernel, "startup_pirq", f"EVTCHNOP_bind_pirq {pirq} -> {port}", printk=msg)
            return
        old_i, old_e = st.irq_info[irq], st.evtchn_to_irq[port]
        st.evtchn_to_irq[port] = irq
        st.irq_info[irq] = mk_irq_info(IRQT_PIRQ, irq & 0xFF, port)
        _rec(kernel, "startup_pirq", f"PIRQ {pirq} bound to port {port} (IRQ {irq})",
             [(kernel.table("evtchn_to_irq"), port, old_e, irq),
              (kernel.table("irq_info"), irq, old_i, st.irq_info[irq])])
    unmask_evtchn(kernel, port)


def shutdown_pirq(kernel: XenLinuxKernel, irq: int) -> None:
    """shutdown_pirq: mask and close the PIRQ's port, forget the binding."""
    st = evtchn_state(kernel)
    port = evtchn_from_irq_info(st.irq_info[irq])
    if not port:
        return
    mask_evtchn(kernel, port)
    kernel.hv.evtchn_close(kernel.domid, port)
    old_i = st.irq_info[irq]
    st.evtchn_to_irq[port] = -1
    st.irq_info[irq] = IRQ_UNBOUND
    _rec(kernel, "shutdown_pirq", f"IRQ {irq}: port {port} closed",
         [(kernel.table("evtchn_to_irq"), port, irq, -1),
          (kernel.table("irq_info"), irq, old_i, IRQ_UNBOUND)])


def pirq_type(kernel: XenLinuxKernel) -> IrqChip:
    """pirq_type, typename "Phys-irq" (ack and end as the dynirq chip's)."""
    def startup(irq: int) -> None:
        startup_pirq(kernel, irq)

    return IrqChip("Phys-irq", startup=startup, shutdown=lambda irq: shutdown_pirq(kernel, irq),
                   ack=lambda irq: ack_dynirq(kernel, irq), end=lambda irq: end_dynirq(kernel, irq),
                   mask=lambda irq: None, unmask=startup)


# -- notify, mask, unmask ---------------------------------------------------------------------
def notify_remote_via_irq(kernel: XenLinuxKernel, irq: int) -> None:
    """notify_remote_via_irq: send on the port behind the IRQ, if it has one."""
    port = evtchn_from_irq_info(evtchn_state(kernel).irq_info[irq])
    if port:
        notify_remote_via_evtchn(kernel, port)


def irq_to_evtchn_port(kernel: XenLinuxKernel, irq: int) -> int:
    """irq_to_evtchn_port: the port in irq_info[irq]."""
    return evtchn_from_irq_info(evtchn_state(kernel).irq_info[irq])


def mask_evtchn(kernel: XenLinuxKernel, port: int) -> None:
    """mask_evtchn: synch_set_bit(port, s->evtchn_mask) -- the guest does it itself."""
    rows: list[ChangeRow] = []
    if not evtchn_state(kernel).shared.set_mask(port, rows):
        _rec(kernel, "mask_evtchn", f"port {port} masked", rows)


def unmask_evtchn(kernel: XenLinuxKernel, port: int) -> None:
    """unmask_evtchn: clear the mask bit; re-raise a missed edge; hypercall if another vcpu's port."""
    st = evtchn_state(kernel)
    sb = st.shared
    cpu = st.this_cpu
    if cpu_from_evtchn(kernel, port) != cpu:  # slow path (hypercall) if this is a non-local port
        kernel.hv.evtchn_unmask(kernel.domid, port)
        _rec(kernel, "unmask_evtchn",
             f"port {port} belongs to vcpu {cpu_from_evtchn(kernel, port)}: EVTCHNOP_unmask hypercall")
        return
    rows: list[ChangeRow] = []
    sb.clear_mask(port, rows)
    refire = sb.test_pending(port) and not sb.test_and_set_sel(cpu, port // sb.bits, rows)
    if refire:
        sb.set_upcall_pending(cpu, 1, rows)
    _rec(kernel, "unmask_evtchn", f"port {port} unmasked"
         + (" and still pending: missed edge re-raised (upcall_pending = 1)" if refire else ""), rows)
    if refire:
        if not st.in_upcall and not sb.vcpu(cpu).evtchn_upcall_mask:  # events on: the callback comes now
            evtchn_do_upcall(kernel, cpu)


# -- init -------------------------------------------------------------------------------------
def xen_init_IRQ(kernel: XenLinuxKernel, variant: str = "L18", arch: str = "x86_64") -> EvtchnState:
    """xen_init_IRQ: mask every port, all irq_info UNBOUND, dynirq counts 0, PIRQ counts nailed to 1."""
    space = irq_space(variant, arch)
    d = kernel.hv.domains[kernel.domid]
    nr_cpus = d.max_vcpus
    nports = kernel.hv.bits * kernel.hv.bits  # NR_EVENT_CHANNELS = BITS_PER_LONG * BITS_PER_LONG
    bits = 64 if kernel.hv.bits == 64 else 32
    st = EvtchnState(kernel.name, variant, arch, space, nr_cpus, nports, IrqCore(kernel, nr_cpus),
                     SharedBits(kernel))
    kernel.evtchn = st
    kernel.irq_core = st.core
    st.evtchn_to_irq = [-1] * nports
    st.irq_info = [IRQ_UNBOUND] * space.NR_IRQS
    st.irq_bindcount = [0] * space.NR_IRQS
    st.virq_to_irq = [[-1] * NR_VIRQS for _ in range(nr_cpus)]
    st.ipi_to_irq = [[-1] * NR_IPIS for _ in range(nr_cpus)]
    st.upcall_count = [0] * nr_cpus
    st.last_processed_l1i = [bits - 1] * nr_cpus
    st.last_processed_l2i = [bits - 1] * nr_cpus
    st.irq_mapping_update_lock = SpinLock(kernel.sched, f"{kernel.name}:irq_mapping_update_lock",
                                          trace=kernel.trace, table=kernel.table("locks"))
    # the arrays as this function fills them (replay keeps only entries that differ later); the
    # static spinlock as the image holds it
    rows: list[ChangeRow] = [st.irq_mapping_update_lock.init_row()]
    rows += [(kernel.table("evtchn_to_irq"), port, None, -1) for port in range(nports)]
    rows += [(kernel.table("irq_info"), irq, None, IRQ_UNBOUND) for irq in range(space.NR_IRQS)]
    rows += [(kernel.table(t), f"{cpu}/{i}", None, -1)
             for t, n in (("virq_to_irq", NR_VIRQS), ("ipi_to_irq", NR_IPIS))
             for cpu in range(nr_cpus) for i in range(n)]
    for port in range(nports):  # "No event channels are 'live' right now."
        st.shared.set_mask(port, rows)
    dyn, phys = dynirq_type(kernel), pirq_type(kernel)
    for i in range(space.NR_DYNIRQS):  # "Dynamic IRQ space is currently unbound. Zero the refcnts."
        desc = st.core.alloc_desc(space.DYNIRQ_BASE + i)
        desc.chip, desc.flow = dyn, "do_IRQ"
        rows.append((kernel.table("irq_bindcount"), desc.irq, None, 0))
    for i in range(space.NR_PIRQS):  # "Phys IRQ space is statically bound (1:1 mapping). Nail refcnts."
        irq = space.PIRQ_BASE + i
        st.irq_bindcount[irq] = 1
        desc = st.core.alloc_desc(irq)
        if i == RTC_IRQ and not d.initdomain:
            continue  # "If not domain 0, force our RTC driver to fail its probe."
        desc.chip, desc.flow = phys, "do_IRQ"
    _rec(kernel, "xen_init_IRQ",
         f"{variant}: all {nports} ports masked, evtchn_to_irq all -1, "
         f"IRQs {space.DYNIRQ_BASE}..{space.NR_IRQS - 1} 'Dynamic-irq' bindcount 0, "
         f"PIRQs {space.PIRQ_BASE}..{space.PIRQ_BASE + space.NR_PIRQS - 1} 'Phys-irq' bindcount nailed to 1 "
         "(tables record only entries that differ from these values)",
         rows + [(kernel.table("kstat_irqs"), f"{irq}/cpu{cpu}", None, 0)
                 for irq in st.core.descs for cpu in range(nr_cpus)])
    d.upcall = _upcall(kernel)
    return st


def _upcall(kernel: XenLinuxKernel) -> Callable[[int], Any]:
    """The callback Xen enters on an event (HYPERVISOR_set_callbacks' hypervisor_callback)."""
    def hypervisor_callback(vcpu: int) -> int:
        return evtchn_do_upcall(kernel, vcpu)

    return hypervisor_callback

"""Modern Linux (6.1): the real machine's IRQ and port numbers follow from the boot order.

The captures in tests/captures come from a Xen 4.17 host with a Linux 6.1 PV
dom0 and PV domU (1 vcpu each). Nothing here writes a captured number into the model:
the tests boot simulated kernels in the kernel's order and compare what they print.
"""

from __future__ import annotations

import re

import pytest
from real_captures import CAPTURES

from xenlab.abi.event_channel import DOMID_SELF, VIRQ_DOM_EXC
from xenlab.base.sched import WaitQueue
from xenlab.base.trace import Trace
from xenlab.linux.irq import IRQ_HANDLED
from xenlab.linux.kernels import new_kernel
from xenlab.linux.pvops import events_base as ev
from xenlab.linux.pvops.evtchn import evtchn_open
from xenlab.linux.pvops.hvc_xen import notifier_add_irq
from xenlab.linux.pvops.irq_proc import show_interrupts
from xenlab.linux.pvops.kernel import PvopsKernel
from xenlab.sim.lsevtchn import lsevtchn
from xenlab.xen.event import evtchn_is_masked
from xenlab.xen.hypervisor import Hypervisor


def capture(kind: str, name: str) -> str:
    """A capture's output lines (the '$ command' line and '[rc=...]' dropped)."""
    (path,) = (CAPTURES / kind).glob(f"{name}*.txt")
    lines = path.read_text().splitlines()
    return "\n".join(ln for ln in lines if not ln.startswith("$ ") and not ln.startswith("[rc=")
                     and not ln.startswith("== ")) + "\n"


def zero_counts(text: str) -> str:
    """/proc/interrupts with every count replaced by 0 in the same width (counts depend on uptime)."""
    def zero(m: re.Match) -> str:
        return m.group(1) + re.sub(r"\d+", lambda d: "0".rjust(len(d.group())), m.group(2))

    return "\n".join(re.sub(r"^(\s*\w+:)((?: +\d+)+)", zero, ln) for ln in text.splitlines()) + "\n"


def pvops(hv: Hypervisor, domid: int, trace: Trace, fifo_events: bool = True) -> PvopsKernel:
    """A Linux 6.1 kernel for domain *domid* (not booted); *fifo_events* False: ``xen.fifo_events=0``."""
    cmdline = "" if fifo_events else "xen.fifo_events=0"
    k = new_kernel(hv, domid, flavour="modern", trace=trace, cmdline=cmdline)
    assert isinstance(k, PvopsKernel) and k.fifo_events == fifo_events
    return k


def masked(hv: Hypervisor, domid: int, port: int) -> bool:
    """Xen's evtchn_is_masked: the port's mask in whichever ABI the domain runs (2-level bit, FIFO word)."""
    d = hv.domains[domid]
    return evtchn_is_masked(d, d.chns[port])


def boot_stage(k: PvopsKernel, name: str) -> None:
    """Run one of the kernel's boot stages ("early IRQs", "late IRQs", ...) by itself."""
    dict(k.boot_stages(initdomain=k.domid == 0))[name]()


class Machine:
    """The smallest stand-in for the machine: a hypervisor, kernels booted in order, a store port."""

    def __init__(self, dom0_vcpus: int = 1, fifo_events: bool = True) -> None:
        self.trace = Trace()
        self.hv = Hypervisor(trace=self.trace, bits=64)
        self.hv.domain_create(0, "Domain-0", vcpus=dom0_vcpus, privileged=True, initdomain=True)
        self.dom0 = pvops(self.hv, 0, self.trace, fifo_events)
        self.xb_waitq = WaitQueue("xb_waitq")
        self.dom0_store_port, self.dom0_xenbus_irq = self.boot(self.dom0)

    def xenbus_init(self, k: PvopsKernel) -> tuple[int, int]:
        """The part of xenbus_init/xs_init that touches event channels (the real code is linux/xenbus's)."""
        if k.domid == 0:
            port = self.hv.evtchn_alloc_unbound(0, DOMID_SELF, 0)  # xenstored_local_init
        else:
            port = int(self.hv.domains[k.domid].start_info.store_evtchn)
        irq = ev.bind_evtchn_to_irqhandler(k, port, lambda i, d: IRQ_HANDLED, 0, "xenbus", self.xb_waitq)
        return port, irq

    def boot(self, k: PvopsKernel) -> tuple[int, int]:
        boot_stage(k, "early IRQs")
        port_irq = self.xenbus_init(k)
        boot_stage(k, "late IRQs")
        notifier_add_irq(k)  # kernel_init opens /dev/console: hvc_open requests "hvc_console"
        return port_irq

    def domU(self, domid: int = 1, vcpus: int = 1) -> tuple[PvopsKernel, int, int]:
        """xl create: the toolstack allocates the store and console ports in the new domain, then it boots."""
        d = self.hv.domain_create(domid, "guest", vcpus=vcpus)
        store = self.hv.evtchn_alloc_unbound(0, domid, 0)
        console = self.hv.evtchn_alloc_unbound(0, domid, 0)
        d.start_info.store_evtchn = store
        d.start_info.console.domU.evtchn = console
        k = pvops(self.hv, domid, self.trace)
        port, irq = self.boot(k)
        assert port == store
        return k, store, console


# -- numbering --------------------------------------------------------------------------------
def test_dom0_xenbus_is_irq_29_on_port_6_because_of_what_came_before() -> None:
    m = Machine()
    assert (m.dom0_store_port, m.dom0_xenbus_irq) == (6, 29)
    st = m.dom0.irq
    assert st.gsi_top == 24  # the IO-APIC's pins: event-channel IRQs start above them
    assert ev.irq_from_evtchn(m.dom0, 6) == 29
    assert st.info[29].row() == ("IRQT_EVTCHN", 6, 0, -1, 0)


def test_domU_timer_on_port_3_and_xenbus_irq_5_on_store_port_1() -> None:
    m = Machine()
    k, store, console = m.domU()
    assert (store, console) == (1, 2)
    assert k.irq.gsi_top == 0
    assert k.irq.virq_to_irq[0][0] == 0 and k.irq.info[0].evtchn == 3
    assert ev.irq_from_evtchn(k, store) == 5
    assert ev.irq_from_evtchn(k, console) == 6
    assert k.irq.core.descs[6].chip.name == "xen-dyn-lateeoi"


def test_more_vcpus_shift_xenbus() -> None:
    m = Machine(dom0_vcpus=2)
    # cpu0: timer0, spinlock0, 4 IPIs; cpu1: timer1, 4 IPIs, spinlock1 -> 12 IRQs from 24
    assert m.dom0_xenbus_irq == 24 + 12 and m.dom0_store_port == 13
    names = {i: d.actions[0].name for i, d in m.dom0.irq.core.descs.items() if d.actions}
    assert [names[i] for i in range(24, 36)] == [
        "timer0", "spinlock0", "resched0", "callfunc0", "callfuncsingle0", "irqwork0",
        "timer1", "resched1", "callfunc1", "callfuncsingle1", "irqwork1", "spinlock1"]
    assert show_interrupts(m.dom0).splitlines()[0] == " " * 11 + "CPU0       CPU1       "


def test_two_level_events_add_the_debug_virq() -> None:
    trace = Trace()
    hv = Hypervisor(trace=trace, bits=64)
    hv.domain_create(0, "Domain-0", vcpus=1, privileged=True, initdomain=True)
    k = pvops(hv, 0, trace, fifo_events=False)  # xen.fifo_events=0 on the kernel command line
    boot_stage(k, "early IRQs")
    names = [d.actions[0].name for _, d in sorted(k.irq.core.descs.items()) if d.actions]
    assert names == ["timer0", "resched0", "callfunc0", "debug0", "callfuncsingle0", "irqwork0"]


# -- against the captures -----------------------------------------------------------------------
def start_xenstored(m: Machine) -> object:
    """What oxenstored does with /dev/xen/evtchn at start: VIRQ_DOM_EXC, then dom0's store port."""
    u = evtchn_open(m.dom0, "oxenstored")
    assert u.bind_virq(VIRQ_DOM_EXC) == 14
    assert u.bind_interdomain(0, m.dom0_store_port) == 15
    return u


def test_proc_interrupts_dom0_matches_capture_modulo_counts() -> None:
    m = Machine()
    assert zero_counts(show_interrupts(m.dom0)) == zero_counts(capture("oxenstored", "02-proc-interrupts"))
    start_xenstored(m)
    assert zero_counts(show_interrupts(m.dom0)) == zero_counts(capture("oxenstored", "14-proc-interrupts"))


def test_lsevtchn_dom0_matches_capture() -> None:
    m = Machine()
    assert lsevtchn(m.hv, 0) == capture("oxenstored", "11-lsevtchn")
    start_xenstored(m)
    assert lsevtchn(m.hv, 0) == capture("oxenstored", "16-lsevtchn")


def test_domU_proc_interrupts_and_lsevtchn_match_capture() -> None:
    m = Machine()
    xenstored = start_xenstored(m)
    k, store, console = m.domU()
    assert zero_counts(show_interrupts(k)) == zero_counts(capture("domU", "domU-02-proc-interrupts"))
    assert lsevtchn(m.hv, 1).splitlines()[:2] == [
        "   1: VCPU 0: Interdomain (Waiting connection) - Remote Domain 0",
        "   2: VCPU 0: Interdomain (Waiting connection) - Remote Domain 0"]
    # xenstored and xenconsoled connect to the guest's store and console ports
    assert xenstored.bind_interdomain(1, store) == 16
    assert evtchn_open(m.dom0, "xenconsoled").bind_interdomain(1, console) == 17
    dom0_part, domU_part = capture("domU", "D07-lsevtchn").split("   1: VCPU 0: Interdomain (Connected)", 1)
    real_dom0 = dom0_part.splitlines()
    real_domU = ("   1: VCPU 0: Interdomain (Connected)" + domU_part).splitlines()
    assert lsevtchn(m.hv, 1).splitlines() == real_domU[:7]  # the frontends' ports 8..10 come later
    assert lsevtchn(m.hv, 0).splitlines() == real_dom0[:17]
    real_irqs = zero_counts(capture("domU", "D06-dom0-proc-interrupts")).splitlines()
    ours = zero_counts(show_interrupts(m.dom0)).splitlines()
    assert ours[:18] == real_irqs[:18]  # up to IRQ 36 evtchn:xenconsoled; the backends' IRQs come later
    assert ours[17] == " 36:          0  xen-dyn-lateeoi    -event     evtchn:xenconsoled"


# -- mechanics ---------------------------------------------------------------------------------
def test_evtchn_to_irq_rows_are_allocated_on_demand_and_every_port_binds() -> None:
    """On the 2-level ABI (xen.fifo_events=0) a 64-bit guest has 64 x 64 ports: the last is 4095."""
    m = Machine(fifo_events=False)
    k = m.dom0
    assert sorted(k.irq.evtchn_rows) == [0]
    with m.trace.muted():
        ports = []
        while (p := m.hv.evtchn_alloc_unbound(0, DOMID_SELF, 0)) > 0:
            ports.append(p)
        irqs = [ev.bind_evtchn_to_irqhandler(k, p, lambda i, d: 1, 0, f"p{p}", p) for p in ports]
    assert ports[-1] == 4095 and all(i > 0 for i in irqs)
    assert sorted(k.irq.evtchn_rows) == [0, 1, 2, 3]
    assert ev.irq_from_evtchn(k, 4095) == irqs[-1]
    # freeing an IRQ makes its number the lowest free one again
    ev.unbind_from_irqhandler(k, irqs[0], ports[0])
    p = m.hv.evtchn_alloc_unbound(0, DOMID_SELF, 0)
    assert ev.bind_evtchn_to_irqhandler(k, p, lambda i, d: 1, 0, "again", "x") == irqs[0]


@pytest.mark.parametrize("fifo_events", [True, False])
def test_lateeoi_port_stays_masked_until_the_eoi(fifo_events: bool) -> None:
    """Both ABIs (2-level: the port's shared_info mask bit; FIFO: its event word's MASKED)."""
    m = Machine(fifo_events=fifo_events)
    if fifo_events:
        u, port = start_xenstored(m), 15
    else:  # 2-level binds one more VIRQ per cpu (debug0): the ports come one later
        u = evtchn_open(m.dom0, "oxenstored")
        u.bind_virq(VIRQ_DOM_EXC)
        port = u.bind_interdomain(0, m.dom0_store_port)
    irq = ev.irq_from_evtchn(m.dom0, port)
    assert u.read_pending() == [port]  # bind_interdomain left the new port pending: it fired at once
    assert masked(m.hv, 0, port)  # lateeoi: masked until user space writes it back
    ev.notify_remote_via_evtchn(m.dom0, m.dom0_store_port)  # the kernel's xenbus kicks xenstored
    assert u.read_pending() == []  # still masked: the event waits
    u.write_ports([port])  # the late EOI unmasks and the pending event is delivered now
    assert u.read_pending() == [port]
    assert m.dom0.irq.core.descs[irq].kstat == [2]


def test_no_irq_descriptor_left_fails_cleanly() -> None:
    m = Machine()
    k = m.dom0
    k.faults.add("xen_allocate_irq")  # what the machine's exhaust-irqs fault switches on
    port = m.hv.evtchn_alloc_unbound(0, DOMID_SELF, 0)
    assert ev.bind_evtchn_to_irqhandler(k, port, lambda i, d: 1, 0, "late", None) == -12  # -ENOMEM
    assert ev.irq_from_evtchn(k, port) == -1
    before = len(m.hv.domains[0].ports_in_use())
    assert ev.bind_virq_to_irqhandler(k, 5, 0, lambda i, d: 1, 0, "virq5", None) == -12
    assert len(m.hv.domains[0].ports_in_use()) == before  # no port bound for an IRQ we could not get


def test_a_builder_masked_vcpu_gets_its_upcalls_once_the_kernel_enables_interrupts() -> None:
    trace = Trace()
    hv = Hypervisor(trace=trace, bits=64)
    hv.domain_create(0, "Domain-0", vcpus=1, privileged=True, initdomain=True)
    d = hv.domain_create(1, "guest", vcpus=1, upcalls_masked=True)
    store = hv.evtchn_alloc_unbound(0, 1, 0)
    assert d.shared_info.vcpu_info[0].evtchn_upcall_mask == 1
    k = pvops(hv, 1, trace)
    boot_stage(k, "early IRQs")
    assert d.shared_info.vcpu_info[0].evtchn_upcall_mask == 0
    got: list[int] = []
    handler = lambda i, dv: got.append(i) or IRQ_HANDLED  # noqa: E731
    irq = ev.bind_evtchn_to_irqhandler(k, store, handler, 0, "xenbus", None)
    remote = hv.evtchn_bind_interdomain(0, 1, store)
    got.clear()
    hv.evtchn_send(0, remote)
    assert got == [irq]

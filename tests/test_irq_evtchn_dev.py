"""/dev/xen/evtchn: how a user-space daemon (xenstored) gets events, in both kernel flavours."""

from __future__ import annotations

import pytest

from xenlab.abi.errno import EINVAL, ENOTCONN
from xenlab.abi.event_channel import DOMID_SELF, VIRQ_DOM_EXC, EVTCHNSTAT_closed, EVTCHNSTAT_unbound
from xenlab.base.sched import Scheduler
from xenlab.base.trace import Trace
from xenlab.linux.kernel import Kernel
from xenlab.linux.kernels import new_kernel
from xenlab.linux.pvops import events_base as ev
from xenlab.linux.xenlinux import evtchn as l18
from xenlab.xen.event import evtchn_is_masked
from xenlab.xen.hypervisor import Hypervisor


def dom0(flavour: str, cmdline: str = "") -> Kernel:
    trace = Trace()
    hv = Hypervisor(trace=trace, bits=64)
    hv.domain_create(0, "Domain-0", vcpus=1, privileged=True, initdomain=True)
    k = new_kernel(hv, 0, flavour=flavour, sched=Scheduler(), trace=trace, cmdline=cmdline)
    dict(k.boot_stages(initdomain=True))["early IRQs"]()
    return k


def test_modern_each_port_gets_a_lateeoi_irq_named_after_the_process() -> None:
    k = dom0("modern")
    u = k.evtchn_open("oxenstored")
    port = u.bind_virq(VIRQ_DOM_EXC)
    irq = ev.irq_from_evtchn(k, port)
    desc = k.irq.core.descs[irq]
    assert (desc.chip.name, desc.name, [a.name for a in desc.actions]) == (
        "xen-dyn-lateeoi", "event", ["evtchn:oxenstored"])
    assert k.irq.info[irq].type == ev.IRQT_EVTCHN  # a VIRQ, but bound as a plain port by the device
    assert k.irq.info[irq].refcnt == 1  # evtchn_make_refcounted: unbinding counts down before closing


def masked(k: Kernel, port: int) -> bool:
    """Xen's evtchn_is_masked: the FIFO word's MASKED or the 2-level shared_info bit."""
    d = k.hv.domains[k.domid]
    return evtchn_is_masked(d, d.chns[port])


@pytest.mark.parametrize("cmdline", ["", "xen.fifo_events=0"], ids=["fifo", "2level"])
def test_modern_fire_read_write_back_and_wakeup(cmdline: str) -> None:
    k = dom0("modern", cmdline)
    u = k.evtchn_open("xenstored")
    port = u.bind_virq(VIRQ_DOM_EXC)
    woken: list[str] = []

    def daemon() -> None:  # runs once its blocking read on the device returns
        woken.append("xenstored")
        k.sched.kthread_exit()

    k.sched.kthread_run(daemon, "xenstored", wait=(u.waitq, u.has_pending), nests=True)
    k.sched.run()
    assert woken == [] and u.waitq.sleepers
    k.hv.send_guest_virq(0, VIRQ_DOM_EXC)  # a domain died
    k.sched.run()
    assert woken == ["xenstored"]
    assert u.read_pending() == [port]
    assert masked(k, port)  # lateeoi: masked until written back
    k.hv.send_guest_virq(0, VIRQ_DOM_EXC)
    assert u.read_pending() == []  # the second event waits, pending behind the mask
    assert u.write_ports([port]) == 4
    assert u.read_pending() == [port]  # the unmask found it pending and delivered it at once ...
    assert masked(k, port)  # ... so the port is masked again, waiting for the next write
    u.write_ports([port])
    assert not masked(k, port) and u.read_pending() == []
    assert u.write_ports([port + 1]) == -EINVAL


def test_modern_unbind_frees_the_irq_and_closes_the_port() -> None:
    k = dom0("modern")
    u = k.evtchn_open("xenstored")
    port = u.bind_unbound_port(0)
    irq = ev.irq_from_evtchn(k, port)
    assert k.hv.evtchn_status(0, 0, port).status == EVTCHNSTAT_unbound
    assert u.unbind(port) == 0
    assert irq not in k.irq.core.descs and ev.irq_from_evtchn(k, port) == -1
    assert k.hv.evtchn_status(0, 0, port).status == EVTCHNSTAT_closed
    assert u.unbind(port) == -ENOTCONN and u.notify(port) == -ENOTCONN


def test_2618_device_ports_have_no_irq_and_go_through_evtchn_device_upcall() -> None:
    k = dom0("2.6.18")
    u = k.evtchn_open("xenstored")
    before = dict(k.irq_core.descs[256].__dict__)
    port = u.bind_virq(VIRQ_DOM_EXC)
    assert k.evtchn.evtchn_to_irq[port] == -1  # no IRQ: the old device works below the IRQ layer
    assert k.irq_core.descs[256].actions == before["actions"]
    k.hv.send_guest_virq(0, VIRQ_DOM_EXC)
    assert u.read_pending() == [port]
    assert k.hv.domains[0].shared_info.evtchn_mask[port]
    u.write_ports([port])
    assert not k.hv.domains[0].shared_info.evtchn_mask[port]
    assert u.unbind(port) == 0 and k.hv.evtchn_status(0, 0, port).status == EVTCHNSTAT_closed


@pytest.mark.parametrize("flavour", ["2.6.18", "modern"])
def test_notify_reaches_the_other_end(flavour: str) -> None:
    k = dom0(flavour)
    u = k.evtchn_open("xenstored")
    local = k.hv.evtchn_alloc_unbound(0, DOMID_SELF, 0)  # the kernel's own store port
    got: list[int] = []
    bind = l18.bind_caller_port_to_irqhandler if flavour == "2.6.18" else ev.bind_evtchn_to_irqhandler
    irq = bind(k, local, lambda i, d: got.append(i) or 1, 0, "xenbus", None)
    port = u.bind_interdomain(0, local)
    assert u.read_pending() == [port]  # Xen sets a new interdomain port pending: seen at once
    u.write_ports([port])
    got.clear()
    assert u.notify(port) == 0
    assert got == [irq]

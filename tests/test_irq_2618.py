"""XenLinux 2.6.18: event channels become IRQs through find_unbound_irq (drivers/xen/core/evtchn.c).

Each test arranges a hypervisor with one 2.6.18 guest, does one thing, and checks the
tables the learner sees (evtchn_to_irq, irq_info, irq_bindcount) with exact values.
"""

from __future__ import annotations

import pytest

from xenlab.abi.errno import EBUSY, ENOSPC
from xenlab.abi.event_channel import (
    DOMID_SELF,
    VIRQ_TIMER,
    EVTCHNSTAT_closed,
    EVTCHNSTAT_interdomain,
    EVTCHNSTAT_unbound,
)
from xenlab.base.trace import Trace
from xenlab.linux.irq import IRQ_HANDLED, IRQF_SHARED
from xenlab.linux.kernel import KernelPanic
from xenlab.linux.xenlinux import evtchn as l18
from xenlab.linux.xenlinux.kernel import XenLinuxKernel
from xenlab.xen.hypervisor import Hypervisor


def guest(variant: str = "L18", *, vcpus: int = 1, arch: str = "x86_64") -> XenLinuxKernel:
    """A domU (domid 1) with a 2.6.18 kernel whose IRQ layer is initialised; dom0 exists beside it."""
    trace = Trace()
    hv = Hypervisor(trace=trace, bits=64)
    hv.domain_create(0, "Domain-0", vcpus=1, privileged=True, initdomain=True)
    hv.domain_create(1, "guest", vcpus=vcpus)
    k = XenLinuxKernel(hv, 1, trace=trace)
    l18.xen_init_IRQ(k, variant=variant, arch=arch)
    return k


def store_port(k: XenLinuxKernel) -> int:
    """What the toolstack does before the guest boots: a port in the guest for xenstored (dom0)."""
    return k.hv.evtchn_alloc_unbound(0, k.domid, 0)


def handler(calls: list) -> object:
    def h(irq: int, dev_id: object) -> int:
        calls.append((irq, dev_id))
        return IRQ_HANDLED

    return h


def table(k: XenLinuxKernel, name: str) -> dict:
    """A trace table as a view replays it (after the last step)."""
    return k.trace.state_at(len(k.trace) - 1).get(f"{k.name}/{name}", {})


# -- the IRQ space --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "variant,arch,dynirqs,nr_irqs",
    [("L18", "x86_64", 256, 512), ("L18", "i386", 256, 512), ("RH5-274", "x86_64", 3840, 4096),
     ("RH5-274", "i386", 1280, 1536), ("RH5-8.el5", "x86_64", 256, 512)],
)
def test_irq_space_of_each_variant(variant: str, arch: str, dynirqs: int, nr_irqs: int) -> None:
    sp = l18.irq_space(variant, arch)
    assert (sp.PIRQ_BASE, sp.NR_PIRQS, sp.DYNIRQ_BASE) == (0, 256, 256)
    assert (sp.NR_DYNIRQS, sp.NR_IRQS) == (dynirqs, nr_irqs)


def test_irq_info_is_packed_type_index_port() -> None:
    assert l18.IRQT_CALLER_PORT == 5 and l18.IRQT_LOCAL_PORT == 4 and l18.IRQT_EVTCHN == 4
    assert l18.mk_irq_info(l18.IRQT_CALLER_PORT, 0, 6) == 0x05000006
    assert l18.mk_irq_info(l18.IRQT_VIRQ, VIRQ_TIMER, 1) == 0x02000001
    assert l18.mk_irq_info(l18.IRQT_IPI, 1, 3) == 0x03010003


def test_xen_init_IRQ_tables() -> None:
    k = guest()
    st = k.evtchn
    assert set(st.evtchn_to_irq) == {-1} and len(st.evtchn_to_irq) == 4096
    assert st.irq_bindcount[:256] == [1] * 256  # PIRQs nailed to 1: never handed out
    assert st.irq_bindcount[256:] == [0] * 256
    assert set(st.irq_info) == {l18.IRQ_UNBOUND}
    assert all(k.hv.domains[1].shared_info.evtchn_mask[p] for p in range(4096))
    assert st.core.descs[256].chip.name == "Dynamic-irq" and st.core.descs[1].chip.name == "Phys-irq"
    assert st.core.descs[8].chip is None  # not dom0: the RTC PIRQ gets no chip, its probe fails
    assert st.virq_to_irq[0][VIRQ_TIMER] == -1 and st.ipi_to_irq[0] == [-1, -1]


# -- the seed's path: bind_caller_port_to_irqhandler -> bind_caller_port_to_irq -> find_unbound_irq --
def test_caller_port_walk_rebind_unbind() -> None:
    k = guest()
    st = k.evtchn
    port = store_port(k)
    calls: list = []
    first = len(k.trace)
    irq = l18.bind_caller_port_to_irqhandler(k, port, handler(calls), 0, "xenbus", "xb_waitq")
    assert irq == 256
    fns = [s.function for s in k.trace.steps[first:]]
    bind = "bind_caller_port_to_irq"
    # under irq_mapping_update_lock: map port->IRQ, then bindcount++; request_irq after the unlock
    assert fns[:6] == ["spin_lock", "find_unbound_irq", bind, bind, "spin_unlock", "request_irq"]
    assert "scanned dynirq 0..255" in k.trace.steps[first + 1].summary
    assert st.evtchn_to_irq[port] == 256
    assert st.irq_info[256] == 0x05000000 | port
    assert st.irq_bindcount[256] == 1
    assert table(k, "evtchn_to_irq")[str(port)] == 256
    assert table(k, "irq_info")["256"] == 0x05000000 | port
    assert table(k, "irq_bindcount")["256"] == 1
    assert not k.hv.domains[1].shared_info.evtchn_mask[port]  # startup unmasked it

    # A rebind finds the IRQ in evtchn_to_irq and bumps the count, but "xenbus" was requested
    # without IRQF_SHARED: request_irq refuses and unbind_from_irq takes the count back.
    rc = l18.bind_caller_port_to_irqhandler(k, port, handler(calls), IRQF_SHARED, "xenbus2", "other")
    assert rc == -EBUSY
    assert st.irq_bindcount[256] == 1 and st.evtchn_to_irq[port] == 256
    assert [a.name for a in st.core.descs[256].actions] == ["xenbus"]


def test_rebind_shares_irq_when_both_shared_and_request_irq_failure_unbinds() -> None:
    k = guest()
    st = k.evtchn
    port = store_port(k)
    assert l18.bind_caller_port_to_irqhandler(k, port, handler([]), IRQF_SHARED, "xenbus", "a") == 256
    assert l18.bind_caller_port_to_irqhandler(k, port, handler([]), IRQF_SHARED, "watch", "b") == 256
    assert st.irq_bindcount[256] == 2
    assert [a.name for a in st.core.descs[256].actions] == ["xenbus", "watch"]
    # Not IRQF_SHARED: bindcount goes to 3, request_irq says -EBUSY, unbind_from_irq takes it back to 2.
    third = len(k.trace)
    rc = l18.bind_caller_port_to_irqhandler(k, port, handler([]), 0, "greedy", "c")
    assert rc == -EBUSY
    assert st.irq_bindcount[256] == 2 and st.evtchn_to_irq[port] == 256
    assert "IRQ handler type mismatch for IRQ 256" in k.dmesg()
    changes = [c for s in k.trace.steps[third:] for c in s.changes if c.table == "domU1/irq_bindcount"]
    assert [(c.before, c.after) for c in changes] == [(2, 3), (3, 2)]


def test_unbind_caller_port_never_closes_it_and_irq_is_reused() -> None:
    k = guest()
    st = k.evtchn
    a, b = store_port(k), store_port(k)
    irq_a = l18.bind_caller_port_to_irqhandler(k, a, handler([]), 0, "xenbus", "a")
    irq_b = l18.bind_caller_port_to_irqhandler(k, b, handler([]), 0, "xencons", "b")
    assert (irq_a, irq_b) == (256, 257)
    l18.unbind_from_irqhandler(k, irq_a, "a")
    assert st.irq_bindcount[256] == 0 and st.evtchn_to_irq[a] == -1 and st.irq_info[256] == 0
    # The port was the caller's: still there, still waiting for dom0.
    assert k.hv.evtchn_status(0, 1, a).status == EVTCHNSTAT_unbound
    assert k.hv.domains[1].shared_info.evtchn_mask[a]  # shutdown masked it
    # The lowest free dynamic IRQ is 256 again.
    c = store_port(k)
    assert l18.bind_caller_port_to_irqhandler(k, c, handler([]), 0, "again", "c") == 256


def test_rh5_8el5_unbind_closes_even_the_store_port() -> None:
    k = guest("RH5-8.el5")
    port = store_port(k)
    irq = l18.bind_evtchn_to_irqhandler(k, port, handler([]), 0, "xenbus", "a")
    assert k.evtchn.irq_info[irq] == (l18.IRQT_EVTCHN << 24) | port
    l18.unbind_from_irqhandler(k, irq, "a")
    assert k.hv.evtchn_status(0, 1, port).status == EVTCHNSTAT_closed


def test_listening_and_interdomain_ports_are_local_and_closed_at_zero() -> None:
    k = guest()
    st = k.evtchn
    irq = l18.bind_listening_port_to_irqhandler(k, 0, handler([]), 0, "blkif", "d")
    port = l18.irq_to_evtchn_port(k, irq)
    assert l18.type_from_irq_info(st.irq_info[irq]) == l18.IRQT_LOCAL_PORT
    assert k.hv.evtchn_status(0, 1, port).status == EVTCHNSTAT_unbound
    # dom0 as a 2.6.18 backend binds to it
    remote = k.hv.evtchn_alloc_unbound(0, 1, 0)
    k0 = XenLinuxKernel(k.hv, 0, trace=k.trace)
    l18.xen_init_IRQ(k0)
    irq0 = l18.bind_interdomain_evtchn_to_irqhandler(k0, 1, remote, handler([]), 0, "blkback", "x")
    p0 = l18.irq_to_evtchn_port(k0, irq0)
    assert k.hv.evtchn_status(0, 0, p0).status == EVTCHNSTAT_interdomain
    l18.unbind_from_irqhandler(k, irq, "d")
    assert k.hv.evtchn_status(0, 1, port).status == EVTCHNSTAT_closed


# -- exhaustion ------------------------------------------------------------------------------
def test_exhausting_nr_dynirqs_warns_once_then_enospc_and_nothing_half_bound() -> None:
    k = guest()
    st = k.evtchn
    with k.trace.muted():
        ports = [store_port(k) for _ in range(258)]
        irqs = [l18.bind_caller_port_to_irqhandler(k, p, handler([]), 0, f"p{p}", p) for p in ports[:256]]
    assert irqs == list(range(256, 512))
    assert l18.bind_caller_port_to_irqhandler(k, ports[256], handler([]), 0, "one-too-many", 0) == -ENOSPC
    assert l18.bind_caller_port_to_irqhandler(k, ports[257], handler([]), 0, "two-too-many", 0) == -ENOSPC
    warning = "No available IRQ to bind to: increase NR_DYNIRQS."
    assert k.dmesg().count(warning) == 1
    assert [s.printk for s in k.trace.steps if s.function == "find_unbound_irq"] == [warning, None]
    assert st.evtchn_to_irq[ports[256]] == -1 and st.evtchn_to_irq[ports[257]] == -1
    assert st.last_scan == 256  # it looked at every dynamic IRQ
    # A listening port that finds no IRQ is closed again, not left allocated.
    rc = l18.bind_listening_port_to_irqhandler(k, 0, handler([]), 0, "blkif", 0)
    assert rc == -ENOSPC
    assert k.hv.evtchn_status(0, 1, ports[-1] + 1).status == EVTCHNSTAT_closed


def test_rh5_274_scans_to_nr_irqs_and_rh5_8el5_panics() -> None:
    k = guest("RH5-274", arch="i386")
    with k.trace.muted():
        for i in range(1280):
            assert l18.bind_caller_port_to_irqhandler(k, store_port(k), handler([]), 0, "x", i) == 256 + i
    assert l18.find_unbound_irq(k) == -ENOSPC
    assert "No available IRQ to bind to: increase NR_IRQS!" in k.dmesg()
    old = guest("RH5-8.el5")
    old.evtchn.irq_bindcount[256:] = [1] * 256
    with pytest.raises(KernelPanic, match="increase NR_IRQS!"):
        l18.find_unbound_irq(old)


# -- delivery --------------------------------------------------------------------------------
def test_upcall_runs_the_handler_and_unmask_reraises_a_missed_edge() -> None:
    k = guest()
    port = store_port(k)
    calls: list = []
    irq = l18.bind_caller_port_to_irqhandler(k, port, handler(calls), 0, "xenbus", "xb_waitq")
    remote = k.hv.evtchn_bind_interdomain(0, 1, port)  # dom0 (xenstored) connects
    calls.clear()
    k.evtchn.core.descs[irq].kstat[0] = 0
    k.hv.evtchn_send(0, remote)
    assert calls == [(irq, "xb_waitq")]
    assert k.evtchn.core.descs[irq].kstat == [1]
    assert not k.hv.domains[1].shared_info.evtchn_pending[port]  # ack cleared it
    # Masked: the event stays pending, no handler; unmask finds it and re-raises.
    l18.mask_evtchn(k, port)
    k.hv.evtchn_send(0, remote)
    assert calls == [(irq, "xb_waitq")]
    l18.unmask_evtchn(k, port)
    assert calls == [(irq, "xb_waitq")] * 2
    text = k.show_interrupts()
    assert f"{irq}:          2     Dynamic-irq  xenbus" in text


def test_boot_order_2618_one_vcpu_gives_timer_ipis_then_xenbus() -> None:
    trace = Trace()
    hv = Hypervisor(trace=trace, bits=64)
    hv.domain_create(0, "Domain-0", vcpus=2, privileged=True, initdomain=True)
    k = XenLinuxKernel(hv, 0, trace=trace)
    k.boot_early_irqs()
    st = k.evtchn
    names = {i: [a.name for a in d.actions] for i, d in st.core.descs.items() if d.actions}
    assert names == {256: ["timer0"], 257: ["resched0"], 258: ["callfunc0"], 259: ["resched1"],
                     260: ["callfunc1"], 261: ["timer1"]}
    port = hv.evtchn_alloc_unbound(0, DOMID_SELF, 0)  # what xenbus_probe_init does in dom0
    assert l18.bind_caller_port_to_irqhandler(k, port, handler([]), 0, "xenbus", None) == 262


def test_2618_dom0_pirq_port_is_bound_when_request_irq_starts_it() -> None:
    trace = Trace()
    hv = Hypervisor(trace=trace, bits=64)
    hv.domain_create(0, "Domain-0", vcpus=1, privileged=True, initdomain=True)
    k = XenLinuxKernel(hv, 0, trace=trace)
    k.boot_early_irqs()
    k.subsys_initcalls(initdomain=True)  # acpi_init (subsys_initcall): request_irq(9, "acpi")
    port = l18.irq_to_evtchn_port(k, 9)
    assert l18.type_from_irq_info(k.evtchn.irq_info[9]) == l18.IRQT_PIRQ
    assert k.evtchn.evtchn_to_irq[port] == 9 and k.evtchn.irq_bindcount[9] == 1
    assert "  9:          0        Phys-irq  acpi" in k.show_interrupts()


def test_a_32bit_guest_has_1024_ports_and_32_bit_selector_words() -> None:
    trace = Trace()
    hv = Hypervisor(trace=trace, bits=32)
    hv.domain_create(0, "Domain-0", vcpus=1, privileged=True, initdomain=True)
    hv.domain_create(1, "guest", vcpus=1)
    k = XenLinuxKernel(hv, 1, trace=trace)
    l18.xen_init_IRQ(k, arch="i386")
    assert len(k.evtchn.evtchn_to_irq) == 1024
    with trace.muted():
        ports = [hv.evtchn_alloc_unbound(0, 1, 0) for _ in range(40)]
    calls: list = []
    irq = l18.bind_caller_port_to_irqhandler(k, ports[-1], handler(calls), 0, "xenbus", None)
    remote = hv.evtchn_bind_interdomain(0, 1, ports[-1])  # port 40 lives in selector word 1 (bits 32..63)
    calls.clear()
    hv.evtchn_send(0, remote)
    assert calls == [(irq, None)]


def test_the_machine_can_pick_a_variant_on_the_kernel() -> None:
    trace = Trace()
    hv = Hypervisor(trace=trace, bits=64)
    hv.domain_create(0, "Domain-0", vcpus=1, privileged=True, initdomain=True)
    k = XenLinuxKernel(hv, 0, trace=trace)
    k.irq_variant = "RH5-274"
    k.boot_early_irqs()
    assert k.evtchn.variant == "RH5-274" and k.evtchn.space.NR_IRQS == 4096

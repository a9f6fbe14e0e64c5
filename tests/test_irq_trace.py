"""What the IRQ view replays, and what /proc/interrupts counts, step by step."""

from __future__ import annotations

import pytest

from xenlab.abi.event_channel import DOMID_SELF
from xenlab.base.trace import Trace
from xenlab.linux.kernel import Kernel
from xenlab.linux.kernels import new_kernel
from xenlab.linux.pvops import events_base as ev
from xenlab.linux.pvops import events_internal
from xenlab.linux.xenlinux import evtchn as l18
from xenlab.xen.hypervisor import Hypervisor


def booted(flavour: str, vcpus: int = 1, cmdline: str = "") -> Kernel:
    trace = Trace()
    hv = Hypervisor(trace=trace, bits=64)
    hv.domain_create(0, "Domain-0", vcpus=vcpus, privileged=True, initdomain=True)
    k = new_kernel(hv, 0, flavour=flavour, trace=trace, cmdline=cmdline)
    dict(k.boot_stages(initdomain=True))["early IRQs"]()
    return k


@pytest.mark.parametrize("cmdline", ["", "xen.fifo_events=0"], ids=["fifo", "2level"])
def test_modern_bind_is_replayable_step_by_step(cmdline: str) -> None:
    k = booted("modern", cmdline=cmdline)
    port = k.hv.evtchn_alloc_unbound(0, DOMID_SELF, 0)
    start = len(k.trace)
    irq = ev.bind_evtchn_to_irqhandler(k, port, lambda i, d: 1, 0, "xenbus", None)
    steps = k.trace.steps[start:]
    assert [s.function for s in steps][:5] == [  # under irq_mapping_update_lock
        "mutex_lock", "xen_allocate_irqs_dynamic", "xen_irq_init", "xen_irq_info_common_setup",
        "set_evtchn_to_irq"]
    assert steps[0].summary == "irq_mapping_update_lock: held by the caller (no kthread)"
    assert "lowest" in steps[1].summary or "next never-used" in steps[1].summary
    before = k.trace.state_at(start - 1)
    after = k.trace.state_at(len(k.trace) - 1)
    assert str(port) not in before.get("dom0/evtchn_to_irq", {})
    assert after["dom0/evtchn_to_irq"][str(port)] == irq == (30 if cmdline else 29)  # 2-level: debug0 too
    assert after["dom0/irq_info"][str(irq)] == ("IRQT_EVTCHN", port, 0, -1, 0)
    assert after["dom0/irq_action"][str(irq)] == "xenbus"
    if cmdline:
        # the mask bit is in dom0's shared_info page, so in Xen's table, changed by dom0's own step
        table, masked, fn = "xen/d0/evtchn_mask", 1, "evtchn_2l_unmask"  # xen_init_IRQ masked every port
    else:
        # FIFO: MASKED is a bit of the port's event word, in dom0's event array page (init_array_page
        # masked every word of the page when the first port in it was bound)
        table, masked, fn = "xen/d0/event_word", ("-M--", 0), "evtchn_fifo_unmask"
    assert before[table][str(port)] == masked
    assert str(port) not in after[table]  # startup unmasked it
    unmask = next(s for s in steps if any(c.table == table for c in s.changes))
    assert (unmask.actor, unmask.function) == ("dom0", fn)


def test_2618_tables_replay_and_find_unbound_irq_summary() -> None:
    k = booted("2.6.18")
    port = k.hv.evtchn_alloc_unbound(0, DOMID_SELF, 0)
    start = len(k.trace)
    irq = l18.bind_caller_port_to_irqhandler(k, port, lambda i, d: 1, 0, "xenbus", None)
    assert irq == 259  # timer0, resched0, callfunc0 took 256..258
    lock, scan = k.trace.steps[start:start + 2]
    assert lock.function == "spin_lock"
    assert lock.summary == "irq_mapping_update_lock: held by the caller (no kthread)"
    assert scan.function == "find_unbound_irq"
    assert scan.summary == ("scanned dynirq 0..255 (IRQ 256..511): 3 in use before IRQ 259, "
                            "which has bindcount 0 -> IRQ 259")
    state = k.trace.state_at(len(k.trace) - 1)
    assert state["dom0/evtchn_to_irq"][str(port)] == 259
    assert state["dom0/irq_info"]["259"] == 0x05000000 | port
    assert state["dom0/irq_bindcount"]["259"] == 1
    assert state["dom0/virq_to_irq"]["0/0"] == 256  # VIRQ_TIMER on cpu0
    assert state["dom0/ipi_to_irq"]["0/1"] == 258  # CALL_FUNCTION on cpu0


def test_2618_proc_interrupts_format() -> None:
    k = booted("2.6.18")
    lines = k.show_interrupts().splitlines()
    assert lines[:4] == ["           CPU0       ",
                         "256:          0     Dynamic-irq  timer0",
                         "257:          0     Dynamic-irq  resched0",
                         "258:          0     Dynamic-irq  callfunc0"]
    assert lines[4:] == ["NMI:          0 ", "LOC:          0 ", "ERR:          0", "MIS:          0"]


def test_ipis_are_counted_per_cpu_and_in_res() -> None:
    k = booted("modern", vcpus=2)
    resched1 = k.irq.ipi_to_irq[1][ev.XEN_RESCHEDULE_VECTOR]
    port = k.irq.info[resched1].evtchn
    k.hv.evtchn_send(0, port)  # smp_send_reschedule(1): the IPI's port is bound to vcpu 1
    assert k.irq.core.descs[resched1].kstat == [0, 1]
    text = k.show_interrupts()
    assert f" {resched1}:          0          1  xen-percpu    -ipi       resched1" in text
    assert "RES:          0          1   Rescheduling interrupts" in text
    assert "MCP:          1          1   Machine check polls" in text


def test_unmasking_another_vcpus_port_is_a_hypercall_on_2_level() -> None:
    k = booted("modern", vcpus=2, cmdline="xen.fifo_events=0")
    timer1 = k.irq.virq_to_irq[1][0]
    port = k.irq.info[timer1].evtchn
    events_internal.mask_evtchn(k, port)
    events_internal.unmask_evtchn(k, port)  # we run on cpu0; the port is cpu1's
    assert "EVTCHNOP_unmask" in k.trace.steps[-1].summary


def test_fifo_unmask_is_a_hypercall_only_for_a_pending_port() -> None:
    """evtchn_fifo_unmask: clear_masked_cond clears MASKED in the word itself, whichever vcpu the
    port is on; only a PENDING word needs Xen (EVTCHNOP_unmask links the waiting event)."""
    k = booted("modern", vcpus=2)
    timer1 = k.irq.virq_to_irq[1][0]
    port = k.irq.info[timer1].evtchn
    events_internal.mask_evtchn(k, port)
    events_internal.unmask_evtchn(k, port)
    assert k.trace.steps[-1].summary == f"port {port} unmasked"
    events_internal.mask_evtchn(k, port)
    k.hv.send_guest_virq(0, 0, vcpu=1)  # VIRQ_TIMER on vcpu 1: PENDING, not linked (MASKED)
    events_internal.unmask_evtchn(k, port)
    assert any(s.summary == f"port {port} pending: EVTCHNOP_unmask" for s in k.trace.steps[-6:])
    assert k.irq.core.descs[timer1].kstat == [0, 1]  # Xen linked it on vcpu 1's queue: delivered there


def test_prec_grows_when_irq_numbers_pass_999() -> None:
    k = booted("modern")
    with k.trace.muted():
        for _ in range(1000):
            p = k.hv.evtchn_alloc_unbound(0, DOMID_SELF, 0)
            ev.bind_evtchn_to_irqhandler(k, p, lambda i, d: 1, 0, "x", p)
    lines = k.show_interrupts().splitlines()
    assert lines[0] == " " * 12 + "CPU0       "
    assert lines[1] == "  24:          0  xen-percpu     -virq      timer0"  # 4 wide

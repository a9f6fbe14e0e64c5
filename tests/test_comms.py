"""The guest's side of the store ring, with the exact index values a learner sees.

A stand-in hypervisor records every EVTCHNOP_send, so each test can say how many times
the guest kicked xenstored; the store page is a plain 4096-byte buffer with the real
xenstore_domain_interface laid over it.
"""

from __future__ import annotations

from typing import Any

import pytest

from xenlab.abi.errno import EIO, ENOSPC
from xenlab.abi.xs_wire import PAGE_SIZE
from xenlab.base.sched import Scheduler, WaitQueue
from xenlab.base.trace import Trace
from xenlab.linux.irq import IRQ_HANDLED
from xenlab.linux.kernel import Kernel
from xenlab.linux.kernels import new_kernel
from xenlab.linux.pvops import xenbus_comms as pvops_comms
from xenlab.linux.pvops.kernel import PvopsKernel
from xenlab.linux.xenlinux import evtchn as xl_evtchn
from xenlab.linux.xenlinux import xenbus_comms as xl_comms
from xenlab.linux.xenlinux.kernel import XenLinuxKernel

#: each kernel's ring code: XenLinux 2.6.18's xenbus_comms.py, the modern kernel's module
COMMS: dict[str, Any] = {"2.6.18": xl_comms, "modern": pvops_comms}


def xb_of(k: Kernel) -> Any:
    """The kernel's xenbus globals (xen_store_interface, xen_store_evtchn, xenstored_ready ...)."""
    assert isinstance(k, (XenLinuxKernel, PvopsKernel))
    return k.xb


def xenbus_irq(k: Kernel) -> int:
    """The "xenbus" IRQ: a xenbus_comms.c static in Linux 6.1, kept with the globals by XenLinux."""
    return int(k.xb.xenbus_irq if isinstance(k, XenLinuxKernel) else k.comms.xenbus_irq)  # type: ignore[attr-defined]


def waitq(k: Kernel) -> Any:
    """xb_waitq of the kernel."""
    return k.xb.xb_waitq if isinstance(k, XenLinuxKernel) else k.comms.xb_waitq  # type: ignore[attr-defined]

STORE_PORT = 5


class SendRecorder:
    """Stand-in for the hypervisor: EVTCHNOP_send is all the ring code calls."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, int]] = []

    def evtchn_send(self, caller: int, port: int) -> int:
        self.sent.append((caller, port))
        return 0


class Page(bytearray):
    """The store page's bytes: req at 0..1023, rsp at 1024..2047."""

    @property
    def req(self) -> memoryview:
        return memoryview(self)[0:1024]

    @property
    def rsp(self) -> memoryview:
        return memoryview(self)[1024:2048]


def make_guest(flavour: str) -> tuple[Kernel, Any, SendRecorder, Page]:
    hv = SendRecorder()
    k = new_kernel(hv, 1, flavour=flavour, sched=Scheduler(), trace=Trace())  # type: ignore[arg-type]
    page = Page(PAGE_SIZE)
    xb = xb_of(k)
    xb.xen_store_interface = xl_comms.store_interface(page)
    xb.xen_store_evtchn = STORE_PORT
    return k, xb.xen_store_interface, hv, page


def set_indices(intf: Any, **kw: int) -> None:
    for name, value in kw.items():
        setattr(intf, name, value)


# -- chunk arithmetic -------------------------------------------------------------------------
def test_output_chunk_with_a_wrapped_consumer() -> None:
    # cons 0xFFFFFFF0, prod 0x10: 32 bytes queued across the 2^32 wrap, 992 free from offset 16.
    assert xl_comms.check_indexes(0xFFFFFFF0, 0x10)
    assert xl_comms.get_output_chunk(0xFFFFFFF0, 0x10) == (16, 992)


def test_output_chunk_stops_at_the_end_of_the_buffer() -> None:
    assert xl_comms.get_output_chunk(1000, 1016) == (1016, 8)  # 1008 free, but only 8 before the end
    assert xl_comms.get_output_chunk(0, 1024) == (0, 0)  # full


def test_input_chunk_splits_at_the_end_of_the_buffer() -> None:
    assert xl_comms.get_input_chunk(1016, 1032) == (1016, 8)
    assert xl_comms.get_input_chunk(1024, 1032) == (0, 8)


def test_check_indexes_is_uint32_arithmetic() -> None:
    assert xl_comms.check_indexes(0, 1024)
    assert not xl_comms.check_indexes(0, 1025)
    assert not xl_comms.check_indexes(0x10, 0xFFFFFFF0)  # consumer ahead of producer


# -- writing --------------------------------------------------------------------------------
@pytest.mark.parametrize("flavour", ["2.6.18", "modern"])
def test_write_into_a_wrapped_ring_lands_at_offset_16(flavour: str) -> None:
    k, intf, hv, page = make_guest(flavour)
    set_indices(intf, req_cons=0xFFFFFFF0, req_prod=0x10)
    data = bytes(range(40))
    rc = COMMS[k.flavour].xb_write(k, data)
    assert rc == (0 if flavour == "2.6.18" else 40)
    assert intf.req_prod == 0x38
    assert bytes(page.req[16:56]) == data
    step = [s for s in k.trace if s.function == "xb_write"][-1]
    rows = [(c.table, c.key, c.before, c.after) for c in step.changes]
    assert rows == [("domU1/ring", "req_prod", 0x10, 0x38)]


@pytest.mark.parametrize("flavour,kicks", [("2.6.18", 2), ("modern", 2)])
def test_write_across_2_to_the_32_is_two_chunks(flavour: str, kicks: int) -> None:
    k, intf, hv, page = make_guest(flavour)
    set_indices(intf, req_cons=0xFFFFFFF8, req_prod=0xFFFFFFF8)
    data = b"ABCDEFGHijklmnopqrst"  # 20 bytes: 8 at offset 1016, then 12 at offset 0
    COMMS[k.flavour].xb_write(k, data)
    assert intf.req_prod == 0x0C
    assert bytes(page.req[1016:1024]) == b"ABCDEFGH"
    assert bytes(page.req[0:12]) == b"ijklmnopqrst"
    assert len(hv.sent) == kicks == len([s for s in k.trace if s.function == "xb_write"])


def test_2618_kicks_after_every_chunk_modern_only_when_xenstored_caught_up() -> None:
    old, old_intf, old_hv, _ = make_guest("2.6.18")
    new, new_intf, new_hv, _ = make_guest("modern")
    for intf in (old_intf, new_intf):
        set_indices(intf, req_cons=0, req_prod=10)  # xenstored has not consumed 10 bytes yet
    COMMS[old.flavour].xb_write(old, b"hello")
    COMMS[new.flavour].xb_write(new, b"hello")
    assert old_hv.sent == [(1, STORE_PORT)]
    assert new_hv.sent == []  # it will see the new bytes when it reads the first ten
    set_indices(new_intf, req_cons=15)
    COMMS[new.flavour].xb_write(new, b"again")
    assert new_hv.sent == [(1, STORE_PORT)]


def test_modern_prod_le_cons_test_is_not_wrap_safe() -> None:
    # 8 unread bytes before the wrap: the second chunk's "prod <= req_cons" compares 0 with
    # 0xFFFFFFF0 and kicks although xenstored had not caught up (a harmless extra kick).
    k, intf, hv, page = make_guest("modern")
    set_indices(intf, req_cons=0xFFFFFFF0, req_prod=0xFFFFFFF8)
    COMMS[k.flavour].xb_write(k, bytes(16))
    assert intf.req_prod == 0x8
    assert len(hv.sent) == 1


def test_modern_write_into_a_full_ring_returns_short() -> None:
    k, intf, hv, page = make_guest("modern")
    set_indices(intf, req_cons=0, req_prod=1020)
    assert COMMS[k.flavour].xb_write(k, b"0123456789") == 4  # 4 bytes fit; the xenbus thread retries later
    assert intf.req_prod == 1024
    assert COMMS[k.flavour].xb_write(k, b"456789") == 0


def test_2618_writer_sleeps_on_xb_waitq_while_the_ring_is_full() -> None:
    k, intf, hv, page = make_guest("2.6.18")
    set_indices(intf, req_cons=0, req_prod=1024)
    done: list[int] = []
    writer = k.sched.kthread_run(lambda: done.append(COMMS[k.flavour].xb_write(k, b"0123456789")), "writer")
    # A stand-in xenstored: while the writer sleeps it consumes up to *room* and kicks the port.
    room, seen, kicked = [6, 1030], [], WaitQueue("xenstored")

    def xenstored() -> None:
        seen.append((writer.state, writer.wchan, intf.req_prod))
        intf.req_cons = room.pop(0)
        COMMS[k.flavour].wake_waiting(k, 7, waitq(k))

    hv.evtchn_send = lambda caller, port: k.sched.wake_up(kicked)  # type: ignore[method-assign]
    k.sched.kthread_run(xenstored, "xenstored", nests=True,
                        wait=(kicked, lambda: writer.state == "sleeping" and bool(room)))
    k.sched.run()
    # 6 bytes of room: the writer copies 6, then sleeps again for the last 4.
    assert seen == [("sleeping", "domU1:xb_waitq", 1024), ("sleeping", "domU1:xb_waitq", 1030)]
    assert done == [0] and intf.req_prod == 1034 and writer.state == "done"
    assert bytes(page.req[0:6]) == b"012345" and bytes(page.req[6:10]) == b"6789"


@pytest.mark.parametrize("flavour", ["2.6.18", "modern"])
def test_bad_request_indices_reset_that_ring_and_fail_with_eio(flavour: str) -> None:
    k, intf, hv, page = make_guest(flavour)
    set_indices(intf, req_cons=0, req_prod=1025, rsp_cons=3, rsp_prod=9)
    assert COMMS[k.flavour].xb_write(k, b"x") == -EIO
    assert (intf.req_cons, intf.req_prod) == (0, 0)
    assert (intf.rsp_cons, intf.rsp_prod) == (3, 9)  # the other ring is untouched
    assert hv.sent == []


# -- reading ------------------------------------------------------------------------------
@pytest.mark.parametrize("flavour,kicks", [("2.6.18", 2), ("modern", 0)])
def test_read_from_1016_to_1032_is_8_bytes_then_8_bytes(flavour: str, kicks: int) -> None:
    k, intf, hv, page = make_guest(flavour)
    set_indices(intf, rsp_cons=1016, rsp_prod=1032)
    page.rsp[1016:1024] = b"first-8."
    page.rsp[0:8] = b"second-8"
    assert COMMS[k.flavour].xb_read(k, 16) == b"first-8.second-8"
    assert intf.rsp_cons == 1032
    reads = [s for s in k.trace if s.function == "xb_read"]
    assert [c.after for s in reads for c in s.changes] == [1024, 1032]
    assert len(hv.sent) == kicks


def test_modern_read_kicks_only_when_the_ring_had_been_full() -> None:
    k, intf, hv, page = make_guest("modern")
    set_indices(intf, rsp_cons=0, rsp_prod=1024)
    COMMS[k.flavour].xb_read(k, 16)
    assert len(hv.sent) == 1  # xenstored may be waiting for room
    COMMS[k.flavour].xb_read(k, 16)
    assert len(hv.sent) == 1


def test_modern_read_returns_what_is_there() -> None:
    k, intf, hv, page = make_guest("modern")
    set_indices(intf, rsp_cons=0, rsp_prod=5)
    page.rsp[0:5] = b"abcde"
    assert COMMS[k.flavour].xb_read(k, 16) == b"abcde"
    assert COMMS[k.flavour].xb_read(k, 16) == b""


@pytest.mark.parametrize("flavour", ["2.6.18", "modern"])
def test_bad_response_indices_reset_that_ring(flavour: str) -> None:
    k, intf, hv, page = make_guest(flavour)
    set_indices(intf, rsp_cons=0x10, rsp_prod=0xFFFFFFF0, req_cons=4, req_prod=4)
    assert COMMS[k.flavour].xb_read(k, 16) == -EIO
    assert (intf.rsp_cons, intf.rsp_prod) == (0, 0)
    assert (intf.req_cons, intf.req_prod) == (4, 4)


# -- xb_init_comms ---------------------------------------------------------------------------
def stand_in_irq(monkeypatch: pytest.MonkeyPatch, result: int) -> list[Any]:
    """Replace the IRQ-layer seam; returns the list of (handler, dev_id) it was given."""
    bound: list[Any] = []

    def bind(kernel: Any, handler: Any, dev_id: Any) -> int:
        bound.append((handler, dev_id))
        return result

    monkeypatch.setattr(xl_comms, "bind_caller_port_to_irqhandler",
                        lambda kernel, port, handler, flags, name, dev_id: bind(kernel, handler, dev_id))
    monkeypatch.setattr(pvops_comms, "bind_evtchn_to_irqhandler",
                        lambda kernel, port, handler, flags, name, dev_id: bind(kernel, handler, dev_id))
    return bound


def test_2618_init_reports_the_request_ring_and_fixes_the_response_ring(monkeypatch: Any) -> None:
    k, intf, hv, page = make_guest("2.6.18")
    set_indices(intf, req_cons=24, req_prod=40, rsp_cons=16, rsp_prod=32)
    bound = stand_in_irq(monkeypatch, 260)
    assert COMMS[k.flavour].xb_init_comms(k) == 0
    assert [(line.level, line.text) for line in k.log] == [
        ("<3>", "XENBUS request ring is not quiescent (00000018:00000028)!"),
        ("<4>", "XENBUS response ring is not quiescent (00000010:00000020): fixing up"),
    ]
    assert (intf.req_cons, intf.req_prod) == (24, 40)  # lopsided: requests are left alone
    assert (intf.rsp_cons, intf.rsp_prod) == (32, 32)
    assert xenbus_irq(k) == 260
    handler, dev_id = bound[0]
    assert handler.__name__ == "wake_waiting" and dev_id is waitq(k)


def test_modern_init_messages_carry_the_xenbus_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    k, intf, hv, page = make_guest("modern")
    set_indices(intf, req_cons=24, req_prod=40, rsp_cons=16, rsp_prod=32)
    stand_in_irq(monkeypatch, 27)
    assert COMMS[k.flavour].xb_init_comms(k) == 0
    assert [line.text for line in k.log] == [
        "xenbus: request ring is not quiescent (00000018:00000028)!",
        "xenbus: response ring is not quiescent (00000010:00000020): fixing up",
    ]
    assert intf.rsp_cons == 32


def test_quiet_rings_print_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    k, intf, hv, page = make_guest("2.6.18")
    set_indices(intf, req_cons=0xFFFFFFF0, req_prod=0xFFFFFFF0, rsp_cons=7, rsp_prod=7)
    stand_in_irq(monkeypatch, 256)
    assert COMMS[k.flavour].xb_init_comms(k) == 0
    assert k.log == []


@pytest.mark.parametrize("flavour,text", [("2.6.18", "XENBUS request irq failed -28"),
                                          ("modern", "xenbus: request irq failed -28")])
def test_irq_binding_failure_is_reported(monkeypatch: pytest.MonkeyPatch, flavour: str, text: str) -> None:
    k, intf, hv, page = make_guest(flavour)
    stand_in_irq(monkeypatch, -ENOSPC)
    assert COMMS[k.flavour].xb_init_comms(k) == -ENOSPC
    assert [line.text for line in k.log] == [text]
    assert xenbus_irq(k) == 0


def test_2618_wake_waiting_marks_xenstored_ready_once_and_queues_the_probe() -> None:
    k, intf, hv, page = make_guest("2.6.18")
    probes: list[str] = []
    xb = xb_of(k)
    xb.probe_work = lambda: probes.append("probe_work")
    COMMS[k.flavour].wake_waiting(k, 260, waitq(k))
    COMMS[k.flavour].wake_waiting(k, 260, waitq(k))
    assert xb.xenstored_ready == 1 and probes == ["probe_work"]


def test_modern_wake_waiting_only_wakes() -> None:
    k, intf, hv, page = make_guest("modern")
    assert COMMS[k.flavour].wake_waiting(k, 27, waitq(k)) == IRQ_HANDLED
    assert xb_of(k).xenstored_ready == 0  # xenbus_probe_thread marks it when it wakes, not the handler


# -- with the real hypervisor and IRQ layer ---------------------------------------------------
def real_dom0(flavour: str) -> tuple[Kernel, Any, int]:
    """dom0 before xenstored: its store page and an unbound port for itself; xenstored's end bound."""
    from xenlab.linux.pvops import events_2l, events_base
    from xenlab.xen.hypervisor import Hypervisor

    trace = Trace()
    hv = Hypervisor(trace=trace)
    hv.domain_create(0, "Domain-0", privileged=True, initdomain=True)
    k = new_kernel(hv, 0, flavour=flavour, sched=Scheduler(), trace=trace)
    if isinstance(k, XenLinuxKernel):
        xl_evtchn.xen_init_IRQ(k)
    else:
        events_base.xen_init_IRQ(k, events_2l.xen_evtchn_2l_init)  # type: ignore[arg-type]
    page = hv.memory.alloc_page(0)
    xb = xb_of(k)
    xb.xen_store_interface = xl_comms.store_interface(page.buf)
    xb.xen_store_evtchn = hv.evtchn_alloc_unbound(0, 0x7FF0, 0)  # DOMID_SELF, remote dom0
    daemon_port = hv.evtchn_bind_interdomain(0, 0, xb.xen_store_evtchn)  # what xenstored does
    assert daemon_port > 0
    return k, xb, daemon_port


@pytest.mark.parametrize("flavour", ["2.6.18", "modern"])
def test_the_first_kick_from_xenstored_reaches_wake_waiting(flavour: str) -> None:
    k, xb, daemon_port = real_dom0(flavour)
    probes: list[int] = []
    if flavour == "2.6.18":
        xb.probe_work = lambda: probes.append(1)
    assert COMMS[k.flavour].xb_init_comms(k) == 0
    assert xenbus_irq(k) > 0
    line = next(x for x in k.show_interrupts().splitlines() if x.endswith("xenbus"))
    assert line.split(":")[0].strip() == str(xenbus_irq(k))
    assert k.hv.evtchn_send(0, daemon_port) == 0  # xenstored's dom0_init kick
    # 2.6.18's handler marks xenstored ready and schedules the probe; modern's only wakes xb_waitq.
    assert (xb.xenstored_ready, probes) == ((1, [1]) if flavour == "2.6.18" else (0, []))
    k.sched.shutdown()


@pytest.mark.parametrize("flavour", ["2.6.18", "modern"])
def test_xb_write_kicks_xenstored_through_the_hypervisor(flavour: str) -> None:
    k, xb, daemon_port = real_dom0(flavour)
    assert COMMS[k.flavour].xb_init_comms(k) == 0
    shared = k.hv.domains[0].shared_info
    shared.clear_pending(daemon_port)  # xenstored took the bind's own event off /dev/xen/evtchn
    COMMS[k.flavour].xb_write(k, b"\x02\0\0\0" + bytes(12))
    assert shared.test_pending(daemon_port)
    k.sched.shutdown()


def test_2618_init_again_unbinds_the_old_irq_first() -> None:
    # xb_init_comms runs again on resume: 2.6.18 unbinds its IRQ and binds afresh.
    k, xb, daemon_port = real_dom0("2.6.18")
    assert COMMS[k.flavour].xb_init_comms(k) == 0
    first = xenbus_irq(k)
    assert COMMS[k.flavour].xb_init_comms(k) == 0
    assert xenbus_irq(k) == first  # the lowest free dynamic IRQ again
    assert [x for x in k.show_interrupts().splitlines() if x.endswith("xenbus")] == [
        f"{first}:          0     Dynamic-irq  xenbus"]
    k.sched.shutdown()


def test_modern_init_again_only_rebinds() -> None:
    k, xb, daemon_port = real_dom0("modern")
    assert COMMS[k.flavour].xb_init_comms(k) == 0
    irq = xenbus_irq(k)
    assert COMMS[k.flavour].xb_init_comms(k) == 0
    assert xenbus_irq(k) == irq
    assert [t.name for t in k.sched.tasks] == ["xenbus"]  # the thread is not started twice
    assert k.trace[-1].function == "rebind_evtchn_irq"
    k.sched.shutdown()

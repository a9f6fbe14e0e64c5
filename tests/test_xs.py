"""xs_talkv and the xenbus / xenwatch threads, talking to the lab's real xenstored over the ring.

The rig: one guest kernel (2.6.18 or modern) whose store page is served by the lab
xenstored (``Daemon`` + ``RingServer``) running as a task "xenstored" on the same
deterministic scheduler. The event channel between them is a two-line stand-in: the
guest's EVTCHNOP_send wakes the daemon task; the daemon's notify runs the guest's store
IRQ handler (wake_waiting) at once, as an interrupt would.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from xenlab.abi import xs_wire as xsw
from xenlab.abi.errno import EAGAIN, EEXIST, EINVAL, ENOENT, ERANGE
from xenlab.abi.xs_wire import PAGE_SIZE
from xenlab.base.sched import Scheduler, WaitQueue
from xenlab.base.trace import Trace
from xenlab.linux.kernels import new_kernel
from xenlab.linux.pvops import xenbus_comms as pvops_comms
from xenlab.linux.pvops import xenbus_xs as pvops_xs
from xenlab.linux.xenlinux import xenbus_comms as xl_comms
from xenlab.linux.xenlinux import xenbus_xs as xl_xs
from xenlab.xenstored import wire
from xenlab.xenstored.daemon import Daemon
from xenlab.xenstored.ring import RingServer

GUEST_PORT, DAEMON_PORT, XENBUS_IRQ = 3, 41, 260
#: each kernel's xenbus_xs.c and xenbus_comms.c
XS: dict[str, Any] = {"2.6.18": xl_xs, "modern": pvops_xs}
COMMS: dict[str, Any] = {"2.6.18": xl_comms, "modern": pvops_comms}


class Rig:
    """A guest kernel and the lab xenstored joined by one store page and one event channel."""

    def __init__(self, flavour: str, monkeypatch: Any, domid: int = 1) -> None:
        self.sched, self.trace = Scheduler(), Trace()
        self.xs, self.comms = XS[flavour], COMMS[flavour]
        self.domains = {domid: SimpleNamespace(hvm=False, initdomain=False,
                                               start_info=SimpleNamespace(flags=0))}
        self.daemon = Daemon(trace=self.trace)
        self.server = RingServer(self.daemon, self, trace=self.trace)
        self.kernel = new_kernel(self, domid, flavour=flavour, sched=self.sched,  # type: ignore[arg-type]
                             trace=self.trace)
        self.page = bytearray(PAGE_SIZE)
        xb = self.kernel.xb  # type: ignore[attr-defined]
        xb.xen_store_interface = xl_comms.store_interface(self.page)  # the ctypes layout, either kernel
        xb.xen_store_evtchn = GUEST_PORT
        self.fired: list[int] = []
        self.kicks_to_guest = 0
        self.kicks_to_daemon = 0
        self.handler: Any = None
        self.daemon_wq = WaitQueue("xenstored:evtchn")
        if flavour == "modern":
            monkeypatch.setattr(pvops_comms, "bind_evtchn_to_irqhandler",
                                lambda kernel, port, handler, flags, name, dev_id: self._bind(kernel, handler,
                                                                                             dev_id))
        else:
            monkeypatch.setattr(xl_comms, "bind_caller_port_to_irqhandler",
                                lambda kernel, port, handler, flags, name, dev_id: self._bind(kernel, handler,
                                                                                             dev_id))
        # xenstored's main loop: wait for an event, service the ring
        self.sched.kthread_run(self.server.service, "xenstored", nests=True,
                               wait=(self.daemon_wq, lambda: bool(self.fired)))
        self.daemon.write(f"/local/domain/{domid}", "")
        self.daemon.set_perms(f"/local/domain/{domid}", f"n{domid}")
        assert self.server.introduce(domid, 0x1234, GUEST_PORT) == 0
        assert self.xs.xs_init(self.kernel) == 0
        self.sched.run()

    # the guest's hypervisor: EVTCHNOP_send on the store port
    def evtchn_send(self, caller: int, port: int) -> int:
        assert port == GUEST_PORT
        self.kicks_to_daemon += 1
        self.fired.append(DAEMON_PORT)
        self.sched.wake_up(self.daemon_wq)
        return 0

    def _bind(self, kernel: Any, handler: Any, dev_id: Any) -> int:
        self.handler = (handler, dev_id)
        return XENBUS_IRQ

    # xenstored's host
    def evtchn_bind_interdomain(self, remote_dom: int, remote_port: int) -> int:
        return DAEMON_PORT

    def evtchn_notify(self, port: int) -> None:
        self.kicks_to_guest += 1
        if self.handler is not None:
            handler, dev_id = self.handler
            handler(XENBUS_IRQ, dev_id)

    def evtchn_pending(self) -> list[int]:
        fired, self.fired = self.fired, []
        return fired

    def evtchn_unmask(self, port: int) -> None:
        pass

    def map_store_page(self, domid: int, mfn: int) -> Any:
        return self.page

    def unmap_store_page(self, domid: int) -> None:
        pass

    def dom0_write(self, path: str, value: str) -> None:
        """A dom0 tool writes through its socket; the daemon's main loop then services every ring."""
        self.daemon.write(path, value)
        self.fired.append(-1)  # the socket woke the daemon's loop
        self.sched.wake_up(self.daemon_wq)

    def requests(self) -> list[wire.Message]:
        """Every message the guest wrote into the request ring so far (from offset 0)."""
        n = self.comms.ring_indices(self.kernel)["req_prod"]
        return wire.Decoder().feed(bytes(self.page[0:n]))

    def steps(self, function: str) -> list[Any]:
        return [s for s in self.trace if s.function == function]


@pytest.fixture(params=["2.6.18", "modern"])
def rig(request: Any, monkeypatch: Any) -> Rig:
    r = Rig(request.param, monkeypatch)
    yield r
    r.sched.shutdown()


def test_xs_init_starts_the_two_threads_in_each_flavours_order(rig: Rig) -> None:
    names = [t.name for t in rig.sched.tasks if t.name != "xenstored"]
    assert names == (["xenwatch", "xenbus"] if rig.kernel.flavour == "2.6.18" else ["xenbus", "xenwatch"])
    k = rig.kernel
    assert (k.comms if k.flavour == "modern" else k.xb).xenbus_irq == XENBUS_IRQ
    assert all(t.state == "sleeping" for t in rig.sched.tasks)


def test_write_then_read_round_trip_over_the_ring(rig: Rig) -> None:
    k = rig.kernel
    assert rig.xs.xenbus_write(k, rig.xs.XBT_NIL, "data", "greeting", "hello ring") == 0
    assert rig.xs.xenbus_read(k, rig.xs.XBT_NIL, "data", "greeting") == "hello ring"
    assert rig.daemon.request(xsw.XS_READ, "/local/domain/1/data/greeting") == b"hello ring"
    reqs = rig.requests()
    assert [(m.type, m.payload) for m in reqs] == [(xsw.XS_WRITE, b"data/greeting\0hello ring"),
                                                   (xsw.XS_READ, b"data/greeting\0")]
    # 2.6.18 has one request in flight and always sends req_id 0; modern numbers them from 0.
    assert [m.req_id for m in reqs] == ([0, 0] if k.flavour == "2.6.18" else [0, 1])
    idx = rig.comms.ring_indices(k)
    assert idx["req_cons"] == idx["req_prod"] == 16 + 24 + 16 + 14
    assert idx["rsp_cons"] == idx["rsp_prod"] == 16 + 3 + 16 + 10
    talks = [(c.key, c.after) for s in rig.steps("xs_talkv") for c in s.changes]
    assert talks == [("1", "WRITE data/greeting -> WRITE 'OK'"),
                     ("2", "READ data/greeting -> READ 'hello ring'")]


def test_kicks_per_flavour(rig: Rig) -> None:
    before = rig.kicks_to_daemon
    rig.xs.xenbus_read(rig.kernel, rig.xs.XBT_NIL, "missing", "")
    # 2.6.18 kicks after the header and after the payload, then after each read chunk (2);
    # modern writes both before xenstored looks and kicks once, and never on reads of a non-full ring.
    assert rig.kicks_to_daemon - before == (4 if rig.kernel.flavour == "2.6.18" else 1)


def test_error_replies_become_minus_errno(rig: Rig) -> None:
    k = rig.kernel
    assert rig.xs.xenbus_read(k, rig.xs.XBT_NIL, "no", "such") == -ENOENT
    assert rig.xs.xenbus_directory(k, rig.xs.XBT_NIL, "no", "such") == -ENOENT
    assert rig.xs.xenbus_exists(k, rig.xs.XBT_NIL, "no", "such") == 0
    assert rig.xs.xenbus_mkdir(k, rig.xs.XBT_NIL, "a/b", "c") == 0
    assert rig.xs.xenbus_directory(k, rig.xs.XBT_NIL, "a", "") == ["b"]
    assert rig.xs.xenbus_exists(k, rig.xs.XBT_NIL, "a/b", "c") == 1
    assert rig.xs.xenbus_rm(k, rig.xs.XBT_NIL, "a", "") == 0
    assert rig.xs.xenbus_exists(k, rig.xs.XBT_NIL, "a", "") == 0


def test_unknown_error_names_are_einval_with_the_kernel_warning(rig: Rig) -> None:
    k = rig.kernel
    assert rig.xs.get_error(k, "EQUOTA") == EINVAL  # oxenstored's quota error
    prefix = "XENBUS " if k.flavour == "2.6.18" else "xenbus: "
    assert k.log[-1].text == f"{prefix}xen store gave: unknown error EQUOTA"
    # E2BIG joined the table with Xen 4.4: a 2.6.18 kernel does not know it.
    assert rig.xs.get_error(k, "E2BIG") == (EINVAL if k.flavour == "2.6.18" else 7)


def test_watch_registration_and_the_immediate_event_on_xenwatch(rig: Rig) -> None:
    k = rig.kernel
    seen: list[tuple[str, str, str]] = []

    def backend_changed(watch: Any, path: str, token: str) -> None:
        seen.append((k.sched.current.name, path, token))

    w = rig.xs.xenbus_watch(node="device", callback=backend_changed)
    assert rig.xs.register_xenbus_watch(k, w) == 0
    token = rig.xs.watch_token(k, w)
    assert token == f"{rig.xs.WATCH_ADDR_BASE:X}"
    # kmalloc'd: the direct map, __PAGE_OFFSET 0xffff880000000000 in 2.6.18's
    # include/asm-x86_64/mach-xen/asm/page.h:158 (0xffff888000000000 in 6.1)
    assert token.startswith("FFFF880" if k.flavour == "2.6.18" else "FFFF888")
    rig.sched.run()
    assert seen == [("xenwatch", "device", token)]  # OK, then the one immediate event
    # A driver's static watch (struct in the kernel image) gets an image address instead.
    # 2.6.18 names the static struct (its slot in the image follows link order, xenbus_xs.STATIC_WATCHES).
    where = {"symbol": "cpu_watch"} if k.flavour == "2.6.18" else {"static": True}
    static = rig.xs.xenbus_watch(node="cpu", callback=backend_changed, **where)
    assert rig.xs.watch_token(k, static).startswith("FFFFFFFF8")
    rig.dom0_write("/local/domain/1/device/vbd/51712/state", "1")
    rig.sched.run()
    assert seen[1:] == [("xenwatch", "device/vbd/51712/state", token)]
    assert [s.summary for s in rig.steps("xenwatch_thread")][-1] == (
        f"device/vbd/51712/state (token {token}) -> backend_changed")


def test_events_for_an_unknown_token_are_dropped(rig: Rig) -> None:
    k = rig.kernel
    rtype, body = k.xenbus_dev_request(xsw.XS_WATCH, 0, b"data\0DEADBEEF\0")
    assert (rtype, body) == (xsw.XS_WATCH, b"OK\0")
    rig.sched.run()
    summaries = [s.summary for s in rig.trace if "DEADBEEF" in s.summary]
    assert any("no such watch, dropped" in s for s in summaries)
    assert not (k.xs if k.flavour == "modern" else k.xs_state).watch_events


def test_unregister_sends_unwatch_and_stops_callbacks(rig: Rig) -> None:
    k = rig.kernel
    seen: list[str] = []
    w = rig.xs.xenbus_watch(node="control", callback=lambda watch, path, token: seen.append(path))
    rig.xs.register_xenbus_watch(k, w)
    rig.sched.run()
    rig.xs.unregister_xenbus_watch(k, w)
    rig.dom0_write("/local/domain/1/control/shutdown", "poweroff")
    rig.sched.run()
    assert seen == ["control"]
    assert rig.requests()[-1].type == xsw.XS_UNWATCH


def test_eexist_on_register_is_ignored_only_by_2618(rig: Rig) -> None:
    k = rig.kernel
    w = rig.xs.xenbus_watch(node="memory/target", callback=lambda *a: None)
    token = rig.xs.watch_token(k, w)
    # Someone (a previous kernel before kexec) already registered this exact path and token.
    k.xenbus_dev_request(xsw.XS_WATCH, 0, b"memory/target\0" + token.encode() + b"\0")
    assert rig.xs.register_xenbus_watch(k, w) == -EEXIST
    assert (w in (k.xs if k.flavour == "modern" else k.xs_state).watches) == (k.flavour == "2.6.18")


def test_transactions_commit_and_conflict(rig: Rig) -> None:
    k = rig.kernel
    err, t = rig.xs.xenbus_transaction_start(k)
    assert (err, t) == (0, 1)
    assert rig.xs.xenbus_write(k, t, "tx", "a", "1") == 0
    assert rig.xs.xenbus_read(k, rig.xs.XBT_NIL, "tx", "a") == -ENOENT  # not visible before commit
    assert rig.xs.xenbus_transaction_end(k, t, False) == 0
    assert rig.xs.xenbus_read(k, rig.xs.XBT_NIL, "tx", "a") == "1"
    # A conflict: the node read inside the transaction changes before the commit.
    err, t = rig.xs.xenbus_transaction_start(k)
    assert rig.xs.xenbus_read(k, t, "tx", "a") == "1"
    rig.dom0_write("/local/domain/1/tx/a", "2")
    assert rig.xs.xenbus_write(k, t, "tx", "a", "3") == 0
    assert rig.xs.xenbus_transaction_end(k, t, False) == -EAGAIN  # the caller retries
    assert rig.xs.xenbus_read(k, rig.xs.XBT_NIL, "tx", "a") == "2"
    if k.flavour == "2.6.18":
        assert k.xs_state.transaction_mutex.readers == 0


def test_scanf_printf_gather(rig: Rig) -> None:
    k, xs = rig.kernel, rig.xs
    assert xs.xenbus_printf(k, xs.XBT_NIL, "device/vif/0", "tx-ring-ref", "%u", 8) == 0
    assert xs.xenbus_printf(k, xs.XBT_NIL, "device/vif/0", "mac", "00:16:3e:00:00:01") == 0
    if k.flavour == "modern":  # 6.1: C formats, out parameters as (status, value)
        assert xs.xenbus_scanf(k, 0, "device/vif/0", "tx-ring-ref", "%u") == (1, 8)
        assert xs.xenbus_scanf(k, 0, "device/vif/0", "nothing", "%u") == (-ENOENT, None)
        assert xs.xenbus_scanf(k, 0, "device/vif/0", "mac", "%u") == (1, 0)  # sscanf stops at ':'
        assert xs.xenbus_gather(k, 0, "device/vif/0", ("tx-ring-ref", "%u"), ("mac", None)) == (
            0, [8, "00:16:3e:00:00:01"])
        assert xs.xenbus_gather(k, 0, "device/vif/0", ("mac", "%x"), ("nothing", None)) == (-ENOENT, [])
        return
    # 2.6.18: the C shapes too: (items matched or -errno, values), (err, values)
    assert xs.xenbus_scanf(k, xs.XBT_NIL, "device/vif/0", "tx-ring-ref", "%u") == (1, [8])
    assert xs.xenbus_scanf(k, xs.XBT_NIL, "device/vif/0", "nothing", "%u") == (-ENOENT, [])
    assert xs.xenbus_printf(k, xs.XBT_NIL, "device/vif/0", "bridge", "xenbr0") == 0
    assert xs.xenbus_scanf(k, xs.XBT_NIL, "device/vif/0", "bridge", "%u") == (-ERANGE, [])
    assert xs.xenbus_scanf(k, xs.XBT_NIL, "device/vif/0", "mac", "%x:%x") == (2, [0, 0x16])
    assert xs.xenbus_gather(k, xs.XBT_NIL, "device/vif/0", ("tx-ring-ref", "%u"), ("mac", None)) == (
        0, [8, "00:16:3e:00:00:01"])


def test_notebook_wrapper_raises_naming_the_errno(rig: Rig) -> None:
    store = rig.xs.XenStore(rig.kernel)
    store.write("name", "guest")
    assert store.read("name") == "guest"
    with pytest.raises(rig.xs.XenbusError, match="read nothing: ENOENT"):
        store.read("nothing")


def test_wrong_reply_type_is_einval_with_the_kernel_warning(rig: Rig) -> None:
    k = rig.kernel
    # Sabotage the daemon's dispatch for one request: answer READ with a WRITE-typed "OK".
    real = rig.daemon.handle

    def liar(conn: Any, msg: wire.Message) -> None:
        rig.daemon.handle = real
        rig.daemon.send_reply(conn, msg, b"OK\0", type=xsw.XS_WRITE)
        rig.daemon._flush()  # hand the queued reply to the ring, as handle() does

    rig.daemon.handle = liar  # type: ignore[method-assign]
    assert rig.xs.xenbus_read(k, rig.xs.XBT_NIL, "x", "") == -EINVAL
    prefix = "XENBUS " if k.flavour == "2.6.18" else "xenbus: "
    assert k.log[-1].text == f"{prefix}unexpected type [11], expected [2]"


def test_corrupted_response_indices_are_reset_and_reported_by_the_xenbus_thread(rig: Rig) -> None:
    k = rig.kernel
    intf = k.xb.xen_store_interface
    intf.rsp_prod = (intf.rsp_cons + 2000) & 0xFFFFFFFF  # more than a ring's worth "in flight"
    waitq = k.comms.xb_waitq if k.flavour == "modern" else k.xb.xb_waitq
    rig.comms.wake_waiting(k, XENBUS_IRQ, waitq)
    rig.sched.run()
    assert (intf.rsp_cons, intf.rsp_prod) == (0, 0)
    prefix = "XENBUS " if k.flavour == "2.6.18" else "xenbus: "
    assert k.log[-1].text == f"{prefix}error -5 while reading message"


def test_a_watch_event_with_one_string_is_refused(modern_rig: Rig) -> None:
    assert pvops_xs.xs_watch_msg(modern_rig.kernel, b"only-a-path\0") == -EINVAL


def test_2618_a_watch_event_with_one_string_is_an_error_of_the_xenbus_thread(monkeypatch: Any) -> None:
    rig = Rig("2.6.18", monkeypatch)
    k = rig.kernel
    intf = k.xb.xen_store_interface
    body = b"only-a-path\0"  # xenstored put a WATCH_EVENT without a token in the response ring
    msg = xl_xs.HDR.pack(xsw.XS_WATCH_EVENT, 0, 0, len(body)) + body
    off = intf.rsp_prod % 1024
    rig.page[1024 + off:1024 + off + len(msg)] = msg
    intf.rsp_prod += len(msg)
    handler, dev_id = rig.handler
    handler(XENBUS_IRQ, dev_id)
    rig.sched.run()
    assert k.log[-1].text == f"XENBUS error {-EINVAL} while reading message"
    assert not k.xs_state.watch_events
    rig.sched.shutdown()


@pytest.fixture
def modern_rig(monkeypatch: Any) -> Rig:
    r = Rig("modern", monkeypatch)
    yield r
    r.sched.shutdown()


def test_modern_hvm_guest_resets_stale_watches_when_the_toolstack_offers_it(modern_rig: Rig) -> None:
    """xs_reset_watches is modern only (2.6.18 has no XS_RESET_WATCHES)."""
    rig = modern_rig
    k = rig.kernel
    # A watch left behind by the kernel that ran before a kexec.
    k.xenbus_dev_request(xsw.XS_WATCH, 0, b"data\0FFFF888000001000\0")
    rig.dom0_write("/local/domain/1/control/platform-feature-xs_reset_watches", "1")
    rig.sched.run()
    rig.domains[1].hvm = True
    rig.xs.xs_reset_watches(k)
    assert rig.requests()[-1].type == xsw.XS_RESET_WATCHES
    before = len([s for s in rig.trace if "FFFF888000001000" in s.summary])
    rig.dom0_write("/local/domain/1/data/x", "1")
    rig.sched.run()
    assert len([s for s in rig.trace if "FFFF888000001000" in s.summary]) == before  # no event any more

"""Test helper: guest kernels' xenbus talking to the lab xenstored directly (no ring, no IRQ).

Tests live outside the walls, so they may join linux/ and xenstored/ by hand. ``DirectXs``
gives each kernel a daemon connection (its "ring") and a "xenwatch" task, and offers the
xs layer functions the probe code calls (``kernel.xs_ops``): every request is handled by
the real ``xenlab.xenstored.daemon.Daemon`` at once; watch events are routed by token to
the owning kernel's xenwatch task, which runs the callbacks one at a time, as
xenbus_xs.c's xenwatch thread does. This lets the probe, enumeration and handshake logic
be tested against the real store semantics (permissions, transactions, watches) while
the ring transport is tested on its own.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from xenlab.abi.xs_wire import XSD_ERROR_BY_NAME
from xenlab.abi.xs_wire import xsd_sockmsg_type as T
from xenlab.base.sched import WaitQueue
from xenlab.xenstored.daemon import Daemon
from xenlab.xenstored.wire import Message, join_strings, split_strings


@dataclass
class _KernelXs:
    kernel: Any
    conn: Any
    events: deque[tuple[str, str]] = field(default_factory=deque)
    watches: dict[str, Any] = field(default_factory=dict)
    wq: WaitQueue | None = None
    task: Any = None


class DirectXs:
    """The xs layer of several kernels, served straight by one Daemon."""

    def __init__(self, daemon: Daemon | None = None) -> None:
        self.daemon = daemon or Daemon()
        self.kernels: dict[int, _KernelXs] = {}  # by connection number
        self.by_kernel: dict[int, _KernelXs] = {}  # by id(kernel)
        self._next_token = 0
        self._req = 0

    # -- set-up --------------------------------------------------------------------
    def attach(self, kernel: Any) -> None:
        """Use this daemon for *kernel*'s xenstore access."""
        kernel.xs_ops = self

    def xs_init(self, kernel: Any) -> int:
        """xs_init: a connection for the kernel and its xenwatch task."""
        if id(kernel) in self.by_kernel:
            return 0
        conn = self.daemon.new_connection(kernel.domid, label=f"ring-{kernel.name}")
        ks = _KernelXs(kernel, conn, wq=WaitQueue(f"{kernel.name}:watch_events_waitq"))
        self.kernels[conn.number] = ks
        self.by_kernel[id(kernel)] = ks
        ks.task = kernel.sched.kthread_run(self._xenwatch, "xenwatch", ks, owner=kernel.name,
                                           wait=(ks.wq, lambda: bool(ks.events)))
        return 0

    def _xenwatch(self, ks: _KernelXs) -> None:
        """One turn of xenwatch: the first queued event's callback."""
        path, token = ks.events.popleft()
        watch = ks.watches.get(token)
        if watch is not None:
            watch.callback(watch, path, token)

    # -- requests ------------------------------------------------------------------
    def _talk(self, kernel: Any, type: int, payload: bytes, tx: int = 0) -> tuple[int, bytes]:
        ks = self.by_kernel[id(kernel)]
        self._req += 1
        self.daemon.handle(ks.conn, Message(int(type), self._req, tx, payload))
        reply: tuple[int, bytes] | None = None
        for other in list(self.kernels.values()):
            for msg in other.conn.take_output():
                if msg.type == T.XS_WATCH_EVENT:
                    path, token = (p.decode() for p in split_strings(msg.payload)[:2])
                    other.events.append((path, token))
                    other.kernel.sched.wake_up(other.wq)
                elif other is ks:
                    reply = (msg.type, msg.payload)
        assert reply is not None, "the daemon sent no reply"
        return reply

    @staticmethod
    def _err(payload: bytes) -> int:
        return -XSD_ERROR_BY_NAME.get(payload.rstrip(b"\0").decode(), 22)

    @staticmethod
    def _path(dir: str, node: str) -> str:
        return dir if not node else (node if not dir else f"{dir}/{node}")

    def xenbus_read(self, kernel: Any, xbt: int, dir: str, node: str) -> str | int:
        t, p = self._talk(kernel, T.XS_READ, join_strings(self._path(dir, node)), xbt)
        return self._err(p) if t == T.XS_ERROR else p.decode()

    def xenbus_write(self, kernel: Any, xbt: int, dir: str, node: str, value: str) -> int:
        t, p = self._talk(kernel, T.XS_WRITE, self._path(dir, node).encode() + b"\0" + value.encode(), xbt)
        return self._err(p) if t == T.XS_ERROR else 0

    def xenbus_directory(self, kernel: Any, xbt: int, dir: str, node: str) -> list[str] | int:
        t, p = self._talk(kernel, T.XS_DIRECTORY, join_strings(self._path(dir, node)), xbt)
        if t == T.XS_ERROR:
            return self._err(p)
        return [s.decode() for s in split_strings(p)] if p else []

    def xenbus_exists(self, kernel: Any, xbt: int, dir: str, node: str) -> bool:
        return not isinstance(self.xenbus_directory(kernel, xbt, dir, node), int)

    def xenbus_transaction_start(self, kernel: Any) -> tuple[int, int]:
        t, p = self._talk(kernel, T.XS_TRANSACTION_START, b"\0")
        return (self._err(p), 0) if t == T.XS_ERROR else (0, int(p.rstrip(b"\0")))

    def xenbus_transaction_end(self, kernel: Any, xbt: int, abort: bool) -> int:
        t, p = self._talk(kernel, T.XS_TRANSACTION_END, b"F\0" if abort else b"T\0", xbt)
        return self._err(p) if t == T.XS_ERROR else 0

    def register_xenbus_watch(self, kernel: Any, watch: Any) -> int:
        ks = self.by_kernel[id(kernel)]
        self._next_token += 1
        token = f"{self._next_token:x}"
        ks.watches[token] = watch
        watch.token = token
        t, p = self._talk(kernel, T.XS_WATCH, join_strings(watch.node, token))
        if t == T.XS_ERROR:
            del ks.watches[token]
            return self._err(p)
        return 0

    def unregister_xenbus_watch(self, kernel: Any, watch: Any) -> None:
        ks = self.by_kernel[id(kernel)]
        token = getattr(watch, "token", None)
        if token is None or token not in ks.watches:
            return
        del ks.watches[token]
        self._talk(kernel, T.XS_UNWATCH, join_strings(watch.node, token))
        ks.events = deque(e for e in ks.events if e[1] != token)

    # -- the toolstack's side ------------------------------------------------------
    def tool_write(self, path: str, value: str) -> None:
        """A dom0 tool (socket) writes a node; watch events go to the kernels."""
        sock = getattr(self, "_sock", None)
        if sock is None:
            sock = self._sock = self.daemon.new_connection(0, "socket-tools")
        self._req += 1
        payload = path.encode() + b"\0" + value.encode()
        self.daemon.handle(sock, Message(int(T.XS_WRITE), self._req, 0, payload))
        self._route(sock)

    def tool_set_perms(self, path: str, *perms: str) -> None:
        """xenstore-chmod from dom0's socket: perms like 'n0', 'r1'."""
        sock = getattr(self, "_sock", None) or self.daemon.new_connection(0, "socket-tools")
        self._sock = sock
        self._req += 1
        self.daemon.handle(sock, Message(int(T.XS_SET_PERMS), self._req, 0, join_strings(path, *perms)))
        self._route(sock)

    def tool_read(self, path: str) -> str | None:
        """Read a node from dom0's socket (None if absent)."""
        sock = getattr(self, "_sock", None) or self.daemon.new_connection(0, "socket-tools")
        self._sock = sock
        self._req += 1
        self.daemon.handle(sock, Message(int(T.XS_READ), self._req, 0, join_strings(path)))
        replies = self._route(sock)
        t, p = replies[-1]
        return None if t == T.XS_ERROR else p.decode()

    def tool_rm(self, path: str) -> None:
        """xenstore-rm from dom0's socket; watch events go to the kernels."""
        sock = getattr(self, "_sock", None) or self.daemon.new_connection(0, "socket-tools")
        self._sock = sock
        self._req += 1
        self.daemon.handle(sock, Message(int(T.XS_RM), self._req, 0, join_strings(path)))
        self._route(sock)

    def tool_directory(self, path: str) -> list[str]:
        """The children of a node, read from dom0's socket ([] if absent)."""
        sock = getattr(self, "_sock", None) or self.daemon.new_connection(0, "socket-tools")
        self._sock = sock
        self._req += 1
        self.daemon.handle(sock, Message(int(T.XS_DIRECTORY), self._req, 0, join_strings(path)))
        t, p = self._route(sock)[-1]
        return [] if t == T.XS_ERROR or not p else [x.decode() for x in split_strings(p)]

    def _route(self, sock: Any) -> list[tuple[int, bytes]]:
        own = [(m.type, m.payload) for m in sock.take_output()]
        for other in list(self.kernels.values()):
            for msg in other.conn.take_output():
                if msg.type == T.XS_WATCH_EVENT:
                    path, token = (p.decode() for p in split_strings(msg.payload)[:2])
                    other.events.append((path, token))
                    other.kernel.sched.wake_up(other.wq)
        return own


# -- a stand-in hypervisor and IRQ layer, for when only the probe logic is under test ----------
@dataclass
class FakePage:
    """A machine page: its mfn and 4096 writable bytes."""

    mfn: int
    buf: bytearray = field(default_factory=lambda: bytearray(4096))


class FakeMemory:
    """hv.memory: pages handed out with increasing mfns."""

    def __init__(self) -> None:
        self.pages: dict[int, FakePage] = {}
        self.next_mfn = 0x1000
        self.freed: list[int] = []

    def alloc_page(self, owner: int) -> FakePage:
        page = FakePage(self.next_mfn)
        self.pages[page.mfn] = page
        self.next_mfn += 1
        return page

    def page(self, mfn: int) -> FakePage:
        return self.pages[mfn]

    def free_page(self, page: FakePage) -> None:
        self.pages.pop(page.mfn, None)
        self.freed.append(page.mfn)


class FakeDomain:
    """A domain: start_info, vcpus, its event-channel ports (port -> (state, remote dom, remote port))."""

    def __init__(self, domid: int, initdomain: bool, vcpus: int) -> None:
        from xenlab.abi.start_info import SIF_INITDOMAIN, SIF_PRIVILEGED, start_info

        self.domid = domid
        self.initdomain = initdomain
        self.hvm = False
        self.hvm_params: dict[int, int] = {}
        self.max_vcpus = vcpus
        self.start_info = start_info()
        if initdomain:
            self.start_info.flags = SIF_INITDOMAIN | SIF_PRIVILEGED
        self.ports: dict[int, list[Any]] = {}

    def mfn_to_pfn(self, mfn: int) -> int:
        return mfn - 0x1000

    def pfn_to_mfn(self, pfn: int) -> int:
        return pfn + 0x1000

    def free_port(self) -> int:
        port = 1
        while port in self.ports:
            port += 1
        return port


class FakeHV:
    """The hypervisor calls xenbus and the drivers make: memory and event channels (lowest free port)."""

    def __init__(self) -> None:
        self.memory = FakeMemory()
        self.domains: dict[int, FakeDomain] = {}
        self.enosys = False

    def domain_create(self, domid: int, initdomain: bool = False, vcpus: int = 1) -> FakeDomain:
        d = FakeDomain(domid, initdomain, vcpus)
        self.domains[domid] = d
        return d

    def evtchn_alloc_unbound(self, caller: int, dom: int, remote_dom: int) -> int:
        from xenlab.abi.event_channel import DOMID_SELF

        d = self.domains[caller if dom == DOMID_SELF else dom]
        port = d.free_port()
        d.ports[port] = ["unbound", caller if remote_dom == DOMID_SELF else remote_dom, 0]
        return port

    def evtchn_bind_interdomain(self, caller: int, remote_dom: int, remote_port: int) -> int:
        d, r = self.domains[caller], self.domains[remote_dom]
        rp = r.ports.get(remote_port)
        if rp is None or rp[0] != "unbound" or rp[1] != caller:
            return -22
        port = d.free_port()
        d.ports[port] = ["interdomain", remote_dom, remote_port]
        r.ports[remote_port] = ["interdomain", caller, port]
        return port

    def evtchn_close(self, caller: int, port: int) -> int:
        d = self.domains[caller]
        ent = d.ports.pop(port, None)
        if ent is None:
            return -22
        if ent[0] == "interdomain":
            r = self.domains[ent[1]]
            r.ports[ent[2]] = ["unbound", caller, 0]
        return 0


class FakeIrqLayer:
    """bind_* / unbind_from_irqhandler over FakeHV: IRQs numbered from *first*, named like the kernel's."""

    def __init__(self, first: int = 16) -> None:
        self.first = first
        self.irqs: dict[int, tuple[int, str]] = {}  # irq -> (port, name)

    def _irq(self, port: int, name: str) -> int:
        irq = self.first
        while irq in self.irqs:
            irq += 1
        self.irqs[irq] = (port, name)
        return irq

    def bind_evtchn_to_irqhandler_lateeoi(self, kernel: Any, port: int, handler: Any, flags: int, name: str,
                                          dev_id: Any) -> int:
        return self._irq(port, name)

    def bind_listening_port_to_irqhandler(self, kernel: Any, remote: int, handler: Any, flags: int, name: str,
                                          dev_id: Any) -> int:
        return self._irq(kernel.hv.evtchn_alloc_unbound(kernel.domid, 0x7FF0, remote), name)

    def _interdomain(self, kernel: Any, remote: int, rport: int, handler: Any, flags: int, name: str,
                     dev_id: Any) -> int:
        port = kernel.hv.evtchn_bind_interdomain(kernel.domid, remote, rport)
        return port if port < 0 else self._irq(port, name)

    bind_interdomain_evtchn_to_irqhandler = _interdomain
    bind_interdomain_evtchn_to_irqhandler_lateeoi = _interdomain

    def irq_to_evtchn_port(self, kernel: Any, irq: int) -> int:
        return self.irqs[irq][0]

    evtchn_from_irq = irq_to_evtchn_port

    def unbind_from_irqhandler(self, kernel: Any, irq: int, dev_id: Any) -> None:
        port, _ = self.irqs.pop(irq)
        kernel.hv.evtchn_close(kernel.domid, port)

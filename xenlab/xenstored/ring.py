"""The ring transport: serving a domain through its store page and event channel.

Theory of operation
-------------------
Each domain's store page holds ``struct xenstore_domain_interface``: a 1024-byte request
ring the guest produces into (``req_prod``) and the daemon consumes from (``req_cons``),
and a response ring the other way round (``rsp_prod`` / ``rsp_cons``). Indices are
free-running ``uint32`` byte counts; byte *x* lives at ``ring[x & 1023]``; a side may
trust the other's index only if ``prod - cons <= 1024`` (``check_indexes``).

``RingConnection`` does what C xenstored 4.17's ``readchn``/``writechn``
(tools/xenstore/xenstored_domain.c) do: read the indices once, check them, copy the
bytes, then store the new index, then kick the event channel, even when 0 bytes moved.
``RingServer.service`` is one wake-up of C xenstored's ``main()``: passes over every
ring, each pass one ``handle_input`` (the 16-byte header, then in the same call exactly
the payload; only the contiguous part up to the ring's end per read) and one
``handle_output`` (``write_messages``: a reply's header, then its payload, two
``writechn`` calls), repeated while any ring has work. So a request costs at least two
kicks in and two out. oxenstored writes a whole packet at once (``ml_interface_write``,
tools/ocaml/libs/xb/xs_ring_stubs.c) and kicks only when bytes moved (its split is
inferred from those sources). Output that does not fit stays queued until the guest
frees space and kicks; a guest with quota-many replies unread is not read from.

A guest that breaks the rules loses its connection and nothing else: bad indices set
``error = XENSTORE_ERROR_RINGIDX``, a header with len > 4096 sets
``error = XENSTORE_ERROR_PROTO``, and the connection is ignored from then on
(``ignore_connection``). With ``XENSTORE_SERVER_FEATURE_RECONNECTION`` advertised
(oxenstored), a guest that sets ``connection = 1`` gets the reconnect handshake: partial
packets dropped, both rings emptied (indices 0, contents 0xff), its watches and
transactions discarded, ``connection = 0``, a kick.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xenlab.abi.event_channel import VIRQ_DOM_EXC
from xenlab.abi.xs_wire import (
    MASK_XENSTORE_IDX,
    XENSTORE_CONNECTED,
    XENSTORE_ERROR_PROTO,
    XENSTORE_ERROR_RINGIDX,
    XENSTORE_RECONNECT,
    XENSTORE_RING_SIZE,
    XENSTORE_SERVER_FEATURE_RECONNECTION,
    XS_WATCH_EVENT,
    XSD_SOCKMSG_SIZE,
    xenstore_domain_interface,
)
from xenlab.base.trace import Trace
from xenlab.xenstored import wire
from xenlab.xenstored.connection import Connection

if TYPE_CHECKING:
    from xenlab.xenstored.daemon import Daemon
    from xenlab.xenstored.host import XenstoredHost

_U32 = 0xFFFFFFFF
_REQ = xenstore_domain_interface.req.offset
_RSP = xenstore_domain_interface.rsp.offset
ERROR_NAMES = {0: "NONE", 1: "COMM", 2: "RINGIDX", 3: "PROTO"}

#: personality -> (source file of the ring code, read function, write function, split header/payload writes)
RING_CODE = {
    "cxenstored": ("tools/xenstore/xenstored_domain.c", "readchn", "writechn", True),
    "oxenstored": ("tools/ocaml/libs/xb/xs_ring_stubs.c", "ml_interface_read", "ml_interface_write", False),
}


def check_indexes(cons: int, prod: int) -> bool:
    """check_indexes(): at most XENSTORE_RING_SIZE bytes between cons and prod (xenstored_domain.c)."""
    return ((prod - cons) & _U32) <= XENSTORE_RING_SIZE


class RingConnection:
    """One domain's store page, its local event-channel port and its daemon connection."""

    def __init__(self, server: RingServer, domid: int, port: int, buf: Any, conn: Connection) -> None:
        self.server = server
        self.domid = domid
        self.port = port
        self.mem = memoryview(buf).cast("B")
        self.intf = xenstore_domain_interface.from_buffer(buf)
        self.conn = conn
        self.decoder = wire.Decoder()
        self.out: deque[list[Any]] = deque()  # [segment, ends a reply] waiting for room in rsp
        self.replies_queued = 0
        self.ignored = False
        self.table = f"xenstored/ring/d{domid}"
        if server.trace is not None:
            server.trace.set_initial(self.table, 0)  # the fields of a zeroed page
        conn.on_output = self._take_output
        conn.on_reset = self._conn_reset

    # Daemon output --------------------------------------------------------------------

    def _take_output(self, conn: Connection) -> None:
        """conn.on_output: the replies stay on the daemon's queue (out_list) until there is room."""
        if self.ignored:
            conn.clear_output()

    def _fill(self) -> None:
        """write_messages() taking the head of out_list: one message as ring segments."""
        msg = self.server.daemon.take_message(self.conn)
        if msg is None:
            return
        data = wire.encode(msg)
        counted = msg.type != XS_WATCH_EVENT
        self.replies_queued += counted
        if self.cxs:  # write_messages(): the header, then the payload (even an empty one)
            self.out.append([bytearray(data[:XSD_SOCKMSG_SIZE]), True, False])
            self.out.append([bytearray(data[XSD_SOCKMSG_SIZE:]), False, counted])
        else:
            self.out.append([bytearray(data), False, counted])

    @property
    def cxs(self) -> bool:
        """True when modelling C xenstored's ring code (else oxenstored's)."""
        return self.server.personality == "cxenstored"

    @property
    def queued(self) -> int:
        """Reply bytes waiting for room in the response ring (the message being written, and the rest)."""
        return sum(len(seg[0]) for seg in self.out) + self.conn.out_bytes

    def conn_can_read(self) -> bool:
        """conn_can_read(): requests waiting, and the guest not over its outstanding-replies quota."""
        if self.ignored or self.intf.req_cons == self.intf.req_prod:
            return False
        if not self.server.daemon.domain_can_read(self.conn):
            return False
        if self.conn.privileged:
            return True
        return self.replies_queued + self.conn.outstanding < self.server.daemon.quotas.outstanding

    def conn_can_write(self) -> bool:
        """conn_can_write(): output queued and the response ring not full (domain_can_write)."""
        if not self.out and not self.ignored:
            self._fill()
        return (not self.ignored and bool(self.out)
                and ((self.intf.rsp_prod - self.intf.rsp_cons) & _U32) != XENSTORE_RING_SIZE)

    # The ring ---------------------------------------------------------------------------

    def _set(self, field: str, value: int, changes: list[tuple[str, str, Any, Any]]) -> None:
        before = getattr(self.intf, field)
        setattr(self.intf, field, value & _U32)
        changes.append((self.table, field, before, value & _U32))

    def readchn(self, want: int) -> bytes | None:
        """readchn() (xenstored_domain.c): up to *want* request bytes, req_cons on, notify; None if bad."""
        fn = RING_CODE[self.server.personality][1]
        cons, prod = self.intf.req_cons, self.intf.req_prod
        if not check_indexes(cons, prod):
            self.ignore(XENSTORE_ERROR_RINGIDX, f"{fn}: req_cons={cons:#x} req_prod={prod:#x}: "
                        f"{(prod - cons) & _U32} bytes in flight > {XENSTORE_RING_SIZE}")
            return None
        avail = (prod - cons) & _U32
        if self.cxs:  # get_input_chunk: the contiguous part only
            avail = min(avail, XENSTORE_RING_SIZE - MASK_XENSTORE_IDX(cons))
        n = min(avail, want)
        if n == 0 and not self.cxs:
            return b""
        data = self._copy_out(cons, n)
        changes: list[tuple[str, str, Any, Any]] = []
        if n:
            self._set("req_cons", cons + n, changes)
        self.server.host.evtchn_notify(self.port)  # readchn kicks even after copying 0 bytes
        self.server.record(fn, f"d{self.domid}: {n} bytes from req[{MASK_XENSTORE_IDX(cons)}], "
                     f"req_cons {cons:#x} -> {(cons + n) & _U32:#x}; notify port {self.port}", changes)
        return data

    def _copy_out(self, cons: int, n: int) -> bytes:
        start = MASK_XENSTORE_IDX(cons)
        first = min(n, XENSTORE_RING_SIZE - start)
        data = bytes(self.mem[_REQ + start:_REQ + start + first])
        if first < n:
            data += bytes(self.mem[_REQ:_REQ + n - first])
        return data

    def writechn(self) -> int:
        """writechn() (xenstored_domain.c): the head segment into rsp, rsp_prod on, notify; -1 if bad."""
        fn = RING_CODE[self.server.personality][2]
        if not self.out:
            return 0
        cons, prod = self.intf.rsp_cons, self.intf.rsp_prod
        if not check_indexes(cons, prod):
            self.ignore(XENSTORE_ERROR_RINGIDX, f"{fn}: rsp_cons={cons:#x} rsp_prod={prod:#x}: "
                        f"{(prod - cons) & _U32} bytes in flight > {XENSTORE_RING_SIZE}")
            return -1
        room = XENSTORE_RING_SIZE - ((prod - cons) & _U32)
        if self.cxs:  # get_output_chunk: the contiguous part only
            room = min(room, XENSTORE_RING_SIZE - MASK_XENSTORE_IDX(prod))
        seg, _, ends_reply = self.out[0]
        n = min(room, len(seg))
        if n == 0 and not self.cxs:
            return 0
        start = MASK_XENSTORE_IDX(prod)
        first = min(n, XENSTORE_RING_SIZE - start)
        self.mem[_RSP + start:_RSP + start + first] = seg[:first]
        if first < n:
            self.mem[_RSP:_RSP + n - first] = seg[first:n]
        del seg[:n]
        if not seg:
            self.out.popleft()
            self.replies_queued -= ends_reply
        changes: list[tuple[str, str, Any, Any]] = []
        if n:
            self._set("rsp_prod", prod + n, changes)
        self.server.host.evtchn_notify(self.port)  # writechn kicks even after copying 0 bytes
        self.server.record(fn, f"d{self.domid}: {n} bytes to rsp[{start}], "
                     f"rsp_prod {prod:#x} -> {(prod + n) & _U32:#x}; notify port {self.port}", changes)
        return n

    def _decode(self, data: bytes) -> list[wire.Message] | None:
        """The messages *data* completes; None (connection ignored, error=PROTO) on len > 4096."""
        try:
            return self.decoder.feed(data)
        except wire.PayloadTooLong as exc:
            self.ignore(XENSTORE_ERROR_PROTO, f"Client tried to feed us {exc.length}")
            return None

    def _dispatch(self, msgs: list[wire.Message]) -> None:
        for msg in msgs:
            if self.ignored:
                return
            self.server.daemon.handle(self.conn, msg)

    def handle_input(self) -> int:
        """handle_input() (xenstored_core.c): the header, then in the same call the payload; bytes read."""
        moved = 0
        if self.decoder.header is None:  # in->inhdr
            data = self.readchn(self.decoder.wanted)
            msgs = None if data is None else self._decode(data)
            if data is None or msgs is None:
                return -1
            moved += len(data)
            if msgs:  # a header with len 0: C xenstored still reads (0 bytes) and kicks
                if self.cxs and self.readchn(0) is None:
                    return -1
                self._dispatch(msgs)
                return moved
            if self.decoder.header is None or not self.cxs:
                return moved  # header incomplete (or oxenstored: the payload on its next turn)
        data = self.readchn(self.decoder.wanted)
        msgs = None if data is None else self._decode(data)
        if data is None or msgs is None:
            return -1
        self._dispatch(msgs)
        return moved + len(data)

    def handle_output(self) -> int:
        """handle_output()/write_messages() (xenstored_core.c): the head message, header then payload."""
        was_header = self.out[0][1]
        moved = self.writechn()
        if moved < 0:
            return -1
        if self.cxs and was_header and self.out and not self.out[0][1]:
            # The header is all out: a domain gets the payload in the same call (0 bytes still kick).
            n = self.writechn()
            if n < 0:
                return -1
            moved += n
        return moved

    def _conn_reset(self, conn: Connection) -> None:
        """domain_conn_reset() (INTRODUCE): unsent output and partial input go, all four indices 0.

        C xenstored only: oxenstored's do_introduce leaves a known domain's ring as it is.
        """
        if not self.cxs:
            return
        changes: list[tuple[str, str, Any, Any]] = []
        for field in ("req_cons", "req_prod", "rsp_cons", "rsp_prod"):
            if getattr(self.intf, field):
                self._set(field, 0, changes)
        self.decoder.reset()
        self.out.clear()
        self.replies_queued = 0
        if not changes:
            return
        self.server.record("domain_conn_reset", f"d{self.domid}: ring indices zeroed"
                           + (" (the connection stays ignored)" if self.ignored else ""), changes)

    def ignore(self, err: int, why: str) -> None:
        """ignore_connection() (xenstored_core.c): set the error field, drop watches/transactions/output."""
        if self.ignored:
            return
        self.ignored = True
        self.why = why
        changes: list[tuple[str, str, Any, Any]] = []
        self._set("error", err, changes)
        self.out.clear()
        self.replies_queued = 0
        self.decoder.reset()
        self.server.record("ignore_connection", f"d{self.domid} ignored, error={ERROR_NAMES[err]}: {why}",
                     changes)
        self.server.daemon.ignore_connection(self.conn)

    def reconnect(self) -> None:
        """ml_interface_close() (xs_ring_stubs.c) for connection=1: empty rings, forget the session, kick."""
        changes: list[tuple[str, str, Any, Any]] = []
        for field in ("req_cons", "req_prod", "rsp_cons", "rsp_prod"):
            self._set(field, 0, changes)
        self.mem[_REQ:_RSP + XENSTORE_RING_SIZE] = b"\xff" * (2 * XENSTORE_RING_SIZE)
        self.decoder.reset()
        self.out.clear()
        self.replies_queued = 0
        daemon = self.server.daemon
        daemon.close_connection(self.conn)
        self.conn = daemon.new_connection(domid=self.domid, label=f"domain{self.domid}")
        self.conn.on_output = self._take_output
        self._set("connection", XENSTORE_CONNECTED, changes)
        self.server.host.evtchn_notify(self.port)
        self.server.record("ml_interface_close", f"d{self.domid} reconnected: rings emptied, watches and "
                     f"transactions dropped; notify port {self.port}", changes)

    def check_reconnect(self) -> None:
        """With RECONNECTION advertised, a guest's connection=1 starts the handshake."""
        if (not self.ignored and self.server.features & XENSTORE_SERVER_FEATURE_RECONNECTION
                and self.intf.connection == XENSTORE_RECONNECT):
            self.reconnect()


class RingServer:
    """The daemon's ring side: dom0's local ring, INTRODUCE'd domains, the event loop step."""

    def __init__(self, daemon: Daemon, host: XenstoredHost, *, trace: Trace | None = None,
                 personality: str = "cxenstored", features: int | None = None,
                 actor: str = "xenstored") -> None:
        if personality not in RING_CODE:
            raise ValueError(f"unknown personality {personality!r}; choose one of {sorted(RING_CODE)}")
        self.daemon = daemon
        self.host = host
        self.trace = trace
        self.personality = personality
        self.features = daemon.features if features is None else features
        self.actor = actor
        self.rings: dict[int, RingConnection] = {}
        self.by_port: dict[int, RingConnection] = {}
        self.virq_port: int | None = None
        self.domain_gone: Callable[[int], bool] | None = None
        daemon.on_introduce = self.introduce
        daemon.on_release = self.release

    def record(self, function: str, summary: str, changes: list[tuple[str, str, Any, Any]]) -> None:
        """Record one step of the ring code (actor: the daemon's name; source: its ring file)."""
        if self.trace is not None:
            self.trace.record(function, summary, actor=self.actor, source=RING_CODE[self.personality][0],
                              changes=changes)

    def _add(self, domid: int, port: int, buf: Any, function: str, summary: str) -> RingConnection:
        conn = self.daemon.new_connection(domid=domid, label=f"domain{domid}")
        rc = RingConnection(self, domid, port, buf, conn)
        # the fields as the page holds them when the connection is made (a zeroed page: all 0)
        changes: list[tuple[str, str, Any, Any]] = [
            (rc.table, f, None, int(getattr(rc.intf, f)))
            for f in ("req_cons", "rsp_prod", "server_features", "error", "connection")]
        if self.features:
            rc._set("server_features", rc.intf.server_features | self.features, changes)
        self.rings[domid] = rc
        self.by_port[port] = rc
        self.record(function, summary, [(rc.table, "port", None, port), *changes])
        return rc

    def attach_local(self, remote_port: int, buf: Any) -> RingConnection:
        """dom0_init() (xenstored_domain.c): serve dom0's own ring (xsd_kva, xsd_port), then kick it once."""
        port = self.host.evtchn_bind_interdomain(0, remote_port)
        rc = self._add(0, port, buf, "dom0_init",
                       f"d0 ring: bound xsd_port {remote_port} as local port {port}; notify")
        self.host.evtchn_notify(port)  # without this kick dom0's xenbus probe never runs
        return rc

    def introduce(self, domid: int, mfn: int, remote_port: int) -> int:
        """introduce_domain() (xenstored_domain.c): map the page, bind the port, a connection; 0 or -errno."""
        if domid in self.rings:
            return 0
        try:
            buf = self.host.map_store_page(domid, mfn)
        except OSError as exc:
            return -(exc.errno or 22)
        try:
            port = self.host.evtchn_bind_interdomain(domid, remote_port)
        except OSError as exc:
            self.host.unmap_store_page(domid)
            return -(exc.errno or 22)
        # No kick here (only dom0_init sends one): Xen marks the newly bound local port
        # pending itself, so requests the guest queued before INTRODUCE get served.
        self._add(domid, port, buf, "introduce_domain",
                  f"d{domid}: mapped mfn {mfn:#x}, bound port {remote_port} as local port {port}")
        return 0

    def release(self, domid: int) -> None:
        """destroy_domain() (xenstored_domain.c): unbind the port, unmap the page, close the connection."""
        rc = self.rings.pop(domid, None)
        if rc is None:
            return
        self.by_port.pop(rc.port, None)
        if not rc.ignored:
            self.daemon.close_connection(rc.conn)
        self.host.evtchn_unbind(rc.port)
        self.host.unmap_store_page(domid)
        self.record("destroy_domain", f"d{domid}: unbound port {rc.port}, page unmapped",
                    [(rc.table, "port", rc.port, None)])

    def bind_dom_exc(self, domain_gone: Callable[[int], bool]) -> int:
        """domain_init(): bind VIRQ_DOM_EXC; on it, ask *domain_gone* (getdomaininfo: dying or shut down)."""
        self.virq_port = self.host.evtchn_bind_virq(VIRQ_DOM_EXC)
        self.domain_gone = domain_gone
        self.record("domain_init", f"bound VIRQ_DOM_EXC as local port {self.virq_port}",
                    [("xenstored/virq", "VIRQ_DOM_EXC", None, self.virq_port)])
        return self.virq_port

    def domain_cleanup(self) -> list[int]:
        """domain_cleanup(): every introduced guest that is gone gets @releaseDomain and is unmapped.

        (check_domains() also forgets the domains known only from permissions that are gone.)
        """
        self.daemon.check_domains()
        gone = [d for d in sorted(self.rings) if d != 0 and self.domain_gone is not None
                and self.domain_gone(d)]
        for domid in gone:
            self.daemon.fire_release_domain(domid)
            self.release(domid)  # in case the daemon has no on_release hook wired to us
        return gone

    def service(self) -> int:
        """One turn of main() (xenstored_core.c): take fired ports (writing them back), move every ring."""
        fired = self.host.evtchn_pending()
        for port in fired:
            self.host.evtchn_unmask(port)
        if self.virq_port is not None and self.virq_port in fired:
            self.domain_cleanup()
        moved = 0
        for rc in self.rings.values():
            rc.check_reconnect()
            if not rc.ignored:
                self.daemon.check_event_timeout(rc.conn)
        # main(): pass over every connection, one input and one output step each, and poll
        # again at once (timeout 0) while any ring still has work.
        busy = True
        while busy:
            busy = False
            for domid in sorted(self.rings):
                rc = self.rings.get(domid)
                if rc is None:
                    continue
                if rc.conn_can_read():
                    moved += max(rc.handle_input(), 0)
                    busy = True
                if rc.conn_can_write():
                    moved += max(rc.handle_output(), 0)
                    busy = True
        return moved

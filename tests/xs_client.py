"""A tiny in-process xenstore client for the daemon tests: requests in, replies and events out."""

from __future__ import annotations

from typing import Any

from xenlab.abi.xs_wire import xenstore_domain_interface
from xenlab.abi.xs_wire import xsd_sockmsg_type as T
from xenlab.xenstored import wire
from xenlab.xenstored.daemon import Connection, Daemon
from xenlab.xenstored.wire import Message

U32 = 0xFFFFFFFF


class XsError(Exception):
    """The daemon answered ERROR; args[0] is the error name."""


class Client:
    """One connection to a Daemon, speaking whole messages."""

    def __init__(self, daemon: Daemon, conn: Connection | None = None, domid: int = 0,
                 label: str = "socket") -> None:
        self.daemon = daemon
        self.conn = conn or daemon.new_connection(domid, label)
        self.req_id = 0
        self.events: list[tuple[str, str]] = []
        self.replies: list[Message] = []

    def request(self, type: int, payload: bytes, tx: int = 0) -> Message:
        """Send one request; return its reply (events are collected in self.events)."""
        self.req_id += 1
        self.daemon.handle(self.conn, Message(type, self.req_id, tx, payload))
        self.pump()
        mine = [m for m in self.replies if m.req_id == self.req_id]
        assert len(mine) == 1, f"expected one reply to request {self.req_id}, got {mine}"
        self.replies.remove(mine[0])
        return mine[0]

    def pump(self) -> None:
        """Move queued output into replies / events."""
        for m in self.daemon.take_all(self.conn):
            if m.type == T.XS_WATCH_EVENT:
                path, token = m.payload.split(b"\0")[:2]
                self.events.append((path.decode(), token.decode()))
            else:
                self.replies.append(m)

    def take_events(self) -> list[tuple[str, str]]:
        """Events received so far (cleared)."""
        self.pump()
        ev, self.events = self.events, []
        return ev

    def call(self, type: int, *args: str | bytes, tx: int = 0, value: bytes | None = None) -> bytes:
        """Request with NUL-terminated string args (+ raw value); raise XsError on ERROR."""
        payload = b"".join((a.encode() if isinstance(a, str) else a) + b"\0" for a in args)
        if value is not None:
            payload += value
        reply = self.request(type, payload, tx)
        if reply.type == T.XS_ERROR:
            assert reply.payload.endswith(b"\0")
            raise XsError(reply.payload[:-1].decode())
        assert reply.type == type, f"reply type {reply.type} to request type {type}"
        assert reply.tx_id == tx
        return reply.payload

    def error(self, type: int, *args: str | bytes, tx: int = 0, value: bytes | None = None) -> str:
        """The error name the request gets (fails if it succeeds)."""
        try:
            got = self.call(type, *args, tx=tx, value=value)
        except XsError as e:
            return e.args[0]
        raise AssertionError(f"expected an error, got {got!r}")

    # shorthands
    def read(self, path: str, tx: int = 0) -> bytes:
        return self.call(T.XS_READ, path, tx=tx)

    def write(self, path: str, value: bytes | str, tx: int = 0) -> None:
        v = value.encode() if isinstance(value, str) else value
        assert self.call(T.XS_WRITE, path, value=v, tx=tx) == b"OK\0"

    def mkdir(self, path: str, tx: int = 0) -> None:
        assert self.call(T.XS_MKDIR, path, tx=tx) == b"OK\0"

    def rm(self, path: str, tx: int = 0) -> None:
        assert self.call(T.XS_RM, path, tx=tx) == b"OK\0"

    def ls(self, path: str, tx: int = 0) -> list[str]:
        return [c.decode() for c in self.call(T.XS_DIRECTORY, path, tx=tx).split(b"\0")[:-1]]

    def get_perms(self, path: str) -> list[str]:
        return [p.decode() for p in self.call(T.XS_GET_PERMS, path).split(b"\0")[:-1]]

    def set_perms(self, path: str, *perms: str) -> None:
        assert self.call(T.XS_SET_PERMS, path, *perms) == b"OK\0"

    def watch(self, path: str, token: str) -> None:
        assert self.call(T.XS_WATCH, path, token) == b"OK\0"

    def unwatch(self, path: str, token: str) -> None:
        assert self.call(T.XS_UNWATCH, path, token) == b"OK\0"

    def start(self) -> int:
        return int(self.call(T.XS_TRANSACTION_START, "")[:-1])

    def end(self, tx: int, commit: bool = True) -> None:
        assert self.call(T.XS_TRANSACTION_END, "T" if commit else "F", tx=tx) == b"OK\0"


def introduce(dom0: Client, domid: int, mfn: int = 0x1234, port: int = 1) -> Client:
    """INTRODUCE a guest through dom0 and return a client on the guest's connection."""
    dom0.call(T.XS_INTRODUCE, str(domid), str(mfn), str(port))
    return Client(dom0.daemon, dom0.daemon.domains[domid].conn)


class RingEnd:
    """The client's half of a store page (a guest's xenbus, or the dom0 kernel's): requests into
    req, replies out of rsp, free-running indices as xs_wire.h defines them."""

    def __init__(self, page: Any, *, strict_types: bool = True) -> None:
        self.mem = memoryview(page)
        self.intf = xenstore_domain_interface.from_buffer(page)
        self.dec = wire.Decoder(strict_types=strict_types)
        self.req_id = 0

    def put(self, data: bytes) -> None:
        """Copy *data* into the request ring and advance req_prod."""
        i = self.intf
        assert ((i.req_prod - i.req_cons) & U32) + len(data) <= 1024, "test overfilled the ring"
        for k, byte in enumerate(data):
            self.mem[(i.req_prod + k) & 1023] = byte
        i.req_prod = (i.req_prod + len(data)) & U32

    def send(self, msg_type: int, payload: bytes, tx_id: int = 0) -> None:
        """One request, the next req_id."""
        self.req_id += 1
        self.put(wire.encode(Message(msg_type, self.req_id, tx_id, payload)))

    def take(self) -> list[Message]:
        """Every whole message in the response ring (rsp_cons moves past them)."""
        i = self.intf
        n = (i.rsp_prod - i.rsp_cons) & U32
        data = bytes(self.mem[1024 + ((i.rsp_cons + k) & 1023)] for k in range(n))
        i.rsp_cons = (i.rsp_cons + n) & U32
        return self.dec.feed(data)

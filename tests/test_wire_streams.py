"""Random and hostile message streams through the ring and socket transports into the real daemon.

Invariants checked after every stream: the daemon never has more than 1024 bytes in
flight on a ring; every byte it put there decodes into well-formed replies (a known
type, len <= 4096, the req_id of a request or 0 for a watch event); a guest whose stream
was malformed has its connection marked in error and nothing else; the tree passes
check_store(); what another client committed before is still there. Over the Unix socket:
every reply arrives whole and well formed, and the client loses its connection exactly when
it sent a len > 4096 header or died inside a message.
"""

from __future__ import annotations

import os
import socket
import tempfile

from fuzz import quick_and_long_with
from hypothesis import event
from hypothesis import strategies as st
from test_ring_transport import Guest, RecordingHost

from xenlab.abi import xs_wire as xsw
from xenlab.abi.xs_wire import PAGE_SIZE
from xenlab.base.trace import Trace
from xenlab.xenstored import payload as pl
from xenlab.xenstored import wire
from xenlab.xenstored.daemon import Daemon
from xenlab.xenstored.ring import RingServer
from xenlab.xenstored.unix import UnixServer
from xenlab.xenstored.wire import Message

quick_and_long = quick_and_long_with(60)  # 60 examples in every `make test`


names = st.sampled_from(["a", "b", "dev", "x-1", "@releaseDomain", "", "a//b", "bad name", "/local/domain/1"])
paths = st.lists(names, min_size=1, max_size=3).map("/".join) | names
values = st.binary(max_size=40)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """One request: mostly well-formed payloads, sometimes odd types or ids."""
    t = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 16, 20, 21, 22, 99]))
    p = draw(paths).encode()
    payload = {
        11: p + b"\0" + draw(values),
        4: p + b"\0" + b"tok\0",
        5: p + b"\0" + b"tok\0",
        7: draw(st.sampled_from([b"T\0", b"F\0", b"X\0"])),
        14: p + b"\0" + draw(st.sampled_from([b"n0\0", b"r1\0", b"b2\0w0\0", b"q\0"])),
        22: p + b"\0" + b"0\0",
        10: b"1\0",
    }.get(t, p + b"\0")
    if draw(st.booleans()) and draw(st.booleans()):
        payload = payload.rstrip(b"\0")  # a missing NUL
    tx = draw(st.sampled_from([0, 0, 0, 1, 2, 7]))
    return wire.encode(Message(t, draw(st.integers(1, 50)), tx, payload))


@st.composite
def streams(draw: st.DrawFn) -> list[bytes]:
    """Up to 12 requests; one time in four a hostile header (len > 4096) somewhere among them."""
    reqs = draw(st.lists(requests(), max_size=12))
    if draw(st.sampled_from([False, False, False, True])):
        bad = wire._HEADER.pack(xsw.XS_WRITE, 1, 0, draw(st.integers(4097, 0xFFFFFFFF)))
        reqs.insert(draw(st.integers(0, len(reqs))), bad)
    return reqs


def drive(server: RingServer, guest: Guest, port: int, host: RecordingHost, data: bytes) -> list[Message]:
    """Feed *data* through the ring in whatever fits, servicing and draining as a guest would."""
    got: list[Message] = []
    pos = 0
    for _ in range(200):
        room = 1024 - ((guest.intf.req_prod - guest.intf.req_cons) & 0xFFFFFFFF)
        chunk = data[pos:pos + min(room, 300)]
        if chunk:
            guest.put(chunk)
            pos += len(chunk)
        host.fired.append(port)
        server.service()
        assert (guest.intf.rsp_prod - guest.intf.rsp_cons) & 0xFFFFFFFF <= 1024
        got += guest.take()
        if pos == len(data) and not server.rings[1].out:
            break
    return got


@quick_and_long(streams())
def _random_streams_keep_every_invariant(stream: list[bytes]) -> None:
    daemon = Daemon(trace=Trace())
    host = RecordingHost()
    server = RingServer(daemon, host)
    sock = daemon.new_connection(0, "socket1")
    daemon.handle(sock, Message(xsw.XS_WRITE, 1, 0, b"/committed\0precious"))
    daemon.handle(sock, Message(xsw.XS_MKDIR, 2, 0, b"/local/domain/1\0"))
    daemon.handle(sock, Message(xsw.XS_SET_PERMS, 3, 0, b"/local/domain/1\0b1\0"))
    host.pages[0x1000] = bytearray(PAGE_SIZE)
    assert server.introduce(1, 0x1000, 5) == 0
    guest = Guest(host.pages[0x1000])
    guest.dec = wire.Decoder(strict_types=True)  # replies must be of defined types
    data = b"".join(stream)
    sent_ids = {wire.decode_header(s)[1] for s in stream if len(s) >= 16}
    replies = drive(server, guest, server.rings[1].port, host, data)
    rc = server.rings[1]
    event("guest connection ignored" if rc.ignored else "guest served to the end")
    event(f"{min(len(replies), 5)}+ replies" if len(replies) >= 5 else f"{len(replies)} replies")
    if rc.ignored:
        assert guest.intf.error in (xsw.XENSTORE_ERROR_PROTO, xsw.XENSTORE_ERROR_RINGIDX)
    else:
        assert guest.intf.error == xsw.XENSTORE_ERROR_NONE
    for r in replies:
        assert r.len <= xsw.XENSTORE_PAYLOAD_MAX
        if r.type == xsw.XS_WATCH_EVENT:
            assert r.req_id == 0
            pl.parse_watch_event(r.payload)
        else:
            assert r.req_id in sent_ids
        if r.type == xsw.XS_ERROR:
            assert pl.parse_error(r.payload) in xsw.XSD_ERROR_BY_NAME
    assert daemon.store.check() == []
    daemon.handle(sock, Message(xsw.XS_READ, 9, 0, b"/committed\0"))
    assert sock.take_output()[-1].payload == b"precious"


def drive_socket(data: bytes) -> tuple[list[Message], list[tuple[int, str]], Daemon]:
    """*data* over a real Unix socket to an in-process UnixServer, then close: (replies, drops, daemon)."""
    trace = Trace()
    trace.enabled = False
    daemon = Daemon(trace=trace)
    sentinel = daemon.new_connection(0, "socket0")
    daemon.handle(sentinel, Message(xsw.XS_WRITE, 1, 0, b"/committed\0precious"))
    with tempfile.TemporaryDirectory() as tmp:
        server = UnixServer(daemon, os.path.join(tmp, "s"))
        client = socket.socket(socket.AF_UNIX)
        client.connect(os.path.join(tmp, "s"))
        client.sendall(data)  # small enough for the socket buffer: no deadlock in one thread
        client.shutdown(socket.SHUT_WR)
        client.setblocking(False)
        dec = wire.Decoder(strict_types=True)
        got: list[Message] = []
        for _ in range(500):
            server.service(0.001)
            try:
                chunk = client.recv(65536)
            except BlockingIOError:
                continue
            if not chunk:
                break
            got += dec.feed(chunk)
        else:
            raise AssertionError("the server never closed the connection")
        dec.close()  # every reply arrived whole
        client.close()
        server.close()
    return got, server.dropped, daemon


@quick_and_long(streams(), st.booleans())
def _socket_streams_get_well_formed_replies_or_lose_the_connection(stream: list[bytes], cut: bool) -> None:
    data = b"".join(stream)
    cut = cut and bool(data)
    if cut:
        data = data[:-1]  # the client dies in the middle of its last message
    sent_ids = {wire.decode_header(s)[1] for s in stream if len(s) >= 16}
    replies, drops, daemon = drive_socket(data)
    assert len(drops) == 1
    reason = drops[0][1]
    # Walk the headers that were really sent: the first len > 4096 is fatal; else bytes
    # left over past the last whole message mean the client died inside one.
    off, hostile = 0, False
    while off + 16 <= len(data) and not hostile:
        length = int.from_bytes(data[off + 12:off + 16], "little")
        hostile = length > 4096
        off += 16 + length
    if hostile:
        assert reason.startswith("protocol error: header len")
    elif off != len(data):
        assert reason.startswith("protocol error: stream closed inside the")
    else:
        assert reason == "closed by client"
    for r in replies:
        assert r.req_id in sent_ids or (r.type == xsw.XS_WATCH_EVENT and r.req_id == 0)
    assert daemon.store.check() == [] and daemon.bugs == []
    assert daemon.store.read("/committed") == b"precious"

"""Property tests of the lab xenstored: random request streams from dom0 and guests.

Whatever arrives, every request gets exactly one well-formed reply, the tree keeps its
invariants (every node's parent exists and lists it, permission lists are valid, node
counts match owners), the daemon never hits an internal error, and what a client
committed stays committed. ``XENLAB_FUZZ_EXAMPLES`` raises the number of examples;
``-m slow`` runs a long variant.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xenlab.abi.xs_wire import XENSTORE_PAYLOAD_MAX, XSD_ERROR_BY_NAME
from xenlab.abi.xs_wire import xsd_sockmsg_type as T
from xenlab.xenstored.daemon import Daemon
from xenlab.xenstored.wire import Message

EXAMPLES = int(os.environ.get("XENLAB_FUZZ_EXAMPLES", "100"))
# Not requests: what the transport reports (VIRQ_DOM_EXC) for the domid in the payload.
DOMAIN_DIES, DOMAIN_SHUTS_DOWN = -1, -2

NAMES = ["a", "b", "c", "dev", "x-y", "_"]
paths = st.one_of(
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=4).map(lambda p: "/t/" + "/".join(p)),
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join),  # relative
    st.sampled_from(["/", "/t", "@introduceDomain", "@releaseDomain", "/t//a", "/t/a/", "bad path", ""]),
)
perm_strings = st.lists(st.sampled_from(["n0", "r1", "w2", "b1", "n1", "r2", "b0", "q1", "r"]),
                        min_size=0, max_size=7)
values = st.binary(max_size=40) | st.sampled_from([b"", b"x" * 3000])


@st.composite
def requests(draw: st.DrawFn) -> tuple[int, int, int, bytes]:
    """(client index, type, tx choice, payload)."""
    who = draw(st.integers(0, 3))
    kind = draw(st.sampled_from(
        [T.XS_READ, T.XS_WRITE, T.XS_WRITE, T.XS_MKDIR, T.XS_RM, T.XS_DIRECTORY, T.XS_DIRECTORY_PART,
         T.XS_GET_PERMS, T.XS_SET_PERMS, T.XS_WATCH, T.XS_UNWATCH, T.XS_TRANSACTION_START,
         T.XS_TRANSACTION_END, T.XS_RESET_WATCHES, T.XS_GET_DOMAIN_PATH, T.XS_IS_DOMAIN_INTRODUCED,
         T.XS_INTRODUCE, T.XS_RELEASE, T.XS_SET_TARGET, T.XS_RESUME, T.XS_CONTROL, 20, 23, 99,
         DOMAIN_DIES, DOMAIN_SHUTS_DOWN]))
    tx = draw(st.sampled_from([0, 0, 0, 0, 0, 1, 2, 7]))
    path = draw(paths).encode()
    if kind == T.XS_WRITE:
        payload = path + b"\0" + draw(values)
    elif kind == T.XS_SET_PERMS:
        payload = path + b"\0" + b"".join(p.encode() + b"\0" for p in draw(perm_strings))
    elif kind in (T.XS_WATCH, T.XS_UNWATCH):
        payload = path + b"\0" + draw(st.sampled_from([b"t1", b"t2", b""])) + b"\0"
    elif kind == T.XS_DIRECTORY_PART:
        payload = path + b"\0" + draw(st.sampled_from([b"0", b"2", b"-1", b"99999"])) + b"\0"
    elif kind == T.XS_TRANSACTION_END:
        payload = draw(st.sampled_from([b"T\0", b"F\0", b"X\0", b""]))
    elif kind in (DOMAIN_DIES, DOMAIN_SHUTS_DOWN):
        payload = draw(st.sampled_from([b"1", b"2", b"3"]))
    elif kind in (T.XS_INTRODUCE, T.XS_RELEASE, T.XS_SET_TARGET, T.XS_RESUME, T.XS_GET_DOMAIN_PATH,
                  T.XS_IS_DOMAIN_INTRODUCED):
        payload = b"".join(draw(st.sampled_from([b"1", b"2", b"3", b"0", b"x"])) + b"\0" for _ in range(3))
        payload = payload[: draw(st.integers(0, len(payload)))]
    elif kind == T.XS_CONTROL:
        payload = draw(st.sampled_from([b"check\0", b"help\0", b"quota\0", b"nope\0", b""]))
    else:
        payload = draw(st.sampled_from([path + b"\0", path, path + b"\0\0", b""]))
    return who, int(kind), tx, payload


def well_formed(reply: Message, req: Message, personality: str) -> None:
    """A reply to *req* as the protocol allows it (oxenstored also says EQUOTA)."""
    assert reply.req_id == req.req_id and reply.tx_id == req.tx_id
    assert len(reply.payload) <= XENSTORE_PAYLOAD_MAX
    if reply.type == T.XS_ERROR:
        assert reply.payload.endswith(b"\0")
        names = set(XSD_ERROR_BY_NAME) | ({"EQUOTA"} if personality == "oxenstored" else set())
        assert reply.payload[:-1].decode() in names
    else:
        assert reply.type == req.type


def run_stream(stream: list[tuple[int, int, int, bytes]], personality: str = "xenstored") -> None:
    daemon = Daemon(name=personality)
    dom0 = daemon.new_connection(0, "socket")
    keeper = daemon.new_connection(0, "socket-keeper")  # writes only below /keep
    daemon.handle(dom0, Message(T.XS_INTRODUCE, 0, 0, b"1\x000\x001\x00"))
    daemon.handle(dom0, Message(T.XS_INTRODUCE, 0, 0, b"2\x000\x002\x00"))
    daemon.handle(dom0, Message(T.XS_WRITE, 0, 0, b"/t\0"))
    daemon.handle(dom0, Message(T.XS_SET_PERMS, 0, 0, b"/t\0n0\0b1\0r2\0"))
    dom0.take_output()
    committed: dict[str, bytes] = {}
    for n, (who, kind, tx, payload) in enumerate(stream, 1):
        conns = [dom0, daemon.new_connection(0, "socket-x") if who == 1 else None,
                 daemon.domains[1].conn if 1 in daemon.domains else None,
                 daemon.domains[2].conn if 2 in daemon.domains else None]
        conn = conns[who] or dom0
        conn.take_output()
        if kind == DOMAIN_DIES:
            daemon.fire_release_domain(int(payload))
            continue
        if kind == DOMAIN_SHUTS_DOWN:
            daemon.fire_domain_shutdown(int(payload))
            continue
        req = Message(kind, n, tx, payload)
        daemon.handle(conn, req)
        replies = [m for m in conn.take_output() if m.type != T.XS_WATCH_EVENT]
        assert len(replies) == 1, (req, replies)
        well_formed(replies[0], req, personality)
        if who == 1:
            daemon.close_connection(conn)
        # the keeper commits one value in a transaction every few requests
        if n % 3 == 0:
            key, value = f"/keep/k{n % 4}", str(n).encode()
            daemon.handle(keeper, Message(T.XS_TRANSACTION_START, 1, 0, b"\0"))
            tid = int(keeper.take_output()[-1].payload[:-1])
            daemon.handle(keeper, Message(T.XS_WRITE, 2, tid, key.encode() + b"\0" + value))
            daemon.handle(keeper, Message(T.XS_TRANSACTION_END, 3, tid, b"T\0"))
            assert [m.payload for m in keeper.take_output()] == [b"OK\0", b"OK\0"]
            committed[key] = value
        assert daemon.bugs == []
        assert daemon.store.check() == []
        for key, value in committed.items():
            assert daemon.store.read(key) == value
    assert daemon.bugs == [] and daemon.store.check() == []
    for conn in list(daemon.connections):
        for m in conn.take_output():
            if m.type == T.XS_WATCH_EVENT:
                assert m.payload.count(b"\0") == 2 and m.payload.endswith(b"\0")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests(), min_size=1, max_size=60), st.sampled_from(["xenstored", "oxenstored"]))
def test_random_request_streams_keep_the_daemon_sound(stream: list[tuple[int, int, int, bytes]],
                                                      personality: str) -> None:
    run_stream(stream, personality)


@pytest.mark.slow
@pytest.mark.skipif("XENLAB_FUZZ_EXAMPLES" not in os.environ, reason="long run: make fuzz")
@settings(max_examples=max(EXAMPLES, 2000), deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(requests(), max_size=120), st.sampled_from(["xenstored", "oxenstored"]))
def test_long_random_request_streams(stream: list[tuple[int, int, int, bytes]], personality: str) -> None:
    run_stream(stream, personality)

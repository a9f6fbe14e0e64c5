"""`make fuzz` for xenstored: a socket fuzzer and a differential run of both personalities.

The socket fuzzer talks to an in-process ``UnixServer`` over a private Unix socket (never
TCP) from several connections at once: well-formed requests on a small tree, the same
mutated (bit flips, truncations, wrong lengths, unknown types), and random bytes. A client
whose stream breaks the protocol is dropped and reconnects. Afterwards the tree passes
``check_store`` and the daemon recorded no internal error; every connection that stayed
got exactly one reply per request, in order. ``make test`` sends ``XENLAB_FUZZ_MESSAGES``
(default 3000) messages; ``make fuzz`` sends 1,000,000. It stops by itself.

The differential run sends the same dom0 operation sequences to a C-xenstored and an
oxenstored daemon and compares what both real daemons agree on: success or the error
name, values read, the set of children, permissions, and the final tree below ``/d``.
Where they differ by design (children order, duplicate events, EQUOTA) it compares sets
or does not look.
"""

from __future__ import annotations

import os
import random
import socket
import tempfile

import pytest
from fuzz import quick_and_long_with
from hypothesis import strategies as st

from xenlab.abi import xs_wire as xsw
from xenlab.abi.xs_wire import xsd_sockmsg_type as T
from xenlab.base.trace import Trace
from xenlab.xenstored import wire
from xenlab.xenstored.daemon import Daemon
from xenlab.xenstored.unix import UnixServer
from xenlab.xenstored.wire import Message

MESSAGES = int(os.environ.get("XENLAB_FUZZ_MESSAGES", "3000"))
LONG_MESSAGES = 1_000_000
NAMES = [b"a", b"b", b"c", b"dev", b"x-y"]
KINDS = [T.XS_READ, T.XS_WRITE, T.XS_WRITE, T.XS_MKDIR, T.XS_RM, T.XS_DIRECTORY, T.XS_GET_PERMS,
         T.XS_SET_PERMS, T.XS_WATCH, T.XS_UNWATCH, T.XS_TRANSACTION_START, T.XS_TRANSACTION_END,
         T.XS_DIRECTORY_PART, T.XS_GET_DOMAIN_PATH, T.XS_RESET_WATCHES]


def quiet_daemon(name: str = "xenstored") -> Daemon:
    trace = Trace()
    trace.enabled = False
    return Daemon(trace=trace, name=name)


def a_path(rng: random.Random) -> bytes:
    return b"/f/" + b"/".join(rng.choice(NAMES) for _ in range(rng.randint(1, 3)))


def a_request(rng: random.Random, req_id: int) -> Message:
    """One well-formed request on the small tree below /f."""
    kind = rng.choice(KINDS)
    path = a_path(rng)
    tx = rng.choice([0, 0, 0, 0, 1, 2])
    if kind == T.XS_WRITE:
        payload = path + b"\0" + rng.randbytes(rng.randint(0, 40))
    elif kind == T.XS_SET_PERMS:
        payload = path + b"\0" + b"".join(rng.choice([b"n0", b"r1", b"b2", b"w0"]) + b"\0"
                                          for _ in range(rng.randint(1, 3)))
    elif kind in (T.XS_WATCH, T.XS_UNWATCH):
        payload = path + b"\0" + rng.choice([b"t1", b"t2"]) + b"\0"
    elif kind == T.XS_TRANSACTION_END:
        payload = rng.choice([b"T\0", b"F\0"])
    elif kind == T.XS_TRANSACTION_START:
        payload, tx = b"\0", 0
    elif kind == T.XS_DIRECTORY_PART:
        payload = path + b"\0" + rng.choice([b"0", b"3"]) + b"\0"
    elif kind == T.XS_GET_DOMAIN_PATH:
        payload = str(rng.randint(0, 3)).encode() + b"\0"
    else:
        payload = path + b"\0"
    return Message(kind, req_id, tx, payload)


def mutate(rng: random.Random, data: bytes) -> bytes:
    """A broken copy of an encoded message: flipped bits, cut short, a wrong length or type."""
    buf = bytearray(data)
    how = rng.randrange(5)
    if how == 0:
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    elif how == 1:
        buf[12:16] = rng.choice([4097, 0xFFFFFFFF, 5000]).to_bytes(4, "little")
    elif how == 2:
        buf[0:4] = rng.choice([20, 23, 99, 0xFFFF]).to_bytes(4, "little")
    elif how == 3:
        buf = buf[:rng.randrange(1, len(buf))]
    else:
        buf = bytearray(rng.randbytes(rng.randint(1, 64)))
    return bytes(buf)


class FuzzClient:
    """One fuzzing connection: what it sent, what came back."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.sock.setblocking(False)
        self.decoder = wire.Decoder(strict_types=False)
        self.sent: list[int] = []
        self.got: list[int] = []
        self.broken = False

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
        except (BlockingIOError, BrokenPipeError, ConnectionResetError):
            self.broken = True
            return False
        return True

    def receive(self) -> None:
        while True:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                return
            except ConnectionResetError:
                self.broken = True
                return
            if not chunk:
                self.broken = True
                return
            self.got += [m.req_id for m in self.decoder.feed(chunk) if m.type != xsw.XS_WATCH_EVENT]

    def close(self) -> None:
        self.sock.close()


def socket_fuzz(seed: int, messages: int, clients: int = 4, personality: str = "xenstored") -> dict[str, int]:
    """Send *messages* fuzzed messages over *clients* connections; check the daemon after."""
    rng = random.Random(seed)
    daemon = quiet_daemon(personality)
    daemon.write("/f/a", "seed")
    daemon.write("/keep", "precious")  # outside what the fuzzer touches: must survive as it is
    stats = {"sent": 0, "mutated": 0, "reconnects": 0, "checked_clients": 0}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "xs.sock")
        server = UnixServer(daemon, path)
        conns = [FuzzClient(path) for _ in range(clients)]
        server.service(0)
        req_id = 0
        try:
            while stats["sent"] < messages:
                i = rng.randrange(clients)
                client = conns[i]
                if client.broken:
                    client.close()
                    conns[i] = client = FuzzClient(path)
                    stats["reconnects"] += 1
                    server.service(0)
                req_id = (req_id + 1) & 0xFFFFFFFF
                msg = a_request(rng, req_id)
                data = wire.encode(msg)
                if rng.random() < 0.03:
                    data = mutate(rng, data)
                    stats["mutated"] += 1
                    client.sent.append(-1)  # from here on the stream may be broken
                elif client.send(data):
                    client.sent.append(req_id)
                    stats["sent"] += 1
                    if rng.random() < 0.5:
                        server.service(0)
                    client.receive()
                    continue
                client.send(data)
                stats["sent"] += 1
                for _ in range(3):
                    server.service(0)
                client.receive()
            for _ in range(50):
                server.service(0)
                for c in conns:
                    c.receive()
            for c in conns:
                if c.broken or -1 in c.sent:
                    continue
                assert c.got == c.sent, "a whole request stream must get one reply each, in order"
                stats["checked_clients"] += 1
        finally:
            for c in conns:
                c.close()
            server.close()
    assert daemon.bugs == []
    assert daemon.store.check() == []
    assert daemon.store.read("/keep") == b"precious"
    return stats


@pytest.mark.parametrize("personality", ["xenstored", "oxenstored"])
def test_socket_fuzz(personality: str) -> None:
    stats = socket_fuzz(seed=11, messages=MESSAGES, personality=personality)
    assert stats["sent"] >= MESSAGES and stats["mutated"] > 0 and stats["reconnects"] > 0
    assert stats["checked_clients"] > 0


@pytest.mark.slow
@pytest.mark.skipif("XENLAB_FUZZ_EXAMPLES" not in os.environ, reason="long run: make fuzz")
def test_socket_fuzz_a_million_messages() -> None:
    stats = socket_fuzz(seed=12, messages=LONG_MESSAGES, clients=6)
    assert stats["sent"] >= LONG_MESSAGES


# -- differential: the same dom0 operations through both personalities -------------------------------
DIFF_NAMES = ["a", "b", "c"]
diff_paths = st.lists(st.sampled_from(DIFF_NAMES), min_size=1, max_size=3).map(lambda p: "/d/" + "/".join(p))
operations = st.lists(st.one_of(
    st.tuples(st.just("write"), diff_paths, st.binary(max_size=8)),
    st.tuples(st.just("mkdir"), diff_paths),
    st.tuples(st.just("rm"), diff_paths),
    st.tuples(st.just("read"), diff_paths),
    st.tuples(st.just("directory"), diff_paths),
    st.tuples(st.just("get_perms"), diff_paths),
    st.tuples(st.just("set_perms"), diff_paths, st.sampled_from(["n0", "r1", "b2", "n0 r1", "w0 r3"])),
    st.tuples(st.just("transaction"), st.lists(st.tuples(diff_paths, st.binary(max_size=4)), max_size=3),
              st.sampled_from(["T", "F"])),
), max_size=30)


def apply(daemon: Daemon, conn: object, op: tuple) -> tuple:
    """One operation on *daemon* as dom0; what both real daemons agree to show of the answer."""
    from xenlab.xenstored.connection import Connection  # noqa: PLC0415 - typing only at call time
    assert isinstance(conn, Connection)

    def ask(kind: int, payload: bytes, tx: int = 0) -> Message:
        daemon.handle(conn, Message(kind, 1, tx, payload))
        return [m for m in daemon.take_all(conn) if m.type != xsw.XS_WATCH_EVENT][-1]

    def shown(reply: Message, kind: str) -> tuple:
        if reply.type == xsw.XS_ERROR:
            return ("error", reply.payload)
        if kind == "directory":
            return ("ok", frozenset(reply.payload.split(b"\0")))  # C: creation order, ox: sorted
        return ("ok", reply.payload)

    name = op[0]
    if name == "write":
        return shown(ask(T.XS_WRITE, op[1].encode() + b"\0" + op[2]), name)
    if name == "set_perms":
        perms = b"".join(p.encode() + b"\0" for p in op[2].split())
        return shown(ask(T.XS_SET_PERMS, op[1].encode() + b"\0" + perms), name)
    if name == "transaction":
        tid = int(ask(T.XS_TRANSACTION_START, b"\0").payload.rstrip(b"\0"))
        inner = [shown(ask(T.XS_WRITE, p.encode() + b"\0" + v, tid), "write") for p, v in op[1]]
        return ("tx", tuple(inner), shown(ask(T.XS_TRANSACTION_END, op[2].encode() + b"\0", tid), "end"))
    kinds = {"mkdir": T.XS_MKDIR, "rm": T.XS_RM, "read": T.XS_READ, "directory": T.XS_DIRECTORY,
             "get_perms": T.XS_GET_PERMS}
    return shown(ask(kinds[name], op[1].encode() + b"\0"), name)


def tree_below(daemon: Daemon, top: str) -> dict[str, tuple[bytes, str]]:
    if not daemon.store.exists(top):
        return {}
    return {p: (v, ",".join(daemon.store.get_perms(p))) for p, v, _ in daemon.store.walk(top)}


@quick_and_long_with(40)(operations)
def _both_personalities_agree(ops: list[tuple]) -> None:
    daemons = [quiet_daemon("xenstored"), quiet_daemon("oxenstored")]
    conns = [d.new_connection(0, "socket") for d in daemons]
    for d, c in zip(daemons, conns, strict=True):
        apply(d, c, ("mkdir", "/d"))
    for op in ops:
        answers = [apply(d, c, op) for d, c in zip(daemons, conns, strict=True)]
        assert answers[0] == answers[1], f"{op}: C {answers[0]} vs ox {answers[1]}"
    assert tree_below(daemons[0], "/d") == tree_below(daemons[1], "/d")
    for d in daemons:
        assert d.store.check() == [] and d.bugs == []

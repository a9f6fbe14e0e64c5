"""`xenlab serve`: the lab xenstored on a Unix socket, and what hostile clients can (not) do to it."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from xenlab.abi import xs_wire as xsw
from xenlab.xenstored import payload as pl
from xenlab.xenstored import wire
from xenlab.xenstored.wire import Message


@contextmanager
def running_server(sock: Path, *extra: str) -> Iterator[subprocess.Popen[str]]:
    """`xenlab serve --socket SOCK` in the background, ready to answer; stopped afterwards.

    Started as ``python -m xenlab.xenstored.serve`` (the same code as ``python -m xenlab
    serve``, see test_the_cli_knows_serve) so a broken other subcommand cannot hide it.
    """
    proc = subprocess.Popen([sys.executable, "-m", "xenlab.xenstored.serve", "--socket", str(sock), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"xenlab serve exited early: {proc.communicate()[1]}")
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(sock))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("xenlab serve did not start listening") from None
                time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Client:
    """A bare-hands wire client: send requests, read replies (skipping nothing)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.dec = wire.Decoder(strict_types=True)
        self.inbox: list[Message] = []
        self.req_id = 0

    def send(self, msg_type: int, payload: bytes, tx_id: int = 0) -> int:
        self.req_id += 1
        self.sock.sendall(wire.encode(Message(msg_type, self.req_id, tx_id, payload)))
        return self.req_id

    def recv(self) -> Message:
        while not self.inbox:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self.inbox += self.dec.feed(data)
        return self.inbox.pop(0)

    def call(self, msg_type: int, payload: bytes, tx_id: int = 0) -> Message:
        req_id = self.send(msg_type, payload, tx_id)
        while True:
            msg = self.recv()
            if msg.type != xsw.XS_WATCH_EVENT:
                assert msg.req_id == req_id
                return msg

    def closed_by_server(self) -> bool:
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def write(c: Client, path: str, value: bytes) -> Message:
    return c.call(xsw.XS_WRITE, pl.write_payload(path, value))


def read(c: Client, path: str) -> Message:
    return c.call(xsw.XS_READ, pl.path_payload(path))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Path]:
    sock = tmp_path / "xs.sock"
    with running_server(sock):
        yield sock


def test_the_cli_knows_serve() -> None:
    out = subprocess.run([sys.executable, "-m", "xenlab", "serve", "--help"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert "--socket PATH" in out.stdout and "--personality" in out.stdout


def test_socket_is_private_to_its_owner(server: Path) -> None:
    assert stat.S_ISSOCK(os.stat(server).st_mode)
    assert stat.S_IMODE(os.stat(server).st_mode) == 0o600


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_removes_the_socket(tmp_path: Path, sig: int) -> None:
    sock = tmp_path / "xs.sock"
    with running_server(sock) as proc:
        proc.send_signal(sig)
        assert proc.wait(10) == 0
        assert not sock.exists()
        assert f"stopped by {signal.Signals(sig).name}" in proc.communicate()[1]


def test_trace_logs_one_line_per_request(tmp_path: Path) -> None:
    sock = tmp_path / "xs.sock"
    with running_server(sock, "--trace") as proc:
        c = Client(sock)
        assert write(c, "/trace/me", b"hello").payload == b"OK\0"
        assert read(c, "/trace/me").payload == b"hello"
        c.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        lines = [ln for ln in proc.communicate()[1].splitlines() if "req_id=" in ln]
    # socket1 was running_server's readiness probe; ours is the second client.
    assert lines == [
        "socket2 WRITE req_id=1 tx_id=0 (/trace/me hello) -> WRITE req_id=1 tx_id=0 (OK )",
        "socket2 READ req_id=2 tx_id=0 (/trace/me ) -> READ req_id=2 tx_id=0 (hello)",
    ]


def test_a_stale_socket_file_is_replaced_but_other_files_are_not(tmp_path: Path) -> None:
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()  # bound, never listened: what a crashed daemon leaves behind
    with running_server(stale):
        c = Client(stale)
        assert read(c, "/").type == xsw.XS_READ
        c.close()
    plain = tmp_path / "plain"
    plain.write_text("not a socket")
    out = subprocess.run([sys.executable, "-m", "xenlab.xenstored.serve", "--socket", str(plain)],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 1
    assert "exists and is not a socket" in out.stderr
    assert plain.read_text() == "not a socket"


def test_unknown_type_is_answered_enosys_and_the_connection_lives(server: Path) -> None:
    c = Client(server)
    c.dec = wire.Decoder()  # the reply carries our own odd type back only as an ERROR
    rep = c.call(20, b"\0")  # 20 was XS_RESTRICT; its number is now invalid
    assert (rep.type, rep.payload) == (xsw.XS_ERROR, b"ENOSYS\0")
    assert write(c, "/still/here", b"1").payload == b"OK\0"
    c.close()


def test_oversized_header_costs_only_that_connection(server: Path) -> None:
    good, bad = Client(server), Client(server)
    assert write(good, "/kept", b"value").payload == b"OK\0"
    bad.sock.sendall(struct_header(xsw.XS_WRITE, 4097))
    assert bad.closed_by_server()
    assert read(good, "/kept").payload == b"value"
    fresh = Client(server)
    assert read(fresh, "/kept").payload == b"value"
    for c in (good, bad, fresh):
        c.close()


def struct_header(msg_type: int, length: int) -> bytes:
    return wire._HEADER.pack(msg_type, 1, 0, length)


def test_truncated_message_then_close_loses_nothing_stored(server: Path) -> None:
    c = Client(server)
    assert write(c, "/before", b"1").payload == b"OK\0"
    c.sock.sendall(wire.encode(Message(xsw.XS_WRITE, 9, 0, b"/never\0written"))[:20])
    c.close()
    d = Client(server)
    assert read(d, "/before").payload == b"1"
    assert read(d, "/never").payload == b"ENOENT\0"
    d.close()


def test_garbage_bytes_never_take_the_daemon_down(server: Path) -> None:
    rng = __import__("random").Random(3)
    for _ in range(5):
        g = socket.socket(socket.AF_UNIX)
        g.connect(str(server))
        g.sendall(bytes(rng.randrange(256) for _ in range(3000)))
        g.close()
    c = Client(server)
    assert write(c, "/alive", b"yes").payload == b"OK\0"
    c.close()


def test_a_client_that_never_reads_is_dropped_others_are_served(tmp_path: Path) -> None:
    sock = tmp_path / "xs.sock"
    with running_server(sock, "--max-output", "65536"):
        reader = Client(sock)
        assert write(reader, "/big", b"x" * 4000).payload == b"OK\0"
        hog = socket.socket(socket.AF_UNIX)
        hog.connect(str(sock))
        hog.settimeout(10)
        request = wire.encode(Message(xsw.XS_READ, 1, 0, b"/big\0"))
        dropped = False
        try:
            for _ in range(2000):  # 2000 replies of 4016 bytes: far more than any buffer
                hog.sendall(request * 10)
        except (BrokenPipeError, ConnectionResetError):
            dropped = True
        assert dropped, "the daemon kept queueing replies nobody reads"
        assert read(reader, "/big").len == 4000
        reader.close()
        hog.close()


@pytest.mark.parametrize("personality, order", [("cxenstored", b"b\0a\0"), ("oxenstored", b"a\0b\0")])
def test_personality_shows_in_directory_order(tmp_path: Path, personality: str, order: bytes) -> None:
    # C xenstored keeps children in creation order; oxenstored keeps them sorted.
    sock = tmp_path / "xs.sock"
    with running_server(sock, "--personality", personality):
        c = Client(sock)
        write(c, "/o/b", b"2")
        write(c, "/o/a", b"1")
        assert c.call(xsw.XS_DIRECTORY, b"/o\0").payload == order
        c.close()

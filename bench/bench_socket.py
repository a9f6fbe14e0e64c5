"""Round trips per second over a Unix socket: the lab xenstored vs a bare echo server.

Both servers run as their own single-threaded Python process on a Unix socket; the same
blocking client sends one XS_READ at a time and waits for the whole reply. The echo
server sends the request straight back, so the ratio is the cost of the lab daemon
(decode, dispatch, tree lookup, encode) on top of the socket round trip itself.
Prints figures only (target: ratio >= 0.5).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from xenlab.abi.xs_wire import XS_READ, XS_WRITE
from xenlab.xenstored import payload as pl
from xenlab.xenstored import wire

ROUND_TRIPS = int(os.environ.get("XENLAB_BENCH_ROUND_TRIPS", "5000"))

ECHO_SERVER = """
import os, selectors, socket, sys
path = sys.argv[1]
srv = socket.socket(socket.AF_UNIX); srv.bind(path); srv.listen(8); srv.setblocking(False)
sel = selectors.DefaultSelector(); sel.register(srv, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        if key.fileobj is srv:
            c, _ = srv.accept(); c.setblocking(False); sel.register(c, selectors.EVENT_READ)
        else:
            data = key.fileobj.recv(65536)
            if not data:
                sel.unregister(key.fileobj); key.fileobj.close(); continue
            key.fileobj.sendall(data)
"""


def wait_for(path: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early ({proc.returncode})")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on {path}")


def round_trips(path: str, n: int, request: bytes, reply_len: int) -> float:
    """Round trips per second: send *request*, read exactly *reply_len* bytes, n times."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        start = time.perf_counter()
        for _ in range(n):
            s.sendall(request)
            got = 0
            while got < reply_len:
                chunk = s.recv(65536)
                if not chunk:
                    raise SystemExit("server closed the connection")
                got += len(chunk)
        return n / (time.perf_counter() - start)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lab_path, echo_path = os.path.join(tmp, "lab.sock"), os.path.join(tmp, "echo.sock")
        lab = subprocess.Popen([sys.executable, "-m", "xenlab", "serve", "--socket", lab_path],
                               stderr=subprocess.DEVNULL)
        echo = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, echo_path], stdout=subprocess.DEVNULL)
        try:
            wait_for(lab_path, lab)
            wait_for(echo_path, echo)
            value = b"Domain-0"
            with socket.socket(socket.AF_UNIX) as s:  # the node the READs will fetch
                s.connect(lab_path)
                s.sendall(wire.encode(wire.Message(XS_WRITE, 1, 0, pl.write_payload("/bench/name", value))))
                s.recv(64)
            request = wire.encode(wire.Message(XS_READ, 2, 0, pl.path_payload("/bench/name")))
            lab_reply = 16 + len(value)
            round_trips(lab_path, 200, request, lab_reply)  # warm up both
            round_trips(echo_path, 200, request, len(request))
            lab_rate = round_trips(lab_path, ROUND_TRIPS, request, lab_reply)
            echo_rate = round_trips(echo_path, ROUND_TRIPS, request, len(request))
        finally:
            for p in (lab, echo):
                p.send_signal(signal.SIGTERM)
                p.wait(10)
    print(f"unix socket, {ROUND_TRIPS} XS_READ round trips, one at a time")
    print(f"  lab xenstored : {lab_rate:10.0f} round trips/s")
    print(f"  echo server   : {echo_rate:10.0f} round trips/s")
    print(f"  ratio lab/echo: {lab_rate / echo_rate:10.2f}  (target >= 0.5)")


if __name__ == "__main__":
    main()

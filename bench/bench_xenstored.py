"""Big directories and many watches in the lab xenstored, both personalities.

Prints: creating N children of one directory (creates/s, and at what rate the last tenth
went), removing that directory in one XS_RM, and the cost of one write with 0 and with
10k watches registered (none of them on the written path). Requests go through
``Daemon.handle`` on a dom0 connection, trace off, as ``xenlab serve`` runs. Figures only.
"""

from __future__ import annotations

import os
import time

from xenlab.abi.xs_wire import XS_RM, XS_WATCH, XS_WRITE
from xenlab.base.trace import Trace
from xenlab.xenstored.daemon import Daemon
from xenlab.xenstored.wire import Message

CHILDREN = int(os.environ.get("XENLAB_BENCH_CHILDREN", "100000"))
WATCHES = int(os.environ.get("XENLAB_BENCH_WATCHES", "10000"))
WRITES = 2000


def quiet(name: str) -> Daemon:
    trace = Trace()
    trace.enabled = False
    return Daemon(trace=trace, name=name)


def big_directory(name: str, n: int) -> None:
    daemon = quiet(name)
    conn = daemon.new_connection(0, "socket")
    start = time.perf_counter()
    tenth = start
    for i in range(n):
        if i == n - n // 10:
            tenth = time.perf_counter()
        daemon.handle(conn, Message(XS_WRITE, i, 0, b"/big/c%d\0v" % i))
        conn.out.clear()
    end = time.perf_counter()
    daemon.handle(conn, Message(XS_RM, 0, 0, b"/big\0"))
    rm = time.perf_counter() - end
    assert not daemon.store.exists("/big")
    print(f"  {name:10s} create {n} children: {end - start:7.2f} s ({n / (end - start):8.0f}/s overall, "
          f"{(n // 10) / (end - tenth):8.0f}/s for the last tenth); rm of the directory: {rm:6.2f} s")


def write_cost(name: str, watches: int) -> float:
    daemon = quiet(name)
    conns = [daemon.new_connection(0, f"socket{i}") for i in range(10)]
    for i in range(watches):
        daemon.handle(conns[i % 10], Message(XS_WATCH, i, 0, b"/w/%d\0t\0" % i))
    for c in conns:
        c.out.clear()
    writer = daemon.new_connection(0, "socket-writer")
    start = time.perf_counter()
    for i in range(WRITES):
        daemon.handle(writer, Message(XS_WRITE, i, 0, b"/x/y\0v"))
        writer.out.clear()
    return (time.perf_counter() - start) / WRITES * 1e6


def main() -> None:
    print(f"== {CHILDREN} children in one directory")
    for name in ("xenstored", "oxenstored"):
        big_directory(name, CHILDREN)
    print(f"== one write, µs, with 0 and {WATCHES} watches elsewhere")
    for name in ("xenstored", "oxenstored"):
        print(f"  {name:10s} {write_cost(name, 0):8.1f} µs  vs  {write_cost(name, WATCHES):8.1f} µs")


if __name__ == "__main__":
    main()

"""Simulated ring round trips per second vs calling the daemon directly.

A guest (domid 1) is introduced to the lab xenstored on a simulated Hypervisor: its
store page and an event channel. Each round trip: the guest kernel's ``xb_write``
(linux/pvops/xenbus_comms.py, Linux 6.1) puts an XS_READ into the request ring and kicks
its port, the daemon's RingServer services the ring (readchn, dispatch, writechn,
notifies through the hypervisor's event channels), the guest's ``xb_read`` takes the reply.
The baseline is the same request handed to ``daemon.handle`` directly. The ratio is the
price of the whole simulated transport (target <= 20x). Tracing is muted in both.
Prints figures only.
"""

from __future__ import annotations

import os
import time

from xenlab.abi.xs_wire import (
    PAGE_SIZE,
    XS_INTRODUCE,
    XS_READ,
    XS_SET_PERMS,
    XS_WRITE,
    XSD_SOCKMSG_SIZE,
    xenstore_domain_interface,
)
from xenlab.base.sched import Scheduler
from xenlab.base.trace import Trace
from xenlab.linux.kernels import new_kernel
from xenlab.linux.pvops import xenbus_comms as comms
from xenlab.linux.pvops.kernel import PvopsKernel
from xenlab.xen.hypervisor import Hypervisor
from xenlab.xenstored import payload as pl
from xenlab.xenstored import wire
from xenlab.xenstored.daemon import Daemon
from xenlab.xenstored.host import HypervisorHost
from xenlab.xenstored.ring import RingServer

ROUND_TRIPS = int(os.environ.get("XENLAB_BENCH_ROUND_TRIPS", "5000"))


def main() -> None:
    trace = Trace()
    hv = Hypervisor(trace=trace)
    hv.domain_create(0, "Domain-0", privileged=True, initdomain=True)
    hv.domain_create(1, "guest")
    daemon = Daemon(trace=trace)
    host = HypervisorHost(hv, 0)
    server = RingServer(daemon, host, trace=trace)
    page = hv.memory.alloc_page(1)
    guest_port = hv.evtchn_alloc_unbound(1, 1, 0)
    sock = daemon.new_connection(0, "socket1")
    daemon.handle(sock, wire.Message(XS_INTRODUCE, 1, 0, pl.introduce_payload(1, page.mfn, guest_port)))
    assert sock.take_output()[0].payload == b"OK\0", "INTRODUCE failed"
    daemon.handle(sock, wire.Message(XS_WRITE, 2, 0, pl.write_payload("/local/domain/1/name", "guest")))
    perms = pl.perms_payload("/local/domain/1/name", ["n0", "r1"])
    daemon.handle(sock, wire.Message(XS_SET_PERMS, 3, 0, perms))
    assert [m.payload for m in sock.take_output()] == [b"OK\0", b"OK\0"]
    # The guest: a Linux 6.1 kernel whose xb_write/xb_read never sleep (xenbus_comms.py).
    kernel = new_kernel(hv, 1, "modern", sched=Scheduler(), trace=trace)
    assert isinstance(kernel, PvopsKernel)
    xb = kernel.xb
    xb.xen_store_interface = xenstore_domain_interface.from_buffer(page.buf)
    xb.xen_store_evtchn = guest_port
    request = wire.encode(wire.Message(XS_READ, 1, 0, b"name\0"))
    reply_len = XSD_SOCKMSG_SIZE + len(b"guest")
    assert len(page.buf) == PAGE_SIZE

    def ring_round_trip() -> None:
        if comms.xb_write(kernel, request) != len(request):
            raise SystemExit("xb_write could not queue the request")
        server.service()
        got = comms.xb_read(kernel, reply_len)
        if not isinstance(got, bytes) or got[-5:] != b"guest":
            raise SystemExit(f"no whole reply came back on the ring: {got!r}")

    conn = daemon.domains[1].conn
    msg = wire.Message(XS_READ, 1, 0, b"name\0")

    def direct() -> None:
        daemon.handle(conn, msg)

    with trace.muted():
        for _ in range(200):
            ring_round_trip()
        start = time.perf_counter()
        for _ in range(ROUND_TRIPS):
            ring_round_trip()
        ring_s = (time.perf_counter() - start) / ROUND_TRIPS
        saved, conn.on_output = conn.on_output, lambda c: c.take_output()
        start = time.perf_counter()
        for _ in range(ROUND_TRIPS):
            direct()
        direct_s = (time.perf_counter() - start) / ROUND_TRIPS
        conn.on_output = saved
    print(f"simulated store ring, {ROUND_TRIPS} XS_READ round trips (trace muted)")
    print(f"  ring (xb_write -> RingServer.service -> xb_read): {1 / ring_s:10.0f} round trips/s")
    print(f"  direct daemon.handle                           : {1 / direct_s:10.0f} calls/s")
    print(f"  ratio ring/direct cost                         : {ring_s / direct_s:10.2f}x  (target <= 20x)")


if __name__ == "__main__":
    main()

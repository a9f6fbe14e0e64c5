"""XSA-326 class: a guest must not make the daemon hold unbounded memory for it.

C xenstored 4.17 charges every domain for its nodes, its transactions' nodes, its watches and
its queued output (2.5 MB hard, 2 MB soft by default), drops identical queued events, drops
an event that would take the guest over the quota and one left unsent for 20 s. oxenstored
bounds each connection's queued events (quota-maxwatchevents, 1024) and each watch's
buffer, then holds back the connection whose requests fire more.
"""

from __future__ import annotations

from test_ring_transport import Guest, RecordingHost
from xs_client import Client, XsError, introduce

from xenlab.abi import xs_wire as xsw
from xenlab.abi.xs_wire import PAGE_SIZE
from xenlab.abi.xs_wire import xsd_sockmsg_type as T
from xenlab.base.trace import Trace
from xenlab.xenstored.daemon import Daemon
from xenlab.xenstored.quota import Quotas
from xenlab.xenstored.ring import RingServer
from xenlab.xenstored.wire import Message

HARD = 2 * 1024 * 1024 + 512 * 1024


def quiet_daemon(name: str = "xenstored", quotas: Quotas | None = None) -> Daemon:
    trace = Trace()
    trace.enabled = False
    return Daemon(trace=trace, name=name, quotas=quotas)


def watched(daemon: Daemon, watches: int) -> tuple[Client, Client]:
    """dom0 makes /data readable by domain 1, which sets *watches* watches on it (tokens t0, t1...)."""
    dom0 = Client(daemon)
    dom0.call(T.XS_MKDIR, "/data")
    dom0.call(T.XS_SET_PERMS, "/data", "n0", "r1")
    guest = introduce(dom0, 1)
    for i in range(watches):
        guest.call(T.XS_WATCH, "/data", f"t{i}")
    guest.take_events()
    return dom0, guest


def test_the_real_defaults() -> None:
    cxs = Quotas()
    assert (cxs.memory, cxs.memory_soft, cxs.watch_event_timeout) == (HARD, 2 * 1024 * 1024, 20)
    ox = Quotas.oxenstored()
    assert (ox.watch_events, ox.outstanding, ox.memory) == (1024, 1024, 0)


def test_cxenstored_a_guest_ignoring_100k_events_stays_under_its_hard_quota() -> None:
    daemon = quiet_daemon()
    dom0, guest = watched(daemon, 100)
    for i in range(1000):  # 1000 writes x 100 watches: 100k distinct events, none read
        dom0.call(T.XS_WRITE, f"/data/n{i}", value=b"x")
    conn = guest.conn
    assert len(conn.out) < 100_000
    assert conn.out_bytes < HARD
    assert HARD - 64 <= daemon.domain_memory(1) < HARD + 64  # filled up to the quota, not past it
    assert daemon.log == ["Domain 1 exceeds soft memory quota",
                          "Domain 1 exceeds hard memory quota, Xenstore interface to domain stalled"]
    # events that would cross the quota are dropped, so its requests are still served
    assert guest.call(T.XS_READ, "/data/n5") == b"x"


def test_cxenstored_one_node_rewritten_100k_times_queues_one_event() -> None:
    daemon = quiet_daemon()
    dom0, guest = watched(daemon, 1)
    for _ in range(100_000 // 100):
        for _ in range(100):
            daemon.handle(dom0.conn, Message(T.XS_WRITE, 1, 0, b"/data/x\0v"))
        daemon.take_all(dom0.conn)
    assert [m.payload for m in guest.conn.out] == [b"/data/x\0t0\0"]


def test_cxenstored_drops_are_in_the_trace() -> None:
    daemon = Daemon(quotas=Quotas(memory=4096, memory_soft=2048))
    dom0, guest = watched(daemon, 1)
    for i in range(400):
        dom0.call(T.XS_WRITE, f"/data/n{i}", value=b"x")
    summaries = [s.summary for s in daemon.trace.steps]
    assert any(s.endswith("; 1 dropped (hard memory quota)") for s in summaries)
    rows = [(c.before, c.after) for s in daemon.trace.steps for c in s.changes
            if c.table == "xenstored/memory_quota"]
    assert rows == [(None, "soft"), (None, "hard")]
    assert daemon.trace.state_at(len(daemon.trace) - 1)["xenstored/memory_quota"] == {"d1": "hard"}


def test_cxenstored_an_event_unsent_for_20_seconds_is_dropped() -> None:
    daemon = quiet_daemon()
    now = [100.0]
    daemon.clock = lambda: now[0]
    dom0, guest = watched(daemon, 1)
    dom0.call(T.XS_WRITE, "/data/a", value=b"1")
    now[0] += 10
    dom0.call(T.XS_WRITE, "/data/b", value=b"1")
    now[0] += 10  # the first one waited 20 s, the second 10 s
    assert daemon.check_event_timeout(guest.conn) == 1
    assert [m.payload for m in guest.conn.out] == [b"/data/b\0t0\0"]
    # charged: its watch (path + token) and the one queued event (payload + header)
    assert daemon.domain_memory(1) == len("/data") + len("t0") + len(b"/data/b\0t0\0") + 16
    # dom0's own events never time out
    dom0.call(T.XS_WATCH, "/data", "d")
    dom0.call(T.XS_WRITE, "/data/c", value=b"1")
    now[0] += 100
    daemon.check_event_timeout(dom0.conn)
    assert ("/data/c", "d") in dom0.take_events()


def test_cxenstored_uncommitted_transactions_cannot_pin_more_than_the_quota() -> None:
    daemon = quiet_daemon()
    dom0 = Client(daemon)
    dom0.call(T.XS_MKDIR, "/local/domain/1")
    dom0.call(T.XS_SET_PERMS, "/local/domain/1", "n1")
    guest = introduce(dom0, 1)
    value = b"v" * 1900  # under node-size (2048)
    refused = 0
    for _ in range(10):
        tid = int(guest.call(T.XS_TRANSACTION_START, "").rstrip(b"\0"))
        for j in range(900):  # under transaction-nodes (1024), 100 per directory (node-size)
            try:
                guest.call(T.XS_WRITE, f"data{j // 100}/{j}", value=value, tx=tid)
            except XsError as e:
                assert e.args[0] == "ENOMEM"
                refused += 1
                break
    assert refused >= 8  # without the quota: 10 x 900 x 1.9 kB = 17 MB pinned
    assert daemon.domain_memory(1) < HARD
    assert daemon.domain_memory(1) > HARD - 2100


def test_cxenstored_the_ring_of_a_guest_over_quota_is_not_read() -> None:
    trace = Trace()
    daemon = Daemon(trace=trace, quotas=Quotas(memory=8192))
    host = RecordingHost()
    server = RingServer(daemon, host, trace=trace)
    host.pages[0x1000] = bytearray(PAGE_SIZE)
    server.introduce(1, 0x1000, 5)
    dom0 = Client(daemon)
    dom0.call(T.XS_MKDIR, "/data")
    dom0.call(T.XS_SET_PERMS, "/data", "n0", "r1")
    g = Guest(host.pages[0x1000])
    g.send(xsw.XS_WATCH, b"/data\0tok\0")
    server.service()
    for i in range(500):  # the guest never consumes rsp: the ring fills, then the daemon's queue
        dom0.call(T.XS_WRITE, f"/data/n{i}", value=b"x")
        server.service()
    rc = server.rings[1]
    assert rc.conn.out_bytes < 8192
    # the quota lowered below what it holds (xenstore-control quota set memory 4096): stalled
    assert dom0.call(T.XS_CONTROL, "quota", "set", "memory", "4096") == b"OK\0"
    g.send(xsw.XS_READ, b"/data/n1\0")
    req_cons = rc.intf.req_cons
    server.service()
    assert rc.intf.req_cons == req_cons  # its request waits
    assert daemon.log[-1] == "Domain 1 exceeds hard memory quota, Xenstore interface to domain stalled"
    assert dom0.call(T.XS_CONTROL, "quota", "set", "memory", "8192") == b"OK\0"
    server.service()
    assert rc.intf.req_cons != req_cons


def test_oxenstored_bounds_queued_events_and_holds_the_writer_back() -> None:
    daemon = quiet_daemon("oxenstored")
    dom0, guest = watched(daemon, 1)
    writer = dom0.conn
    sent = held = 0
    for i in range(100_000):  # the writer's transport reads it only while domain_can_read()
        if not daemon.domain_can_read(writer):
            held += 1
            continue
        daemon.handle(writer, Message(T.XS_WRITE, i, 0, b"/data/n%d\0x" % (i % 1000)))
        daemon.take_all(writer)
        sent += 1
    conn = guest.conn
    assert conn.out_event_count == 1024  # quota-maxwatchevents in the output queue
    assert sum(len(p) for p in conn.watch_pending.values()) == 1024  # and as many in the watch's pipe
    assert len(writer.overflow) == 1 and sent == 2049 and held == 100_000 - sent
    # nothing was dropped: the guest reads, the writer goes on, every event arrives in order
    events = [m.payload for m in daemon.take_all(conn)]
    assert daemon.domain_can_read(writer)
    assert events == [b"/data/n%d\0t0\0" % (i % 1000) for i in range(sent)]


def test_oxenstored_reports_quota_overruns_as_equota_and_has_no_memory_quota() -> None:
    daemon = quiet_daemon("oxenstored")
    dom0, guest = watched(daemon, 1)
    assert not daemon.domain_memory_chk(1, 10 * HARD)

"""The daemon's side of the store ring: indices, chunks, notifies, errors, reconnect.

The guest side here is a minimal hand-written producer/consumer over the same page (the
kernel's real one is linux/xenbus/comms.py); the host records every notify, so each test
can say exactly how many kicks the daemon sent and what the indices read afterwards.
"""

from __future__ import annotations

import errno
from typing import Any

import pytest
from xs_client import RingEnd

from xenlab.abi import xs_wire as xsw
from xenlab.abi.xs_wire import PAGE_SIZE
from xenlab.base.trace import Trace
from xenlab.xenstored import payload as pl
from xenlab.xenstored import wire
from xenlab.xenstored.daemon import Daemon
from xenlab.xenstored.host import HostError
from xenlab.xenstored.ring import RingServer, check_indexes
from xenlab.xenstored.wire import Message

U32 = 0xFFFFFFFF


class RecordingHost:
    """A host with numbered ports and pages by mfn that writes down every notify."""

    def __init__(self) -> None:
        self.pages: dict[int, bytearray] = {}
        self.notified: list[int] = []
        self.bound: dict[int, tuple[int, int]] = {}
        self.fired: list[int] = []
        self.unmasked: list[int] = []
        self._next = 7

    def evtchn_bind_interdomain(self, remote_dom: int, remote_port: int) -> int:
        if remote_port == 999:
            raise HostError(errno.EINVAL, "bind_interdomain")
        port, self._next = self._next, self._next + 1
        self.bound[port] = (remote_dom, remote_port)
        return port

    def evtchn_bind_virq(self, virq: int) -> int:
        return self.evtchn_bind_interdomain(0x7FF0, virq)

    def evtchn_notify(self, port: int) -> None:
        self.notified.append(port)

    def evtchn_unbind(self, port: int) -> None:
        self.bound.pop(port)

    def evtchn_pending(self) -> list[int]:
        fired, self.fired = self.fired, []
        return fired

    def evtchn_unmask(self, port: int) -> None:
        self.unmasked.append(port)

    def map_store_page(self, domid: int, mfn: int) -> Any:
        if mfn not in self.pages:
            raise HostError(errno.EINVAL, f"map mfn {mfn}")
        return self.pages[mfn]

    def unmap_store_page(self, domid: int) -> None:
        pass

    def wait(self) -> None:
        raise AssertionError("tests never block")


class Guest(RingEnd):
    """The guest's half of a store page: produce requests, consume replies."""


@pytest.fixture
def setup() -> tuple[Daemon, RecordingHost, RingServer, Trace]:
    trace = Trace()
    daemon = Daemon(trace=trace)
    host = RecordingHost()
    return daemon, host, RingServer(daemon, host, trace=trace), trace


def test_check_indexes_allows_at_most_a_full_ring() -> None:
    assert check_indexes(0, 1024)
    assert not check_indexes(0, 1025)
    assert check_indexes(0xFFFFFFF0, 0x10)  # 32 bytes across the 2^32 wrap
    assert not check_indexes(0x10, 0xFFFFFFF0)  # "negative": cons ahead of prod


def test_dom0_ring_is_bound_and_kicked_exactly_once(setup: Any) -> None:
    daemon, host, server, trace = setup
    page = bytearray(PAGE_SIZE)
    rc = server.attach_local(3, page)
    assert host.bound[rc.port] == (0, 3)
    # One notify right after binding: dom0's xenbus probe waits for it.
    assert host.notified == [rc.port]
    assert trace[-1].function == "dom0_init"
    # C xenstored 4.17 advertises no server features.
    assert Guest(page).intf.server_features == 0


def test_a_read_request_round_trip_with_exact_indices(setup: Any) -> None:
    daemon, host, server, trace = setup
    page = bytearray(PAGE_SIZE)
    rc = server.attach_local(3, page)
    g = Guest(page)
    g.send(xsw.XS_READ, b"/tool\0")  # 16 + 6 bytes
    host.notified.clear()
    server.service()
    assert (g.intf.req_cons, g.intf.req_prod) == (22, 22)
    # An empty value: the reply is a bare 16-byte header.
    assert g.intf.rsp_prod == 16
    assert g.take() == [Message(xsw.XS_READ, 1, 0, b"")]
    # readchn for the header, readchn for the payload, writechn for the reply's header and
    # writechn for its (empty) payload: C xenstored kicks after each, even after 0 bytes.
    assert host.notified == [rc.port] * 4
    reads = [s for s in trace if s.function == "readchn"]
    assert [c.after for s in reads for c in s.changes] == [16, 22]
    assert reads[0].changes[0].table == "xenstored/ring/d0"
    writes = [s for s in trace if s.function == "writechn"]
    assert [s.summary.split(":")[1].split(",")[0].strip() for s in writes] == ["16 bytes to rsp[0]",
                                                                               "0 bytes to rsp[16]"]


def test_cxenstored_writes_header_and_payload_separately(setup: Any) -> None:
    daemon, host, server, trace = setup
    page = bytearray(PAGE_SIZE)
    rc = server.attach_local(3, page)
    g = Guest(page)
    g.send(xsw.XS_WRITE, b"/v\0hello")
    host.notified.clear()
    server.service()
    assert g.take() == [Message(xsw.XS_WRITE, 1, 0, b"OK\0")]
    writes = [s for s in trace if s.function == "writechn"]
    assert [s.changes[0].after for s in writes] == [16, 19]
    assert host.notified == [rc.port] * 4


def test_oxenstored_advertises_reconnection_and_writes_whole_packets() -> None:
    daemon = Daemon(features=xsw.XENSTORE_SERVER_FEATURE_RECONNECTION, name="oxenstored")
    host = RecordingHost()
    server = RingServer(daemon, host, personality="oxenstored")
    page = bytearray(PAGE_SIZE)
    server.attach_local(3, page)
    g = Guest(page)
    assert g.intf.server_features == xsw.XENSTORE_SERVER_FEATURE_RECONNECTION
    g.send(xsw.XS_WRITE, b"/v\0hello")
    host.notified.clear()
    server.service()
    assert g.take() == [Message(xsw.XS_WRITE, 1, 0, b"OK\0")]
    assert len(host.notified) == 3  # header read, payload read, one packet write


def test_indices_wrap_past_2_to_the_32(setup: Any) -> None:
    daemon, host, server, trace = setup
    page = bytearray(PAGE_SIZE)
    g = Guest(page)
    for f in ("req_cons", "req_prod", "rsp_cons", "rsp_prod"):
        setattr(g.intf, f, 0xFFFFFFF0)
    server.attach_local(3, page)
    g.send(xsw.XS_WRITE, b"/wrap\0across the end")  # 16 + 20 bytes: crosses 2^32
    server.service()
    assert g.intf.req_cons == g.intf.req_prod == (0xFFFFFFF0 + 36) & U32 == 0x14
    assert g.take() == [Message(xsw.XS_WRITE, 1, 0, b"OK\0")]
    assert g.intf.rsp_prod == 0x3
    g.send(xsw.XS_READ, b"/wrap\0")
    server.service()
    assert g.take()[0].payload == b"across the end"


def test_a_reply_bigger_than_the_ring_waits_for_room(setup: Any) -> None:
    daemon, host, server, trace = setup
    page = bytearray(PAGE_SIZE)
    rc = server.attach_local(3, page)
    g = Guest(page)
    value = bytes(range(256)) * 15  # 3840 bytes
    # Write it through a socket connection (dom0), then read it over the ring.
    sock = daemon.new_connection(0, "socket1")
    daemon.handle(sock, Message(xsw.XS_WRITE, 1, 0, b"/big\0" + value))
    g.send(xsw.XS_READ, b"/big\0")
    server.service()
    got: list[Message] = []
    rounds = 0
    while not got:
        # The daemon never has more than 1024 bytes in flight...
        assert (g.intf.rsp_prod - g.intf.rsp_cons) & U32 <= 1024
        got = g.take()
        rounds += 1
        host.fired.append(rc.port)  # ...and continues when the guest kicks after consuming.
        server.service()
    assert got == [Message(xsw.XS_READ, 1, 0, value)]
    assert rounds == 4  # 16 + 3840 bytes through a 1024-byte ring
    assert host.unmasked == [rc.port] * rounds


def test_corrupt_request_indices_cost_only_that_guest(setup: Any) -> None:
    daemon, host, server, trace = setup
    host.pages[0x1000] = bytearray(PAGE_SIZE)
    host.pages[0x2000] = bytearray(PAGE_SIZE)
    assert server.introduce(1, 0x1000, 5) == 0
    assert server.introduce(2, 0x2000, 5) == 0
    bad, good = Guest(host.pages[0x1000]), Guest(host.pages[0x2000])
    bad.intf.req_prod = 2000  # 2000 bytes "in flight" in a 1024-byte ring
    good.send(xsw.XS_GET_DOMAIN_PATH, b"2\0")
    server.service()
    assert bad.intf.error == xsw.XENSTORE_ERROR_RINGIDX
    assert server.rings[1].ignored
    assert good.take()[0].payload == b"/local/domain/2\0"
    # The ignored guest is not served any more, even once its indices look sane again.
    bad.intf.req_prod = 0
    bad.send(xsw.XS_READ, b"x\0")
    server.service()
    assert bad.intf.req_cons == 0


def test_len_over_4096_is_a_protocol_error(setup: Any) -> None:
    daemon, host, server, trace = setup
    host.pages[0x1000] = bytearray(PAGE_SIZE)
    server.introduce(1, 0x1000, 5)
    g = Guest(host.pages[0x1000])
    g.put(wire._HEADER.pack(xsw.XS_WRITE, 1, 0, 4097))
    server.service()
    assert g.intf.error == xsw.XENSTORE_ERROR_PROTO
    assert "Client tried to feed us 4097" in trace[-2].summary + trace[-1].summary


def test_introduce_failures_are_errnos(setup: Any) -> None:
    daemon, host, server, trace = setup
    assert server.introduce(1, 0xDEAD, 5) == -errno.EINVAL  # no such page
    host.pages[0x1000] = bytearray(PAGE_SIZE)
    assert server.introduce(1, 0x1000, 999) == -errno.EINVAL  # bind refused
    assert 1 not in server.rings


def test_guest_paths_are_relative_to_its_home(setup: Any) -> None:
    daemon, host, server, trace = setup
    host.pages[0x1000] = bytearray(PAGE_SIZE)
    server.introduce(1, 0x1000, 5)
    sock = daemon.new_connection(0, "socket1")
    daemon.handle(sock, Message(xsw.XS_MKDIR, 1, 0, b"/local/domain/1\0"))
    daemon.handle(sock, Message(xsw.XS_SET_PERMS, 2, 0, b"/local/domain/1\0b1\0"))
    g = Guest(host.pages[0x1000])
    g.send(xsw.XS_WRITE, b"name\0guest")
    server.service()
    assert g.take()[0].payload == b"OK\0"
    daemon.handle(sock, Message(xsw.XS_READ, 3, 0, b"/local/domain/1/name\0"))
    assert sock.take_output()[-1].payload == b"guest"


def test_reconnect_handshake_empties_both_rings_and_forgets_watches() -> None:
    daemon = Daemon(features=xsw.XENSTORE_SERVER_FEATURE_RECONNECTION, name="oxenstored")
    host = RecordingHost()
    server = RingServer(daemon, host, personality="oxenstored")
    page = bytearray(PAGE_SIZE)
    rc = server.attach_local(3, page)
    g = Guest(page)
    g.send(xsw.XS_WATCH, b"/watched\0tok\0")
    server.service()
    assert [m.type for m in g.take()] == [xsw.XS_WATCH, xsw.XS_WATCH_EVENT]
    g.put(b"\x02\x00\x00")  # a partial packet left behind
    g.intf.connection = xsw.XENSTORE_RECONNECT
    host.notified.clear()
    server.service()
    assert (g.intf.req_cons, g.intf.req_prod, g.intf.rsp_cons, g.intf.rsp_prod) == (0, 0, 0, 0)
    assert g.intf.connection == xsw.XENSTORE_CONNECTED
    assert bytes(page[:2048]) == b"\xff" * 2048
    assert host.notified == [rc.port]
    # The old watch is gone: a change under /watched sends nothing.
    sock = daemon.new_connection(0, "socket1")
    daemon.handle(sock, Message(xsw.XS_WRITE, 1, 0, b"/watched/x\0" + b"1"))
    server.service()
    assert g.intf.rsp_prod == 0


def test_cxenstored_ignores_a_reconnect_request(setup: Any) -> None:
    daemon, host, server, trace = setup
    page = bytearray(PAGE_SIZE)
    server.attach_local(3, page)
    g = Guest(page)
    g.send(xsw.XS_READ, b"/\0")
    g.intf.connection = xsw.XENSTORE_RECONNECT
    server.service()
    assert g.intf.connection == xsw.XENSTORE_RECONNECT
    assert g.take()[0].type == xsw.XS_READ


def test_introduce_through_the_daemon_binds_without_a_kick(setup: Any) -> None:
    daemon, host, server, trace = setup
    host.pages[0x1000] = bytearray(PAGE_SIZE)
    sock = daemon.new_connection(0, "socket1")
    daemon.handle(sock, Message(xsw.XS_INTRODUCE, 1, 0, pl.introduce_payload(1, 0x1000, 5)))
    assert sock.take_output() == [Message(xsw.XS_INTRODUCE, 1, 0, b"OK\0")]
    port = server.rings[1].port
    assert host.bound[port] == (1, 5)
    # Only dom0_init kicks: binding already marks the new local port pending in Xen.
    assert host.notified == []
    assert daemon.domains[1].conn is server.rings[1].conn
    # RELEASE unbinds the port again.
    daemon.handle(sock, Message(xsw.XS_RELEASE, 2, 0, b"1\0"))
    assert sock.take_output()[-1].payload == b"OK\0"
    assert 1 not in server.rings and port not in host.bound


def test_dom_exc_virq_releases_dead_guests(setup: Any) -> None:
    daemon, host, server, trace = setup
    host.pages[0x1000] = bytearray(PAGE_SIZE)
    dead: set[int] = set()
    virq = server.bind_dom_exc(lambda domid: domid in dead)
    watcher = daemon.new_connection(0, "socket1")
    daemon.handle(watcher, Message(xsw.XS_INTRODUCE, 1, 0, pl.introduce_payload(1, 0x1000, 5)))
    daemon.handle(watcher, Message(xsw.XS_WATCH, 2, 0, b"@releaseDomain\0domlist\0"))
    watcher.take_output()
    host.fired.append(virq)  # some domain changed state, but guest 1 still lives
    server.service()
    assert 1 in server.rings and watcher.take_output() == []
    dead.add(1)
    host.fired.append(virq)
    server.service()
    assert 1 not in server.rings
    assert watcher.take_output() == [pl.watch_event("@releaseDomain", "domlist")]


def test_hypervisor_host_serves_a_guest_through_real_event_channels() -> None:
    from xenlab.xen.hypervisor import Hypervisor
    from xenlab.xenstored.host import HypervisorHost

    trace = Trace()
    hv = Hypervisor(trace=trace)
    hv.domain_create(0, "Domain-0", privileged=True, initdomain=True)
    hv.domain_create(1, "guest")
    hv.domain_create(2, "other")
    daemon = Daemon(trace=trace)
    host = HypervisorHost(hv, 0)
    server = RingServer(daemon, host, trace=trace)
    page = hv.memory.alloc_page(1)
    guest_port = hv.evtchn_alloc_unbound(1, 1, 0)  # what the domain builder does for the store
    sock = daemon.new_connection(0, "socket1")
    daemon.handle(sock, Message(xsw.XS_INTRODUCE, 1, 0, pl.introduce_payload(1, page.mfn, guest_port)))
    assert sock.take_output()[0].payload == b"OK\0"
    local = server.rings[1].port
    # A store page must belong to the domain that is introduced with it.
    daemon.handle(sock, Message(xsw.XS_INTRODUCE, 2, 0, pl.introduce_payload(2, page.mfn, 1)))
    assert sock.take_output()[0].payload == b"EINVAL\0"
    g = Guest(page.buf)
    for round_trip in range(3):
        g.send(xsw.XS_GET_DOMAIN_PATH, b"1\0")
        assert hv.evtchn_send(1, guest_port) == 0  # the guest kicks; dom0's port fires
        assert server.service() > 0
        assert g.take() == [Message(xsw.XS_GET_DOMAIN_PATH, round_trip + 1, 0, b"/local/domain/1\0")]
        # The daemon's notifies landed on the guest's end of the channel.
        assert hv.domains[1].shared_info.test_pending(guest_port)
        hv.domains[1].shared_info.clear_pending(guest_port)
        # dom0's port is either re-enabled or already reported for the next turn of the
        # loop (an event that arrived while it was masked): no kick is ever lost.
        assert not hv.domains[0].shared_info.test_mask(local) or host.fired == [local]
    assert server.service() == 0  # nothing fired, nothing to move


def test_a_header_split_by_the_ring_end_takes_two_reads(setup: Any) -> None:
    daemon, host, server, trace = setup
    page = bytearray(PAGE_SIZE)
    g = Guest(page)
    for f in ("req_cons", "req_prod", "rsp_cons", "rsp_prod"):
        setattr(g.intf, f, 1016)  # 8 bytes before the end of both rings
    server.attach_local(3, page)
    g.send(xsw.XS_READ, b"/tool\0")
    server.service()
    # get_input_chunk only offers the contiguous part: 8 header bytes, the other 8, the payload.
    reads = [s.summary.split(":")[1].split(",")[0].strip() for s in trace if s.function == "readchn"]
    assert reads == ["8 bytes from req[1016]", "8 bytes from req[0]", "6 bytes from req[8]"]
    assert g.take() == [Message(xsw.XS_READ, 1, 0, b"")]

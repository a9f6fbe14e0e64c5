"""Smaller hardening items of issue 11: CONTROL quota arguments, internal errors logged,
re-INTRODUCE of an ignored guest, INTRODUCE with no Xen below `xenlab serve`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from test_ring_transport import Guest, RecordingHost
from test_serve import Client, read, running_server, write
from xs_client import Client as XsClient

from xenlab.abi import xs_wire as xsw
from xenlab.abi.xs_wire import PAGE_SIZE
from xenlab.base.trace import Trace
from xenlab.xenstored import payload as pl
from xenlab.xenstored import wire
from xenlab.xenstored.daemon import Daemon
from xenlab.xenstored.ring import RingServer


# -- CONTROL quota: C's atoi() -------------------------------------------------------------------
def test_control_quota_arguments_are_read_with_atoi() -> None:
    # byte 0xb2 ("²" in latin-1) is a digit to str.isdigit() but not to int(): it used to end
    # in an internal error (EIO). C xenstored 4.17 reads both numbers with atoi(): a value
    # below 1 is EINVAL, and a domid with no leading digits is domain 0
    dom0 = XsClient(Daemon())
    assert dom0.error(xsw.XS_CONTROL, "quota", "set", "nodes", b"\xb2") == "EINVAL"
    assert dom0.error(xsw.XS_CONTROL, "quota", "set", "nodes", "0") == "EINVAL"
    assert dom0.daemon.quotas.nodes == 1000
    assert dom0.call(xsw.XS_CONTROL, "quota", "set", "nodes", "12abc") == b"OK\0"
    assert dom0.daemon.quotas.nodes == 12
    assert dom0.call(xsw.XS_CONTROL, "quota", b"\xb2").startswith(b"Domain 0:\n")
    assert dom0.daemon.bugs == []


# -- an internal error: logged with its traceback, the daemon goes on ------------------------------
BUGGY_SERVE = """
import sys
from xenlab.xenstored import daemon
def boom(d, conn, req, tx):
    raise RuntimeError("injected daemon bug")
_, name, source, flags = daemon.WIRE_FUNCS[daemon.T.XS_GET_DOMAIN_PATH]
daemon.WIRE_FUNCS[daemon.T.XS_GET_DOMAIN_PATH] = (boom, name, source, flags)
from xenlab.xenstored.serve import main
sys.exit(main(sys.argv[1:]))
"""


def test_an_internal_error_is_logged_with_its_traceback_and_serving_goes_on(tmp_path: Path) -> None:
    # (before: no line at all, even with --trace)
    sock = tmp_path / "xs.sock"
    proc = subprocess.Popen([sys.executable, "-c", BUGGY_SERVE, "--socket", str(sock)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
        c = Client(sock)
        assert c.call(xsw.XS_GET_DOMAIN_PATH, b"1\0").payload == b"EIO\0"
        assert write(c, "/still", b"here").payload == b"OK\0"
        assert read(c, "/still").payload == b"here"
        c.close()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert "xenstored: internal error in do_get_domain_path for socket1(d0) GET_DOMAIN_PATH '1'" in err
    assert "Traceback (most recent call last):" in err
    assert "RuntimeError: injected daemon bug" in err


# -- re-INTRODUCE of an ignored guest -------------------------------------------------------------
def ignored_guest() -> tuple[Daemon, RecordingHost, RingServer, XsClient, Guest]:
    daemon = Daemon(trace=Trace())
    host = RecordingHost()
    server = RingServer(daemon, host, trace=daemon.trace)
    host.pages[0x1000] = bytearray(PAGE_SIZE)
    dom0 = XsClient(daemon)
    assert dom0.call(xsw.XS_INTRODUCE, "1", str(0x1000), "5") == b"OK\0"
    g = Guest(host.pages[0x1000])
    g.send(xsw.XS_WRITE, b"/a\0b")
    g.put(wire._HEADER.pack(xsw.XS_WRITE, 2, 0, 4097))  # len > 4096: the guest is ignored
    server.service()
    assert server.rings[1].ignored and g.intf.error == xsw.XENSTORE_ERROR_PROTO
    return daemon, host, server, dom0, g


def test_reintroducing_an_ignored_guest_reuses_its_connection_and_zeroes_the_ring() -> None:
    # C 4.17: the domain keeps its (ignored) connection; do_introduce's domain_conn_reset()
    # zeroes req_cons, req_prod, rsp_cons and rsp_prod. (before: a second, ring-less connection
    # and the indices as they were)
    daemon, host, server, dom0, g = ignored_guest()
    conn = server.rings[1].conn
    assert daemon.domains[1].conn is conn
    before = len(daemon.connections)
    assert (g.intf.req_prod, g.intf.rsp_prod) != (0, 0)
    assert dom0.call(xsw.XS_INTRODUCE, "1", str(0x1000), "5") == b"OK\0"
    assert daemon.domains[1].conn is conn and len(daemon.connections) == before
    assert (g.intf.req_cons, g.intf.req_prod, g.intf.rsp_cons, g.intf.rsp_prod) == (0, 0, 0, 0)
    assert daemon.trace[-2].function == "domain_conn_reset"
    # it stays ignored (4.17 does not restart it) and can still be released
    assert server.rings[1].ignored
    assert dom0.call(xsw.XS_RELEASE, "1") == b"OK\0"
    assert 1 not in daemon.domains and 1 not in server.rings


# -- INTRODUCE with no Xen below `xenlab serve` -------------------------------------------------
def test_serve_without_real_refuses_introduce(tmp_path: Path) -> None:
    # no hypervisor to map a guest's page from: EINVAL, as C xenstored when the map fails
    # (before: OK, and a connection for a domain that cannot exist)
    sock = tmp_path / "xs.sock"
    with running_server(sock):
        c = Client(sock)
        assert c.call(xsw.XS_INTRODUCE, pl.introduce_payload(5, 0x1234, 3)).payload == b"EINVAL\0"
        assert c.call(xsw.XS_IS_DOMAIN_INTRODUCED, b"5\0").payload == b"F\0"
        c.close()



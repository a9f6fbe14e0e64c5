"""`xenlab serve --real` without a real Xen: the ioctls it makes, and its event loop.

On a real dom0 the daemon reaches Xen through /dev/xen/evtchn, /dev/xen/gntdev,
/dev/xen/privcmd and /proc/xen/xsd_kva (xenlab/xenstored/realhost.py). Here every
system call goes to ``FakeDrivers``: it *decodes* the packed ioctl arguments (so a wrong
offset or size shows up as a wrong port, domid or ref) and carries them out on the lab's
simulated hypervisor, as the Linux drivers would on the real one. Its evtchn "fd" is a
real pipe, so the selectors loop of ``xenlab serve`` wakes up exactly when a port fires.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from xs_client import RingEnd

from xenlab.abi import xs_wire as xsw
from xenlab.abi.domctl import DomainInfoFlags, XEN_DOMINF_dying, XEN_DOMINF_shutdown
from xenlab.abi.event_channel import VIRQ_DOM_EXC
from xenlab.base.trace import Trace
from xenlab.xen.hypervisor import Hypervisor
from xenlab.xenstored import payload as pl
from xenlab.xenstored import realhost as rh
from xenlab.xenstored import wire
from xenlab.xenstored.daemon import Daemon
from xenlab.xenstored.host import HostError, HypervisorHost
from xenlab.xenstored.ring import RingServer
from xenlab.xenstored.serve import make_daemon
from xenlab.xenstored.unix import UnixServer
from xenlab.xenstored.wire import Message

U32 = 0xFFFFFFFF
DOMCTL_ADDR = 0x7F00_0000  # where the fake "mlocks" the domctl buffer


class FakeDrivers:
    """The Linux Xen drivers of a dom0, carried out on a simulated Hypervisor."""

    def __init__(self, hv: Hypervisor) -> None:
        self.hv = hv
        self.kernel = HypervisorHost(hv, 0)  # the evtchn driver's bookkeeping (mask on fire)
        hv.domains[0].upcall = self._upcall
        self.pipe_r, self.pipe_w = os.pipe()
        os.set_blocking(self.pipe_r, False)
        self.fds: dict[int, str] = {}
        self.calls: list[tuple[str, Any]] = []
        self.written: list[int] = []
        self.xsd_page = hv.memory.alloc_page(0)
        self.xsd_port = hv.evtchn_alloc_unbound(0, 0, 0)  # xenbus_init() in the dom0 kernel
        self.grants: dict[tuple[int, int], Any] = {}  # (domid, ref) -> page: libxl's domain builder
        self.maps: dict[int, Any] = {}  # gntdev index -> page
        self.next_index = 0
        self.buffers: dict[int, bytearray] = {}
        self.domctl_version_seen: list[int] = []

    def _upcall(self, vcpu: int) -> None:
        if self.kernel._collect():
            os.write(self.pipe_w, b"!")  # the evtchn fd becomes readable

    # the LibcSys methods ------------------------------------------------------------
    def open(self, path: str, flags: int) -> int:
        if path == rh.DEV_EVTCHN:
            assert flags & os.O_NONBLOCK, "the loop must never block in read()"
            fd = self.pipe_r
        else:
            fd = 100 + len(self.fds)
        self.fds[fd] = path
        return fd

    def close(self, fd: int) -> None:
        self.fds.pop(fd)

    def read(self, fd: int, n: int) -> bytes:
        if self.fds[fd] == rh.XSD_PORT:
            return f"{self.xsd_port}\n".encode()
        assert self.fds[fd] == rh.DEV_EVTCHN and n % 4 == 0
        try:
            os.read(self.pipe_r, 4096)
        except BlockingIOError:
            pass
        ports = self.kernel.evtchn_pending()
        if not ports:
            raise BlockingIOError(errno.EAGAIN, "no event")
        return b"".join(struct.pack("<I", p) for p in ports)

    def write(self, fd: int, data: bytes) -> int:
        assert self.fds[fd] == rh.DEV_EVTCHN
        for (port,) in struct.iter_unpack("<I", data):
            self.written.append(port)
            self.kernel.evtchn_unmask(port)
        if self.kernel.fired:
            os.write(self.pipe_w, b"!")
        return len(data)

    def ioctl(self, fd: int, request: int, arg: bytearray) -> int:
        path = self.fds[fd]
        k = self.kernel
        if request == rh.IOCTL_EVTCHN_BIND_INTERDOMAIN:
            assert path == rh.DEV_EVTCHN and len(arg) == 8
            dom, port = struct.unpack("<II", arg)
            self.calls.append(("bind_interdomain", (dom, port)))
            return k.evtchn_bind_interdomain(dom, port)
        if request == rh.IOCTL_EVTCHN_BIND_VIRQ:
            assert path == rh.DEV_EVTCHN and len(arg) == 4
            (virq,) = struct.unpack("<I", arg)
            self.calls.append(("bind_virq", virq))
            return k.evtchn_bind_virq(virq)
        if request in (rh.IOCTL_EVTCHN_NOTIFY, rh.IOCTL_EVTCHN_UNBIND):
            assert path == rh.DEV_EVTCHN and len(arg) == 4
            (port,) = struct.unpack("<I", arg)
            if request == rh.IOCTL_EVTCHN_NOTIFY:
                self.calls.append(("notify", port))
                k.evtchn_notify(port)
            else:
                self.calls.append(("unbind", port))
                k.evtchn_unbind(port)
            return 0
        if request == rh.IOCTL_GNTDEV_MAP_GRANT_REF:
            assert path == rh.DEV_GNTDEV and len(arg) == 24
            count, _pad, _index, domid, ref = struct.unpack("<IIQII", arg)
            assert count == 1
            page = self.grants.get((domid, ref))
            if page is None:
                raise OSError(errno.EINVAL, "no such grant")
            index = self.next_index
            self.next_index += 4096
            self.maps[index] = page
            struct.pack_into("<Q", arg, 8, index)
            self.calls.append(("gntdev_map", (domid, ref)))
            return 0
        if request == rh.IOCTL_GNTDEV_UNMAP_GRANT_REF:
            assert path == rh.DEV_GNTDEV and len(arg) == 16
            index, count, _ = struct.unpack("<QII", arg)
            assert count == 1
            del self.maps[index]
            self.calls.append(("gntdev_unmap", index))
            return 0
        if request == rh.IOCTL_PRIVCMD_HYPERCALL:
            assert path == rh.DEV_PRIVCMD and len(arg) == 48
            op, addr, *_ = struct.unpack("<6Q", arg)
            assert op == rh.HYPERVISOR_domctl
            return self._domctl(self.buffers[addr])
        raise OSError(errno.ENOTTY, f"unknown ioctl {request:#x}")

    def _domctl(self, buf: bytearray) -> int:
        """do_domctl() (xen/common/domctl.c), getdomaininfo only: the first domain >= the one asked."""
        cmd, version, domid = struct.unpack_from("<IIH", buf)
        self.domctl_version_seen.append(version)
        if version != 0x15:
            raise OSError(errno.EACCES, "interface version")
        assert cmd == rh.XEN_DOMCTL_getdomaininfo
        self.calls.append(("getdomaininfo", domid))
        for d in sorted(self.hv.domains):
            if d >= domid:
                dom = self.hv.domains[d]
                flags = (XEN_DOMINF_dying if dom.is_dying else 0)
                flags |= XEN_DOMINF_shutdown if dom.is_shut_down else 0
                struct.pack_into("<HxxI", buf, 16, d, flags)
                return 0
        raise OSError(errno.ESRCH, "no such domain")

    def mmap(self, fd: int, length: int, offset: int) -> tuple[int, Any]:
        assert length == 4096
        if self.fds[fd] == rh.XSD_KVA:
            return 0x1000, self.xsd_page.buf
        assert self.fds[fd] == rh.DEV_GNTDEV
        return 0x2000 + offset, self.maps[offset].buf

    def munmap(self, addr: int, length: int) -> None:
        self.calls.append(("munmap", addr))

    def locked_buffer(self, size: int) -> tuple[int, Any]:
        buf = bytearray(size)
        self.buffers[DOMCTL_ADDR] = buf
        return DOMCTL_ADDR, buf

    def buffer_bytes(self, buf: Any) -> bytes:
        return bytes(buf)

    def buffer_store(self, buf: Any, data: bytes) -> None:
        buf[:len(data)] = data

    def wait_readable(self, fd: int, timeout: float | None) -> bool:
        raise AssertionError("the loop uses selectors")

    def set_comm(self, name: str) -> None:
        assert not self.fds, "the name must be set before /dev/xen/evtchn is opened"
        self.comm = name


class Ring(RingEnd):
    """The other end of a store page (the dom0 kernel's xenbus, or a guest's)."""

    def __init__(self, page: Any) -> None:
        super().__init__(page, strict_types=False)


class Client:
    """A dom0 tool on the Unix socket (what libxenstore does)."""

    def __init__(self, path: str, lab: Lab) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.lab = lab
        self.dec = wire.Decoder()
        self.got: list[Message] = []
        self.req_id = 0

    def talk(self, msg_type: int, payload: bytes) -> Message:
        self.req_id += 1
        self.sock.sendall(wire.encode(Message(msg_type, self.req_id, 0, payload)))
        for _ in range(50):
            self.lab.turn()
            self.sock.setblocking(False)
            try:
                self.got += self.dec.feed(self.sock.recv(65536))
            except BlockingIOError:
                pass
            for m in self.got:
                if m.req_id == self.req_id and m.type != xsw.XS_WATCH_EVENT:
                    self.got.remove(m)
                    return m
        raise AssertionError("no reply")

    def events(self) -> list[Message]:
        ev = [m for m in self.got if m.type == xsw.XS_WATCH_EVENT]
        self.got = [m for m in self.got if m.type != xsw.XS_WATCH_EVENT]
        return ev


class Lab:
    """A dom0 with the fake drivers and `xenlab serve --real`'s daemon, socket and rings."""

    def __init__(self, tmp: Path) -> None:
        trace = Trace()
        trace.enabled = False
        self.hv = Hypervisor(trace=Trace())
        self.hv.domain_create(0, "Domain-0", privileged=True, initdomain=True)
        self.drv = FakeDrivers(self.hv)
        self.daemon = Daemon(trace=trace)
        self.path = str(tmp / "xs.sock")
        self.server = UnixServer(self.daemon, self.path)
        self.lines: list[str] = []
        self.host = rh.RealHost(self.drv, log=self.lines.append, comm="xenstored")
        self.ring = rh.serve_real(self.daemon, self.server, self.host, log=self.lines.append)
        self.kernel_ring = Ring(self.drv.xsd_page.buf)

    def turn(self) -> None:
        """One turn of `xenlab serve --real`'s loop (serve.py)."""
        rh.serve_turn(self.server, self.ring, 0.01)

    def close(self) -> None:
        self.server.close()
        self.host.close()
        os.close(self.drv.pipe_w)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    yield lab
    lab.close()


def test_ioctl_numbers_are_the_linux_uapi_ones() -> None:
    # _IOC(_IOC_NONE, 'E', nr, sizeof(struct)) and friends, as include/uapi/xen/*.h define them.
    assert rh.IOCTL_EVTCHN_BIND_VIRQ == 0x00044500
    assert rh.IOCTL_EVTCHN_BIND_INTERDOMAIN == 0x00084501
    assert rh.IOCTL_EVTCHN_UNBIND == 0x00044503
    assert rh.IOCTL_EVTCHN_NOTIFY == 0x00044504
    assert rh.IOCTL_GNTDEV_MAP_GRANT_REF == 0x00184700
    assert rh.IOCTL_GNTDEV_UNMAP_GRANT_REF == 0x00104701
    assert rh.IOCTL_PRIVCMD_HYPERCALL == 0x00305000


def test_argument_structs_are_little_endian_and_the_right_size() -> None:
    assert rh.pack_bind_interdomain(1, 6) == bytes([1, 0, 0, 0, 6, 0, 0, 0])
    m = rh.pack_map_grant_ref(1, 1)
    assert len(m) == 24 and struct.unpack("<IIQII", m) == (1, 0, 0, 1, 1)
    assert struct.unpack("<QII", rh.pack_unmap_grant_ref(0x3000)) == (0x3000, 1, 0)
    h = rh.pack_hypercall(36, 0xDEAD000)
    assert len(h) == 48 and struct.unpack("<6Q", h) == (36, 0xDEAD000, 0, 0, 0, 0)
    d = rh.pack_getdomaininfo(7)
    assert len(d) == 144 and struct.unpack_from("<IIH", d) == (5, 0x15, 7) and not any(d[16:])
    # After `xl destroy` Xen answered flags 0xffff0009: dying and paused, shutdown code all ones.
    info = rh.unpack_getdomaininfo(bytes(16) + struct.pack("<HxxI", 1, 0xFFFF0009))
    assert (info.domid, info.dying, info.shutdown) == (1, True, False)


def test_start_binds_dom_exc_then_dom0s_port_and_kicks_it_once(lab: Lab) -> None:
    drv = lab.drv
    local = lab.ring.rings[0].port
    # domain_init() then dom0_init(), as C xenstored: VIRQ_DOM_EXC first, then xsd_port, one kick.
    assert drv.calls == [("bind_virq", VIRQ_DOM_EXC), ("bind_interdomain", (0, drv.xsd_port)),
                         ("notify", local)]
    # The kick lands on the kernel's end: without it dom0's deferred xenbus probe never runs.
    assert lab.hv.domains[0].shared_info.test_pending(drv.xsd_port)
    assert lab.lines[-1] == f"dom0 ring: xsd_port {drv.xsd_port} bound as local port {local}, kicked once"


def test_the_process_is_named_before_evtchn_is_opened(lab: Lab) -> None:
    # drivers/xen/evtchn.c names the IRQs "evtchn:<comm>" at open(): /proc/interrupts then shows
    # evtchn:xenstored, as with the real C xenstored, instead of evtchn:python3.
    assert lab.drv.comm == "xenstored"


def test_the_kernels_request_is_answered_and_its_port_written_back(lab: Lab) -> None:
    k = lab.kernel_ring
    local = lab.ring.rings[0].port
    k.send(xsw.XS_READ, b"/local/domain/0/name\0")
    assert lab.hv.evtchn_send(0, lab.drv.xsd_port) == 0  # the kernel kicks; our port fires
    lab.turn()
    assert k.take() == [Message(xsw.XS_ERROR, 1, 0, b"ENOENT\0")]
    assert local in lab.drv.written  # re-enabled (late EOI), or it would fire only once
    k.send(xsw.XS_WATCH, b"backend\0" + b"tok\0")
    lab.hv.evtchn_send(0, lab.drv.xsd_port)
    lab.turn()
    assert k.take() == [Message(xsw.XS_WATCH, 2, 0, b"OK\0"), pl.watch_event("backend", "tok")]


def test_a_socket_write_reaches_the_kernels_watch_in_the_same_turn(lab: Lab) -> None:
    # xl writes a backend directory over the socket; dom0's kernel watches "backend":
    # the loop must also move the ring after a socket turn, with no event on the ring.
    k = lab.kernel_ring
    k.send(xsw.XS_WATCH, b"backend\0" + b"tok\0")
    lab.hv.evtchn_send(0, lab.drv.xsd_port)
    lab.turn()
    k.take()
    xl = Client(lab.path, lab)
    assert xl.talk(xsw.XS_WRITE, b"/local/domain/0/backend/vbd/1/51712/state\x004").payload == b"OK\0"
    # (a relative watch gets the path relative to /local/domain/0)
    assert k.take() == [pl.watch_event("backend/vbd/1/51712/state", "tok")]


def test_a_guest_is_mapped_by_grant_ref_1_served_and_released(lab: Lab) -> None:
    hv, drv = lab.hv, lab.drv
    hv.domain_create(1, "guest")
    page = hv.memory.alloc_page(1)
    drv.grants[(1, 1)] = page  # GNTTAB_RESERVED_XENSTORE, filled in by libxl's domain builder
    guest_port = hv.evtchn_alloc_unbound(1, 1, 0)
    xl = Client(lab.path, lab)
    watcher = Client(lab.path, lab)
    assert watcher.talk(xsw.XS_WATCH, b"@releaseDomain\0domlist\0").payload == b"OK\0"
    watcher.events()
    reply = xl.talk(xsw.XS_INTRODUCE, pl.introduce_payload(1, page.mfn, guest_port))
    assert reply.payload == b"OK\0"
    assert ("gntdev_map", (1, 1)) in drv.calls and ("bind_interdomain", (1, guest_port)) in drv.calls
    g = Ring(page.buf)
    g.send(xsw.XS_GET_DOMAIN_PATH, b"1\0")
    hv.evtchn_send(1, guest_port)
    lab.turn()
    assert g.take() == [Message(xsw.XS_GET_DOMAIN_PATH, 1, 0, b"/local/domain/1\0")]
    # xl destroy: the domain is dying, Xen raises VIRQ_DOM_EXC, getdomaininfo says so.
    local = lab.ring.rings[1].port
    hv.domains[1].is_dying = True
    hv.send_guest_virq(0, VIRQ_DOM_EXC)
    for _ in range(5):
        lab.turn()
    assert ("getdomaininfo", 1) in drv.calls and drv.domctl_version_seen[-1] == 0x15
    assert 1 not in lab.ring.rings and ("unbind", local) in drv.calls
    assert [c for c in drv.calls if c[0] in ("munmap", "gntdev_unmap")] == [("munmap", 0x2000),
                                                                           ("gntdev_unmap", 0)]
    watcher.talk(xsw.XS_READ, b"/\0")
    assert watcher.events() == [pl.watch_event("@releaseDomain", "domlist")]


def test_getdomaininfo_answers_the_next_domain_or_esrch(lab: Lab) -> None:
    hv = lab.hv
    hv.domain_create(2, "other")
    # 4.17 answers with the first domain whose id is >= the one asked: d1 asked, d2 answered.
    assert lab.host.getdomaininfo(1) == DomainInfoFlags(2, 0)
    assert rh.domain_gone(lab.host, lab.daemon, 1)
    assert lab.host.getdomaininfo(3) is None  # ESRCH
    assert not rh.domain_gone(lab.host, lab.daemon, 2)
    hv.domains[2].is_dying = True
    assert rh.domain_gone(lab.host, lab.daemon, 2)


def test_a_refused_ioctl_names_what_failed(lab: Lab) -> None:
    with pytest.raises(HostError, match="gntdev map d5 ref 1"):
        lab.host.map_store_page(5, 0x1234)
    xl = Client(lab.path, lab)
    assert xl.talk(xsw.XS_INTRODUCE, pl.introduce_payload(5, 0x1234, 3)).payload == b"EINVAL\0"


def test_pending_reads_until_empty_and_reports_each_port_once() -> None:
    class Sys:
        def __init__(self) -> None:
            self.chunks = [struct.pack("<I", 7) * 256, struct.pack("<III", 9, 7, 9)]

        def open(self, path: str, flags: int) -> int:
            return 3

        def read(self, fd: int, n: int) -> bytes:
            if not self.chunks:
                raise BlockingIOError(errno.EAGAIN, "empty")
            return self.chunks.pop(0)

    host = rh.RealHost(Sys())
    assert host.evtchn_pending() == [7, 9]
    assert host.evtchn_pending() == []


@pytest.mark.parametrize("personality, events", [("oxenstored", 2), ("cxenstored", 1)])
def test_libxls_device_add_fires_backend_watch_as_the_real_daemon_does(personality: str, events: int) -> None:
    # Found on the real dom0 (docs/realxen.md): with oxenstored the dom0 kernel printed 89
    # "backend_changed" lines over the domU's life, the lab's daemon 86. libxl's
    # libxl__device_generic_add does, in one transaction, RM (no node yet: no event), MKDIR
    # and SET_PERMS of the backend directory: oxenstored fires one event per operation
    # (process.ml, the transaction's paths), C xenstored one per node (the accessed list,
    # and it drops events identical to one still queued: XSA-326).
    hv = Hypervisor(trace=Trace())
    hv.domain_create(0, "Domain-0", privileged=True, initdomain=True)
    host = HypervisorHost(hv, 0)
    daemon = make_daemon(personality)
    ring = RingServer(daemon, host, personality=personality)
    page = hv.memory.alloc_page(0)
    xsd = hv.evtchn_alloc_unbound(0, 0, 0)
    ring.attach_local(xsd, page.buf)
    kernel = Ring(page.buf)
    kernel.send(xsw.XS_WATCH, b"backend\0be\0")
    hv.evtchn_send(0, xsd)
    ring.service()
    assert [m.type for m in kernel.take()] == [xsw.XS_WATCH, xsw.XS_WATCH_EVENT]
    libxl = daemon.new_connection(0, "socket-libxl")
    path = b"/local/domain/0/backend/vbd/1/51712\0"

    def ask(msg_type: int, tx: int, payload: bytes) -> bytes:
        daemon.handle(libxl, Message(msg_type, 1, tx, payload))
        return [m for m in libxl.take_output() if m.type != xsw.XS_WATCH_EVENT][-1].payload

    tx = int(ask(xsw.XS_TRANSACTION_START, 0, b"\0").rstrip(b"\0"))
    ask(xsw.XS_RM, tx, path)
    ask(xsw.XS_MKDIR, tx, path)
    ask(xsw.XS_SET_PERMS, tx, path + b"n0\0r1\0")
    assert ask(xsw.XS_TRANSACTION_END, tx, b"T\0") == b"OK\0"
    ring.service()
    got = [m.payload for m in kernel.take() if m.type == xsw.XS_WATCH_EVENT]
    assert got == [b"backend/vbd/1/51712\0be\0"] * events


def test_serve_real_without_xen_says_what_is_missing_and_leaves_no_socket(tmp_path: Path) -> None:
    import subprocess
    import sys

    if os.path.exists(rh.DEV_EVTCHN):
        pytest.skip("this machine is a Xen dom0")
    sock = tmp_path / "xs.sock"
    out = subprocess.run([sys.executable, "-m", "xenlab", "serve", "--real", "--socket", str(sock)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "cannot serve the real dom0" in out.stderr and rh.DEV_EVTCHN in out.stderr
    assert not sock.exists()


def test_a_failing_ring_turn_is_logged_and_the_daemon_goes_on(lab: Lab) -> None:
    def broken() -> int:
        raise HostError(errno.EBADF, "notify(99)")

    lab.ring.service = broken  # type: ignore[method-assign]
    rh.serve_turn(lab.server, lab.ring, 0.01, log=lab.lines.append)
    assert lab.lines[-1].startswith("xenlab serve: ring service failed:\nTraceback")
    assert "notify(99): EBADF" in lab.lines[-1]

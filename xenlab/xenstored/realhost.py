"""The xenstored host of a REAL dom0: /dev/xen/evtchn, gntdev, privcmd and /proc/xen/xsd_kva.

Theory of operation
-------------------
On a real Xen dom0 the daemon reaches the machine through the Linux Xen device drivers,
as libxenevtchn, libxengnttab and libxenctrl do for C xenstored:

- ``/dev/xen/evtchn`` (drivers/xen/evtchn.c): ``IOCTL_EVTCHN_BIND_INTERDOMAIN`` /
  ``BIND_VIRQ`` / ``NOTIFY`` / ``UNBIND``; ``read()`` hands over the u32 ports that fired
  (each is masked until the same u32 is ``write()``-n back: the late EOI).
- ``/proc/xen/xsd_kva``: dom0's own store page. Python's ``mmap.mmap`` refuses it (a
  /proc file of size 0), so it is mapped with libc ``mmap`` through ctypes.
- ``/dev/xen/gntdev`` (drivers/xen/gntdev.c): a guest's store page is grant ref 1
  (GNTTAB_RESERVED_XENSTORE, filled in by libxl's domain builder):
  ``IOCTL_GNTDEV_MAP_GRANT_REF`` gives an offset to ``mmap`` at.
- ``/dev/xen/privcmd`` (drivers/xen/privcmd.c): ``IOCTL_PRIVCMD_HYPERCALL`` of
  ``XEN_DOMCTL_getdomaininfo``, asked on each ``VIRQ_DOM_EXC`` (is the guest dying?).

All system calls go through one small edge object (``LibcSys``; tests inject a fake with
the same methods), so the argument packing and the event handling are tested anywhere.
``serve_real`` wires a ``RealHost`` to the daemon's ``RingServer`` and to the Unix-socket
loop of ``xenlab serve --real``.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import fcntl
import os
import select
import struct
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xenlab.abi.domctl import DomainInfoFlags
from xenlab.abi.start_info import GNTTAB_RESERVED_XENSTORE
from xenlab.abi.xs_wire import XENSTORE_RING_SIZE
from xenlab.xenstored.host import HostError
from xenlab.xenstored.ring import RingServer

if TYPE_CHECKING:
    from xenlab.xenstored.daemon import Daemon
    from xenlab.xenstored.unix import UnixServer

PAGE_SIZE = 4096


def _IOC(direction: int, kind: str, nr: int, size: int) -> int:
    """_IOC() (include/uapi/asm-generic/ioctl.h): dir << 30 | size << 16 | type << 8 | nr."""
    return direction << 30 | size << 16 | ord(kind) << 8 | nr


_IOC_NONE = 0
# include/uapi/xen/evtchn.h, gntdev.h, privcmd.h (all _IOC_NONE with the struct's size)
IOCTL_EVTCHN_BIND_VIRQ = _IOC(_IOC_NONE, "E", 0, 4)  # struct ioctl_evtchn_bind_virq
IOCTL_EVTCHN_BIND_INTERDOMAIN = _IOC(_IOC_NONE, "E", 1, 8)  # remote_domain, remote_port
IOCTL_EVTCHN_UNBIND = _IOC(_IOC_NONE, "E", 3, 4)  # port
IOCTL_EVTCHN_NOTIFY = _IOC(_IOC_NONE, "E", 4, 4)  # port
IOCTL_GNTDEV_MAP_GRANT_REF = _IOC(_IOC_NONE, "G", 0, 24)  # count, pad, index, refs[1]
IOCTL_GNTDEV_UNMAP_GRANT_REF = _IOC(_IOC_NONE, "G", 1, 16)  # index, count, pad
IOCTL_PRIVCMD_HYPERCALL = _IOC(_IOC_NONE, "P", 0, 48)  # op, arg[5]

# xen/include/public/xen.h and domctl.h (Xen 4.17)
HYPERVISOR_domctl = 36  # __HYPERVISOR_domctl (a leading __ would be name-mangled in a class)
XEN_DOMCTL_getdomaininfo = 5
XEN_DOMCTL_INTERFACE_VERSION = 0x15  # 4.17 only: other releases use other values
XEN_DOMCTL_SIZE = 144  # sizeof(struct xen_domctl): 16 bytes of header + the 128-byte union

PR_SET_NAME = 15  # include/uapi/linux/prctl.h

XSD_PORT = "/proc/xen/xsd_port"
XSD_KVA = "/proc/xen/xsd_kva"
DEV_EVTCHN = "/dev/xen/evtchn"
DEV_GNTDEV = "/dev/xen/gntdev"
DEV_PRIVCMD = "/dev/xen/privcmd"


# -- argument packing (the structs of the uapi headers, little-endian) -------------------------
def pack_bind_virq(virq: int) -> bytearray:
    """struct ioctl_evtchn_bind_virq { u32 virq; }."""
    return bytearray(struct.pack("<I", virq))


def pack_bind_interdomain(remote_domain: int, remote_port: int) -> bytearray:
    """struct ioctl_evtchn_bind_interdomain { u32 remote_domain, remote_port; }."""
    return bytearray(struct.pack("<II", remote_domain, remote_port))


def pack_port(port: int) -> bytearray:
    """struct ioctl_evtchn_unbind / ioctl_evtchn_notify { u32 port; }."""
    return bytearray(struct.pack("<I", port))


def pack_map_grant_ref(domid: int, ref: int) -> bytearray:
    """struct ioctl_gntdev_map_grant_ref { u32 count=1, pad; u64 index (out); {u32 domid, ref} }."""
    return bytearray(struct.pack("<IIQII", 1, 0, 0, domid, ref))


def pack_unmap_grant_ref(index: int, count: int = 1) -> bytearray:
    """struct ioctl_gntdev_unmap_grant_ref { u64 index; u32 count, pad; }."""
    return bytearray(struct.pack("<QII", index, count, 0))


def pack_hypercall(op: int, *args: int) -> bytearray:
    """struct privcmd_hypercall { u64 op, arg[5]; }."""
    full = (list(args) + [0] * 5)[:5]
    return bytearray(struct.pack("<6Q", op, *full))


def pack_getdomaininfo(domid: int) -> bytes:
    """struct xen_domctl for XEN_DOMCTL_getdomaininfo: cmd, interface_version, domain; union zeroed."""
    return struct.pack("<IIH", XEN_DOMCTL_getdomaininfo, XEN_DOMCTL_INTERFACE_VERSION, domid).ljust(
        XEN_DOMCTL_SIZE, b"\0")


def unpack_getdomaininfo(buf: bytes) -> DomainInfoFlags:
    """The answer: getdomaininfo.domain (u16 @16) and flags (u32 @20)."""
    domid, flags = struct.unpack_from("<HxxI", buf, 16)
    return DomainInfoFlags(domid, flags)


# -- the edge: every system call -------------------------------------------------------------
class LibcSys:
    """The real system calls: os, fcntl.ioctl, select, and libc mmap/munmap/mlock through ctypes."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        self.libc = libc
        self._locked: list[Any] = []  # hypercall buffers must never move or be freed

    def open(self, path: str, flags: int) -> int:
        """open(2)."""
        return os.open(path, flags)

    def close(self, fd: int) -> None:
        """close(2)."""
        os.close(fd)

    def read(self, fd: int, n: int) -> bytes:
        """read(2); BlockingIOError when a non-blocking fd has nothing."""
        return os.read(fd, n)

    def write(self, fd: int, data: bytes) -> int:
        """write(2)."""
        return os.write(fd, data)

    def ioctl(self, fd: int, request: int, arg: bytearray) -> int:
        """ioctl(2) on a mutable buffer: the return value (the new port); the buffer is updated."""
        return int(fcntl.ioctl(fd, request, arg, True))

    def mmap(self, fd: int, length: int, offset: int) -> tuple[int, Any]:
        """libc mmap(NULL, length, PROT_READ|PROT_WRITE, MAP_SHARED, fd, offset): (address, buffer)."""
        import mmap as _mmap

        addr = self.libc.mmap(None, length, _mmap.PROT_READ | _mmap.PROT_WRITE, _mmap.MAP_SHARED, fd, offset)
        if addr in (None, ctypes.c_void_p(-1).value):
            err = ctypes.get_errno()
            raise OSError(err, f"mmap: {os.strerror(err)}")
        return addr, (ctypes.c_ubyte * length).from_address(addr)

    def munmap(self, addr: int, length: int) -> None:
        """munmap(2)."""
        if self.libc.munmap(addr, length) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"munmap: {os.strerror(err)}")

    def locked_buffer(self, size: int) -> tuple[int, Any]:
        """A zeroed buffer that stays put and is mlock()ed (Xen reads it through dom0's page tables)."""
        buf = ctypes.create_string_buffer(size)
        addr = ctypes.addressof(buf)
        self.libc.mlock(addr, size)
        self._locked.append(buf)
        return addr, buf

    def buffer_bytes(self, buf: Any) -> bytes:
        """The current contents of a locked buffer."""
        return bytes(buf.raw)

    def buffer_store(self, buf: Any, data: bytes) -> None:
        """Copy *data* into a locked buffer."""
        ctypes.memmove(buf, data, len(data))

    def wait_readable(self, fd: int, timeout: float | None) -> bool:
        """select(2) for reading."""
        return bool(select.select([fd], [], [], timeout)[0])

    def set_comm(self, name: str) -> None:
        """prctl(PR_SET_NAME): the process name the kernel shows (15 bytes at most)."""
        self.libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


# -- the host ----------------------------------------------------------------------------------
class RealHost:
    """XenstoredHost over a real dom0's Xen devices (libxenevtchn + libxengnttab + libxenctrl)."""

    def __init__(self, sys: Any = None, *, log: Callable[[str], None] | None = None, comm: str | None = None,
                 evtchn: str = DEV_EVTCHN, gntdev: str = DEV_GNTDEV, privcmd: str = DEV_PRIVCMD,
                 xsd_port: str = XSD_PORT, xsd_kva: str = XSD_KVA) -> None:
        self.sys = sys if sys is not None else LibcSys()
        self.log = log
        self.paths = {"evtchn": evtchn, "gntdev": gntdev, "privcmd": privcmd,
                      "xsd_port": xsd_port, "xsd_kva": xsd_kva}
        if comm is not None:
            # evtchn_open() names this fd's IRQs "evtchn:<comm>" after the opening process, so a
            # daemon that calls itself xenstored shows in /proc/interrupts as the real one does.
            self.sys.set_comm(comm)
        # xenevtchn_open(): one fd for every port, non-blocking so read() never stalls the loop
        self.evtchn_fd = self.sys.open(evtchn, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._gntdev_fd: int | None = None
        self._privcmd_fd: int | None = None
        self._domctl: tuple[int, Any] | None = None
        self.ports: set[int] = set()
        #: domid -> (address, length, gntdev index or None for xsd_kva, fd to close or None)
        self.mapped: dict[int, tuple[int, int, int | None, int | None]] = {}

    def _say(self, line: str) -> None:
        if self.log is not None:
            self.log(line)

    def _ioctl(self, fd: int, request: int, arg: bytearray, what: str) -> int:
        try:
            return self.sys.ioctl(fd, request, arg)
        except OSError as exc:
            raise HostError(exc.errno or _errno.EIO, what) from exc

    def fileno(self) -> int:
        """The /dev/xen/evtchn fd: readable when a port fired (for a selectors loop)."""
        return self.evtchn_fd

    # -- event channels -------------------------------------------------------------------
    def evtchn_bind_interdomain(self, remote_dom: int, remote_port: int) -> int:
        """xenevtchn_bind_interdomain (tools/libs/evtchn/linux.c): IOCTL_EVTCHN_BIND_INTERDOMAIN."""
        port = self._ioctl(self.evtchn_fd, IOCTL_EVTCHN_BIND_INTERDOMAIN,
                           pack_bind_interdomain(remote_dom, remote_port),
                           f"bind_interdomain({remote_dom}, {remote_port})")
        self.ports.add(port)
        self._say(f"evtchn: bound d{remote_dom} port {remote_port} as local port {port}")
        return port

    def evtchn_bind_virq(self, virq: int) -> int:
        """xenevtchn_bind_virq (tools/libs/evtchn/linux.c): IOCTL_EVTCHN_BIND_VIRQ."""
        port = self._ioctl(self.evtchn_fd, IOCTL_EVTCHN_BIND_VIRQ, pack_bind_virq(virq), f"bind_virq({virq})")
        self.ports.add(port)
        self._say(f"evtchn: bound VIRQ {virq} as local port {port}")
        return port

    def evtchn_notify(self, port: int) -> None:
        """xenevtchn_notify (tools/libs/evtchn/linux.c): IOCTL_EVTCHN_NOTIFY."""
        self._ioctl(self.evtchn_fd, IOCTL_EVTCHN_NOTIFY, pack_port(port), f"notify({port})")

    def evtchn_unbind(self, port: int) -> None:
        """xenevtchn_unbind (tools/libs/evtchn/linux.c): IOCTL_EVTCHN_UNBIND."""
        self.ports.discard(port)
        self._ioctl(self.evtchn_fd, IOCTL_EVTCHN_UNBIND, pack_port(port), f"unbind({port})")
        self._say(f"evtchn: unbound local port {port}")

    def evtchn_pending(self) -> list[int]:
        """xenevtchn_pending without blocking: read() every u32 port the driver queued, each once."""
        fired: list[int] = []
        while True:
            try:
                data = self.sys.read(self.evtchn_fd, 4 * 256)
            except (BlockingIOError, InterruptedError):
                break
            if not data:
                break
            for (port,) in struct.iter_unpack("<I", data[:len(data) & ~3]):
                if port not in fired:
                    fired.append(port)
            if len(data) < 4 * 256:
                break
        return fired

    def evtchn_unmask(self, port: int) -> None:
        """xenevtchn_unmask (tools/libs/evtchn/linux.c): write() the u32 port back (late EOI)."""
        self.sys.write(self.evtchn_fd, struct.pack("<I", port))

    def wait(self, timeout: float | None = None) -> None:
        """Block until /dev/xen/evtchn is readable (a port fired)."""
        self.sys.wait_readable(self.evtchn_fd, timeout)

    # -- store pages ----------------------------------------------------------------------
    def xsd_port(self) -> int:
        """/proc/xen/xsd_port: the port the dom0 kernel allocated for its own store ring."""
        fd = self.sys.open(self.paths["xsd_port"], os.O_RDONLY)
        try:
            return int(self.sys.read(fd, 64).decode().strip())
        finally:
            self.sys.close(fd)

    def map_local_store_page(self) -> Any:
        """xenbus_map() (xenstored_domain.c, dom0_init): mmap of /proc/xen/xsd_kva, dom0's store page."""
        fd = self.sys.open(self.paths["xsd_kva"], os.O_RDWR)
        try:
            addr, buf = self.sys.mmap(fd, PAGE_SIZE, 0)
        except OSError:
            self.sys.close(fd)
            raise
        self.mapped[0] = (addr, PAGE_SIZE, None, fd)
        self._say(f"mapped {self.paths['xsd_kva']}")
        return buf

    def _gntdev(self) -> int:
        if self._gntdev_fd is None:
            self._gntdev_fd = self.sys.open(self.paths["gntdev"], os.O_RDWR | os.O_CLOEXEC)
        return self._gntdev_fd

    def map_store_page(self, domid: int, mfn: int) -> Any:
        """map_interface() (xenstored_domain.c): gntdev map of grant ref 1 (the mfn is not needed)."""
        fd = self._gntdev()
        arg = pack_map_grant_ref(domid, GNTTAB_RESERVED_XENSTORE)
        ref = GNTTAB_RESERVED_XENSTORE
        self._ioctl(fd, IOCTL_GNTDEV_MAP_GRANT_REF, arg, f"gntdev map d{domid} ref {ref}")
        (index,) = struct.unpack_from("<Q", arg, 8)
        try:
            addr, buf = self.sys.mmap(fd, PAGE_SIZE, index)
        except OSError:
            self._ioctl(fd, IOCTL_GNTDEV_UNMAP_GRANT_REF, pack_unmap_grant_ref(index), "gntdev unmap")
            raise
        self.mapped[domid] = (addr, PAGE_SIZE, index, None)
        self._say(f"gntdev: mapped d{domid} grant ref {ref} (mfn {mfn:#x}) at index {index:#x}")
        return buf

    def unmap_store_page(self, domid: int) -> None:
        """unmap_interface() (xenstored_domain.c): munmap, then IOCTL_GNTDEV_UNMAP_GRANT_REF."""
        entry = self.mapped.pop(domid, None)
        if entry is None:
            return
        addr, length, index, fd = entry
        self.sys.munmap(addr, length)
        if index is not None:
            self._ioctl(self._gntdev(), IOCTL_GNTDEV_UNMAP_GRANT_REF, pack_unmap_grant_ref(index),
                        f"gntdev unmap d{domid}")
        if fd is not None:
            self.sys.close(fd)
        self._say(f"unmapped d{domid}'s store page")

    # -- the hypervisor's view of a domain ----------------------------------------------------
    def getdomaininfo(self, domid: int) -> DomainInfoFlags | None:
        """xc_domain_getinfo() (tools/libs/ctrl): XEN_DOMCTL_getdomaininfo via privcmd; None on ESRCH."""
        if self._privcmd_fd is None:
            self._privcmd_fd = self.sys.open(self.paths["privcmd"], os.O_RDWR | os.O_CLOEXEC)
        if self._domctl is None:
            self._domctl = self.sys.locked_buffer(XEN_DOMCTL_SIZE)
        addr, buf = self._domctl
        self.sys.buffer_store(buf, pack_getdomaininfo(domid))
        try:
            self.sys.ioctl(self._privcmd_fd, IOCTL_PRIVCMD_HYPERCALL,
                           pack_hypercall(HYPERVISOR_domctl, addr))
        except OSError as exc:
            if exc.errno == _errno.ESRCH:
                return None
            raise HostError(exc.errno or _errno.EIO, f"getdomaininfo d{domid}") from exc
        return unpack_getdomaininfo(self.sys.buffer_bytes(buf))

    def close(self) -> None:
        """Unmap every page and close the devices."""
        for domid in sorted(self.mapped):
            self.unmap_store_page(domid)
        for fd in (self._gntdev_fd, self._privcmd_fd, self.evtchn_fd):
            if fd is not None:
                self.sys.close(fd)
        self._gntdev_fd = self._privcmd_fd = None


def domain_gone(host: RealHost, daemon: Daemon, domid: int) -> bool:
    """domain_cleanup() (xenstored_domain.c): gone = ESRCH, another domid answered, or dying.

    In 4.17 getdomaininfo answers with the first domain whose id is >= the one asked for.
    A domain shut down but not dying gets @releaseDomain once (``fire_domain_shutdown``).
    """
    info = host.getdomaininfo(domid)
    if info is None or info.domid != domid or info.dying:
        return True
    if info.shutdown:
        daemon.fire_domain_shutdown(domid)
    return False


def get_domain_info(host: RealHost, domid: int) -> bool:
    """get_domain_info() (xenstored_domain.c): getdomaininfo answers for this very domid."""
    try:
        info = host.getdomaininfo(domid)
    except OSError:
        return False
    return info is not None and info.domid == domid


def serve_real(daemon: Daemon, unix_server: UnixServer, host: RealHost, *, personality: str = "cxenstored",
               log: Callable[[str], None] | None = None) -> RingServer:
    """domain_init() + dom0_init() (xenstored_domain.c): VIRQ_DOM_EXC, then dom0's ring, kicked once.

    Registers the evtchn fd with *unix_server*'s selectors loop; returns the RingServer,
    whose ``service()`` the loop must also call after each socket turn (a socket request
    may fire a watch of a ring connection).
    """
    ring = RingServer(daemon, host, trace=daemon.trace, personality=personality,
                      actor=daemon.name)
    ring.bind_dom_exc(lambda d: domain_gone(host, daemon, d))
    daemon.domain_exists = lambda d: get_domain_info(host, d)  # XSA-322: perms naming no domain
    port = host.xsd_port()
    buf = host.map_local_store_page()
    if len(memoryview(buf).cast("B")) < 2 * XENSTORE_RING_SIZE:
        raise HostError(_errno.EINVAL, "xsd_kva mapping too small")
    rc = ring.attach_local(port, buf)
    if log is not None:
        log(f"dom0 ring: xsd_port {port} bound as local port {rc.port}, kicked once")
    unix_server.register_fd(host.fileno(), lambda: service_rings(ring, log))
    return ring


def service_rings(ring: RingServer, log: Callable[[str], None] | None = None) -> None:
    """ring.service(); a failure is logged with its traceback and the daemon goes on.

    On a real dom0 a dead xenstored hangs every client (the kernel's and the tools'), so one
    bad turn must cost that turn only.
    """
    try:
        ring.service()
    except Exception:
        (log or _stderr)(f"xenlab serve: ring service failed:\n{traceback.format_exc().rstrip()}")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def serve_turn(unix_server: UnixServer, ring: RingServer, timeout: float | None = None,
               log: Callable[[str], None] | None = None) -> None:
    """One turn of main() (xenstored_core.c): socket and evtchn activity, then every ring.

    The rings are moved after each socket turn too: a tool's request on the socket (xl
    writing a backend directory) may fire a watch of dom0's kernel, whose event waits in
    the ring connection's queue until the ring is served.
    """
    unix_server.service(timeout)
    service_rings(ring, log)

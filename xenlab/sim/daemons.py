"""dom0's user space: xenstored, xen-init-dom0 and xenconsoled, as /etc/init.d/xen starts them.

Theory of operation
-------------------
``start_xenstored`` starts the daemon the way oxenstored / C xenstored start on a real
dom0: open ``/dev/xen/evtchn`` (``xenlab.sim.host``), bind ``VIRQ_DOM_EXC`` (for
@releaseDomain), read ``/proc/xen/xsd_port`` and map ``/proc/xen/xsd_kva``, bind that
port and kick it once (``RingServer.attach_local``), then loop: serve the rings, sleep
until an event. It runs as a scheduler task, so the dom0 kernel's xenbus probe (woken
by that first kick) and the daemon take turns exactly as the scheduler decides.

The tools (xen-init-dom0, xenconsoled, the toolstack, xenstore-*) talk to the daemon
over its Unix socket; here that is a daemon connection of dom0 (``socket_client``):
each request is handled at once and the reply picked up, watch events are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from xenlab.abi.grant_table import GNTTAB_RESERVED_CONSOLE
from xenlab.abi.xs_wire import XS_WATCH_EVENT
from xenlab.sim.host import EvtchnDevHost
from xenlab.sim.xsclient import XsClient, XsError
from xenlab.xenstored import wire
from xenlab.xenstored.daemon import Daemon
from xenlab.xenstored.ring import RingServer
from xenlab.xenstored.serve import PERSONALITIES

XENSTORED_PATHS = {"oxenstored": "/usr/lib/xen-4.17/bin/oxenstored",
                   "cxenstored": "/usr/lib/xen-4.17/bin/xenstored"}

if TYPE_CHECKING:
    from xenlab.sim.machine import Machine


class SocketConnection:
    """A tool's connection to xenstored's Unix socket: requests in, replies and watch events out."""

    def __init__(self, daemon: Daemon, label: str, readable: Callable[[], None] | None = None,
                 stopped: Callable[[], bool] = lambda: False) -> None:
        self.daemon = daemon
        self.readable = readable  # tells the daemon's poll() loop that this socket had input
        self.stopped = stopped  # the daemon process is stopped (SIGSTOP): nothing answers
        self.conn = daemon.new_connection(domid=0, label=f"socket:{label}")
        self.label = label
        self.req_id = 0
        self.inbox: list[wire.Message] = []
        self.events: list[tuple[str, str]] = []
        self.conn.on_output = lambda c: self._drain()

    def _drain(self) -> None:
        for msg in self.daemon.take_all(self.conn):
            if msg.type == XS_WATCH_EVENT:
                parts = msg.payload.split(b"\0")
                self.events.append((parts[0].decode(), parts[1].decode() if len(parts) > 1 else ""))
            else:
                self.inbox.append(msg)

    def talk(self, mtype: int, tx_id: int, payload: bytes) -> tuple[int, bytes]:
        """xs_talkv over the socket: one request, its reply."""
        if self.stopped():
            # a real tool would block in read() until SIGCONT; the lab's tools are not tasks
            raise RuntimeError(f"{self.label}: xenstored is stopped (SIGSTOP): the request would block")
        self.req_id += 1
        self.daemon.handle(self.conn, wire.Message(mtype, self.req_id, tx_id, payload))
        if self.readable is not None:
            self.readable()  # the daemon's loop goes round: watch events this caused reach the rings
        self._drain()
        for i, msg in enumerate(self.inbox):
            if msg.req_id == self.req_id:
                del self.inbox[i]
                return msg.type, msg.payload
        raise RuntimeError(f"{self.label}: xenstored sent no reply to request {self.req_id} (type {mtype})")

    def take_events(self) -> list[tuple[str, str]]:
        """The watch events that arrived since the last call (path, token)."""
        events, self.events = self.events, []
        return events


class SocketClient(XsClient):
    """An XsClient over a SocketConnection (``sock``: its watch events)."""

    def __init__(self, sock: SocketConnection, name: str) -> None:
        super().__init__(sock.talk, name=name)
        self.sock = sock


def socket_client(m: Machine, label: str) -> SocketClient:
    """An XsClient on a new socket connection of dom0 (what xs_open() gives a dom0 tool)."""
    if m.daemon is None:
        raise RuntimeError(f"{label}: xenstored is not running (no socket to connect to)")
    signal = m.xenstored_signal
    stopped = (lambda: signal("?") == "T") if signal is not None else (lambda: False)
    return SocketClient(SocketConnection(m.daemon, label, m.xenstored_socket_readable, stopped), label)


def make_daemon(m: Machine, personality: str) -> Daemon:
    """The lab's xenstored Daemon with the personality's features and name, recording into the trace.

    Its clock is the scheduler's simulated one, so event timeouts are deterministic."""
    features, name = PERSONALITIES[personality]
    daemon = Daemon(trace=m.trace, features=features, name=name)
    sched = m.sched
    daemon.clock = lambda: sched.now_ns / 1e9
    return daemon


def domain_gone(m: Machine, domid: int) -> bool:
    """domain_cleanup() (xenstored_domain.c) asking XEN_DOMCTL_getdomaininfo: gone = -ESRCH or dying.

    A domain that is shut down (or crashed) but not dying keeps its connection: it only
    gets @releaseDomain, once (``fire_domain_shutdown``), as on a real host.
    """
    info = m.hv.getdomaininfo(domid)
    if isinstance(info, int) or info.dying:
        return True
    if info.shutdown and m.daemon is not None:
        m.daemon.fire_domain_shutdown(domid)
    return False


def get_domain_info(m: Machine, domid: int) -> bool:
    """get_domain_info() (xenstored_domain.c): XEN_DOMCTL_getdomaininfo answers for this very domid."""
    info = m.hv.getdomaininfo(domid)
    return not isinstance(info, int) and info.domid == domid


def start_xenstored(m: Machine, personality: str) -> None:
    """Start xenstored as a task in dom0 user space (its main loop: service the rings, wait).

    Sets the machine's ``daemon``, ``host`` and ``ring_server`` (and ``xenstored_error``
    if dom0_init fails)."""
    kernel = m.dom0.kernel
    daemon = m.daemon = make_daemon(m, personality)
    daemon.domain_exists = lambda d: get_domain_info(m, d)  # XSA-322: perms naming no domain
    comm = XENSTORED_PATHS[personality].rsplit("/", 1)[1]  # the process name: oxenstored / xenstored
    host = m.host = EvtchnDevHost(kernel, comm=comm)
    server = m.ring_server = RingServer(daemon, host, trace=m.trace, personality=personality,
                                        actor=personality)

    started = [False]
    socket_input = [False]
    wq, has_event = host.wake_condition()

    def socket_readable() -> None:
        """poll() in the main loop returned a socket fd: the loop runs once more."""
        socket_input[0] = True
        m.sched.wake_up(wq)

    m.xenstored_socket_readable = socket_readable
    stopped = [False]

    def signal(sig: str) -> str:
        """kill -STOP / kill -CONT (as a debugger does) to the daemon; "?" only asks: "T" (stopped) or "S"."""
        if sig in ("SIGSTOP", "SIGCONT") and stopped[0] != (sig == "SIGSTOP"):
            stopped[0] = sig == "SIGSTOP"
            what = "stopped: its main loop does not run" if stopped[0] else "continued: back in its main loop"
            m.trace.record(sig, f"{comm}: {what}", actor="debugger", source="kernel/signal.c")
            if not stopped[0]:
                m.sched.wake_up(wq)  # poll() returns for whatever became ready while it was stopped
        return "T" if stopped[0] else "S"

    m.xenstored_signal = signal

    def xenstored_main() -> None:
        """One turn of the daemon's main loop (service the rings); the first turn starts it up."""
        if not started[0]:
            started[0] = True
            try:
                server.bind_dom_exc(lambda d: domain_gone(m, d))  # domain_init: VIRQ_DOM_EXC first
                entry = kernel.proc.get("xen/xsd_port")
                if entry is None:
                    raise OSError(2, "/proc/xen/xsd_port: No such file or directory")
                port = int(entry.read().strip())
                buf = host.map_local_store_page()
            except (OSError, ValueError) as e:
                # dom0_init fails: the real daemon exits and the init script reports it
                m.xenstored_error = f"{comm}: dom0_init failed: {e}"
                m.trace.record("dom0_init", m.xenstored_error, actor=comm,
                               source="tools/xenstore/xenstored_domain.c")
                m.sched.kthread_exit()
            server.attach_local(port, buf)
        socket_input[0] = False
        server.service()

    # between turns it sleeps in poll() on /dev/xen/evtchn (host.wait) and its sockets;
    # the first turn runs at once
    m.sched.kthread_run(xenstored_main, comm, owner="dom0", kthread=False,
                        wait=(wq, lambda: not stopped[0] and (not started[0] or socket_input[0]
                                                              or has_event())), nests=True)


def init_script_after_xenstored(m: Machine, personality: str) -> None:
    """What the Debian init script leaves in the tree besides xen-init-dom0's keys.

    Inferred from the captures: with oxenstored (the default, XENSTORED unset) the tree
    shows /tool/xenstored = the daemon's path; with C xenstored it stays the empty node
    that xenstored's setup_structure creates.
    """
    if personality == "oxenstored":
        xs = socket_client(m, "init.d-xen")
        xs.write("/tool/xenstored", XENSTORED_PATHS[personality])


def xen_init_dom0(m: Machine) -> None:
    """tools/helpers/xen-init-dom0.c: domid, name and the default pool's name, if not there yet."""
    xs = socket_client(m, "xen-init-dom0")
    for key in ("/local/domain/0/domid", "/local/domain/0/name"):
        try:
            xs.read(key)
            return  # already initialised
        except XsError:
            pass
    xs.write("/local/domain/0/domid", "0")
    xs.write("/local/domain/0/name", "Domain-0")
    xs.write("/local/pool/0/name", "Pool-0")
    m.trace.record("xen-init-dom0", "wrote /local/domain/0/domid, name and /local/pool/0/name",
                   actor="dom0", source="tools/helpers/xen-init-dom0.c")


class Xenconsoled:
    """tools/console/daemon: watches @introduceDomain/@releaseDomain and connects guest consoles."""

    def __init__(self, m: Machine) -> None:
        self.m = m
        self.xs = socket_client(m, "xenconsoled")
        self.host: EvtchnDevHost | None = None
        self.ports: dict[int, int] = {}
        self.ptys: dict[int, int] = {}  # domid -> N of the /dev/pts/N its console got
        self.watched: set[int] = set()

    def openpty(self, domid: int) -> str:
        """openpty() for a guest's console: devpts hands out the lowest free index (ida_alloc)."""
        n = min(set(range(len(self.ptys) + 1)) - set(self.ptys.values()))
        self.ptys[domid] = n
        return f"/dev/pts/{n}"

    def watch(self) -> None:
        """xs_watch(@introduceDomain, "domlist") and xs_watch(@releaseDomain, "domlist")."""
        for path in ("@introduceDomain", "@releaseDomain"):
            self.xs.watch(path, "domlist")

    def handle_ring_read(self) -> bool:
        """handle_ring_read (io.c): read the fired console ports from /dev/xen/evtchn, write them back.

        The write-back is what unmasks the port (xen_irq_lateeoi in the evtchn driver); the
        first event is the one Xen set when the port was bound. The real daemon stops
        unmasking a guest that sends more than RATE_LIMIT_ALLOWANCE events per 200 ms; the
        lab's guests print nothing, so that limit is not modelled.
        """
        if self.host is None or not self.host.dev.has_pending():
            return False
        by_port = {port: domid for domid, port in self.ports.items()}
        for port in self.host.evtchn_pending():
            if port not in by_port:
                continue
            self.m.trace.record("handle_ring_read", f"d{by_port[port]}: console port {port} fired: "
                                "buffer_append, xenevtchn_unmask", actor="xenconsoled",
                                source="tools/console/daemon/io.c")
            self.host.evtchn_unmask(port)
        return True

    def handle_events(self) -> bool:
        """handle_io's poll: console ports that fired (handle_ring_read), then handle_xs:
        "domlist" -> enum_domains (watch each new guest's console); "<domid>" -> retry it."""
        rings = self.handle_ring_read()
        events = self.xs.sock.take_events()
        for _path, token in events:
            if token == "domlist":
                for domid in sorted(self.m.domains):
                    if domid and domid not in self.watched:
                        self.watch_domain(domid)
                for domid in sorted(self.watched):
                    info = self.m.hv.getdomaininfo(domid)  # enum_domains: xc_domain_getinfolist
                    if isinstance(info, int) or info.dying:
                        self.domain_gone(domid)
            elif token.isdigit() and int(token) in self.watched and int(token) not in self.ports:
                self.domain_create_ring(int(token))
        return bool(events) or rings

    def watch_domain(self, domid: int) -> None:
        """watch_domain: watch the guest's console directory (token = its domid), then try to connect."""
        self.watched.add(domid)
        path = f"/local/domain/{domid}/console"
        self.xs.watch(path, str(domid))

    def domain_gone(self, domid: int) -> None:
        """cleanup_domain: the guest died: unbind its console port, drop its watch."""
        self.watched.discard(domid)
        port = self.ports.pop(domid, None)
        self.ptys.pop(domid, None)  # the pty is closed: its index is free again
        if self.host is not None:
            self.host.unmap_grant(domid)  # console_unmap_interface
            if port is not None:
                self.host.evtchn_unbind(port)
        path = f"/local/domain/{domid}/console"
        self.xs.unwatch(path, str(domid))
        self.m.trace.record("cleanup_domain", f"d{domid} gone: console port {port} unbound",
                            actor="xenconsoled", source="tools/console/daemon/io.c")

    def domain_create_ring(self, domid: int) -> None:
        """domain_create_ring: read console/port, bind it through /dev/xen/evtchn, write console/tty."""
        base = f"/local/domain/{domid}/console"
        try:
            remote = int(self.xs.read(f"{base}/port"))
            self.xs.read(f"{base}/ring-ref")
        except (XsError, ValueError):
            return  # not written yet: the console watch brings us back
        if self.host is None:
            self.host = EvtchnDevHost(self.m.dom0.kernel, comm="xenconsoled")
        if domid not in self.host.grant_handles:
            try:  # "Prefer using grant table": GNTTAB_RESERVED_CONSOLE, seeded by the domain builder
                self.host.map_grant(domid, GNTTAB_RESERVED_CONSOLE, "console page")
            except OSError as e:
                self.m.trace.record("domain_create_ring", f"d{domid}: {e.strerror}", actor="xenconsoled",
                                    source="tools/console/daemon/io.c")
                return
        self.ports[domid] = self.host.evtchn_bind_interdomain(domid, remote)
        tty = self.openpty(domid)
        self.xs.write(f"{base}/tty", tty)
        self.m.trace.record("domain_create_ring", f"d{domid}: console port {remote} bound as local port "
                            f"{self.ports[domid]}; tty {tty}", actor="xenconsoled",
                            source="tools/console/daemon/io.c")


def start_xenconsoled(m: Machine) -> None:
    """Start xenconsoled: its two watches (each answered by one event at once)."""
    m.xenconsoled = Xenconsoled(m)
    m.xenconsoled.watch()
    m.xenconsoled.handle_events()

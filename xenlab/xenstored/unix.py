"""The Unix-socket transport: real tools (xenstore-*, pyxs, xl) talk to the daemon as dom0.

Theory of operation
-------------------
As C xenstored listens on ``/run/xenstored/socket`` (xenstored_core.c), ``UnixServer``
listens on a stream socket (mode 0600, never TCP). Every accepted client gets one daemon
connection with domid 0. The loop is a ``selectors`` loop over non-blocking sockets:
bytes read go into that client's ``wire.Decoder``; every whole message goes to
``daemon.handle``; replies (and watch events fired by *other* clients' requests) come
back through ``conn.on_output`` and are queued as bytes for that client.

A client loses its own connection, and nothing else, when it sends a header with
len > 4096, closes inside a message, or lets more than ``max_output`` bytes of replies
pile up unread (the XSA-326 lesson: unread replies must not grow without bound).
Everything it already stored stays stored.

Fairness: decoded requests wait in their client's queue; each turn serves the clients in
rounds, one request each per round (C xenstored's main loop handles one input per
connection per pass), at most ``_BURST`` rounds before it polls again, and a client whose
queue is full is not read until it drains. A client the daemon holds back
(``daemon.domain_can_read``: oxenstored's overflowing event pipe) waits its turn.

At the descriptor limit (EMFILE/ENFILE) the listener leaves the poll set, with one log
line, until a client goes or a second has passed: no busy loop. ``dropped`` keeps the
last ``DROPPED_KEPT`` drops; ``dropped_total`` counts them all.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import stat
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xenlab.abi.xs_wire import XS_WATCH_EVENT
from xenlab.xenstored import wire
from xenlab.xenstored.connection import Connection

if TYPE_CHECKING:
    from xenlab.xenstored.daemon import Daemon

#: Unread reply bytes a client may leave queued before it is dropped.
DEFAULT_MAX_OUTPUT = 256 * 1024
_READ_SIZE = 65536
#: requests served per client in one turn before polling again
_BURST = 64
#: decoded requests a client may have waiting before its socket is not read
_MAX_PENDING = 1024
#: how many recent drops ``UnixServer.dropped`` keeps
DROPPED_KEPT = 64
#: seconds the listener rests after EMFILE when no client has gone meanwhile
ACCEPT_BACKOFF = 1.0


@dataclass
class SocketClient:
    """One accepted socket and its daemon connection."""

    sock: socket.socket
    conn: Connection
    number: int
    decoder: wire.Decoder = field(default_factory=wire.Decoder)
    outbuf: bytearray = field(default_factory=bytearray)
    closed: bool = False
    why: str = ""
    doomed: str = ""
    last_out: list[wire.Message] = field(default_factory=list)
    #: decoded requests not yet handed to the daemon, oldest first
    pending: deque[wire.Message] = field(default_factory=deque)
    #: why to drop the client once its pending requests are served (EOF, a protocol error)
    finish: str = ""
    reading: bool = True


def describe(msg: wire.Message, limit: int = 60) -> str:
    """One stable line for a message: type, ids and the payload with NULs shown as spaces."""
    text = "".join(" " if b == 0 else chr(b) if 32 <= b < 127 else f"\\x{b:02x}" for b in msg.payload[:limit])
    more = "..." if msg.len > limit else ""
    return f"{msg.type_name.removeprefix('XS_')} req_id={msg.req_id} tx_id={msg.tx_id} ({text}{more})"


class UnixServer:
    """A non-blocking Unix-socket front end for a Daemon (accept, read, dispatch, write)."""

    def __init__(self, daemon: Daemon, path: str, *, log: Callable[[str], None] | None = None,
                 max_output: int = DEFAULT_MAX_OUTPUT) -> None:
        self.daemon = daemon
        self.path = path
        self.log = log
        self.max_output = max_output
        self.clients: dict[int, SocketClient] = {}
        self.dropped: deque[tuple[int, str]] = deque(maxlen=DROPPED_KEPT)
        self.dropped_total = 0
        #: monotonic time the listener was taken out of the poll set at the fd limit (None: listening)
        self.accept_paused: float | None = None
        self.accept_backoff = ACCEPT_BACKOFF
        self._accept_logged = False
        self._doomed: list[SocketClient] = []
        #: clients with decoded requests (or an EOF / protocol error) waiting, by number, in order
        self._queued: dict[int, SocketClient] = {}
        self._numbers = 0
        self._sel = selectors.DefaultSelector()
        self._listener = self._listen(path)
        self._sel.register(self._listener, selectors.EVENT_READ, None)

    # Set-up and tear-down -------------------------------------------------------------

    @staticmethod
    def _listen(path: str) -> socket.socket:
        """Bind and listen on *path* with mode 0600; a stale socket is replaced, anything else refused."""
        if os.path.lexists(path):
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                raise FileExistsError(f"{path} exists and is not a socket; refusing to replace it")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # nobody listens: a leftover from a daemon that died
            else:
                raise FileExistsError(f"a daemon is already listening on {path}")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(64)
        sock.setblocking(False)
        return sock

    def close(self) -> None:
        """Close every client and the listener, and remove the socket file."""
        for client in list(self.clients.values()):
            self._drop(client, "daemon shutting down")
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(self._listener)
        self._listener.close()
        self._sel.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def register_fd(self, fd: int, callback: Callable[[], None]) -> None:
        """Also wake up when *fd* is readable (a signal wake-up pipe, a ring host's event fd)."""
        self._sel.register(fd, selectors.EVENT_READ, callback)

    # The loop ---------------------------------------------------------------------------

    def service(self, timeout: float | None = None) -> None:
        """Wait up to *timeout* seconds for activity and process everything that is ready."""
        if any(c.finish or c.pending and self.daemon.domain_can_read(c.conn) for c in self._queued.values()):
            timeout = 0  # requests to serve (a client the daemon holds back waits for the poll)
        elif self.accept_paused is not None:
            timeout = self.accept_backoff if timeout is None else min(timeout, self.accept_backoff)
        if self.accept_paused is not None and time.monotonic() - self.accept_paused >= self.accept_backoff:
            self._resume_accept()
        for key, events in self._sel.select(timeout):
            data = key.data
            if data is None:
                self._accept()
            elif callable(data):
                data()
            else:
                client: SocketClient = data
                if events & selectors.EVENT_READ and not client.closed:
                    self._read(client)
                if events & selectors.EVENT_WRITE and not client.closed:
                    self._write(client)
        if self._queued:
            self._serve_pending()
        while self._doomed:
            victim = self._doomed.pop()
            self._drop(victim, victim.doomed)

    def _serve_pending(self) -> None:
        """Round-robin: one request per client per round, _BURST rounds at most."""
        queued = self._queued
        for _ in range(_BURST):
            served = False
            for client in list(queued.values()):
                if client.pending and not client.closed and self.daemon.domain_can_read(client.conn):
                    self._dispatch(client, client.pending.popleft())
                    served = True
            if not served:
                break
        for number, client in list(queued.items()):
            if client.closed:
                del queued[number]
            elif not client.pending:
                del queued[number]
                if client.finish:
                    self._drop(client, client.finish)
                elif not client.reading:
                    client.reading = True
                    self._set_interest(client)
            elif not client.reading and not client.finish and len(client.pending) < _MAX_PENDING // 2:
                client.reading = True
                self._set_interest(client)

    def _set_interest(self, client: SocketClient) -> None:
        """Poll the socket for reading while its queue has room, for writing while output waits."""
        want = selectors.EVENT_READ if client.reading else 0
        if client.outbuf:
            want |= selectors.EVENT_WRITE
        key = self._sel.get_map().get(client.sock.fileno())
        if key is None:
            if want:
                self._sel.register(client.sock, want, client)
        elif not want:
            self._sel.unregister(client.sock)
        elif key.events != want:
            self._sel.modify(client.sock, want, client)

    def _pause_accept(self, why: str) -> None:
        """At the fd limit: stop polling the listener until a descriptor frees; logged once until an
        accept succeeds again."""
        if self.accept_paused is not None:
            return
        self.accept_paused = time.monotonic()
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(self._listener)
        if self.log is not None and not self._accept_logged:
            self.log(f"accept failed: {why}; not accepting until a connection closes")
        self._accept_logged = True

    def _resume_accept(self) -> None:
        if self.accept_paused is None:
            return
        self.accept_paused = None
        self._sel.register(self._listener, selectors.EVENT_READ, None)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: rest the listener, keep serving the others
                self._pause_accept(errno.errorcode.get(exc.errno or 0, str(exc)))
                return
            sock.setblocking(False)
            self._accept_logged = False
            self._numbers += 1
            conn = self.daemon.new_connection(domid=0, label=f"socket{self._numbers}")
            client = SocketClient(sock, conn, self._numbers)
            conn.on_output = lambda c, client=client: self._queue_output(client)
            self.clients[self._numbers] = client
            self._sel.register(sock, selectors.EVENT_READ, client)

    def _read(self, client: SocketClient) -> None:
        try:
            data = client.sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._drop(client, f"recv failed: {errno.errorcode.get(exc.errno or 0, exc)}")
            return
        try:
            if not data:
                client.decoder.close()
                client.finish = "closed by client"
            else:
                client.pending.extend(client.decoder.iter_feed(data))
        except wire.ProtocolError as exc:
            client.finish = f"protocol error: {exc}"
        if client.pending or client.finish:
            self._queued[client.number] = client
        if client.finish or len(client.pending) >= _MAX_PENDING:
            client.reading = False  # back-pressure: the socket waits until the queue drains
            self._set_interest(client)

    def _dispatch(self, client: SocketClient, msg: wire.Message) -> None:
        client.last_out = []
        try:
            self.daemon.handle(client.conn, msg)
        except Exception as exc:  # a daemon bug costs this client its connection, not the daemon
            self._drop(client, f"daemon failed on {describe(msg)}: {type(exc).__name__}: {exc}")
            return
        if self.log is not None:
            answers = [m for m in client.last_out if m.req_id == msg.req_id and m.type != XS_WATCH_EVENT]
            self.log(f"socket{client.number} {describe(msg)} -> "
                     f"{describe(answers[0]) if answers else '(no reply)'}")
        if client.doomed:
            self._drop(client, client.doomed)

    def _queue_output(self, client: SocketClient) -> None:
        """conn.on_output: move the daemon's queued replies into this client's byte buffer."""
        msgs = self.daemon.take_all(client.conn)
        if client.closed or client.doomed:
            return
        client.last_out += msgs
        was_empty = not client.outbuf
        for msg in msgs:
            client.outbuf += wire.encode(msg)
        if len(client.outbuf) > self.max_output:
            # Dropped once the daemon has returned: it may be iterating its watches right now.
            client.doomed = f"more than {self.max_output} bytes of replies left unread"
            self._doomed.append(client)
            return
        if was_empty and client.outbuf:
            self._write(client)

    def _write(self, client: SocketClient) -> None:
        try:
            sent = client.sock.send(client.outbuf) if client.outbuf else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._drop(client, f"send failed: {errno.errorcode.get(exc.errno or 0, exc)}")
            return
        del client.outbuf[:sent]
        self._set_interest(client)

    def _drop(self, client: SocketClient, why: str) -> None:
        """Close one client (ignore_connection/talloc_free(conn) in xenstored_core.c); others carry on."""
        if client.closed:
            return
        client.closed, client.why = True, why
        client.pending.clear()
        self.dropped.append((client.number, why))
        self.dropped_total += 1
        if self.log is not None:
            self.log(f"socket{client.number} dropped: {why}")
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(client.sock)
        client.sock.close()
        self.clients.pop(client.number, None)
        self._resume_accept()  # a descriptor is free again
        try:
            self.daemon.close_connection(client.conn)
        except Exception as exc:  # keep serving the others whatever happened
            if self.log is not None:
                self.log(f"socket{client.number} close_connection failed: {type(exc).__name__}: {exc}")

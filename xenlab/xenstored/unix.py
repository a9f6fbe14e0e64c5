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
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import stat
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
        self.dropped: list[tuple[int, str]] = []
        self._doomed: list[SocketClient] = []
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
        while self._doomed:
            victim = self._doomed.pop()
            self._drop(victim, victim.doomed)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: refuse this one, keep serving the others
                if self.log is not None:
                    self.log(f"accept failed: {errno.errorcode.get(exc.errno or 0, exc)}")
                return
            sock.setblocking(False)
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
                self._drop(client, "closed by client")
                return
            for msg in client.decoder.iter_feed(data):
                self._dispatch(client, msg)
                if client.closed:
                    return
        except wire.ProtocolError as exc:
            self._drop(client, f"protocol error: {exc}")

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
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.outbuf else 0)
        if self._sel.get_key(client.sock).events != want:
            self._sel.modify(client.sock, want, client)

    def _drop(self, client: SocketClient, why: str) -> None:
        """Close one client (ignore_connection/talloc_free(conn) in xenstored_core.c); others carry on."""
        if client.closed:
            return
        client.closed, client.why = True, why
        self.dropped.append((client.number, why))
        if self.log is not None:
            self.log(f"socket{client.number} dropped: {why}")
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(client.sock)
        client.sock.close()
        self.clients.pop(client.number, None)
        try:
            self.daemon.close_connection(client.conn)
        except Exception as exc:  # keep serving the others whatever happened
            if self.log is not None:
                self.log(f"socket{client.number} close_connection failed: {type(exc).__name__}: {exc}")

"""A libxenstore-like client the lab's tools (toolstack, xenstore-*, xen-init-dom0) use.

Theory of operation
-------------------
libxenstore (tools/libs/store/xs.c) turns each call (xs_read, xs_write, xs_set_permissions,
...) into one xsd_sockmsg request and waits for the reply; an XS_ERROR reply carries the
errno *name*, which the library maps back to errno. ``XsClient`` does the same over any
*talk* function ``(type, tx_id, payload) -> (type, payload)``: in dom0 that is a
connection to the xenstored Daemon (the Unix socket the real tools use); in a domU it is
the guest kernel's xenbus (``/dev/xen/xenbus``, i.e. the store ring).
Permissions travel as NUL-separated strings such as ``n0`` / ``r1`` (xs_perm_to_string).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from xenlab.abi.xs_wire import (
    XENSTORE_PAYLOAD_MAX,
    XS_DIRECTORY,
    XS_ERROR,
    XS_GET_DOMAIN_PATH,
    XS_GET_PERMS,
    XS_INTRODUCE,
    XS_MKDIR,
    XS_READ,
    XS_RM,
    XS_SET_PERMS,
    XS_TRANSACTION_END,
    XS_TRANSACTION_START,
    XS_UNWATCH,
    XS_WATCH,
    XS_WRITE,
    XSD_ERROR_BY_NAME,
)

Talk = Callable[[int, int, bytes], tuple[int, bytes]]
XBT_NULL = 0
PERM_LETTERS = {"n": "none", "r": "read", "w": "write", "b": "both"}


class XsError(OSError):
    """A xenstore request failed; ``.name`` is the error name xenstored sent (ENOENT, EACCES...)."""

    def __init__(self, name: str, op: str, path: str = "") -> None:
        self.name = name
        super().__init__(XSD_ERROR_BY_NAME.get(name, 22), f"{op} {path}: {name}".strip())


@dataclass(frozen=True)
class Perm:
    """struct xs_permissions: a domid and one of n/r/w/b."""

    letter: str
    domid: int

    def __str__(self) -> str:
        return f"{self.letter}{self.domid}"

    @classmethod
    def parse(cls, text: str) -> Perm:
        """xenstore_strings_to_perms for one entry: 'r1' -> Perm('r', 1)."""
        if not text or text[0] not in PERM_LETTERS or not text[1:].isdigit():
            raise ValueError(f"bad permission {text!r}: want a letter of n/r/w/b and a domid, e.g. 'r1'")
        return cls(text[0], int(text[1:]))


def perms(*specs: str) -> tuple[Perm, ...]:
    """perms('n0', 'r1'): a permission list as libxl builds it (owner first)."""
    return tuple(Perm.parse(s) for s in specs)


def format_perms(plist: tuple[Perm, ...] | list[Perm]) -> str:
    """The -p column of xenstore-ls: '(n0,r1)'."""
    return "(" + ",".join(str(p) for p in plist) + ")"


class XsClient:
    """xs_open()'d handle: one request at a time, replies checked, errors raised as XsError."""

    def __init__(self, talk: Talk, *, name: str = "client") -> None:
        self.talk = talk
        self.name = name
        self.requests = 0

    def _req(self, op: str, mtype: int, payload: bytes, t: int = XBT_NULL, path: str = "") -> bytes:
        """xs_talkv: send one request, wait for the reply, turn XS_ERROR into XsError."""
        if len(payload) > XENSTORE_PAYLOAD_MAX:
            raise XsError("E2BIG", op, path)  # xs_talkv refuses before sending: errno = E2BIG
        self.requests += 1
        rtype, body = self.talk(mtype, t, payload)
        if rtype == XS_ERROR:
            raise XsError(body.rstrip(b"\0").decode(), op, path)
        if rtype != mtype:
            raise XsError("EINVAL", f"{op}: reply type {rtype} to request type {mtype}", path)
        return body

    @staticmethod
    def _path(path: str) -> bytes:
        return path.encode() + b"\0"

    def read(self, path: str, t: int = XBT_NULL) -> str:
        """xs_read: the value of *path* (without its NUL)."""
        return self._req("read", XS_READ, self._path(path), t, path).decode("latin-1")

    def read_bytes(self, path: str, t: int = XBT_NULL) -> bytes:
        """xs_read returning the raw bytes (xenstore-ls escapes them itself)."""
        return self._req("read", XS_READ, self._path(path), t, path)

    def write(self, path: str, value: str | bytes, t: int = XBT_NULL) -> None:
        """xs_write: path NUL value (no NUL after the value)."""
        data = value.encode() if isinstance(value, str) else value
        self._req("write", XS_WRITE, self._path(path) + data, t, path)

    def mkdir(self, path: str, t: int = XBT_NULL) -> None:
        """xs_mkdir: create an empty node (and missing parents)."""
        self._req("mkdir", XS_MKDIR, self._path(path), t, path)

    def rm(self, path: str, t: int = XBT_NULL) -> None:
        """xs_rm: remove *path* and everything below it."""
        self._req("rm", XS_RM, self._path(path), t, path)

    def directory(self, path: str, t: int = XBT_NULL) -> list[str]:
        """xs_directory: the child names, in the order xenstored sends them."""
        body = self._req("directory", XS_DIRECTORY, self._path(path), t, path)
        return [n.decode("latin-1") for n in body.split(b"\0") if n]

    def get_perms(self, path: str, t: int = XBT_NULL) -> tuple[Perm, ...]:
        """xs_get_permissions: the node's permission list, owner first."""
        body = self._req("get_perms", XS_GET_PERMS, self._path(path), t, path)
        return tuple(Perm.parse(p.decode()) for p in body.split(b"\0") if p)

    def set_perms(self, path: str, plist: tuple[Perm, ...], t: int = XBT_NULL) -> None:
        """xs_set_permissions: path NUL then each permission string NUL-terminated."""
        payload = self._path(path) + b"".join(str(p).encode() + b"\0" for p in plist)
        self._req("set_perms", XS_SET_PERMS, payload, t, path)

    def mknod(self, path: str, plist: tuple[Perm, ...], t: int = XBT_NULL) -> None:
        """libxl__xs_mknod: write an empty value, then set its permissions."""
        self.write(path, b"", t)
        self.set_perms(path, plist, t)

    def transaction_start(self) -> int:
        """xs_transaction_start: a new transaction id."""
        return int(self._req("transaction_start", XS_TRANSACTION_START, b"\0").rstrip(b"\0"))

    def transaction_end(self, t: int, abort: bool = False) -> None:
        """xs_transaction_end: "T" commits, "F" aborts (EAGAIN raised on conflict)."""
        self._req("transaction_end", XS_TRANSACTION_END, b"F\0" if abort else b"T\0", t)

    def get_domain_path(self, domid: int) -> str:
        """xs_get_domain_path: /local/domain/<domid>."""
        return self._req("get_domain_path", XS_GET_DOMAIN_PATH, f"{domid}\0".encode()).rstrip(b"\0").decode()

    def watch(self, path: str, token: str) -> None:
        """xs_watch: watch *path* (and below); events carry *token*. One event fires at once."""
        self._req("watch", XS_WATCH, f"{path}\0{token}\0".encode(), path=path)

    def unwatch(self, path: str, token: str) -> None:
        """xs_unwatch: drop the watch on *path* with *token*."""
        self._req("unwatch", XS_UNWATCH, f"{path}\0{token}\0".encode(), path=path)

    def introduce_domain(self, domid: int, mfn: int, port: int) -> None:
        """xs_introduce_domain: tell xenstored about a new domain's store page and port."""
        self._req("introduce", XS_INTRODUCE, f"{domid}\0{mfn}\0{port}\0".encode())

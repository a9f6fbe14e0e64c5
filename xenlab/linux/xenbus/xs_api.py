"""The xenbus_* calls of drivers/xen/xenbus/xenbus_xs.c on top of xs_talkv, and watch registration.

Split out of xs.py (the threads and xs_talkv) to keep both small; import everything from
``xenlab.linux.xenbus.xs``. Kernel style: the Kernel first, values or -errno. ``XenStore``
is the notebook-facing wrapper that raises ``XenbusError`` instead.
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Callable
from typing import Any

from xenlab.abi import xs_wire as xsw
from xenlab.abi.errno import EEXIST, ERANGE

SRC = "drivers/xen/xenbus/xenbus_xs.c"
XBT_NIL = 0
__all__ = ["XenStore", "XenbusError", "find_watch", "register_xenbus_watch", "unregister_xenbus_watch",
           "watch_token", "xenbus_directory", "xenbus_exists", "xenbus_gather", "xenbus_mkdir",
           "xenbus_printf", "xenbus_read", "xenbus_rm", "xenbus_scanf", "xenbus_transaction_end",
           "xenbus_transaction_start", "xenbus_write", "xs_single", "xs_reset_watches"]


def _xs() -> Any:
    from xenlab.linux.xenbus import xs
    return xs


def _join(dir: str, node: str) -> str:
    """join(): "dir/node", or dir alone when node is empty."""
    return dir if not node else f"{dir}/{node}"


def _z(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape") + b"\0"


def _s(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def xs_single(kernel: Any, t: int, mtype: int, string: str) -> bytes | int:
    """xs_single: a request whose payload is one NUL-terminated string."""
    return _xs().xs_talkv(kernel, t, mtype, [_z(string)])


def xenbus_read(kernel: Any, t: int, dir: str, node: str) -> str | int:
    """xenbus_read: the node's value, or -errno."""
    ret = xs_single(kernel, t, xsw.XS_READ, _join(dir, node))
    return ret if isinstance(ret, int) else _s(ret)


def xenbus_write(kernel: Any, t: int, dir: str, node: str, string: str) -> int:
    """xenbus_write: write a node (path NUL-terminated, value not); 0 or -errno."""
    value = string.encode("utf-8", "surrogateescape")
    ret = _xs().xs_talkv(kernel, t, xsw.XS_WRITE, [_z(_join(dir, node)), value])
    return ret if isinstance(ret, int) else 0


def xenbus_mkdir(kernel: Any, t: int, dir: str, node: str) -> int:
    """xenbus_mkdir: create a node with an empty value; 0 or -errno."""
    ret = xs_single(kernel, t, xsw.XS_MKDIR, _join(dir, node))
    return ret if isinstance(ret, int) else 0


def xenbus_rm(kernel: Any, t: int, dir: str, node: str) -> int:
    """xenbus_rm: remove a node and everything under it; 0 or -errno."""
    ret = xs_single(kernel, t, xsw.XS_RM, _join(dir, node))
    return ret if isinstance(ret, int) else 0


def xenbus_directory(kernel: Any, t: int, dir: str, node: str) -> list[str] | int:
    """xenbus_directory: the node's children (split at the NULs), or -errno."""
    ret = xs_single(kernel, t, xsw.XS_DIRECTORY, _join(dir, node))
    if isinstance(ret, int):
        return ret
    return [_s(p) for p in ret.split(b"\0")[:-1]]


def xenbus_exists(kernel: Any, t: int, dir: str, node: str) -> int:
    """xenbus_exists: 1 if xenbus_directory of the node succeeds, else 0."""
    return 0 if isinstance(xenbus_directory(kernel, t, dir, node), int) else 1


def xenbus_transaction_start(kernel: Any) -> tuple[int, int]:
    """xenbus_transaction_start: (0, id) or (-errno, 0); 2.6.18 holds transaction_mutex for reading."""
    st = _xs().xs_state(kernel)
    old = kernel.flavour == "2.6.18"
    if old:
        st.transaction_mutex.down_read()
    ret = xs_single(kernel, XBT_NIL, xsw.XS_TRANSACTION_START, "")
    if isinstance(ret, int):
        if old:
            st.transaction_mutex.up_read()
        return ret, 0
    return 0, int(_s(ret).rstrip("\0") or "0")


def xenbus_transaction_end(kernel: Any, t: int, abort: bool | int) -> int:
    """xenbus_transaction_end: "T" commits, "F" aborts; 0 or -errno (-EAGAIN: the caller retries)."""
    ret = xs_single(kernel, t, xsw.XS_TRANSACTION_END, "F" if abort else "T")
    if kernel.flavour == "2.6.18":
        _xs().xs_state(kernel).transaction_mutex.up_read()
    return ret if isinstance(ret, int) else 0


def xenbus_scanf(kernel: Any, t: int, dir: str, node: str, conv: Callable[[str], Any] = int) -> Any:
    """xenbus_scanf: read and convert the node (int by default); the value, or -errno (-ERANGE: no match)."""
    val = xenbus_read(kernel, t, dir, node)
    if isinstance(val, int):
        return val
    try:
        return conv(val)
    except ValueError:
        return -ERANGE


def xenbus_printf(kernel: Any, t: int, dir: str, node: str, fmt: str, *args: Any) -> int:
    """xenbus_printf: write fmt % args to the node; 0 or -errno."""
    return xenbus_write(kernel, t, dir, node, fmt % args if args else fmt)


Conv = Callable[[str], Any]


def xenbus_gather(kernel: Any, t: int, dir: str, *pairs: tuple[str, Conv | None]) -> list[Any] | int:
    """xenbus_gather: read several (name, conv) nodes; their values, or the first -errno."""
    out: list[Any] = []
    for name, conv in pairs:
        val = xenbus_read(kernel, t, dir, name)
        if isinstance(val, int):
            return val
        if conv is not None:
            try:
                val = conv(val)
            except ValueError:
                return -_errno.EINVAL
        out.append(val)
    return out


def xs_reset_watches(kernel: Any) -> None:
    """xs_reset_watches (modern): an HVM domU whose toolstack offers it drops stale watches (kexec)."""
    d = kernel.hv.domains.get(kernel.domid) if hasattr(kernel.hv, "domains") else None
    if d is None or not getattr(d, "hvm", False) or getattr(d, "initdomain", False):
        return
    if xenbus_scanf(kernel, XBT_NIL, "control", "platform-feature-xs_reset_watches") != 1:
        return
    err = _xs().xs_talkv(kernel, XBT_NIL, xsw.XS_RESET_WATCHES, [b"\0"])
    if isinstance(err, int) and err != -EEXIST:
        _xs()._warn(kernel, f"xs_reset_watches failed: {err}")


# -- watches -------------------------------------------------------------------------------
def watch_token(kernel: Any, watch: Any) -> str:
    """The watch's token: its "address" as "%lX" (a stable made-up kmalloc address unless it has one)."""
    xs = _xs()
    if not getattr(watch, "addr", 0):
        st = xs.xs_state(kernel)
        if getattr(watch, "static", False):
            n, st.static_watch_count = st.static_watch_count, st.static_watch_count + 1
            watch.addr = xs.STATIC_WATCH_ADDR_BASE[kernel.flavour] + n * xs.WATCH_ADDR_STEP
        else:
            watch.addr = xs.WATCH_ADDR_BASE[kernel.flavour] + st.watch_count * xs.WATCH_ADDR_STEP
            st.watch_count += 1
    return f"{watch.addr:X}"


def find_watch(kernel: Any, token: str) -> Any:
    """find_watch: the registered watch whose address the token spells, or None."""
    try:
        addr = int(token, 16)
    except ValueError:
        return None
    return next((w for w in _xs().xs_state(kernel).watches if getattr(w, "addr", 0) == addr), None)


def _xs_watch(kernel: Any, mtype: int, path: str, token: str) -> int:
    ret = _xs().xs_talkv(kernel, XBT_NIL, mtype, [_z(path), _z(token)])
    return ret if isinstance(ret, int) else 0


def register_xenbus_watch(kernel: Any, watch: Any) -> int:
    """register_xenbus_watch: list the watch, send XS_WATCH; 2.6.18 keeps it on -EEXIST; 0 or -errno."""
    xs = _xs()
    st = xs.xs_state(kernel)
    token = watch_token(kernel, watch)
    watch.nr_pending = 0
    st.watch_mutex.down_read()
    if find_watch(kernel, token) is not None:
        st.watch_mutex.up_read()
        kernel.panic(f"kernel BUG at {SRC}: register_xenbus_watch: {watch.node} already registered")
    st.watches.insert(0, watch)
    kernel.record("register_xenbus_watch", f"{watch.node} token {token}", SRC,
                  changes=[(f"{kernel.name}/watches", token, None, watch.node)])
    err = _xs_watch(kernel, xsw.XS_WATCH, watch.node, token)
    if err and not (kernel.flavour == "2.6.18" and err == -EEXIST):
        st.watches.remove(watch)
        kernel.record("register_xenbus_watch", f"{watch.node}: XS_WATCH failed {err}, watch dropped", SRC,
                      changes=[(f"{kernel.name}/watches", token, watch.node, None)])
    st.watch_mutex.up_read()
    return err


def unregister_xenbus_watch(kernel: Any, watch: Any) -> None:
    """unregister_xenbus_watch: XS_UNWATCH, drop queued events, wait out a running callback."""
    xs = _xs()
    st = xs.xs_state(kernel)
    token = watch_token(kernel, watch)
    st.watch_mutex.down_read()
    if find_watch(kernel, token) is None:
        st.watch_mutex.up_read()
        kernel.panic(f"kernel BUG at {SRC}: unregister_xenbus_watch: {watch.node} not registered")
    st.watches.remove(watch)
    kernel.record("unregister_xenbus_watch", f"{watch.node} token {token}", SRC,
                  changes=[(f"{kernel.name}/watches", token, watch.node, None)])
    err = _xs_watch(kernel, xsw.XS_UNWATCH, watch.node, token)
    if err:
        xs._warn(kernel, f"Failed to release watch {watch.node}: {err}")
    st.watch_mutex.up_read()
    me_is_xenwatch = kernel.sched.current is not None and kernel.sched.current is st.xenwatch_task
    if not me_is_xenwatch and kernel.flavour != "2.6.18":
        st.xenwatch_mutex.lock()
    before = st.queued_events()
    kept = [ev for ev in st.watch_events if ev[0] is not watch]
    st.watch_events.clear()
    st.watch_events.extend(kept)
    if st.queued_events() != before:
        kernel.record("unregister_xenbus_watch", f"{watch.node}: its queued events dropped", SRC,
                      changes=[(f"{kernel.name}/watch_events", "queue", before, st.queued_events())])
    watch.nr_pending = 0
    if not me_is_xenwatch:
        if kernel.flavour == "2.6.18":
            st.xenwatch_mutex.lock()  # flush a callback that is running now
        st.xenwatch_mutex.unlock()


# -- the notebook-facing wrapper ---------------------------------------------------------
class XenbusError(OSError):
    """A xenbus call failed; .errno is the errno, the message names the call and the path."""

    def __init__(self, err: int, op: str, path: str) -> None:
        name = _errno.errorcode.get(err, str(err))
        super().__init__(err, f"{op} {path}: {name}")


class XenStore:
    """The guest kernel's xenstore access for notebooks: same calls, exceptions instead of -errno."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel

    @staticmethod
    def _check(ret: Any, op: str, path: str) -> Any:
        if isinstance(ret, int) and ret < 0:
            raise XenbusError(-ret, op, path)
        return ret

    def read(self, path: str, t: int = XBT_NIL) -> str:
        """xenbus_read."""
        return str(self._check(xenbus_read(self.kernel, t, path, ""), "read", path))

    def write(self, path: str, value: str, t: int = XBT_NIL) -> None:
        """xenbus_write."""
        self._check(xenbus_write(self.kernel, t, path, "", value), "write", path)

    def mkdir(self, path: str, t: int = XBT_NIL) -> None:
        """xenbus_mkdir."""
        self._check(xenbus_mkdir(self.kernel, t, path, ""), "mkdir", path)

    def rm(self, path: str, t: int = XBT_NIL) -> None:
        """xenbus_rm."""
        self._check(xenbus_rm(self.kernel, t, path, ""), "rm", path)

    def directory(self, path: str, t: int = XBT_NIL) -> list[str]:
        """xenbus_directory."""
        return list(self._check(xenbus_directory(self.kernel, t, path, ""), "directory", path))

    def exists(self, path: str, t: int = XBT_NIL) -> bool:
        """xenbus_exists."""
        return bool(xenbus_exists(self.kernel, t, path, ""))

    def transaction_start(self) -> int:
        """xenbus_transaction_start: the transaction id."""
        err, t = xenbus_transaction_start(self.kernel)
        self._check(err, "transaction_start", "")
        return t

    def transaction_end(self, t: int, abort: bool = False) -> None:
        """xenbus_transaction_end (EAGAIN raises: retry the whole transaction)."""
        self._check(xenbus_transaction_end(self.kernel, t, abort), "transaction_end", str(t))

    def watch(self, path: str, callback: Callable[..., Any]) -> Any:
        """register_xenbus_watch: callback(watch, path, token) runs on the xenwatch thread."""
        w = _xs().xenbus_watch(node=path, callback=callback)
        self._check(register_xenbus_watch(self.kernel, w), "watch", path)
        return w

    def unwatch(self, watch: Any) -> None:
        """unregister_xenbus_watch."""
        unregister_xenbus_watch(self.kernel, watch)

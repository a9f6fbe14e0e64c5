"""drivers/xen/xenbus/xenbus_xs.c, Linux 6.1: xs_talkv, the xenbus_* API, watches and the "xenwatch" thread.

Theory of operation
-------------------
Every xenstore request the kernel makes (xenbus_read, xenbus_write, register_xenbus_watch,
...) ends in ``xs_talkv``: the request is queued on ``xb_write_list`` with a req_id from a
counter starting at 0 (``xs_send``), the "xenbus" thread is woken to write it
(xenbus_comms.c), and the caller sleeps until that thread matched the reply to its req_id
(``xs_wait_for_reply``). A WATCH_EVENT is matched by its token (the watch struct's
address as "%lX") in ``xs_watch_msg`` and queued for the thread "xenwatch", which runs the
watch callbacks one at a time under ``xenwatch_mutex``.

Python conventions for the C idioms (the whole package follows them): a function that
returns a pointer or ERR_PTR returns the value or a negative int (-errno)
(``xenbus_read`` -> str | int, ``xenbus_directory`` -> list[str] | int); one that returns
0 / -errno returns that int; one that fills out-parameters returns a tuple, status first
(``xenbus_transaction_start`` -> (err, xbt), ``xenbus_scanf`` -> (matched or -errno,
value), ``xenbus_gather`` -> (err, values)). ``xenbus_printf`` and ``xenbus_scanf`` take
the C format. ``XenStore`` at the end is the notebook-facing wrapper that raises
``XenbusError`` instead.
"""

from __future__ import annotations

import errno as _errno
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xenlab.abi import xs_wire as xsw
from xenlab.abi.errno import EEXIST, EINVAL, ERANGE
from xenlab.base.sched import Task, WaitQueue
from xenlab.linux.kernel import KERN_WARNING
from xenlab.linux.locking import Mutex, RwSem
from xenlab.linux.pvops.xenbus_comms import _lists, _tname, list_state, xb_init_comms, xb_req_data

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel

SRC = "drivers/xen/xenbus/xenbus_xs.c"
XBT_NIL = 0
#: where the lab's watch structs "live": kmalloc space of the x86_64 direct map, and (static=True:
#: a driver's static struct) the kernel image's .data
WATCH_ADDR_BASE = 0xFFFF888004C00000
STATIC_WATCH_ADDR_BASE = 0xFFFFFFFF82B00000
WATCH_ADDR_STEP = 0x80


@dataclass(eq=False)
class xenbus_watch:
    """struct xenbus_watch: a node, callback(watch, path, token), will_handle; addr stands for its address."""

    node: str = ""
    callback: Callable[..., Any] | None = None
    will_handle: Callable[..., bool] | None = None
    nr_pending: int = 0
    addr: int = 0  # 0: given one at registration (kernel image if static, else kmalloc space)
    static: bool = False


@dataclass(eq=False)
class XsState:
    """xenbus_xs.c's globals: the request counter, the watch lists, the xenwatch thread and its locks."""

    xs_watch_rwsem: RwSem
    xenwatch_mutex: Mutex
    watch_events_waitq: WaitQueue
    xs_request_id: int = 0
    watches: list[xenbus_watch] = field(default_factory=list)
    watch_events: deque[tuple[xenbus_watch, str, str]] = field(default_factory=deque)
    xenwatch_task: Task | None = None
    talks: int = 0  # the lab's count of requests, for the "<kernel>/xs_requests" rows
    watch_count: int = 0
    static_watch_count: int = 0

    def queued_events(self) -> tuple[tuple[str, str], ...] | None:
        """watch_events as the trace records it: ((path, token), ...) oldest first; None if empty."""
        return tuple((path, token) for _, path, token in self.watch_events) or None


def new_xs_state(kernel: PvopsKernel) -> XsState:
    """The statically initialised globals (DECLARE_RWSEM, DEFINE_MUTEX, DECLARE_WAIT_QUEUE_HEAD); the
    locks record on "<kernel>/locks"."""
    s, n = kernel.sched, kernel.name
    kw = {"trace": kernel.trace, "table": kernel.table("locks")}
    return XsState(RwSem(s, f"{n}:xs_watch_rwsem", source=kernel.RWSEM_SOURCE, **kw),
                   Mutex(s, f"{n}:xenwatch_mutex", source=kernel.MUTEX_SOURCE, **kw),
                   WaitQueue(f"{n}:watch_events_waitq"))


def _warn(kernel: PvopsKernel, text: str) -> None:
    msg = "xenbus: " + text
    kernel.printk(KERN_WARNING, msg)
    kernel.record("printk", msg, SRC, printk=msg)


def _z(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape") + b"\0"


def _s(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def get_error(kernel: PvopsKernel, name: str) -> int:
    """get_error: the errno for an error name xenstored sent; unknown -> EINVAL with a warning."""
    table = dict(xsw.XSD_ERRORS)
    if name in table:
        return table[name]
    _warn(kernel, f"xen store gave: unknown error {name}")
    return EINVAL


def xs_send(kernel: PvopsKernel, req: xb_req_data) -> None:
    """xs_send: give the request the next req_id, queue it on xb_write_list, wake "xenbus" if first."""
    c = kernel.comms
    req.caller_req_id = req.req_id
    req.req_id, kernel.xs.xs_request_id = kernel.xs.xs_request_id, (kernel.xs.xs_request_id + 1) & 0xFFFFFFFF
    c.xb_write_mutex.lock()
    before = list_state(kernel)
    c.xb_write_list.append(req)
    kernel.record("xs_send", f"{_tname(req.type)} req_id {req.req_id} queued on xb_write_list", SRC,
                  changes=_lists(kernel, before))
    notify = len(c.xb_write_list) == 1
    c.xb_write_mutex.unlock()
    if notify:
        kernel.sched.wake_up(c.xb_waitq)


def xs_wait_for_reply(kernel: PvopsKernel, req: xb_req_data) -> tuple[int, bytes, int]:
    """xs_wait_for_reply: sleep until "xenbus" matched the reply: (reply type, body, -errno of the ring)."""
    kernel.sched.wait_event(req.wq, lambda: req.state == "got_reply")
    return req.reply_type, req.body, req.err


def xs_wake_up(kernel: PvopsKernel, req: xb_req_data) -> None:
    """xs_wake_up: the reply came: wake the caller sleeping in xs_wait_for_reply."""
    kernel.sched.wake_up(req.wq)


def _request(kernel: PvopsKernel, t: int, mtype: int, vec: list[bytes], *,
             user: bool) -> tuple[int, bytes, int]:
    req = xb_req_data(mtype, t, list(vec), WaitQueue(f"{kernel.name}:xb_req"),
                      lambda r: xs_wake_up(kernel, r), user_req=user)
    xs_send(kernel, req)
    return xs_wait_for_reply(kernel, req)


def _reply_summary(rtype: int, body: bytes) -> str:
    text = body.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
    return f"{_tname(rtype)} {text!r}" if len(text) <= 60 else f"{_tname(rtype)} ({len(body)} bytes)"


def _log_request(kernel: PvopsKernel, function: str, what: str, reply: str) -> None:
    """One trace step per request, with a row "<kernel>/xs_requests" numbered in order."""
    kernel.xs.talks += 1
    kernel.record(function, f"{what} -> {reply}", SRC,
                  changes=[(kernel.table("xs_requests"), str(kernel.xs.talks), None, f"{what} -> {reply}")])


def xenbus_dev_request_and_reply(kernel: PvopsKernel, mtype: int, tx_id: int,
                                 payload: bytes) -> tuple[int, bytes]:
    """xenbus_dev_request_and_reply: a raw request from /dev/xen/xenbus; (reply type, body)."""
    rtype, body, err = _request(kernel, tx_id, mtype, [bytes(payload)], user=True)
    if err:
        body = xsw.XSD_ERROR_BY_ERRNO.get(-err, "EIO").encode() + b"\0"
    path = payload.split(b"\0")[0].decode("utf-8", "replace")
    what = f"{_tname(mtype)} {path}".rstrip() + (f" tx {tx_id}" if tx_id else "")
    _log_request(kernel, "xenbus_dev_request_and_reply", what, _reply_summary(rtype, body))
    return rtype, body


def xs_talkv(kernel: PvopsKernel, t: int, mtype: int, vec: list[bytes]) -> bytes | int:
    """xs_talkv: send one request, sleep for its reply; the body, or -errno (ERROR / wrong type)."""
    rtype, body, err = _request(kernel, t, mtype, vec, user=False)
    if err:
        _log_request(kernel, "xs_talkv", f"{_tname(mtype)} tx {t}", f"ring error {err}")
        return err
    path = vec[0].split(b"\0")[0].decode("utf-8", "replace") if vec else ""
    what = f"{_tname(mtype)} {path}".rstrip() + (f" tx {t}" if t else "")
    _log_request(kernel, "xs_talkv", what, _reply_summary(rtype, body))
    if rtype == xsw.XS_ERROR:
        return -get_error(kernel, body.rstrip(b"\0").decode("ascii", "replace"))
    if rtype != mtype:
        _warn(kernel, f"unexpected type [{rtype}], expected [{mtype}]")
        return -EINVAL
    return body


def xs_single(kernel: PvopsKernel, t: int, mtype: int, string: str) -> bytes | int:
    """xs_single: a request whose payload is one NUL-terminated string."""
    return xs_talkv(kernel, t, mtype, [_z(string)])


def join(dir: str, name: str) -> str:
    """join: "dir/name", or dir alone when name is empty."""
    return dir if not name else f"{dir}/{name}"


def xenbus_directory(kernel: PvopsKernel, t: int, dir: str, node: str) -> list[str] | int:
    """xenbus_directory: the node's children (split at the NULs), or -errno."""
    ret = xs_single(kernel, t, xsw.XS_DIRECTORY, join(dir, node))
    if isinstance(ret, int):
        return ret
    return [_s(p) for p in ret.split(b"\0")[:-1]]


def xenbus_exists(kernel: PvopsKernel, t: int, dir: str, node: str) -> int:
    """xenbus_exists: 1 if xenbus_directory of the node succeeds, else 0."""
    return 0 if isinstance(xenbus_directory(kernel, t, dir, node), int) else 1


def xenbus_read(kernel: PvopsKernel, t: int, dir: str, node: str) -> str | int:
    """xenbus_read: the node's value, or -errno."""
    ret = xs_single(kernel, t, xsw.XS_READ, join(dir, node))
    return ret if isinstance(ret, int) else _s(ret)


def xenbus_write(kernel: PvopsKernel, t: int, dir: str, node: str, string: str) -> int:
    """xenbus_write: write a node (path NUL-terminated, value not); 0 or -errno."""
    ret = xs_talkv(kernel, t, xsw.XS_WRITE, [_z(join(dir, node)), string.encode("utf-8", "surrogateescape")])
    return ret if isinstance(ret, int) else 0


def xenbus_mkdir(kernel: PvopsKernel, t: int, dir: str, node: str) -> int:
    """xenbus_mkdir: create a node with an empty value; 0 or -errno."""
    ret = xs_single(kernel, t, xsw.XS_MKDIR, join(dir, node))
    return ret if isinstance(ret, int) else 0


def xenbus_rm(kernel: PvopsKernel, t: int, dir: str, node: str) -> int:
    """xenbus_rm: remove a node and everything under it; 0 or -errno."""
    ret = xs_single(kernel, t, xsw.XS_RM, join(dir, node))
    return ret if isinstance(ret, int) else 0


def xenbus_transaction_start(kernel: PvopsKernel) -> tuple[int, int]:
    """xenbus_transaction_start: (0, the transaction id) or (-errno, 0)."""
    ret = xs_single(kernel, XBT_NIL, xsw.XS_TRANSACTION_START, "")
    if isinstance(ret, int):
        return ret, 0
    return 0, int(_s(ret).rstrip("\0") or "0")


def xenbus_transaction_end(kernel: PvopsKernel, t: int, abort: bool | int) -> int:
    """xenbus_transaction_end: "T" commits, "F" aborts; 0 or -errno (-EAGAIN: the caller retries)."""
    ret = xs_single(kernel, t, xsw.XS_TRANSACTION_END, "F" if abort else "T")
    return ret if isinstance(ret, int) else 0


_SCANF_INT = re.compile(r"\s*([-+]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_SCANF_DEC = re.compile(r"\s*([-+]?)([0-9]+)")
_SCANF_HEX = re.compile(r"\s*([-+]?)(?:0[xX])?([0-9a-fA-F]+)")


def sscanf_one(text: str, fmt: str) -> int | str | None:
    """sscanf with one conversion (%i %d %u %x, with l/ll; %s): the value, or None if nothing matched."""
    conv = fmt.lstrip("%").lstrip("0123456789").lstrip("l")  # width and length modifiers do not matter
    if conv == "s":
        words = text.split()
        return words[0] if words else None
    if conv == "i":
        m = _SCANF_INT.match(text)
        if m is None:
            return None
        digits = m.group(2)
        base = 16 if digits[:2] in ("0x", "0X") else (8 if len(digits) > 1 and digits[0] == "0" else 10)
        value = int(digits, base)
    else:
        m = (_SCANF_HEX if conv == "x" else _SCANF_DEC).match(text)
        if m is None:
            return None
        value = int(m.group(2), 16 if conv == "x" else 10)
    value = -value if m.group(1) == "-" else value
    if conv in ("u", "x") and value < 0:
        value &= (1 << (64 if fmt.count("l") else 32)) - 1
    return value


def xenbus_scanf(kernel: PvopsKernel, t: int, dir: str, node: str, fmt: str) -> tuple[int, Any]:
    """xenbus_scanf: the node converted with *fmt*: (1, value), or (-errno, None) (-ERANGE: no match)."""
    val = xenbus_read(kernel, t, dir, node)
    if isinstance(val, int):
        return val, None
    got = sscanf_one(val, fmt)
    return (-ERANGE, None) if got is None else (1, got)


def xenbus_read_unsigned(kernel: PvopsKernel, dir: str, node: str, default_val: int) -> int:
    """xenbus_read_unsigned: the node as "%u", or *default_val* if it cannot be read or parsed."""
    err, val = xenbus_scanf(kernel, XBT_NIL, dir, node, "%u")
    return default_val if err <= 0 else int(val)


_C_LENGTH = re.compile(r"%([-+ #0]*\d*(?:\.\d+)?)(?:hh|h|ll|l|z|j|t)([diouxXs])")


def xenbus_printf(kernel: PvopsKernel, t: int, dir: str, node: str, fmt: str, *args: Any) -> int:
    """xenbus_printf: write the C format *fmt* with *args* to the node; 0 or -errno."""
    return xenbus_write(kernel, t, dir, node, _C_LENGTH.sub(r"%\1\2", fmt) % args if args else fmt)


def xenbus_gather(kernel: PvopsKernel, t: int, dir: str,
                  *fields: tuple[str, str | None]) -> tuple[int, list[Any]]:
    """xenbus_gather: read several (name, fmt) nodes (fmt None: the string); (0, values) or (-errno, [])."""
    out: list[Any] = []
    for name, fmt in fields:
        val = xenbus_read(kernel, t, dir, name)
        if isinstance(val, int):
            return val, []
        if fmt is not None:
            got = sscanf_one(val, fmt)
            if got is None:
                return -EINVAL, []
            out.append(got)
        else:
            out.append(val)
    return 0, out


def xs_watch(kernel: PvopsKernel, path: str, token: str) -> int:
    """xs_watch: XS_WATCH path token; 0 or -errno."""
    ret = xs_talkv(kernel, XBT_NIL, xsw.XS_WATCH, [_z(path), _z(token)])
    return ret if isinstance(ret, int) else 0


def xs_unwatch(kernel: PvopsKernel, path: str, token: str) -> int:
    """xs_unwatch: XS_UNWATCH path token; 0 or -errno."""
    ret = xs_talkv(kernel, XBT_NIL, xsw.XS_UNWATCH, [_z(path), _z(token)])
    return ret if isinstance(ret, int) else 0


def watch_token(kernel: PvopsKernel, watch: xenbus_watch) -> str:
    """The watch's token: its "address" as "%lX" (a stable made-up kmalloc address unless it has one)."""
    if not watch.addr:
        st = kernel.xs
        if watch.static:
            n, st.static_watch_count = st.static_watch_count, st.static_watch_count + 1
            watch.addr = STATIC_WATCH_ADDR_BASE + n * WATCH_ADDR_STEP
        else:
            watch.addr = WATCH_ADDR_BASE + st.watch_count * WATCH_ADDR_STEP
            st.watch_count += 1
    return f"{watch.addr:X}"


def find_watch(kernel: PvopsKernel, token: str) -> xenbus_watch | None:
    """find_watch: the registered watch whose address the token spells, or None."""
    try:
        addr = int(token, 16)
    except ValueError:
        return None
    return next((w for w in kernel.xs.watches if w.addr == addr), None)


def xs_watch_msg(kernel: PvopsKernel, body: bytes) -> int:
    """xs_watch_msg: a WATCH_EVENT (path, token): queue it for xenwatch if the watch will handle it."""
    st = kernel.xs
    strings = body.split(b"\0")[:-1] if body.endswith(b"\0") else body.split(b"\0")
    if len(strings) != 2:
        return -EINVAL
    path, token = (s.decode("utf-8", "surrogateescape") for s in strings)
    watch = find_watch(kernel, token)
    if watch is not None and (watch.will_handle is None or watch.will_handle(watch, path, token)):
        before = st.queued_events()
        st.watch_events.append((watch, path, token))
        watch.nr_pending += 1
        kernel.sched.wake_up(st.watch_events_waitq)
        kernel.record("xs_watch_msg", f"WATCH_EVENT {path} token {token}: queued for xenwatch", SRC,
                      changes=[(kernel.table("watch_events"), "queue", before, st.queued_events())])
    else:
        kernel.record("xs_watch_msg", f"WATCH_EVENT {path} token {token}: no such watch, dropped", SRC)
    return 0


def xs_reset_watches(kernel: PvopsKernel) -> None:
    """xs_reset_watches: an HVM domU whose toolstack offers it drops stale watches (kexec)."""
    d = kernel.hv.domains[kernel.domid]
    if not d.hvm or kernel.xen_initial_domain():
        return
    if not xenbus_read_unsigned(kernel, "control", "platform-feature-xs_reset_watches", 0):
        return
    err = xs_talkv(kernel, XBT_NIL, xsw.XS_RESET_WATCHES, [b"\0"])
    if isinstance(err, int) and err != -EEXIST:
        _warn(kernel, f"xs_reset_watches failed: {err}")


def register_xenbus_watch(kernel: PvopsKernel, watch: xenbus_watch) -> int:
    """register_xenbus_watch: list the watch, send XS_WATCH; unlisted again if that fails; 0 or -errno."""
    st = kernel.xs
    token = watch_token(kernel, watch)
    watch.nr_pending = 0
    st.xs_watch_rwsem.down_read()
    if find_watch(kernel, token) is not None:
        st.xs_watch_rwsem.up_read()
        kernel.panic(f"kernel BUG at {SRC}: register_xenbus_watch: {watch.node} already registered")
    st.watches.insert(0, watch)
    kernel.record("register_xenbus_watch", f"{watch.node} token {token}", SRC,
                  changes=[(kernel.table("watches"), token, None, watch.node)])
    err = xs_watch(kernel, watch.node, token)
    if err:
        st.watches.remove(watch)
        kernel.record("register_xenbus_watch", f"{watch.node}: XS_WATCH failed {err}, watch dropped", SRC,
                      changes=[(kernel.table("watches"), token, watch.node, None)])
    st.xs_watch_rwsem.up_read()
    return err


def unregister_xenbus_watch(kernel: PvopsKernel, watch: xenbus_watch) -> None:
    """unregister_xenbus_watch: XS_UNWATCH, drop queued events, wait out a running callback."""
    st = kernel.xs
    token = watch_token(kernel, watch)
    st.xs_watch_rwsem.down_read()
    if find_watch(kernel, token) is None:
        st.xs_watch_rwsem.up_read()
        kernel.panic(f"kernel BUG at {SRC}: unregister_xenbus_watch: {watch.node} not registered")
    st.watches.remove(watch)
    kernel.record("unregister_xenbus_watch", f"{watch.node} token {token}", SRC,
                  changes=[(kernel.table("watches"), token, watch.node, None)])
    err = xs_unwatch(kernel, watch.node, token)
    if err:
        _warn(kernel, f"Failed to release watch {watch.node}: {err}")
    st.xs_watch_rwsem.up_read()
    me_is_xenwatch = kernel.sched.current is not None and kernel.sched.current is st.xenwatch_task
    if not me_is_xenwatch:
        st.xenwatch_mutex.lock()
    before = st.queued_events()
    kept = [ev for ev in st.watch_events if ev[0] is not watch]
    st.watch_events.clear()
    st.watch_events.extend(kept)
    if st.queued_events() != before:
        kernel.record("unregister_xenbus_watch", f"{watch.node}: its queued events dropped", SRC,
                      changes=[(kernel.table("watch_events"), "queue", before, st.queued_events())])
    watch.nr_pending = 0
    if not me_is_xenwatch:
        st.xenwatch_mutex.unlock()


def xenwatch_thread(kernel: PvopsKernel) -> None:
    """One turn of xenwatch_thread's for(;;) loop: run the first queued watch callback under xenwatch_mutex.

    Between turns the thread sleeps on watch_events_waitq until an event is queued (xs_init passes that
    wait to kthread_run)."""
    st = kernel.xs
    st.xenwatch_mutex.lock()
    if st.watch_events:
        before = st.queued_events()
        watch, path, token = st.watch_events.popleft()
        watch.nr_pending -= 1
        assert watch.callback is not None
        name = watch.callback.__name__
        kernel.record("xenwatch_thread", f"{path} (token {token}) -> {name}", SRC,
                      changes=[(kernel.table("watch_events"), "queue", before, st.queued_events())])
        watch.callback(watch, path, token)
    st.xenwatch_mutex.unlock()


def xs_init(kernel: PvopsKernel) -> int:
    """xs_init: xb_init_comms (which starts "xenbus"), then the "xenwatch" thread, xs_reset_watches."""
    st = kernel.xs
    kernel.record("xs_init", "xs_state: reply_list, request/response mutexes, transaction and watch "
                  "rw-semaphores", SRC)
    kernel.comms.xs_watch_msg = xs_watch_msg
    err = xb_init_comms(kernel)
    if err:
        return err
    st.xenwatch_task = kernel.sched.kthread_run(xenwatch_thread, "xenwatch", kernel, owner=kernel.name,
                                                wait=(st.watch_events_waitq, lambda: bool(st.watch_events)))
    kernel.record("kthread_run", f"xenwatch (pid {st.xenwatch_task.pid})", SRC)
    xs_reset_watches(kernel)
    return 0


# -- the notebook-facing wrapper (not a mirror) -----------------------------------------------
class XenbusError(OSError):
    """A xenbus call failed; .errno is the errno, the message names the call and the path."""

    def __init__(self, err: int, op: str, path: str) -> None:
        name = _errno.errorcode.get(err, str(err))
        super().__init__(err, f"{op} {path}: {name}")


class XenStore:
    """The kernel's xenstore access for notebooks: the xenbus_* calls, exceptions instead of -errno."""

    def __init__(self, kernel: PvopsKernel) -> None:
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

    def watch(self, path: str, callback: Callable[..., Any]) -> xenbus_watch:
        """register_xenbus_watch: callback(watch, path, token) runs on the xenwatch thread."""
        w = xenbus_watch(node=path, callback=callback)
        self._check(register_xenbus_watch(self.kernel, w), "watch", path)
        return w

    def unwatch(self, watch: xenbus_watch) -> None:
        """unregister_xenbus_watch."""
        unregister_xenbus_watch(self.kernel, watch)


"""drivers/xen/xenbus/xenbus_xs.c, XenLinux 2.6.18: xs_talkv, the xenbus_* calls, watches, the threads.

Theory of operation
-------------------
Every xenstore request the kernel makes (xenbus_read, xenbus_write,
register_xenbus_watch, ...) ends in ``xs_talkv``: under ``request_mutex`` the caller
writes a 16-byte xsd_sockmsg header (req_id 0: one request in flight) and then each
vector into the request ring itself, and sleeps until ``read_reply`` finds a reply on
``reply_list``. Replies are read by the kernel thread "xenbus" (``process_msg``): a
header, then the body; a WATCH_EVENT is matched by its token (the watch struct's
address as "%lX") and queued for the thread "xenwatch", which runs the watch callbacks
one at a time under ``xenwatch_mutex``; anything else goes on ``reply_list``.
``transaction_mutex`` and ``watch_mutex`` are rw-semaphores taken for reading (suspend
takes them for writing). ``XsState`` (``kernel.xs_state``) is ``struct xs_handle
xs_state`` plus the file's watch globals.

Python conventions (the whole package follows them): a C function that returns a
pointer or ERR_PTR returns the value or an int -errno (``isinstance(ret, int)`` is
IS_ERR); one that returns 0 / -errno does the same; one that also fills in
out-parameters returns a tuple (its C return value, the out values...):
``xenbus_transaction_start(kernel) -> (err, t)``, ``xenbus_scanf(...) -> (ret, value)``
(ret = items matched or -errno, -ERANGE when none), ``xenbus_gather(...) -> (err, values)``.
``xenbus_printf`` takes a Python %-format. ``XenStore`` is the notebook-facing wrapper
that raises ``XenbusError`` instead.
"""

from __future__ import annotations

import errno as _errno
import re
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xenlab.abi import xs_wire as xsw
from xenlab.abi.errno import EEXIST, EINVAL, ERANGE
from xenlab.base.sched import Task, WaitQueue
from xenlab.linux.kernel import KERN_WARNING
from xenlab.linux.locking import Mutex, RwSem
from xenlab.linux.xenlinux.xenbus_comms import (
    xb_data_to_read,
    xb_init_comms,
    xb_read,
    xb_wait_for_data_to_read,
    xb_write,
)

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel

SRC = "drivers/xen/xenbus/xenbus_xs.c"
XBT_NIL = 0
XBWF_new_thread = 1
HDR = struct.Struct("<IIII")  # struct xsd_sockmsg: type, req_id, tx_id, len
#: where the lab's watch structs "live": kmalloc space of the x86_64 direct map (__PAGE_OFFSET of
#: include/asm-x86_64/mach-xen/asm/page.h is 0xffff880000000000; the native page.h's
#: 0xffff810000000000 is not what a Xen build uses), and for a driver's static struct (``symbol``)
#: the kernel image's .data (__START_KERNEL_map 0xffffffff80000000), one slot per symbol in link order
WATCH_ADDR_BASE = 0xFFFF880001C00000
STATIC_WATCH_ADDR_BASE = 0xFFFFFFFF80500000
WATCH_ADDR_STEP = 0x80
#: the static struct xenbus_watch of the modelled files, in link order (drivers/xen/core/reboot.o,
#: core/cpu_hotplug.o, xenbus/xenbus_probe.o, xenbus/xenbus_probe_backend.o, balloon/balloon.o)
STATIC_WATCHES = ("shutdown_watch", "sysrq_watch", "cpu_watch", "fe_watch", "be_watch", "target_watch")


_TNAMES = {int(m): m.name.removeprefix("XS_") for m in xsw.xsd_sockmsg_type}


def _tname(t: int) -> str:
    return _TNAMES.get(t) or str(t)


@dataclass(eq=False)
class xenbus_watch:
    """struct xenbus_watch (include/xen/xenbus.h): a node and a callback(watch, path, token).

    ``addr`` stands for the struct's address (the token); ``symbol`` names a static struct
    (one of STATIC_WATCHES, in the kernel image); empty, the struct was kmalloc'd.
    """

    node: str
    callback: Callable[[xenbus_watch, str, str], Any]
    flags: int = 0
    addr: int = 0  # 0: given one at registration (kernel image if static, else kmalloc space)
    symbol: str = ""


@dataclass(eq=False)
class XsState:
    """struct xs_handle xs_state, plus the watch globals of xenbus_xs.c."""

    reply_list: deque[tuple[int, bytes]]
    reply_waitq: WaitQueue
    request_mutex: Mutex
    response_mutex: Mutex
    transaction_mutex: RwSem
    watch_mutex: RwSem
    watch_events_waitq: WaitQueue
    xenwatch_mutex: Mutex
    watches: list[xenbus_watch] = field(default_factory=list)
    watch_events: deque[tuple[xenbus_watch, str, str]] = field(default_factory=deque)
    watch_count: int = 0  # the lab's kmalloc addresses handed out so far
    talks: int = 0  # requests made so far (numbers the <kernel>/xs_requests rows)
    xenwatch_task: Task | None = None  # xenwatch_pid
    xenbus_task: Task | None = None

    def queued_events(self) -> tuple[tuple[str, str], ...] | None:
        """watch_events as the trace records it: ((path, token), ...) oldest first; None if empty."""
        return tuple((path, token) for _, path, token in self.watch_events) or None

    def queued_replies(self) -> tuple[str, ...] | None:
        """reply_list as the trace records it ("<kernel>/xs_state"["reply_list"]): each reply's type and
        length, oldest first; None if empty."""
        return tuple(f"{_tname(t)} ({len(body)} bytes)" for t, body in self.reply_list) or None

    def locks(self) -> tuple[Mutex | RwSem, ...]:
        """The sleeping locks of xenbus_xs.c, in the order struct xs_handle declares them."""
        return (self.request_mutex, self.response_mutex, self.transaction_mutex, self.watch_mutex,
                self.xenwatch_mutex)

    @classmethod
    def new(cls, kernel: XenLinuxKernel) -> XsState:
        """The statics as the kernel image holds them (named after the kernel, for the scheduler); the
        locks record on "<kernel>/locks"."""
        s, n = kernel.sched, kernel.name
        kw = {"trace": kernel.trace, "table": kernel.table("locks")}
        mutex, rwsem = kernel.MUTEX_SOURCE, kernel.RWSEM_SOURCE
        return cls(deque(), WaitQueue(f"{n}:reply_waitq"), Mutex(s, f"{n}:request_mutex", source=mutex, **kw),
                   Mutex(s, f"{n}:response_mutex", source=mutex, **kw),
                   RwSem(s, f"{n}:transaction_mutex", source=rwsem, **kw),
                   RwSem(s, f"{n}:watch_mutex", source=rwsem, **kw), WaitQueue(f"{n}:watch_events_waitq"),
                   Mutex(s, f"{n}:xenwatch_mutex", source=mutex, **kw))


def _warn(kernel: XenLinuxKernel, text: str) -> None:
    """printk(KERN_WARNING "XENBUS ...")."""
    msg = "XENBUS " + text
    kernel.printk(KERN_WARNING, msg)
    kernel.record("printk", msg, SRC, printk=msg)


def get_error(kernel: XenLinuxKernel, errorstring: str) -> int:
    """get_error: the errno for an error name xenstored sent (the 2.6.18 table); unknown -> EINVAL."""
    table = dict(xsw.XSD_ERRORS_2_6_18)
    if errorstring in table:
        return table[errorstring]
    _warn(kernel, f"xen store gave: unknown error {errorstring}")
    return EINVAL


def read_reply(kernel: XenLinuxKernel) -> tuple[int, bytes]:
    """read_reply: sleep until reply_list has a reply, take it: (type, body)."""
    st = kernel.xs_state
    kernel.sched.wait_event(st.reply_waitq, lambda: bool(st.reply_list))
    before = st.queued_replies()
    reply = st.reply_list.popleft()
    kernel.record("read_reply", f"{_tname(reply[0])} reply taken off reply_list", SRC,
                  changes=[(kernel.table("xs_state"), "reply_list", before, st.queued_replies())])
    return reply


def _reply_summary(rtype: int, body: bytes) -> str:
    text = body.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
    return f"{_tname(rtype)} {text!r}" if len(text) <= 60 else f"{_tname(rtype)} ({len(body)} bytes)"


def _log_request(kernel: XenLinuxKernel, function: str, what: str, reply: str) -> None:
    """One trace step per request, with a row "<kernel>/xs_requests" numbered in order."""
    st = kernel.xs_state
    st.talks += 1
    kernel.record(function, f"{what} -> {reply}", SRC,
                  changes=[(kernel.table("xs_requests"), str(st.talks), None, f"{what} -> {reply}")])


def xenbus_dev_request_and_reply(kernel: XenLinuxKernel, mtype: int, tx_id: int,
                                 payload: bytes) -> tuple[int, bytes]:
    """xenbus_dev_request_and_reply: a raw request from /proc/xen/xenbus, written in one piece;
    (reply type, body); a ring error comes back as XS_ERROR with the error's name."""
    st = kernel.xs_state
    if mtype == xsw.XS_TRANSACTION_START:
        st.transaction_mutex.down_read()
    st.request_mutex.lock()
    err = xb_write(kernel, HDR.pack(mtype, 0, tx_id, len(payload)) + bytes(payload))
    if err:
        rtype, body = xsw.XS_ERROR, xsw.XSD_ERROR_BY_ERRNO.get(-err, "EIO").encode() + b"\0"
    else:
        rtype, body = read_reply(kernel)
    st.request_mutex.unlock()
    if mtype == xsw.XS_TRANSACTION_END or (mtype == xsw.XS_TRANSACTION_START and rtype == xsw.XS_ERROR):
        st.transaction_mutex.up_read()
    path = bytes(payload).split(b"\0")[0].decode("utf-8", "replace")
    what = f"{_tname(mtype)} {path}".rstrip() + (f" tx {tx_id}" if tx_id else "")
    _log_request(kernel, "xenbus_dev_request_and_reply", what, _reply_summary(rtype, body))
    return rtype, body


def xs_talkv(kernel: XenLinuxKernel, t: int, mtype: int, vec: list[bytes]) -> bytes | int:
    """xs_talkv: write the header then each vector, sleep for the reply; the body, or -errno."""
    st = kernel.xs_state
    st.request_mutex.lock()
    err = xb_write(kernel, HDR.pack(mtype, 0, t, sum(map(len, vec))))
    for chunk in vec:
        if err:
            break
        err = xb_write(kernel, chunk)
    if err:
        st.request_mutex.unlock()
        _log_request(kernel, "xs_talkv", f"{_tname(mtype)} tx {t}", f"ring error {err}")
        return err
    rtype, body = read_reply(kernel)
    st.request_mutex.unlock()
    path = vec[0].split(b"\0")[0].decode("utf-8", "replace") if vec else ""
    what = f"{_tname(mtype)} {path}".rstrip() + (f" tx {t}" if t else "")
    _log_request(kernel, "xs_talkv", what, _reply_summary(rtype, body))
    if rtype == xsw.XS_ERROR:
        return -get_error(kernel, body.rstrip(b"\0").decode("ascii", "replace"))
    if rtype != mtype:
        _warn(kernel, f"unexpected type [{rtype}], expected [{mtype}]")
        return -EINVAL
    return body


def _z(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape") + b"\0"


def _s(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def xs_single(kernel: XenLinuxKernel, t: int, mtype: int, string: str) -> bytes | int:
    """xs_single: a request whose payload is one NUL-terminated string."""
    return xs_talkv(kernel, t, mtype, [_z(string)])


def xs_error(reply: bytes | int) -> int:
    """xs_error: many commands only need an ack: 0, or the -errno."""
    return reply if isinstance(reply, int) else 0


def join(dir: str, name: str) -> str:
    """join: "dir/name", or dir alone when name is empty."""
    return dir if not name else f"{dir}/{name}"


def split(strings: bytes) -> list[str]:
    """split: the NUL-terminated strings of a reply."""
    return [_s(p) for p in strings.split(b"\0")[:-1]]


def xenbus_directory(kernel: XenLinuxKernel, t: int, dir: str, node: str) -> list[str] | int:
    """xenbus_directory: the node's children, or -errno."""
    strings = xs_single(kernel, t, xsw.XS_DIRECTORY, join(dir, node))
    return strings if isinstance(strings, int) else split(strings)


def xenbus_exists(kernel: XenLinuxKernel, t: int, dir: str, node: str) -> int:
    """xenbus_exists: 1 if xenbus_directory of the node succeeds, else 0."""
    return 0 if isinstance(xenbus_directory(kernel, t, dir, node), int) else 1


def xenbus_read(kernel: XenLinuxKernel, t: int, dir: str, node: str) -> str | int:
    """xenbus_read: the node's value, or -errno."""
    ret = xs_single(kernel, t, xsw.XS_READ, join(dir, node))
    return ret if isinstance(ret, int) else _s(ret)


def xenbus_write(kernel: XenLinuxKernel, t: int, dir: str, node: str, string: str) -> int:
    """xenbus_write: write a node (path NUL-terminated, value not); 0 or -errno."""
    return xs_error(xs_talkv(kernel, t, xsw.XS_WRITE, [_z(join(dir, node)),
                                                       string.encode("utf-8", "surrogateescape")]))


def xenbus_mkdir(kernel: XenLinuxKernel, t: int, dir: str, node: str) -> int:
    """xenbus_mkdir: create a node with an empty value; 0 or -errno."""
    return xs_error(xs_single(kernel, t, xsw.XS_MKDIR, join(dir, node)))


def xenbus_rm(kernel: XenLinuxKernel, t: int, dir: str, node: str) -> int:
    """xenbus_rm: remove a node and everything under it; 0 or -errno."""
    return xs_error(xs_single(kernel, t, xsw.XS_RM, join(dir, node)))


def xenbus_transaction_start(kernel: XenLinuxKernel) -> tuple[int, int]:
    """xenbus_transaction_start: down_read(transaction_mutex), TRANSACTION_START; (0, t) or (-errno, 0)."""
    st = kernel.xs_state
    st.transaction_mutex.down_read()
    id_str = xs_single(kernel, XBT_NIL, xsw.XS_TRANSACTION_START, "")
    if isinstance(id_str, int):
        st.transaction_mutex.up_read()
        return id_str, 0
    return 0, _strtoul(_s(id_str).rstrip("\0"), 0)


def xenbus_transaction_end(kernel: XenLinuxKernel, t: int, abort: bool | int) -> int:
    """xenbus_transaction_end: "T" commits, "F" aborts, then up_read; 0 or -errno (-EAGAIN: retry)."""
    err = xs_error(xs_single(kernel, t, xsw.XS_TRANSACTION_END, "F" if abort else "T"))
    kernel.xs_state.transaction_mutex.up_read()
    return err


def _strtoul(text: str, base: int) -> int:
    """simple_strtoul: the leading number of *text* (0 if none)."""
    m = re.match(r"\s*(0[xX][0-9a-fA-F]+|[0-9]+)" if base == 0 else r"\s*([0-9a-fA-F]+)", text)
    if m is None:
        return 0
    digits = m.group(1)
    if base:
        return int(digits, base)
    if digits[:2] in ("0x", "0X"):
        return int(digits, 16)
    return int(digits, 8) if len(digits) > 1 and digits[0] == "0" else int(digits)


_CONV = {"d": r"[-+]?\d+", "i": r"[-+]?(?:0[xX][0-9a-fA-F]+|\d+)", "u": r"[-+]?\d+",
         "x": r"[-+]?(?:0[xX])?[0-9a-fA-F]+"}


def sscanf(text: str, fmt: str) -> list[int]:
    """vsscanf for the integer conversions xenbus callers use (%d %i %u %x, with l/ll, and literals):
    the values matched, in order (fewer than asked when the text stops matching)."""
    out: list[int] = []
    pos = 0
    for literal, conv in re.findall(r"([^%]*)(?:%(?:l{0,2})([diux]))?", fmt):
        for ch in literal:
            if ch.isspace():
                while pos < len(text) and text[pos].isspace():
                    pos += 1
            elif pos < len(text) and text[pos] == ch:
                pos += 1
            else:
                return out
        if not conv:
            continue
        while pos < len(text) and text[pos].isspace():
            pos += 1
        m = re.compile(_CONV[conv]).match(text, pos)
        if m is None:
            return out
        token = m.group(0)
        sign = -1 if token.startswith("-") else 1
        digits = token.lstrip("+-")
        if conv == "x":
            value = int(digits, 16)
        elif conv == "i" and digits[:2] in ("0x", "0X"):
            value = int(digits, 16)
        elif conv == "i" and len(digits) > 1 and digits[0] == "0":
            value = int(digits, 8)
        else:
            value = int(digits)
        out.append(sign * value)
        pos = m.end()
    return out


def xenbus_scanf(kernel: XenLinuxKernel, t: int, dir: str, node: str, fmt: str) -> tuple[int, list[int]]:
    """xenbus_scanf: read the node and sscanf it: (items matched, values); (-ERANGE, []) if none matched,
    (-errno, []) if the read failed."""
    val = xenbus_read(kernel, t, dir, node)
    if isinstance(val, int):
        return val, []
    values = sscanf(val, fmt)
    return (len(values), values) if values else (-ERANGE, [])


def xenbus_printf(kernel: XenLinuxKernel, t: int, dir: str, node: str, fmt: str, *args: Any) -> int:
    """xenbus_printf: write fmt % args to the node; 0 or -errno."""
    return xenbus_write(kernel, t, dir, node, fmt % args if args else fmt)


def xenbus_gather(kernel: XenLinuxKernel, t: int, dir: str,
                  *fields: tuple[str, str | None]) -> tuple[int, list[Any]]:
    """xenbus_gather: read several (name, fmt) nodes -- fmt None takes the string; (0, values) or
    (-errno, values so far) at the first failure (-EINVAL when a value does not scan)."""
    out: list[Any] = []
    for name, fmt in fields:
        p = xenbus_read(kernel, t, dir, name)
        if isinstance(p, int):
            return p, out
        if fmt is None:
            out.append(p)
            continue
        values = sscanf(p, fmt)
        if not values:
            return -EINVAL, out
        out.append(values[0])
    return 0, out


# -- watches -------------------------------------------------------------------------------
def watch_callback(kernel: XenLinuxKernel, fn: Callable[[XenLinuxKernel, xenbus_watch, str, str], Any]
                   ) -> Callable[[xenbus_watch, str, str], Any]:
    """*fn*(kernel, watch, path, token) as a watch's callback(watch, path, token), keeping fn's name."""
    def callback(watch: xenbus_watch, path: str, token: str) -> Any:
        return fn(kernel, watch, path, token)

    callback.__name__ = callback.__qualname__ = fn.__name__
    return callback


def static_watch(kernel: XenLinuxKernel, symbol: str, node: str,
                 fn: Callable[[XenLinuxKernel, xenbus_watch, str, str], Any], flags: int = 0) -> xenbus_watch:
    """The driver's static struct xenbus_watch *symbol* (one per kernel, made on first use)."""
    watch = kernel.static_watches.get(symbol)
    if watch is None:
        watch = xenbus_watch(node, watch_callback(kernel, fn), flags=flags, symbol=symbol)
        kernel.static_watches[symbol] = watch
    return watch


def watch_token(kernel: XenLinuxKernel, watch: xenbus_watch) -> str:
    """sprintf(token, "%lX", (long)watch): the watch's address (a stable made-up one in the lab)."""
    if not watch.addr:
        st = kernel.xs_state
        if watch.symbol:
            watch.addr = STATIC_WATCH_ADDR_BASE + STATIC_WATCHES.index(watch.symbol) * WATCH_ADDR_STEP
        else:
            watch.addr = WATCH_ADDR_BASE + st.watch_count * WATCH_ADDR_STEP
            st.watch_count += 1
    return f"{watch.addr:X}"


def xs_watch(kernel: XenLinuxKernel, path: str, token: str) -> int:
    """xs_watch: XS_WATCH path token; 0 or -errno."""
    return xs_error(xs_talkv(kernel, XBT_NIL, xsw.XS_WATCH, [_z(path), _z(token)]))


def xs_unwatch(kernel: XenLinuxKernel, path: str, token: str) -> int:
    """xs_unwatch: XS_UNWATCH path token; 0 or -errno."""
    return xs_error(xs_talkv(kernel, XBT_NIL, xsw.XS_UNWATCH, [_z(path), _z(token)]))


def find_watch(kernel: XenLinuxKernel, token: str) -> xenbus_watch | None:
    """find_watch: the registered watch whose address the token spells, or None."""
    try:
        addr = int(token, 16)
    except ValueError:
        return None
    return next((w for w in kernel.xs_state.watches if w.addr == addr), None)


def register_xenbus_watch(kernel: XenLinuxKernel, watch: xenbus_watch) -> int:
    """register_xenbus_watch: list the watch, send XS_WATCH (keeping it on -EEXIST); 0 or -errno."""
    st = kernel.xs_state
    token = watch_token(kernel, watch)
    st.watch_mutex.down_read()
    if find_watch(kernel, token) is not None:
        st.watch_mutex.up_read()
        kernel.panic(f"kernel BUG at {SRC}: register_xenbus_watch: {watch.node} already registered")
    st.watches.insert(0, watch)
    kernel.record("register_xenbus_watch", f"{watch.node} token {token}", SRC,
                  changes=[(kernel.table("watches"), token, None, watch.node)])
    err = xs_watch(kernel, watch.node, token)
    if err and err != -EEXIST:  # "Ignore errors due to multiple registration."
        st.watches.remove(watch)
        kernel.record("register_xenbus_watch", f"{watch.node}: XS_WATCH failed {err}, watch dropped", SRC,
                      changes=[(kernel.table("watches"), token, watch.node, None)])
    st.watch_mutex.up_read()
    return err


def unregister_xenbus_watch(kernel: XenLinuxKernel, watch: xenbus_watch) -> None:
    """unregister_xenbus_watch: XS_UNWATCH, drop queued events, wait out a running callback."""
    st = kernel.xs_state
    token = watch_token(kernel, watch)
    st.watch_mutex.down_read()
    if find_watch(kernel, token) is None:
        st.watch_mutex.up_read()
        kernel.panic(f"kernel BUG at {SRC}: unregister_xenbus_watch: {watch.node} not registered")
    st.watches.remove(watch)
    kernel.record("unregister_xenbus_watch", f"{watch.node} token {token}", SRC,
                  changes=[(kernel.table("watches"), token, watch.node, None)])
    err = xs_unwatch(kernel, watch.node, token)
    if err:
        _warn(kernel, f"Failed to release watch {watch.node}: {err}")
    st.watch_mutex.up_read()
    before = st.queued_events()
    kept = [ev for ev in st.watch_events if ev[0] is not watch]  # cancel pending watch events
    st.watch_events.clear()
    st.watch_events.extend(kept)
    if st.queued_events() != before:
        kernel.record("unregister_xenbus_watch", f"{watch.node}: its queued events dropped", SRC,
                      changes=[(kernel.table("watch_events"), "queue", before, st.queued_events())])
    if kernel.sched.current is None or kernel.sched.current is not st.xenwatch_task:
        st.xenwatch_mutex.lock()  # flush a currently-executing callback, unless we are it
        st.xenwatch_mutex.unlock()


# -- the threads ---------------------------------------------------------------------------
def xenwatch_handle_callback(kernel: XenLinuxKernel, watch: xenbus_watch, path: str, token: str) -> None:
    """xenwatch_handle_callback: run the watch's callback with the event's path and token."""
    watch.callback(watch, path, token)


def xenwatch_thread(kernel: XenLinuxKernel) -> None:
    """One turn of xenwatch_thread's for(;;) loop: take the first queued event under xenwatch_mutex and
    run its callback (on a new "xenwatch_cb" thread for XBWF_new_thread watches).

    Between turns the thread sleeps on watch_events_waitq until an event is queued (xs_init passes
    that wait to kthread_run).
    """
    st = kernel.xs_state
    st.xenwatch_mutex.lock()
    if not st.watch_events:
        st.xenwatch_mutex.unlock()
        return
    before = st.queued_events()
    watch, path, token = st.watch_events.popleft()
    name = getattr(watch.callback, "__name__", "callback")
    kernel.record("xenwatch_thread", f"{path} (token {token}) -> {name}", SRC,
                  changes=[(kernel.table("watch_events"), "queue", before, st.queued_events())])
    if watch.flags & XBWF_new_thread:
        st.xenwatch_mutex.unlock()
        kernel.sched.kthread_run(xenwatch_handle_callback, "xenwatch_cb", kernel, watch, path, token,
                                 owner=kernel.name)
    else:
        xenwatch_handle_callback(kernel, watch, path, token)
        st.xenwatch_mutex.unlock()


def process_msg(kernel: XenLinuxKernel) -> int:
    """process_msg: read one message (header, then body): a watch event for xenwatch, else a reply."""
    st = kernel.xs_state
    while True:
        xb_wait_for_data_to_read(kernel)
        st.response_mutex.lock()
        if xb_data_to_read(kernel):
            break
        st.response_mutex.unlock()  # "We raced with save/restore: pending data 'disappeared'."
    try:
        hdr = xb_read(kernel, HDR.size)
        if isinstance(hdr, int):
            return hdr
        mtype, _req_id, _tx_id, length = HDR.unpack(hdr)
        body = xb_read(kernel, length) if length else b""
        if isinstance(body, int):
            return body
        if mtype == xsw.XS_WATCH_EVENT:
            vec = split(body if body.endswith(b"\0") else body + b"\0")
            if len(vec) < 2:
                return -EINVAL
            path, token = vec[xsw.XS_WATCH_PATH], vec[xsw.XS_WATCH_TOKEN]
            watch = find_watch(kernel, token)
            if watch is not None:
                before = st.queued_events()
                st.watch_events.append((watch, path, token))
                kernel.sched.wake_up(st.watch_events_waitq)
                kernel.record("process_msg", f"WATCH_EVENT {path} token {token}: queued for xenwatch", SRC,
                              changes=[(kernel.table("watch_events"), "queue", before, st.queued_events())])
            else:
                kernel.record("process_msg", f"WATCH_EVENT {path} token {token}: no such watch, dropped", SRC)
            return 0
        before = st.queued_replies()
        st.reply_list.append((mtype, body))
        kernel.record("process_msg", f"{_tname(mtype)} reply ({length} bytes) on reply_list", SRC,
                      changes=[(kernel.table("xs_state"), "reply_list", before, st.queued_replies())])
        kernel.sched.wake_up(st.reply_waitq)
        return 0
    finally:
        st.response_mutex.unlock()


def xenbus_thread(kernel: XenLinuxKernel) -> None:
    """One turn of xenbus_thread's for(;;) loop: process_msg, warning about an error.

    Between turns the thread sleeps in process_msg's xb_wait_for_data_to_read (xs_init passes that
    wait to kthread_run), so a turn starts with data in the response ring.
    """
    err = process_msg(kernel)
    if err:
        _warn(kernel, f"error {err} while reading message")


def xs_init(kernel: XenLinuxKernel) -> int:
    """xs_init: set up xs_state, xb_init_comms, then the "xenwatch" and "xenbus" threads."""
    st = kernel.xs_state
    # INIT_LIST_HEAD(&xs_state.reply_list), mutex_init, init_rwsem: what the step shows as the table rows
    kernel.record("xs_init", "xs_state: reply_list empty, request/response mutexes and transaction/watch "
                  "rw-semaphores free", SRC,
                  changes=[lock.init_row() for lock in st.locks()[:4]])
    err = xb_init_comms(kernel)
    if err:
        return err
    st.xenwatch_task = kernel.sched.kthread_run(xenwatch_thread, "xenwatch", kernel, owner=kernel.name,
                                                wait=(st.watch_events_waitq, lambda: bool(st.watch_events)))
    kernel.record("kthread_run", f"xenwatch (pid {st.xenwatch_task.pid})", SRC)
    if st.xenbus_task is None:
        # the reader never waits for another process-context task: it may run inside any wait
        st.xenbus_task = kernel.sched.kthread_run(xenbus_thread, "xenbus", kernel, owner=kernel.name,
                                                  wait=(kernel.xb.xb_waitq, lambda: xb_data_to_read(kernel)),
                                                  nests=True)
        kernel.record("kthread_run", f"xenbus (pid {st.xenbus_task.pid})", SRC)
    return 0


# -- the notebook-facing wrapper ---------------------------------------------------------------
class XenbusError(OSError):
    """A xenbus call failed; .errno is the errno, the message names the call and the path."""

    def __init__(self, err: int, op: str, path: str) -> None:
        super().__init__(err, f"{op} {path}: {_errno.errorcode.get(err, str(err))}")


class XenStore:
    """The kernel's xenstore access for notebooks: the xenbus_* calls, raising instead of -errno."""

    def __init__(self, kernel: XenLinuxKernel) -> None:
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

    def watch(self, path: str, callback: Callable[[xenbus_watch, str, str], Any]) -> xenbus_watch:
        """register_xenbus_watch: callback(watch, path, token) runs on the xenwatch thread."""
        w = xenbus_watch(node=path, callback=callback)
        self._check(register_xenbus_watch(self.kernel, w), "watch", path)
        return w

    def unwatch(self, watch: xenbus_watch) -> None:
        """unregister_xenbus_watch."""
        unregister_xenbus_watch(self.kernel, watch)

"""xs_talkv, the "xenbus" and "xenwatch" threads, watches (drivers/xen/xenbus/xenbus_xs.c).

Theory of operation
-------------------
Every xenstore request a guest kernel makes (xenbus_read, xenbus_write, register_xenbus_watch,
...) ends in ``xs_talkv``: a 16-byte xsd_sockmsg header and the payload go into the request
ring, then the caller sleeps until the reply comes back. Replies are read by the kernel
thread "xenbus": it reads a header, then the body; a WATCH_EVENT is matched by its token
(the watch struct's address as "%lX") and queued for the thread "xenwatch", which runs the
watch callbacks one at a time under ``xenwatch_mutex``; anything else is a reply.

* 2.6.18: the caller writes the request itself under ``request_mutex`` with req_id 0 (one
  request in flight), and takes the first reply from ``reply_list``. ``transaction_mutex``
  and ``watch_mutex`` are rw-semaphores taken for reading (suspend takes them for writing).
* modern: the caller queues a request (req_id from a global counter starting at 0) on
  ``xb_write_list`` and wakes "xenbus", which also does the writing (``process_writes``);
  replies are matched to requests by req_id. Ring reads and writes never sleep there.

Kernel-style functions return -errno; ``XenStore`` is the raising wrapper for notebooks.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xenlab.abi import xs_wire as xsw
from xenlab.abi.errno import EINVAL, ENOENT
from xenlab.base.sched import WaitQueue
from xenlab.linux.kernel import KERN_WARNING
from xenlab.linux.locking import Mutex, RwSem
from xenlab.linux.xenbus import comms

SRC = "drivers/xen/xenbus/xenbus_xs.c"
SRC_COMMS = comms.SRC
XBT_NIL = 0
XBWF_new_thread = 1
HDR = struct.Struct("<IIII")  # struct xsd_sockmsg: type, req_id, tx_id, len
#: where the lab's watch structs "live": kmalloc space of each flavour's x86_64 direct map, and
#: (static=True: a driver's static struct, e.g. fe_watch) the kernel image's .data
WATCH_ADDR_BASE = {"2.6.18": 0xFFFF810001C00000, "modern": 0xFFFF888004C00000}
STATIC_WATCH_ADDR_BASE = {"2.6.18": 0xFFFFFFFF80500000, "modern": 0xFFFFFFFF82B00000}
WATCH_ADDR_STEP = 0x80


def _tname(t: int) -> str:
    try:
        return xsw.xsd_sockmsg_type(t).name.removeprefix("XS_")
    except ValueError:
        return str(t)


@dataclass(eq=False)
class xenbus_watch:
    """struct xenbus_watch: a node, a callback(watch, path, token); addr stands for its address."""

    node: str
    callback: Callable[..., Any]
    flags: int = 0
    addr: int = 0  # 0: given one at registration (kernel image if static, else kmalloc space)
    static: bool = False
    nr_pending: int = 0
    will_handle: Callable[..., bool] | None = None


@dataclass(eq=False)
class XbReq:
    """struct xb_req_data (modern): one queued request and, later, its reply."""

    type: int
    tx_id: int
    vec: list[bytes]
    wq: WaitQueue
    user_req: bool = False
    req_id: int = 0
    caller_req_id: int = 0
    state: str = "queued"  # queued | wait_reply | got_reply | aborted
    reply_type: int = 0
    body: bytes = b""
    err: int = 0


@dataclass(eq=False)
class XsState:
    """struct xs_handle xs_state plus the watch globals of xenbus_xs.c (and modern comms lists)."""

    reply_list: deque[tuple[int, bytes]]
    reply_waitq: WaitQueue
    request_mutex: Mutex
    response_mutex: Mutex
    transaction_mutex: RwSem
    watch_mutex: RwSem
    watch_events_waitq: WaitQueue
    xenwatch_mutex: Mutex
    xb_write_mutex: Mutex
    watches: list[xenbus_watch] = field(default_factory=list)
    watch_events: deque[tuple[xenbus_watch, str, str]] = field(default_factory=deque)
    xb_write_list: deque[XbReq] = field(default_factory=deque)
    xs_reply_list: list[XbReq] = field(default_factory=list)
    xs_request_id: int = 0
    watch_count: int = 0
    static_watch_count: int = 0
    talks: int = 0
    xenwatch_task: Any = None
    xenbus_task: Any = None
    msg: dict[str, Any] = field(default_factory=dict)  # modern process_msg's static state
    wr: dict[str, Any] = field(default_factory=dict)  # modern process_writes' static state

    def queued_events(self) -> tuple[tuple[str, str], ...] | None:
        """watch_events as the trace records it: ((path, token), ...) oldest first; None if empty."""
        return tuple((path, token) for _, path, token in self.watch_events) or None


def xs_state(kernel: Any) -> XsState:
    """The kernel's xs_state (``kernel.xs_state``), created on first use."""
    st = getattr(kernel, "xs_state", None)
    if st is None:
        s, n = kernel.sched, kernel.name
        st = XsState(deque(), WaitQueue(f"{n}:reply_waitq"), Mutex(s, f"{n}:request_mutex"),
                     Mutex(s, f"{n}:response_mutex"), RwSem(s, f"{n}:transaction_mutex"),
                     RwSem(s, f"{n}:watch_mutex"), WaitQueue(f"{n}:watch_events_waitq"),
                     Mutex(s, f"{n}:xenwatch_mutex"), Mutex(s, f"{n}:xb_write_mutex"))
        kernel.xs_state = st
    return st


def _old(kernel: Any) -> bool:
    return kernel.flavour == "2.6.18"


def _warn(kernel: Any, text: str) -> None:
    msg = ("XENBUS " if _old(kernel) else "xenbus: ") + text
    kernel.printk(KERN_WARNING, msg)
    kernel.record("printk", msg, SRC, printk=msg)


# -- init and threads ------------------------------------------------------------------------
def xs_init(kernel: Any) -> int:
    """xs_init: set up xs_state, xb_init_comms, then the "xenwatch" (and 2.6.18 "xenbus") threads."""
    st = xs_state(kernel)
    kernel.record("xs_init", "xs_state: reply_list, request/response mutexes, transaction and watch "
                  "rw-semaphores", SRC)
    err = comms.xb_init_comms(kernel)  # modern: starts "xenbus" itself
    if err:
        return err
    st.xenwatch_task = kernel.sched.kthread_run(xenwatch_thread, "xenwatch", kernel, owner=kernel.name)
    kernel.record("kthread_run", f"xenwatch (pid {st.xenwatch_task.pid})", SRC)
    if _old(kernel):
        start_xenbus_thread(kernel)
    else:
        from xenlab.linux.xenbus.xs_api import xs_reset_watches

        xs_reset_watches(kernel)
    return 0


def start_xenbus_thread(kernel: Any) -> None:
    """kthread_run(xenbus_thread, NULL, "xenbus") unless it already runs."""
    st = xs_state(kernel)
    if st.xenbus_task is None:
        st.xenbus_task = kernel.sched.kthread_run(xenbus_thread, "xenbus", kernel, owner=kernel.name)
        kernel.record("kthread_run", f"xenbus (pid {st.xenbus_task.pid})", SRC if _old(kernel) else SRC_COMMS)


def xb_data_to_write(kernel: Any) -> bool:
    """xb_data_to_write (modern): room in the request ring and a request queued."""
    return not comms.xb_ring_full(kernel) and bool(xs_state(kernel).xb_write_list)


def xenbus_thread(kernel: Any) -> None:
    """xenbus_thread: read messages forever (modern: and write the queued requests)."""
    wq = comms.xb_waitq(kernel)
    while True:
        if _old(kernel):
            err = process_msg(kernel)
            if err:
                _warn(kernel, f"error {err} while reading message")
            continue
        kernel.sched.wait_event(wq, lambda: comms.xb_data_to_read(kernel) or xb_data_to_write(kernel))
        err = process_msg(kernel)
        if err:
            _warn(kernel, f"error {err} while reading message")
        err = process_writes(kernel)
        if err:
            _warn(kernel, f"error {err} while writing message")


def _dispatch_watch_event(kernel: Any, body: bytes) -> int:
    """The WATCH_EVENT half of process_msg / xs_watch_msg: find the watch by token, queue the event."""
    st = xs_state(kernel)
    strings = body.split(b"\0")[:-1] if body.endswith(b"\0") else body.split(b"\0")
    if len(strings) < 2 or (not _old(kernel) and len(strings) != 2):
        return -EINVAL
    path, token = (s.decode("utf-8", "surrogateescape") for s in strings[:2])
    from xenlab.linux.xenbus.xs_api import find_watch

    watch = find_watch(kernel, token)
    if watch is not None and (watch.will_handle is None or watch.will_handle(watch, path, token)):
        before = st.queued_events()
        st.watch_events.append((watch, path, token))
        watch.nr_pending += 1
        kernel.sched.wake_up(st.watch_events_waitq)
        kernel.record("xs_watch_msg" if not _old(kernel) else "process_msg",
                      f"WATCH_EVENT {path} token {token}: queued for xenwatch", SRC,
                      changes=[(f"{kernel.name}/watch_events", "queue", before, st.queued_events())])
    else:
        kernel.record("xs_watch_msg" if not _old(kernel) else "process_msg",
                      f"WATCH_EVENT {path} token {token}: no such watch, dropped", SRC)
    return 0


def process_msg(kernel: Any) -> int:
    """process_msg: read one message (header, then body) and route it; 0 or -errno."""
    return _process_msg_2618(kernel) if _old(kernel) else _process_msg_modern(kernel)


def _process_msg_2618(kernel: Any) -> int:
    st = xs_state(kernel)
    while True:
        kernel.sched.wait_event(comms.xb_waitq(kernel), lambda: comms.xb_data_to_read(kernel))
        st.response_mutex.lock()
        if comms.xb_data_to_read(kernel):
            break
        st.response_mutex.unlock()  # raced with save/restore
    try:
        hdr = comms.xb_read(kernel, HDR.size)
        if isinstance(hdr, int):
            return hdr
        mtype, req_id, tx_id, length = HDR.unpack(hdr)
        body = comms.xb_read(kernel, length) if length else b""
        if isinstance(body, int):
            return body
        if mtype == xsw.XS_WATCH_EVENT:
            return _dispatch_watch_event(kernel, body)
        st.reply_list.append((mtype, body))
        kernel.record("process_msg", f"{_tname(mtype)} reply ({length} bytes) on reply_list", SRC)
        kernel.sched.wake_up(st.reply_waitq)
        return 0
    finally:
        st.response_mutex.unlock()


def _process_msg_modern(kernel: Any) -> int:
    st = xs_state(kernel)
    m = st.msg
    if not m.get("in_msg"):
        m.update(in_msg=True, in_hdr=True, hdr=b"", body=b"")
        st.response_mutex.lock()
        if not comms.xb_data_to_read(kernel):
            st.response_mutex.unlock()
            m["in_msg"] = False
            return 0
    err = 0
    if m["in_hdr"]:
        got = comms.xb_read(kernel, HDR.size - len(m["hdr"]))
        if isinstance(got, int):
            return _msg_out(st, got)
        m["hdr"] += got
        if len(m["hdr"]) != HDR.size:
            return 0
        m["type"], m["req_id"], _, m["len"] = HDR.unpack(m["hdr"])
        if m["len"] > xsw.XENSTORE_PAYLOAD_MAX:
            return _msg_out(st, -EINVAL)
        m["in_hdr"] = False
    got = comms.xb_read(kernel, m["len"] - len(m["body"]))
    if isinstance(got, int):
        return _msg_out(st, got)
    m["body"] += got
    if len(m["body"]) != m["len"]:
        return 0
    if m["type"] == xsw.XS_WATCH_EVENT:
        err = _dispatch_watch_event(kernel, m["body"])
    else:
        req = next((r for r in st.xs_reply_list if r.req_id == m["req_id"]), None)
        if req is None:
            kernel.record("process_msg", f"{_tname(m['type'])} reply req_id {m['req_id']}: no such request",
                          SRC_COMMS)
            return _msg_out(st, -ENOENT)
        st.xs_reply_list.remove(req)
        kernel.record("process_msg", f"{_tname(m['type'])} reply req_id {m['req_id']} ({m['len']} bytes) "
                      "matched", SRC_COMMS)
        if req.state == "wait_reply":
            req.req_id = req.caller_req_id
            req.reply_type, req.body, req.state = m["type"], m["body"], "got_reply"
            kernel.sched.wake_up(req.wq)
    return _msg_out(st, err)


def _msg_out(st: XsState, err: int) -> int:
    st.response_mutex.unlock()
    st.msg["in_msg"] = False
    return err


def process_writes(kernel: Any) -> int:
    """process_writes (modern xenbus_comms.c): write the first queued request, header then vectors."""
    st = xs_state(kernel)
    if not xb_data_to_write(kernel):
        return 0
    st.xb_write_mutex.lock()
    w = st.wr
    if w.get("req") is None:
        w.update(req=st.xb_write_list[0], idx=-1, written=0)
    req: XbReq = w["req"]
    err = 0
    if req.state != "aborted":
        while w["idx"] < len(req.vec):
            base = (HDR.pack(req.type, req.req_id, req.tx_id, sum(map(len, req.vec))) if w["idx"] < 0
                    else req.vec[w["idx"]])
            err = comms.xb_write(kernel, base[w["written"]:])
            if err < 0:
                break
            w["written"] += err
            if w["written"] != len(base):
                st.xb_write_mutex.unlock()
                return 0
            w["idx"] += 1
            w["written"] = 0
        else:
            st.xb_write_list.remove(req)
            req.state = "wait_reply"
            st.xs_reply_list.append(req)
            w["req"] = None
            st.xb_write_mutex.unlock()
            return 0
    # out_err: the request fails with the write error (or was abandoned by its caller)
    req.reply_type, req.err = xsw.XS_ERROR, err
    st.xb_write_list.remove(req)
    if req.state != "aborted":
        req.state = "got_reply"
        kernel.sched.wake_up(req.wq)
    st.xb_write_mutex.unlock()
    w["req"] = None
    return err


def xenwatch_thread(kernel: Any) -> None:
    """xenwatch_thread: run queued watch callbacks one at a time under xenwatch_mutex."""
    st = xs_state(kernel)
    while True:
        kernel.sched.wait_event(st.watch_events_waitq, lambda: bool(st.watch_events))
        st.xenwatch_mutex.lock()
        if st.watch_events:
            before = st.queued_events()
            watch, path, token = st.watch_events.popleft()
            watch.nr_pending -= 1
            name = getattr(watch.callback, "__name__", "callback")
            kernel.record("xenwatch_thread", f"{path} (token {token}) -> {name}", SRC,
                          changes=[(f"{kernel.name}/watch_events", "queue", before, st.queued_events())])
            if _old(kernel) and watch.flags & XBWF_new_thread:
                kernel.sched.kthread_run(watch.callback, "xenwatch_cb", watch, path, token, owner=kernel.name)
            else:
                watch.callback(watch, path, token)
        st.xenwatch_mutex.unlock()


# -- requests ----------------------------------------------------------------------------------
def get_error(kernel: Any, name: str) -> int:
    """get_error: the errno for an error name xenstored sent; unknown -> EINVAL with a warning."""
    table = dict(xsw.XSD_ERRORS_2_6_18 if _old(kernel) else xsw.XSD_ERRORS)
    if name in table:
        return table[name]
    _warn(kernel, f"xen store gave: unknown error {name}")
    return EINVAL


def _reply_summary(rtype: int, body: bytes) -> str:
    text = body.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
    return f"{_tname(rtype)} {text!r}" if len(text) <= 60 else f"{_tname(rtype)} ({len(body)} bytes)"


def xs_talkv(kernel: Any, t: int, mtype: int, vec: list[bytes]) -> bytes | int:
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


def _log_request(kernel: Any, function: str, what: str, reply: str, source: str = SRC) -> None:
    """One trace step per request, with a row "<kernel>/xs_requests" numbered in order."""
    st = xs_state(kernel)
    st.talks += 1
    kernel.record(function, f"{what} -> {reply}", source,
                  changes=[(f"{kernel.name}/xs_requests", str(st.talks), None, f"{what} -> {reply}")])


def _request(kernel: Any, t: int, mtype: int, vec: list[bytes], *, user: bool) -> tuple[int, bytes, int]:
    """Write one request and wait for its reply: (reply type, body, 0), or (XS_ERROR, b"", -errno)."""
    st = xs_state(kernel)
    if _old(kernel):
        st.request_mutex.lock()
        try:
            hdr = HDR.pack(mtype, 0, t, sum(map(len, vec)))
            # xs_talkv writes the header, then each vector; /dev/xen/xenbus writes it all at once
            for chunk in ([hdr + b"".join(vec)] if user else [hdr, *vec]):
                err = comms.xb_write(kernel, chunk)
                if err:
                    return xsw.XS_ERROR, b"", err
            kernel.sched.wait_event(st.reply_waitq, lambda: bool(st.reply_list))
            rtype, body = st.reply_list.popleft()
            return rtype, body, 0
        finally:
            st.request_mutex.unlock()
    # modern: xs_send + xs_wait_for_reply
    req = XbReq(mtype, t, list(vec), WaitQueue(f"{kernel.name}:xb_req"), user_req=user)
    req.req_id, st.xs_request_id = st.xs_request_id, (st.xs_request_id + 1) & 0xFFFFFFFF
    st.xb_write_mutex.lock()
    st.xb_write_list.append(req)
    notify = len(st.xb_write_list) == 1
    st.xb_write_mutex.unlock()
    if notify:
        kernel.sched.wake_up(comms.xb_waitq(kernel))
    kernel.sched.wait_event(req.wq, lambda: req.state == "got_reply")
    return req.reply_type, req.body, req.err


def xenbus_dev_request(kernel: Any, mtype: int, tx_id: int, payload: bytes) -> tuple[int, bytes]:
    """xenbus_dev_request_and_reply: a raw request from /dev/xen/xenbus; (reply type, body)."""
    st = xs_state(kernel)
    if _old(kernel) and mtype == xsw.XS_TRANSACTION_START:
        st.transaction_mutex.down_read()
    rtype, body, err = _request(kernel, tx_id, mtype, [bytes(payload)], user=True)
    if _old(kernel) and (mtype == xsw.XS_TRANSACTION_END or
                         (mtype == xsw.XS_TRANSACTION_START and rtype == xsw.XS_ERROR)):
        st.transaction_mutex.up_read()
    if err:
        body = xsw.XSD_ERROR_BY_ERRNO.get(-err, "EIO").encode() + b"\0"
    path = payload.split(b"\0")[0].decode("utf-8", "replace")
    what = f"{_tname(mtype)} {path}".rstrip() + (f" tx {tx_id}" if tx_id else "")
    _log_request(kernel, "xenbus_dev_request_and_reply", what, _reply_summary(rtype, body))
    return rtype, body


# The xenbus_* helpers and the XenStore wrapper live in xs_api.py (imported last: it calls back here).
from xenlab.linux.xenbus.xs_api import *  # noqa: E402,F403

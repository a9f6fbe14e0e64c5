"""drivers/xen/xenbus/xenbus_comms.c, Linux 6.1: the guest's side of the store ring, the "xenbus" thread.

Theory of operation
-------------------
The store page holds two 1024-byte byte queues: ``req`` (guest -> xenstored) and ``rsp``
(xenstored -> guest), each with a free-running uint32 producer and consumer index.
``prod - cons`` (mod 2^32) is the number of bytes in flight; more than 1024 means a
corrupted ring, and the guest resets that ring's two indices to 0 and fails with -EIO.
``get_output_chunk`` / ``get_input_chunk`` return the largest contiguous piece, so a copy
that crosses the end of the buffer is split into two chunks.

Only the "xenbus" thread (``xenbus_thread``) touches the ring, and ``xb_write`` /
``xb_read`` never sleep: they return how many bytes moved. ``xb_write`` notifies only if
the consumer had caught up with the old producer (``prod <= req_cons``), ``xb_read`` only
if the ring had been full (``rsp_prod - cons >= 1024``). The thread sleeps on ``xb_waitq``
until there is something to read or a request queued on ``xb_write_list``; ``process_msg``
reads one message (header, then body, across as many wake-ups as it takes) and hands a
reply to the request with the same req_id on ``xs_reply_list``, a watch event to
``xs_watch_msg`` (xenbus_xs.c, passed in by ``xs_init``); ``process_writes`` writes the
first queued request, header then payload vectors.

``xb_init_comms`` checks the rings are quiescent (the request ring only complains, the
response ring is fixed up), starts "xenbus" and binds the store event channel to the
"xenbus" IRQ whose handler is ``wake_waiting``.
"""

from __future__ import annotations

import ctypes
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xenlab.abi import xs_wire as xsw
from xenlab.abi.errno import EINVAL, EIO, ENOENT
from xenlab.abi.xs_wire import MASK_XENSTORE_IDX, XENSTORE_RING_SIZE, xenstore_domain_interface
from xenlab.base.sched import Task, WaitQueue
from xenlab.linux.irq import IRQ_HANDLED
from xenlab.linux.kernel import KERN_ERR, KERN_WARNING
from xenlab.linux.locking import Mutex
from xenlab.linux.pvops.events_base import bind_evtchn_to_irqhandler, notify_remote_via_evtchn

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel

SRC = "drivers/xen/xenbus/xenbus_comms.c"
U32 = 0xFFFFFFFF
HDR = struct.Struct("<IIII")  # struct xsd_sockmsg: type, req_id, tx_id, len


_TNAMES = {int(m): m.name.removeprefix("XS_") for m in xsw.xsd_sockmsg_type}


def _tname(t: int) -> str:
    return _TNAMES.get(t) or str(t)


@dataclass(eq=False)
class xb_req_data:
    """struct xb_req_data: one queued request and, later, its reply; cb runs when the reply came."""

    type: int
    tx_id: int
    vec: list[bytes]
    wq: WaitQueue
    cb: Callable[[xb_req_data], None]
    user_req: bool = False
    req_id: int = 0
    caller_req_id: int = 0
    state: str = "queued"  # queued | wait_reply | got_reply | aborted
    reply_type: int = 0
    body: bytes = b""
    err: int = 0


@dataclass(eq=False)
class XbComms:
    """xenbus_comms.c's globals: the two lists, xb_waitq, the mutexes, the IRQ, the thread's statics."""

    xb_waitq: WaitQueue
    xb_write_mutex: Mutex
    xs_response_mutex: Mutex
    xs_reply_list: list[xb_req_data] = field(default_factory=list)
    xb_write_list: deque[xb_req_data] = field(default_factory=deque)
    xenbus_irq: int = 0
    xenbus_task: Task | None = None
    #: xs_watch_msg of xenbus_xs.c, which process_msg hands a WATCH_EVENT body to (set by xs_init)
    xs_watch_msg: Callable[[PvopsKernel, bytes], int] | None = None
    msg: dict[str, Any] = field(default_factory=dict)  # process_msg's static state
    wr: dict[str, Any] = field(default_factory=dict)  # process_writes' static state

    def queued(self, which: str) -> tuple[str, ...] | None:
        """xb_write_list or xs_reply_list as the trace records it ("<kernel>/xs_state"): each request's
        type and req_id, oldest first; None if empty."""
        reqs = self.xb_write_list if which == "xb_write_list" else self.xs_reply_list
        return tuple(f"{_tname(r.type)} req_id {r.req_id}" for r in reqs) or None


def new_comms(kernel: PvopsKernel) -> XbComms:
    """The statically initialised globals (LIST_HEAD, DECLARE_WAIT_QUEUE_HEAD, DEFINE_MUTEX); the
    mutexes record on "<kernel>/locks"."""
    s, n = kernel.sched, kernel.name
    kw = {"trace": kernel.trace, "table": kernel.table("locks"), "source": kernel.MUTEX_SOURCE}
    return XbComms(WaitQueue(f"{n}:xb_waitq"), Mutex(s, f"{n}:xb_write_mutex", **kw),
                   Mutex(s, f"{n}:xs_response_mutex", **kw))


def _lists(kernel: PvopsKernel, before: dict[str, tuple[str, ...] | None]) -> list[tuple[str, str, Any, Any]]:
    """The "<kernel>/xs_state" rows of the two request lists that changed since *before*."""
    c = kernel.comms
    return [(kernel.table("xs_state"), k, v, c.queued(k)) for k, v in before.items() if c.queued(k) != v]


def list_state(kernel: PvopsKernel) -> dict[str, tuple[str, ...] | None]:
    """Both request lists as the trace records them, for a _lists() after a change."""
    c = kernel.comms
    return {"xb_write_list": c.queued("xb_write_list"), "xs_reply_list": c.queued("xs_reply_list")}


def _intf(kernel: PvopsKernel) -> xenstore_domain_interface:
    intf = kernel.xb.xen_store_interface
    if intf is None:
        raise RuntimeError(f"{kernel.name}: xen_store_interface is not set (no store page mapped yet)")
    return intf


def ring_indices(kernel: PvopsKernel) -> dict[str, int]:
    """The four ring indices as the guest sees them now."""
    i = _intf(kernel)
    return {"req_cons": i.req_cons, "req_prod": i.req_prod, "rsp_cons": i.rsp_cons, "rsp_prod": i.rsp_prod}


def _rec(kernel: PvopsKernel, function: str, summary: str, before: dict[str, int] | None = None,
         printk: str | None = None) -> None:
    changes = []
    if before is not None:
        after = ring_indices(kernel)
        table = kernel.table("ring")
        changes = [(table, k, before[k], after[k]) for k in ("req_cons", "req_prod", "rsp_cons", "rsp_prod")
                   if before[k] != after[k]]
    kernel.record(function, summary, SRC, changes=changes, printk=printk)


def _warn(kernel: PvopsKernel, text: str) -> None:
    msg = "xenbus: " + text
    kernel.printk(KERN_WARNING, msg)
    kernel.record("printk", msg, SRC, printk=msg)


def wake_waiting(kernel: PvopsKernel, irq: int, dev_id: Any) -> int:
    """wake_waiting: the store IRQ handler: wake everyone on xb_waitq."""
    kernel.sched.wake_up(kernel.comms.xb_waitq)
    return IRQ_HANDLED


def check_indexes(cons: int, prod: int) -> bool:
    """check_indexes: true if prod - cons (uint32) <= XENSTORE_RING_SIZE."""
    return ((prod - cons) & U32) <= XENSTORE_RING_SIZE


def get_output_chunk(cons: int, prod: int) -> tuple[int, int]:
    """get_output_chunk: (offset, length) of the free space after prod, up to the ring's end."""
    length = XENSTORE_RING_SIZE - MASK_XENSTORE_IDX(prod)
    free = XENSTORE_RING_SIZE - ((prod - cons) & U32)
    return MASK_XENSTORE_IDX(prod), min(length, free)


def get_input_chunk(cons: int, prod: int) -> tuple[int, int]:
    """get_input_chunk: (offset, length) of the unread bytes after cons, up to the ring's end."""
    length = XENSTORE_RING_SIZE - MASK_XENSTORE_IDX(cons)
    return MASK_XENSTORE_IDX(cons), min(length, (prod - cons) & U32)


def xb_ring_full(kernel: PvopsKernel) -> bool:
    """The request ring holds XENSTORE_RING_SIZE bytes (nothing can be written now)."""
    i = _intf(kernel)
    return ((i.req_prod - i.req_cons) & U32) == XENSTORE_RING_SIZE


def xb_data_to_write(kernel: PvopsKernel) -> bool:
    """xb_data_to_write: room in the request ring and a request queued."""
    return not xb_ring_full(kernel) and bool(kernel.comms.xb_write_list)


def _copy_in(intf: xenstore_domain_interface, off: int, data: bytes) -> None:
    ctypes.memmove(ctypes.addressof(intf) + xenstore_domain_interface.req.offset + off, data, len(data))


def _copy_out(intf: xenstore_domain_interface, off: int, n: int) -> bytes:
    return ctypes.string_at(ctypes.addressof(intf) + xenstore_domain_interface.rsp.offset + off, n)


def xb_write(kernel: PvopsKernel, data: bytes) -> int:
    """xb_write: copy into the request ring chunk by chunk; the bytes written (short if it filled) or -EIO."""
    intf = _intf(kernel)
    done = 0
    data = bytes(data)
    while done < len(data):
        cons, prod = intf.req_cons, intf.req_prod
        tracing = kernel.trace.enabled
        before = ring_indices(kernel) if tracing else None
        if not check_indexes(cons, prod):
            intf.req_cons = intf.req_prod = 0
            _rec(kernel, "xb_write", f"bad request indices cons={cons:#010x} prod={prod:#010x}: "
                 "both reset to 0, -EIO", before)
            return -EIO
        if ((prod - cons) & U32) == XENSTORE_RING_SIZE:
            _rec(kernel, "xb_write", f"request ring full: {done} of {len(data)} bytes written, "
                 "the rest waits for xenstored")
            return done
        off, avail = get_output_chunk(cons, prod)
        if avail == 0:
            continue
        avail = min(avail, len(data) - done)
        _copy_in(intf, off, data[done:done + avail])
        done += avail
        intf.req_prod = (prod + avail) & U32
        notify = prod <= intf.req_cons
        if tracing:
            why = "xenstored had caught up" if notify else "xenstored still has unread bytes: no kick"
            _rec(kernel, "xb_write", f"copied {avail} bytes to req[{off}..{off + avail}); "
                 f"req_prod {prod} -> {intf.req_prod}; notify: {'yes' if notify else 'no'} ({why})", before)
        if notify:
            notify_remote_via_evtchn(kernel, kernel.xb.xen_store_evtchn)
    return done


def xb_data_to_read(kernel: PvopsKernel) -> bool:
    """xb_data_to_read: rsp_cons != rsp_prod."""
    i = _intf(kernel)
    return i.rsp_cons != i.rsp_prod


def xb_read(kernel: PvopsKernel, n: int) -> bytes | int:
    """xb_read: the bytes available now (maybe fewer than *n*) or -EIO; notifies only if the ring was full."""
    intf = _intf(kernel)
    out = bytearray()
    while len(out) < n:
        cons, prod = intf.rsp_cons, intf.rsp_prod
        if cons == prod:
            break
        tracing = kernel.trace.enabled
        before = ring_indices(kernel) if tracing else None
        if not check_indexes(cons, prod):
            intf.rsp_cons = intf.rsp_prod = 0
            _rec(kernel, "xb_read", f"bad response indices cons={cons:#010x} prod={prod:#010x}: "
                 "both reset to 0, -EIO", before)
            return -EIO
        off, avail = get_input_chunk(cons, prod)
        if avail == 0:
            continue
        avail = min(avail, n - len(out))
        out += _copy_out(intf, off, avail)
        intf.rsp_cons = (cons + avail) & U32
        notify = ((intf.rsp_prod - cons) & U32) >= XENSTORE_RING_SIZE
        if tracing:
            why = "the ring had been full" if notify else "the ring was not full: no kick"
            _rec(kernel, "xb_read", f"copied {avail} bytes from rsp[{off}..{off + avail}); "
                 f"rsp_cons {cons} -> {intf.rsp_cons}; notify: {'yes' if notify else 'no'} ({why})", before)
        if notify:
            notify_remote_via_evtchn(kernel, kernel.xb.xen_store_evtchn)
    return bytes(out)


def process_msg(kernel: PvopsKernel) -> int:
    """process_msg: read (part of) one message; a whole reply goes to its request, a watch event on."""
    c = kernel.comms
    m = c.msg
    if not m.get("in_msg"):
        m.update(in_msg=True, in_hdr=True, hdr=b"", body=b"")
        c.xs_response_mutex.lock()
        if not xb_data_to_read(kernel):  # raced with save/restore: pending data 'gone'
            c.xs_response_mutex.unlock()
            m["in_msg"] = False
            return 0
    err = 0
    if m["in_hdr"]:
        got = xb_read(kernel, HDR.size - len(m["hdr"]))
        if isinstance(got, int):
            return _msg_out(c, got)
        m["hdr"] += got
        if len(m["hdr"]) != HDR.size:
            return 0
        m["type"], m["req_id"], _, m["len"] = HDR.unpack(m["hdr"])
        if m["len"] > xsw.XENSTORE_PAYLOAD_MAX:
            return _msg_out(c, -EINVAL)
        m["in_hdr"] = False
    got = xb_read(kernel, m["len"] - len(m["body"]))
    if isinstance(got, int):
        return _msg_out(c, got)
    m["body"] += got
    if len(m["body"]) != m["len"]:
        return 0
    if m["type"] == xsw.XS_WATCH_EVENT:
        assert c.xs_watch_msg is not None, "xs_init hands process_msg xs_watch_msg"
        err = c.xs_watch_msg(kernel, m["body"])
    else:
        req = next((r for r in c.xs_reply_list if r.req_id == m["req_id"]), None)
        if req is None:
            kernel.record("process_msg", f"{_tname(m['type'])} reply req_id {m['req_id']}: no such request",
                          SRC)
            return _msg_out(c, -ENOENT)
        before = list_state(kernel)
        c.xs_reply_list.remove(req)
        kernel.record("process_msg", f"{_tname(m['type'])} reply req_id {m['req_id']} ({m['len']} bytes) "
                      "matched", SRC, changes=_lists(kernel, before))
        if req.state == "wait_reply":
            req.req_id = req.caller_req_id
            req.reply_type, req.body, req.state = m["type"], m["body"], "got_reply"
            req.cb(req)
    return _msg_out(c, err)


def _msg_out(c: XbComms, err: int) -> int:
    c.xs_response_mutex.unlock()
    c.msg["in_msg"] = False
    return err


def process_writes(kernel: PvopsKernel) -> int:
    """process_writes: write the first queued request, header then vectors; then it waits for its reply."""
    c = kernel.comms
    if not xb_data_to_write(kernel):
        return 0
    c.xb_write_mutex.lock()
    w = c.wr
    if w.get("req") is None:
        w.update(req=c.xb_write_list[0], idx=-1, written=0)
    req: xb_req_data = w["req"]
    err = 0
    if req.state != "aborted":
        while w["idx"] < len(req.vec):
            base = (HDR.pack(req.type, req.req_id, req.tx_id, sum(map(len, req.vec))) if w["idx"] < 0
                    else req.vec[w["idx"]])
            err = xb_write(kernel, base[w["written"]:])
            if err < 0:
                break
            w["written"] += err
            if w["written"] != len(base):
                c.xb_write_mutex.unlock()
                return 0
            w["idx"] += 1
            w["written"] = 0
        else:
            before = list_state(kernel)
            c.xb_write_list.remove(req)
            req.state = "wait_reply"
            c.xs_reply_list.append(req)
            kernel.record("process_writes", f"{_tname(req.type)} req_id {req.req_id} written: waits on "
                          "xs_reply_list", SRC, changes=_lists(kernel, before))
            w["req"] = None
            c.xb_write_mutex.unlock()
            return 0
    # out_err: the request fails with the write error (or was abandoned by its caller)
    req.reply_type, req.err = xsw.XS_ERROR, err
    before = list_state(kernel)
    c.xb_write_list.remove(req)
    kernel.record("process_writes", f"{_tname(req.type)} req_id {req.req_id} "
                  + ("abandoned by its caller" if req.state == "aborted" else f"failed: {err}"), SRC,
                  changes=_lists(kernel, before))
    if req.state != "aborted":
        req.state = "got_reply"
        req.cb(req)
    c.xb_write_mutex.unlock()
    w["req"] = None
    return err


def xb_thread_work(kernel: PvopsKernel) -> bool:
    """xb_thread_work: something to read, or a request to write."""
    return xb_data_to_read(kernel) or xb_data_to_write(kernel)


def xenbus_thread(kernel: PvopsKernel) -> None:
    """One turn of xenbus_thread's for(;;) loop: read a message, write a request.

    Between turns the thread sleeps on xb_waitq until xb_thread_work() (xb_init_comms passes that wait
    to kthread_run)."""
    err = process_msg(kernel)
    if err:
        _warn(kernel, f"error {err} while reading message")
    err = process_writes(kernel)
    if err:
        _warn(kernel, f"error {err} while writing message")


def xb_init_comms(kernel: PvopsKernel) -> int:
    """xb_init_comms: check both rings are quiescent, start "xenbus", bind the store port to "xenbus"."""
    intf = _intf(kernel)
    c = kernel.comms
    xb = kernel.xb
    if intf.req_prod != intf.req_cons:
        msg = f"xenbus: request ring is not quiescent ({intf.req_cons:08x}:{intf.req_prod:08x})!"
        kernel.printk(KERN_ERR, msg)
        _rec(kernel, "xb_init_comms", "request ring not quiescent: reported only, indices left as they are",
             printk=msg)
    if intf.rsp_prod != intf.rsp_cons:
        msg = f"xenbus: response ring is not quiescent ({intf.rsp_cons:08x}:{intf.rsp_prod:08x}): fixing up"
        kernel.printk(KERN_WARNING, msg)
        before = ring_indices(kernel)
        if not kernel.reset_devices:
            intf.rsp_cons = intf.rsp_prod
            _rec(kernel, "xb_init_comms", "response ring not quiescent: rsp_cons = rsp_prod (stale bytes "
                 "skipped)", before, printk=msg)
        else:
            _rec(kernel, "xb_init_comms", "response ring not quiescent: left alone (reset_devices)",
                 printk=msg)
    if c.xenbus_irq:
        kernel.record("rebind_evtchn_irq", f"resume: port {xb.xen_store_evtchn} rebound to irq "
                      f"{c.xenbus_irq}", SRC)
        return 0

    def handler(irq: int, dev_id: Any) -> int:
        return wake_waiting(kernel, irq, dev_id)

    handler.__name__ = handler.__qualname__ = "wake_waiting"
    err = bind_evtchn_to_irqhandler(kernel, xb.xen_store_evtchn, handler, 0, "xenbus", c.xb_waitq)
    if err < 0:
        msg = f"xenbus: request irq failed {err}"
        kernel.printk(KERN_ERR, msg)
        kernel.record("xb_init_comms", f"binding port {xb.xen_store_evtchn} failed: {err}", SRC, printk=msg)
        return err
    c.xenbus_irq = err
    kernel.record("xb_init_comms", f"store port {xb.xen_store_evtchn} bound to irq {err} \"xenbus\" "
                  "(handler wake_waiting)", SRC,
                  changes=[(kernel.table("xenbus"), "xenbus_irq", 0, err)])
    if c.xenbus_task is None:
        # reads and writes never sleep here: the thread may run inside any wait
        c.xenbus_task = kernel.sched.kthread_run(xenbus_thread, "xenbus", kernel, owner=kernel.name,
                                                 wait=(c.xb_waitq, lambda: xb_thread_work(kernel)),
                                                 nests=True)
        kernel.record("kthread_run", f"xenbus (pid {c.xenbus_task.pid})", SRC)
    return 0

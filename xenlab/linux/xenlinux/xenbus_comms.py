"""drivers/xen/xenbus/xenbus_comms.c, XenLinux 2.6.18: the guest's side of the xenstore ring.

Theory of operation
-------------------
The store page holds two 1024-byte byte queues: ``req`` (guest -> xenstored) and ``rsp``
(xenstored -> guest), each with a free-running uint32 producer and consumer index.
``prod - cons`` (mod 2^32) is the number of bytes in flight; more than 1024 means a
corrupted ring, and the guest resets that ring's two indices to 0 and fails with -EIO.
``get_output_chunk`` / ``get_input_chunk`` return the largest contiguous piece, so a copy
that crosses the end of the buffer is split into two chunks.

``xb_write`` is called by the requesting thread itself (under xs_talkv's request_mutex),
sleeps on ``xb_waitq`` while the ring is full and notifies after every chunk; ``xb_read``
sleeps until data arrives and notifies after every chunk. ``xb_init_comms`` checks the
rings are quiescent (the request ring only complains, the response ring is fixed up)
and binds the store event channel with ``bind_caller_port_to_irqhandler`` as IRQ
"xenbus", whose handler ``wake_waiting`` marks xenstored ready on the first interrupt
(scheduling ``probe_work``, i.e. xenbus_probe) and wakes ``xb_waitq``.

``XenbusGlobals`` (``kernel.xb``) holds the file-scope variables of this file and of
xenbus_probe.c that it shares through xenbus_comms.h: xen_store_evtchn,
xen_store_interface, xen_store_mfn, xenstored_ready, xenbus_irq, xb_waitq, probe_work.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xenlab.abi.errno import EIO
from xenlab.abi.xs_wire import MASK_XENSTORE_IDX, XENSTORE_RING_SIZE, xenstore_domain_interface
from xenlab.base.sched import WaitQueue
from xenlab.linux.irq import IRQ_HANDLED
from xenlab.linux.kernel import KERN_ERR, KERN_WARNING, ChangeRow
from xenlab.linux.xenlinux.evtchn import (
    bind_caller_port_to_irqhandler,
    notify_remote_via_evtchn,
    unbind_from_irqhandler,
)

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel
    from xenlab.xen.memory import Page

SRC = "drivers/xen/xenbus/xenbus_comms.c"
U32 = 0xFFFFFFFF


@dataclass(eq=False)
class XenbusGlobals:
    """xen_store_evtchn, xen_store_mfn, xen_store_interface, xenstored_ready (xenbus_probe.c);
    xenbus_irq, xb_waitq, probe_work (xenbus_comms.c)."""

    xb_waitq: WaitQueue
    xen_store_evtchn: int = 0
    xen_store_mfn: int = 0
    xen_store_page: Page | None = None  # the page holding the ring
    xen_store_interface: xenstore_domain_interface | None = None  # laid over that page
    xenstored_ready: int = 0
    xenbus_irq: int = 0
    probe_work: Callable[[], None] | None = None  # DECLARE_WORK(probe_work, xenbus_probe)
    #: where probe_work is (the "<kernel>/work" row): idle, queued, running, done
    probe_work_state: str = "idle"
    #: the store page's (virt, phys, pfn, mfn) as xen_store_interface reaches it ("<kernel>/store_page")
    store_chain: tuple[tuple[str, int], ...] = ()


def store_interface(buf: Any) -> xenstore_domain_interface:
    """The xenstore_domain_interface laid over a writable 4096-byte buffer (a Page's .buf)."""
    return xenstore_domain_interface.from_buffer(buf)


def _intf(kernel: XenLinuxKernel) -> xenstore_domain_interface:
    intf = kernel.xb.xen_store_interface
    if intf is None:
        raise RuntimeError(f"{kernel.name}: xen_store_interface is not set (no store page mapped yet)")
    return intf


def ring_indices(kernel: XenLinuxKernel) -> dict[str, int]:
    """The four ring indices as the guest sees them now."""
    i = _intf(kernel)
    return {"req_cons": i.req_cons, "req_prod": i.req_prod, "rsp_cons": i.rsp_cons, "rsp_prod": i.rsp_prod}


def _rec(kernel: XenLinuxKernel, function: str, summary: str, before: dict[str, int] | None = None,
         printk: str | None = None) -> None:
    """One step of this file, with the ring indices that changed since *before*."""
    changes: list[ChangeRow] = []
    if before is not None:
        after = ring_indices(kernel)
        changes = [(kernel.table("ring"), k, before[k], after[k])
                   for k in ("req_cons", "req_prod", "rsp_cons", "rsp_prod") if before[k] != after[k]]
    kernel.record(function, summary, SRC, changes=changes, printk=printk)


# -- the interrupt ---------------------------------------------------------------------------
def wake_waiting(kernel: XenLinuxKernel, irq: int, dev_id: Any) -> int:
    """wake_waiting: the store IRQ handler; the first one marks xenstored ready and queues probe_work."""
    xb = kernel.xb
    if xb.xenstored_ready == 0:
        xb.xenstored_ready = 1
        kernel.record("wake_waiting", f"irq {irq}: first store interrupt: xenstored_ready = 1, "
                      "schedule_work(&probe_work)", SRC,
                      changes=[(kernel.table("xenbus"), "xenstored_ready", 0, 1)])
        if xb.probe_work is not None:
            xb.probe_work()
    kernel.sched.wake_up(xb.xb_waitq)
    return IRQ_HANDLED


# -- index arithmetic ------------------------------------------------------------------------
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


def _req_full(kernel: XenLinuxKernel) -> bool:
    """(intf->req_prod - intf->req_cons) == XENSTORE_RING_SIZE: xb_write's wait condition, negated."""
    i = _intf(kernel)
    return ((i.req_prod - i.req_cons) & U32) == XENSTORE_RING_SIZE


# -- writer and reader -------------------------------------------------------------------------
def _copy_in(intf: xenstore_domain_interface, off: int, data: bytes) -> None:
    ctypes.memmove(ctypes.addressof(intf) + xenstore_domain_interface.req.offset + off, data, len(data))


def _copy_out(intf: xenstore_domain_interface, off: int, n: int) -> bytes:
    return ctypes.string_at(ctypes.addressof(intf) + xenstore_domain_interface.rsp.offset + off, n)


def xb_write(kernel: XenLinuxKernel, data: bytes) -> int:
    """xb_write: copy data into the request ring chunk by chunk, sleeping while it is full; 0 or -EIO."""
    intf = _intf(kernel)
    done = 0
    data = bytes(data)
    while done < len(data):
        kernel.sched.wait_event(kernel.xb.xb_waitq, lambda: not _req_full(kernel))
        cons, prod = intf.req_cons, intf.req_prod
        tracing = kernel.trace.enabled
        before = ring_indices(kernel) if tracing else None
        if not check_indexes(cons, prod):
            intf.req_cons = intf.req_prod = 0
            _rec(kernel, "xb_write", f"bad request indices cons={cons:#010x} prod={prod:#010x}: "
                 "both reset to 0, -EIO", before)
            return -EIO
        off, avail = get_output_chunk(cons, prod)
        if avail == 0:
            continue
        avail = min(avail, len(data) - done)
        _copy_in(intf, off, data[done:done + avail])
        done += avail
        intf.req_prod = (prod + avail) & U32
        if tracing:
            _rec(kernel, "xb_write", f"copied {avail} bytes to req[{off}..{off + avail}); "
                 f"req_prod {prod} -> {intf.req_prod}; notify: yes (after every chunk)", before)
        notify_remote_via_evtchn(kernel, kernel.xb.xen_store_evtchn)
    return 0


def xb_data_to_read(kernel: XenLinuxKernel) -> bool:
    """xb_data_to_read: rsp_cons != rsp_prod."""
    i = _intf(kernel)
    return i.rsp_cons != i.rsp_prod


def xb_wait_for_data_to_read(kernel: XenLinuxKernel) -> int:
    """xb_wait_for_data_to_read: sleep on xb_waitq until the response ring has bytes."""
    kernel.sched.wait_event(kernel.xb.xb_waitq, lambda: xb_data_to_read(kernel))
    return 0


def xb_read(kernel: XenLinuxKernel, n: int) -> bytes | int:
    """xb_read: copy *n* bytes out of the response ring chunk by chunk, sleeping until they came;
    the bytes, or -EIO."""
    intf = _intf(kernel)
    out = bytearray()
    while len(out) < n:
        xb_wait_for_data_to_read(kernel)
        cons, prod = intf.rsp_cons, intf.rsp_prod
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
        if tracing:
            _rec(kernel, "xb_read", f"copied {avail} bytes from rsp[{off}..{off + avail}); "
                 f"rsp_cons {cons} -> {intf.rsp_cons}; notify: yes (after every chunk)", before)
        notify_remote_via_evtchn(kernel, kernel.xb.xen_store_evtchn)
    return bytes(out)


# -- init ----------------------------------------------------------------------------------------
def xb_init_comms(kernel: XenLinuxKernel) -> int:
    """xb_init_comms: check both rings are quiescent, then bind the store port to "xenbus"."""
    intf = _intf(kernel)
    xb = kernel.xb
    if intf.req_prod != intf.req_cons:
        msg = f"XENBUS request ring is not quiescent ({intf.req_cons:08x}:{intf.req_prod:08x})!"
        kernel.printk(KERN_ERR, msg)
        _rec(kernel, "xb_init_comms", "request ring not quiescent: reported only, indices left as they are",
             printk=msg)
    if intf.rsp_prod != intf.rsp_cons:
        msg = f"XENBUS response ring is not quiescent ({intf.rsp_cons:08x}:{intf.rsp_prod:08x}): fixing up"
        kernel.printk(KERN_WARNING, msg)
        before = ring_indices(kernel)
        intf.rsp_cons = intf.rsp_prod
        _rec(kernel, "xb_init_comms",
             "response ring not quiescent: rsp_cons = rsp_prod (stale bytes skipped)", before, printk=msg)
    if xb.xenbus_irq:
        unbind_from_irqhandler(kernel, xb.xenbus_irq, xb.xb_waitq)
        xb.xenbus_irq = 0

    def handler(irq: int, dev_id: Any) -> int:
        return wake_waiting(kernel, irq, dev_id)

    handler.__name__ = handler.__qualname__ = "wake_waiting"
    err = bind_caller_port_to_irqhandler(kernel, xb.xen_store_evtchn, handler, 0, "xenbus", xb.xb_waitq)
    if err <= 0:
        msg = f"XENBUS request irq failed {err}"
        kernel.printk(KERN_ERR, msg)
        kernel.record("xb_init_comms", f"binding port {xb.xen_store_evtchn} failed: {err}", SRC, printk=msg)
        return err
    xb.xenbus_irq = err
    kernel.record("xb_init_comms", f"store port {xb.xen_store_evtchn} bound to irq {err} \"xenbus\" "
                  "(handler wake_waiting)", SRC, changes=[(kernel.table("xenbus"), "xenbus_irq", 0, err)])
    return 0

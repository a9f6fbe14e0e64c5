"""The guest's side of the xenstore ring (drivers/xen/xenbus/xenbus_comms.c).

Theory of operation
-------------------
The store page holds two 1024-byte byte queues: ``req`` (guest -> xenstored) and ``rsp``
(xenstored -> guest), each with a free-running uint32 producer and consumer index.
``prod - cons`` (mod 2^32) is the number of bytes in flight; more than 1024 means a
corrupted ring, and the guest resets that ring's two indices to 0 and fails with -EIO.
``get_output_chunk`` / ``get_input_chunk`` return the largest contiguous piece, so a copy
that crosses the end of the buffer is split into two chunks.

The two flavours differ in who writes and when they kick the event channel:

* 2.6.18: ``xb_write`` is called by the requesting thread, sleeps on ``xb_waitq`` while
  the ring is full and notifies after every chunk; ``xb_read`` sleeps until data arrives
  and notifies after every chunk.
* modern (6.1/6.12): only the "xenbus" thread calls them and they never sleep (they
  return how many bytes moved); ``xb_write`` notifies only if the consumer had caught up
  with the old producer (``prod <= req_cons``), ``xb_read`` only if the ring had been
  full (``rsp_prod - cons >= 1024``).

``xb_init_comms`` checks the rings are quiescent (the request ring only complains, the
response ring is fixed up) and binds the store event channel to the "xenbus" IRQ whose
handler is ``wake_waiting``. The binding and the notify go through the IRQ layer
(xenlab.linux.evtchn for 2.6.18, xenlab.linux.events for modern) in ``_bind_store_irq``
and ``_notify``, the only two places this file touches it.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

from xenlab.abi.errno import EIO
from xenlab.abi.xs_wire import (
    MASK_XENSTORE_IDX,
    XENSTORE_RING_SIZE,
    xenstore_domain_interface,
)
from xenlab.base.sched import WaitQueue
from xenlab.linux.kernel import KERN_ERR, KERN_WARNING
from xenlab.linux.xenbus.globals import xb_globals

SRC = "drivers/xen/xenbus/xenbus_comms.c"
U32 = 0xFFFFFFFF
IRQ_HANDLED = 1


# -- shared state ------------------------------------------------------------------------
def xb_waitq(kernel: Any) -> WaitQueue:
    """xb_waitq: the wait queue every store interrupt wakes (shared with xenbus_probe.c's users)."""
    xb = xb_globals(kernel)
    wq = getattr(xb, "xb_waitq", None)
    if wq is None:
        wq = WaitQueue(f"{kernel.name}:xb_waitq")
        xb.xb_waitq = wq
    return wq


def _intf(kernel: Any) -> xenstore_domain_interface:
    intf = xb_globals(kernel).xen_store_interface
    if intf is None:
        raise RuntimeError(f"{kernel.name}: xen_store_interface is not set (no store page mapped yet)")
    return intf


def store_interface(buf: Any) -> xenstore_domain_interface:
    """The xenstore_domain_interface laid over a writable 4096-byte buffer (a Page's .buf)."""
    return xenstore_domain_interface.from_buffer(buf)


def ring_indices(kernel: Any) -> dict[str, int]:
    """The four ring indices as the guest sees them now."""
    i = _intf(kernel)
    return {"req_cons": i.req_cons, "req_prod": i.req_prod, "rsp_cons": i.rsp_cons, "rsp_prod": i.rsp_prod}


def _rec(kernel: Any, function: str, summary: str, before: dict[str, int] | None = None,
         printk: str | None = None) -> None:
    changes = []
    if before is not None:
        after = ring_indices(kernel)
        table = f"{kernel.name}/ring"
        changes = [(table, k, before[k], after[k]) for k in ("req_cons", "req_prod", "rsp_cons", "rsp_prod")
                   if before[k] != after[k]]
    kernel.record(function, summary, SRC, changes=changes, printk=printk)


# -- index arithmetic ------------------------------------------------------------------------
def check_indexes(cons: int, prod: int) -> bool:
    """check_indexes: true if prod - cons (uint32) <= XENSTORE_RING_SIZE (xenbus_comms.c)."""
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


def xb_data_to_read(kernel: Any) -> bool:
    """xb_data_to_read: rsp_cons != rsp_prod (xenbus_comms.c)."""
    i = _intf(kernel)
    return i.rsp_cons != i.rsp_prod


def xb_ring_full(kernel: Any) -> bool:
    """The request ring holds XENSTORE_RING_SIZE bytes: a writer must wait."""
    i = _intf(kernel)
    return ((i.req_prod - i.req_cons) & U32) == XENSTORE_RING_SIZE


# -- the IRQ-layer seams -----------------------------------------------------------------
def _notify(kernel: Any) -> int:
    """notify_remote_via_evtchn(xen_store_evtchn): EVTCHNOP_send on the store port."""
    port = xb_globals(kernel).xen_store_evtchn
    if getattr(kernel, "irq", None) is not None:
        if kernel.flavour == "2.6.18":
            from xenlab.linux.evtchn import notify_remote_via_evtchn
        else:
            from xenlab.linux.events import notify_remote_via_evtchn
        return int(notify_remote_via_evtchn(kernel, port))
    return int(kernel.hv.evtchn_send(kernel.domid, port))


def _bind_store_irq(kernel: Any, handler: Callable[[int, Any], int], dev_id: Any) -> int:
    """Bind xen_store_evtchn to an IRQ named "xenbus" with *handler*: the IRQ, or -errno.

    2.6.18 uses bind_caller_port_to_irqhandler (drivers/xen/core/evtchn.c), modern
    bind_evtchn_to_irqhandler (drivers/xen/events/events_base.c).
    """
    port = xb_globals(kernel).xen_store_evtchn
    if kernel.flavour == "2.6.18":
        from xenlab.linux.evtchn import bind_caller_port_to_irqhandler
        return int(bind_caller_port_to_irqhandler(kernel, port, handler, 0, "xenbus", dev_id))
    from xenlab.linux.events import bind_evtchn_to_irqhandler
    return int(bind_evtchn_to_irqhandler(kernel, port, handler, 0, "xenbus", dev_id))


def _unbind_store_irq(kernel: Any, irq: int, dev_id: Any) -> None:
    """unbind_from_irqhandler(xenbus_irq, &xb_waitq) (2.6.18 re-init; modern xb_deinit_comms)."""
    if kernel.flavour == "2.6.18":
        from xenlab.linux.evtchn import unbind_from_irqhandler
    else:
        from xenlab.linux.events import unbind_from_irqhandler  # type: ignore[attr-defined,no-redef]
    unbind_from_irqhandler(kernel, irq, dev_id)


# -- writer and reader -------------------------------------------------------------------------
def _copy_in(intf: xenstore_domain_interface, off: int, data: bytes) -> None:
    ctypes.memmove(ctypes.addressof(intf) + xenstore_domain_interface.req.offset + off, data, len(data))


def _copy_out(intf: xenstore_domain_interface, off: int, n: int) -> bytes:
    return ctypes.string_at(ctypes.addressof(intf) + xenstore_domain_interface.rsp.offset + off, n)


def xb_write(kernel: Any, data: bytes) -> int:
    """xb_write: copy data into the request ring chunk by chunk (xenbus_comms.c).

    2.6.18: sleeps while the ring is full, notifies after every chunk; 0 or -EIO.
    modern: never sleeps; returns the bytes written (short if the ring filled) or -EIO.
    """
    intf = _intf(kernel)
    old = kernel.flavour == "2.6.18"
    done = 0
    data = bytes(data)
    while done < len(data):
        if old:
            kernel.sched.wait_event(xb_waitq(kernel), lambda: not xb_ring_full(kernel))
        cons, prod = intf.req_cons, intf.req_prod
        tracing = kernel.trace.enabled
        before = ring_indices(kernel) if tracing else None
        if not check_indexes(cons, prod):
            intf.req_cons = intf.req_prod = 0
            _rec(kernel, "xb_write", f"bad request indices cons={cons:#010x} prod={prod:#010x}: "
                 "both reset to 0, -EIO", before)
            return -EIO
        if not old and ((prod - cons) & U32) == XENSTORE_RING_SIZE:
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
        notify = old or prod <= intf.req_cons
        if tracing:
            why = "after every chunk" if old else ("xenstored had caught up" if notify
                                                  else "xenstored still has unread bytes: no kick")
            _rec(kernel, "xb_write", f"copied {avail} bytes to req[{off}..{off + avail}); "
                 f"req_prod {prod} -> {intf.req_prod}; notify: {'yes' if notify else 'no'} ({why})", before)
        if notify:
            _notify(kernel)
    return 0 if old else done


def xb_read(kernel: Any, n: int) -> bytes | int:
    """xb_read: copy bytes out of the response ring chunk by chunk (xenbus_comms.c).

    2.6.18: sleeps until all *n* bytes came, notifies after every chunk; the bytes or -EIO.
    modern: never sleeps; the bytes available now (maybe fewer than n) or -EIO; notifies only
    if the ring had been full.
    """
    intf = _intf(kernel)
    old = kernel.flavour == "2.6.18"
    out = bytearray()
    while len(out) < n:
        if old:
            kernel.sched.wait_event(xb_waitq(kernel), lambda: xb_data_to_read(kernel))
        cons, prod = intf.rsp_cons, intf.rsp_prod
        if not old and cons == prod:
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
        notify = old or ((intf.rsp_prod - cons) & U32) >= XENSTORE_RING_SIZE
        if tracing:
            why = "after every chunk" if old else ("the ring had been full" if notify
                                                  else "the ring was not full: no kick")
            _rec(kernel, "xb_read", f"copied {avail} bytes from rsp[{off}..{off + avail}); "
                 f"rsp_cons {cons} -> {intf.rsp_cons}; notify: {'yes' if notify else 'no'} ({why})", before)
        if notify:
            _notify(kernel)
    return bytes(out)


# -- interrupt and init ------------------------------------------------------------------------
def wake_waiting(kernel: Any, irq: int, dev_id: Any) -> int:
    """wake_waiting: the store IRQ handler; 2.6.18 also marks xenstored ready and queues probe_work."""
    xb = xb_globals(kernel)
    if kernel.flavour == "2.6.18" and xb.xenstored_ready == 0:
        xb.xenstored_ready = 1
        kernel.record("wake_waiting", f"irq {irq}: first store interrupt: xenstored_ready = 1, "
                      "schedule_work(&probe_work)", SRC,
                      changes=[(f"{kernel.name}/xenbus", "xenstored_ready", 0, 1)])
        probe_work = getattr(xb, "probe_work", None)
        if probe_work is not None:
            probe_work()
    kernel.sched.wake_up(xb_waitq(kernel))
    return IRQ_HANDLED


def _handler(kernel: Any) -> Callable[[int, Any], int]:
    def handler(irq: int, dev_id: Any) -> int:
        return wake_waiting(kernel, irq, dev_id)

    handler.__name__ = handler.__qualname__ = "wake_waiting"
    return handler


def xb_init_comms(kernel: Any) -> int:
    """xb_init_comms: check both rings are quiescent, then bind the store port to "xenbus"."""
    intf = _intf(kernel)
    xb = xb_globals(kernel)
    old = kernel.flavour == "2.6.18"
    prefix = "XENBUS " if old else "xenbus: "
    if intf.req_prod != intf.req_cons:
        msg = f"{prefix}request ring is not quiescent ({intf.req_cons:08x}:{intf.req_prod:08x})!"
        kernel.printk(KERN_ERR, msg)
        _rec(kernel, "xb_init_comms", "request ring not quiescent: reported only, indices left as they are",
             printk=msg)
    if intf.rsp_prod != intf.rsp_cons:
        msg = f"{prefix}response ring is not quiescent ({intf.rsp_cons:08x}:{intf.rsp_prod:08x}): fixing up"
        kernel.printk(KERN_WARNING, msg)
        before = ring_indices(kernel)
        if old or not getattr(kernel, "reset_devices", False):
            intf.rsp_cons = intf.rsp_prod
            _rec(kernel, "xb_init_comms", "response ring not quiescent: rsp_cons = rsp_prod (stale bytes "
                 "skipped)", before, printk=msg)
        else:
            _rec(kernel, "xb_init_comms", "response ring not quiescent: left alone (reset_devices)",
                 printk=msg)
    wq = xb_waitq(kernel)
    if xb.xenbus_irq:
        if old:
            _unbind_store_irq(kernel, xb.xenbus_irq, wq)
            xb.xenbus_irq = 0
        else:
            kernel.record("rebind_evtchn_irq", f"resume: port {xb.xen_store_evtchn} rebound to irq "
                          f"{xb.xenbus_irq}", SRC)
            return 0
    err = _bind_store_irq(kernel, _handler(kernel), wq)
    failed = err <= 0 if old else err < 0  # 2.6.18 also treats IRQ 0 as a failure
    if failed:
        msg = f"{prefix}request irq failed {err}"
        kernel.printk(KERN_ERR, msg)
        kernel.record("xb_init_comms", f"binding port {xb.xen_store_evtchn} failed: {err}", SRC, printk=msg)
        return err
    xb.xenbus_irq = err
    kernel.record("xb_init_comms", f"store port {xb.xen_store_evtchn} bound to irq {err} \"xenbus\" "
                  "(handler wake_waiting)", SRC,
                  changes=[(f"{kernel.name}/xenbus", "xenbus_irq", 0, err)])
    if not old:
        from xenlab.linux.xenbus import xs  # the xenbus thread lives with the xs state
        xs.start_xenbus_thread(kernel)
    return 0

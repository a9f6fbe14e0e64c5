"""drivers/block/xen-blkback/blkback.c, Linux 6.1: blkback's per-ring kernel thread and its interrupt.

Theory of operation
-------------------
The ring's port is bound with ``bind_interdomain_evtchn_to_irqhandler_lateeoi``, so every
event leaves the port masked (the lateeoi chip's ack) until the driver says it is done.
``xen_blkif_be_int`` does not say so: it only sets ``waiting_reqs`` and wakes the ring's
thread. ``xen_blkif_schedule`` (one kthread per ring, named "<domid>.<dev>-<ring>",
started by ``xen_update_blkif_status`` once the backend is Connected) takes the work,
runs ``do_block_io_op`` and then sends the late EOI with ``xen_irq_lateeoi``, which
unmasks the port. The event Xen sets at bind time (bind_interdomain marks the new local
port pending) therefore stays masked until the thread's first pass -- on a real dom0 the
port is unmasked by the time anyone looks. The real thread also wakes every 100 ms to
purge persistent grants; the lab (no I/O) sleeps until kicked or stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xenlab.base.sched import Task, WaitQueue
from xenlab.linux.irq import IRQ_HANDLED
from xenlab.linux.pvops.events_base import XEN_EOI_FLAG_SPURIOUS, xen_irq_lateeoi

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel

SRC = "drivers/block/xen-blkback/blkback.c"


@dataclass(eq=False)
class xen_blkif_ring:
    """struct xen_blkif_ring: one mapped ring, the frontend's port, its IRQ and its thread."""

    ring_ref: int
    evtchn: int
    irq: int = 0
    waiting_reqs: bool = False
    wq: WaitQueue = field(default_factory=lambda: WaitQueue("blkif_wq"))
    xenblkd: Task | None = None
    eoi_flags: int = XEN_EOI_FLAG_SPURIOUS  # a local of xen_blkif_schedule, kept between turns


def xen_blkif_be_int(kernel: PvopsKernel, irq: int, ring: xen_blkif_ring) -> int:
    """xen_blkif_be_int -> blkif_notify_work: waiting_reqs = 1, wake the ring's thread (no EOI here)."""
    ring.waiting_reqs = True
    kernel.sched.wake_up(ring.wq)
    return IRQ_HANDLED


def do_block_io_op(kernel: PvopsKernel, ring: xen_blkif_ring) -> int:
    """do_block_io_op: consume the frontend's requests; the lab's frontends queue none (0: no more work)."""
    return 0


def xen_blkif_schedule(kernel: PvopsKernel, ring: xen_blkif_ring) -> None:
    """One turn of xen_blkif_schedule's loop (between turns it waits on ring->wq for waiting_reqs, until
    kthread_should_stop): do the work, then xen_irq_lateeoi once nothing is left."""
    do_eoi = ring.waiting_reqs
    ring.waiting_reqs = False
    if do_block_io_op(kernel, ring) > 0:
        ring.waiting_reqs = True
    if do_eoi and not ring.waiting_reqs:
        kernel.record("xen_blkif_schedule", f"ring {ring.ring_ref}: no requests left: late EOI of IRQ "
                      f"{ring.irq}", SRC)
        xen_irq_lateeoi(kernel, ring.irq, ring.eoi_flags)
        ring.eoi_flags |= XEN_EOI_FLAG_SPURIOUS

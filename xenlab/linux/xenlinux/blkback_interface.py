"""drivers/xen/blkback/interface.c, XenLinux 2.6.18: one blkif, its mapped ring and its IRQ.

``blkif_map`` maps the frontend's ring page and binds the frontend's port with
``bind_interdomain_evtchn_to_irqhandler`` as IRQ "blkif-backend" (handler
``blkif_be_int``, blkback.c); ``blkif_disconnect`` unbinds it (closing the port) and
unmaps the ring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xenlab.linux.xenlinux.blkback import blkif_be_int
from xenlab.linux.xenlinux.evtchn import bind_interdomain_evtchn_to_irqhandler, unbind_from_irqhandler
from xenlab.linux.xenlinux.xenbus_backend_client import xenbus_map_ring_valloc

if TYPE_CHECKING:
    from xenlab.linux.genhd import BlockDevice
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel
    from xenlab.linux.xenlinux.xenbus_probe import xenbus_device

SRC = "drivers/xen/blkback/interface.c"
BLKIF_PROTOCOL_NATIVE, BLKIF_PROTOCOL_X86_32, BLKIF_PROTOCOL_X86_64 = 1, 2, 3


@dataclass(eq=False)
class blkif_t:
    """blkif_t (common.h): the frontend's domain, the mapped ring, the port and IRQ, the vbd."""

    domid: int
    ring_ref: int = 0
    evtchn: int = 0
    irq: int = 0
    blk_protocol: int = BLKIF_PROTOCOL_NATIVE
    readonly: bool = False
    cdrom: bool = False
    bdev: BlockDevice | None = None  # vbd.bdev


def blkif_map(kernel: XenLinuxKernel, dev: xenbus_device, blkif: blkif_t, shared_page: int,
              evtchn: int) -> int:
    """blkif_map: map the ring page (grant ref *shared_page*), bind the port as "blkif-backend"."""
    if blkif.irq:
        return 0  # "Already connected through?"
    err = xenbus_map_ring_valloc(kernel, dev, [shared_page])
    if err:
        return err

    def blkif_be_int_cb(irq: int, dev_id: Any) -> int:
        return blkif_be_int(kernel, irq, dev_id)

    err = bind_interdomain_evtchn_to_irqhandler(kernel, blkif.domid, evtchn, blkif_be_int_cb, 0,
                                                "blkif-backend", blkif)
    if err < 0:
        return err
    blkif.ring_ref, blkif.evtchn, blkif.irq = shared_page, evtchn, err
    kernel.record("xen_blkif_map", f"{dev.nodename}: ring-ref {shared_page} mapped, remote port {evtchn} "
                  f"bound (IRQ {err})", SRC)
    return 0


def blkif_disconnect(kernel: XenLinuxKernel, dev: xenbus_device, blkif: blkif_t) -> None:
    """blkif_disconnect: unbind the IRQ (closing the port) and unmap the ring."""
    if blkif.irq:
        unbind_from_irqhandler(kernel, blkif.irq, blkif)
        kernel.record("xen_blkif_disconnect", f"{dev.nodename}: ring {blkif.ring_ref} unmapped, IRQ "
                      f"{blkif.irq} freed", SRC)
        blkif.irq = 0

"""drivers/xen/netback/interface.c, XenLinux 2.6.18: one netif, its net device, rings and IRQ.

``netif_alloc`` makes the net device vif<frontend domid>.<handle>; ``netif_map`` maps the
frontend's tx and rx rings and binds its port with ``bind_interdomain_evtchn_to_irqhandler``
as an IRQ named after the net device, then turns the carrier on; ``netif_disconnect``
unbinds it (closing the port) and unmaps the rings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xenlab.linux.irq import IRQ_HANDLED
from xenlab.linux.xenlinux.evtchn import bind_interdomain_evtchn_to_irqhandler, unbind_from_irqhandler
from xenlab.linux.xenlinux.xenbus_backend_client import xenbus_map_ring_valloc

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel
    from xenlab.linux.xenlinux.xenbus_probe import xenbus_device

SRC = "drivers/xen/netback/interface.c"


@dataclass(eq=False)
class netif_t:
    """netif_t (common.h): the frontend's domain, the handle, the net device, rings, port and IRQ."""

    domid: int
    handle: int
    name: str
    tx_ring_ref: int = 0
    rx_ring_ref: int = 0
    irq: int = 0


def netif_be_int(kernel: XenLinuxKernel, irq: int, netif: netif_t) -> int:
    """netif_be_int (netback.c): schedule the tx work and wake the rx queue (no traffic in the lab)."""
    return IRQ_HANDLED


def netif_alloc(kernel: XenLinuxKernel, dev: xenbus_device, domid: int, handle: int) -> netif_t:
    """netif_alloc: the net device "vif<domid>.<handle>", carrier off."""
    netif = netif_t(domid, handle, f"vif{domid}.{handle}")
    kernel.record("netif_alloc", f"{dev.nodename}: net device {netif.name}", SRC,
                  changes=[(kernel.table("netdev"), netif.name, None, "down")])
    return netif


def netif_map(kernel: XenLinuxKernel, dev: xenbus_device, netif: netif_t, tx_ring_ref: int, rx_ring_ref: int,
              evtchn: int) -> int:
    """netif_map: map the tx and rx rings, bind the frontend's port as IRQ "<vif>", carrier on."""
    err = xenbus_map_ring_valloc(kernel, dev, [tx_ring_ref, rx_ring_ref])
    if err:
        return err

    def netif_be_int_cb(irq: int, dev_id: Any) -> int:
        return netif_be_int(kernel, irq, dev_id)

    err = bind_interdomain_evtchn_to_irqhandler(kernel, netif.domid, evtchn, netif_be_int_cb, 0, netif.name,
                                                netif)
    if err < 0:
        return err
    netif.irq, netif.tx_ring_ref, netif.rx_ring_ref = err, tx_ring_ref, rx_ring_ref
    kernel.record("netif_map", f"{netif.name}: rings {tx_ring_ref}/{rx_ring_ref} mapped, ports "
                  f"{evtchn}/{evtchn} bound", SRC)
    kernel.record("netif_carrier_on", f"{netif.name} up", SRC,
                  changes=[(kernel.table("netdev"), netif.name, "down", "up")])
    return 0


def netif_disconnect(kernel: XenLinuxKernel, netif: netif_t) -> None:
    """netif_disconnect: carrier off, unbind the IRQ (closing the port), unmap the rings."""
    if not netif.irq:
        return
    unbind_from_irqhandler(kernel, netif.irq, netif)
    netif.irq = 0
    kernel.record("netif_disconnect", f"{netif.name}: rings unmapped, IRQs freed", SRC,
                  changes=[(kernel.table("netdev"), netif.name, "up", "down")])


def free_netdev(kernel: XenLinuxKernel, netif: netif_t) -> None:
    """netif_free's free_netdev: the net device goes."""
    kernel.record("free_netdev", f"net device {netif.name} removed", SRC,
                  changes=[(kernel.table("netdev"), netif.name, "down", None)])

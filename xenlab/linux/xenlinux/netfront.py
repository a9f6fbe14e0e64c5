"""drivers/xen/netfront/netfront.c, XenLinux 2.6.18: the network frontend "vif".

``netfront_probe`` creates the net device (``create_netdev``: eth<n>, and a grant
reference reserved for every tx and every rx ring slot). On the backend's InitWait,
``network_connect`` -> ``talk_to_backend``: ``setup_device`` grants the tx then the rx
ring page and binds one port for both as IRQ "eth<n>" (``bind_listening_port_to_irqhandler``),
then tx-ring-ref, rx-ring-ref, event-channel, request-rx-copy, feature-rx-notify,
feature-no-csum-offload, feature-sg and feature-gso-tcpv4 go in one transaction; then
Connected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xenlab.abi.errno import EAGAIN
from xenlab.abi.xenbus import (
    XenbusStateClosed,
    XenbusStateClosing,
    XenbusStateConnected,
    XenbusStateInitialising,
    XenbusStateInitWait,
)
from xenlab.linux.irq import IRQ_HANDLED
from xenlab.linux.kernel import KERN_ALERT, KERN_INFO
from xenlab.linux.mm import get_zeroed_page
from xenlab.linux.xenlinux.evtchn import (
    bind_listening_port_to_irqhandler,
    irq_to_evtchn_port,
    unbind_from_irqhandler,
)
from xenlab.linux.xenlinux.gnttab import (
    gnttab_alloc_grant_references,
    gnttab_end_foreign_access,
    gnttab_free_grant_references,
)
from xenlab.linux.xenlinux.page import virt_to_mfn
from xenlab.linux.xenlinux.xenbus_client import (
    xenbus_dev_fatal,
    xenbus_frontend_closed,
    xenbus_grant_ring,
    xenbus_switch_state,
)
from xenlab.linux.xenlinux.xenbus_probe import xenbus_device, xenbus_driver, xenbus_register_frontend
from xenlab.linux.xenlinux.xenbus_xs import (
    xenbus_printf,
    xenbus_transaction_end,
    xenbus_transaction_start,
)

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel

SRC = "drivers/xen/netfront/netfront.c"
PAGE_SIZE = 4096


def ring_size(slot_bytes: int, page: int = PAGE_SIZE) -> int:
    """__RING_SIZE: slots of *slot_bytes* fitting a page after the 64-byte header, as a power of 2."""
    n = (page - 64) // slot_bytes
    return 1 << (n.bit_length() - 1)


NET_TX_RING_SIZE = ring_size(12)  # union netif_tx_request/response: 12 bytes -> 256
NET_RX_RING_SIZE = ring_size(8)  # union netif_rx_request/response: 8 bytes -> 256


@dataclass(eq=False)
class netfront_info:
    """struct netfront_info: the net device, its rings, port and IRQ, the reserved grant refs."""

    netdev: str
    tx_ring_ref: int = 0
    rx_ring_ref: int = 0
    evtchn: int = 0
    irq: int = 0
    gref_tx_head: list[int] = field(default_factory=list)
    gref_rx_head: list[int] = field(default_factory=list)


def netfront_probe(kernel: XenLinuxKernel, dev: xenbus_device) -> int:
    """netfront_probe: create_netdev (eth<n>, the grant reservations), then wait for the backend."""
    name = f"eth{len(kernel.netdevs)}"
    kernel.netdevs.append(name)
    info = netfront_info(netdev=name)
    dev.drvdata = info
    kernel.record("netfront_probe", f"{dev.nodename}: net device {name}", SRC)
    err = create_netdev(kernel, info)
    if err:
        dev.drvdata = None
        return err
    return 0


def create_netdev(kernel: XenLinuxKernel, info: netfront_info) -> int:
    """create_netdev: a grant reference reserved for every tx and every rx ring slot."""
    err, tx = gnttab_alloc_grant_references(kernel, NET_TX_RING_SIZE)
    if err:
        kernel.printk(KERN_ALERT, "#### netfront can't alloc tx grant refs")
        return err
    err, rx = gnttab_alloc_grant_references(kernel, NET_RX_RING_SIZE)
    if err:
        kernel.printk(KERN_ALERT, "#### netfront can't alloc rx grant refs")
        gnttab_free_grant_references(kernel, tx)
        return err
    info.gref_tx_head, info.gref_rx_head = tx, rx
    return 0


def backend_changed(kernel: XenLinuxKernel, dev: xenbus_device, backend_state: int) -> None:
    """backend_changed: on the backend's InitWait connect and go Connected; on Closing close."""
    info: netfront_info | None = dev.drvdata
    if info is None:
        return
    if backend_state == XenbusStateInitWait:
        if dev.state != XenbusStateInitialising:
            return
        if network_connect(kernel, dev, info):
            return
        xenbus_switch_state(kernel, dev, XenbusStateConnected)
    elif backend_state == XenbusStateClosed and dev.state == XenbusStateClosed:
        return
    elif backend_state in (XenbusStateClosing, XenbusStateClosed):
        netif_disconnect_backend(kernel, info)
        xenbus_frontend_closed(kernel, dev)


def network_connect(kernel: XenLinuxKernel, dev: xenbus_device, info: netfront_info) -> int:
    """network_connect: talk_to_backend (the lab's rings start empty: nothing to requeue)."""
    return talk_to_backend(kernel, dev, info)


def _grant_ring_page(kernel: XenLinuxKernel, dev: xenbus_device) -> int:
    """A zeroed ring page (__get_free_page) granted to the backend: its ref, or -errno."""
    page = get_zeroed_page(kernel)
    kernel.record("setup_device", f"{dev.nodename}: ring page mfn {page.mfn:#x}", SRC)
    return xenbus_grant_ring(kernel, dev, virt_to_mfn(kernel, page))


def setup_device(kernel: XenLinuxKernel, dev: xenbus_device, info: netfront_info) -> int:
    """setup_device: grant the tx then the rx ring page, bind one port for both as IRQ "eth<n>"."""
    err = _grant_ring_page(kernel, dev)
    if err < 0:
        return err
    info.tx_ring_ref = err
    err = _grant_ring_page(kernel, dev)
    if err < 0:
        return err
    info.rx_ring_ref = err

    def netif_int_cb(irq: int, dev_id: Any) -> int:
        return netif_int(kernel, irq, dev_id)

    err = bind_listening_port_to_irqhandler(kernel, dev.otherend_id, netif_int_cb, 0, info.netdev, info)
    if err < 0:
        xenbus_dev_fatal(kernel, dev, err, "bind_listening_port_to_irqhandler")
        return err
    info.irq = err
    info.evtchn = irq_to_evtchn_port(kernel, err)
    return 0


def talk_to_backend(kernel: XenLinuxKernel, dev: xenbus_device, info: netfront_info) -> int:
    """talk_to_backend: setup_device, then the ring refs, the port and the features in one transaction."""
    err = setup_device(kernel, dev, info)
    if err:
        netif_disconnect_backend(kernel, info)
        return err
    keys = (("tx-ring-ref", "%u", info.tx_ring_ref), ("rx-ring-ref", "%u", info.rx_ring_ref),
            ("event-channel", "%u", info.evtchn), ("request-rx-copy", "%u", 1),
            ("feature-rx-notify", "%d", 1), ("feature-no-csum-offload", "%d", 0), ("feature-sg", "%d", 1),
            ("feature-gso-tcpv4", "%d", 1))
    while True:
        err, xbt = xenbus_transaction_start(kernel)
        if err:
            xenbus_dev_fatal(kernel, dev, err, "starting transaction")
            netif_disconnect_backend(kernel, info)
            return err
        for key, fmt, value in keys:
            err = xenbus_printf(kernel, xbt, dev.nodename, key, fmt, value)
            if err:
                xenbus_transaction_end(kernel, xbt, 1)
                xenbus_dev_fatal(kernel, dev, err, f"writing {key}")
                netif_disconnect_backend(kernel, info)
                return err
        err = xenbus_transaction_end(kernel, xbt, 0)
        if err == -EAGAIN:
            continue
        if err:
            xenbus_dev_fatal(kernel, dev, err, "completing transaction")
            netif_disconnect_backend(kernel, info)
            return err
        break
    kernel.record("talk_to_backend", f"{dev.nodename}: tx-ring-ref {info.tx_ring_ref}, rx-ring-ref "
                  f"{info.rx_ring_ref}, ports {info.evtchn}/{info.evtchn}", SRC)
    return 0


def netif_int(kernel: XenLinuxKernel, irq: int, info: netfront_info) -> int:
    """netif_int: reap tx responses, schedule rx polling (no traffic in the lab)."""
    return IRQ_HANDLED


def netif_disconnect_backend(kernel: XenLinuxKernel, info: netfront_info) -> None:
    """netif_disconnect_backend: unbind the IRQ, end the ring grants, give back the reserved refs."""
    if info.irq > 0:
        unbind_from_irqhandler(kernel, info.irq, info)
    info.irq = info.evtchn = 0
    for ref in (info.tx_ring_ref, info.rx_ring_ref):
        if ref > 0:
            gnttab_end_foreign_access(kernel, ref)
    info.tx_ring_ref = info.rx_ring_ref = 0
    gnttab_free_grant_references(kernel, info.gref_tx_head)
    gnttab_free_grant_references(kernel, info.gref_rx_head)


def netfront_remove(kernel: XenLinuxKernel, dev: xenbus_device) -> None:
    """netfront_remove: disconnect and unregister the net device."""
    info: netfront_info | None = dev.drvdata
    if info is not None:
        netif_disconnect_backend(kernel, info)
        dev.drvdata = None


def netif_init(kernel: XenLinuxKernel) -> int:
    """netif_init (module_init): announce, register the "vif" frontend driver."""
    kernel.printk(KERN_INFO, "netfront: Initialising virtual ethernet driver.")  # IPRINTK
    kernel.netfront_driver = xenbus_driver(name="vif", ids=["vif"], probe=netfront_probe,
                                           otherend_changed=backend_changed, remove=netfront_remove)
    return xenbus_register_frontend(kernel, kernel.netfront_driver)

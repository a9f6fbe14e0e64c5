"""drivers/net/xen-netfront.c, Linux 6.1: the network frontend "vif".

On the backend's InitWait ``xennet_connect`` -> ``talk_to_netback`` reads the backend's
multi-queue-max-queues, feature-split-event-channels and feature-xdp-headroom, writes
xdp-headroom, reserves each queue's tx and rx grant references (NET_TX_RING_SIZE +
NET_RX_RING_SIZE), grants the tx then the rx ring, allocates the tx then the rx port
(split channels: IRQs "vif0-q0-tx", "vif0-q0-rx"; else one "vif0-q0") and writes in one
transaction multi-queue-num-queues, the ring refs and ports, request-rx-copy,
feature-rx-notify, feature-sg, feature-gso-tcpv4/v6 and feature-ipv6-csum-offload; then
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
from xenlab.linux.irq import IRQ_HANDLED, Handler
from xenlab.linux.kernel import KERN_INFO
from xenlab.linux.pvops.events_base import (
    XEN_EOI_FLAG_SPURIOUS,
    bind_evtchn_to_irqhandler_lateeoi,
    unbind_from_irqhandler,
    xen_irq_lateeoi,
)
from xenlab.linux.pvops.grant_table import gnttab_alloc_grant_references, gnttab_free_grant_references
from xenlab.linux.pvops.xenbus_client import (
    xenbus_alloc_evtchn,
    xenbus_dev_fatal,
    xenbus_frontend_closed,
    xenbus_setup_ring,
    xenbus_switch_state,
    xenbus_teardown_ring,
)
from xenlab.linux.pvops.xenbus_probe import xenbus_device, xenbus_driver
from xenlab.linux.pvops.xenbus_probe_frontend import xenbus_register_frontend
from xenlab.linux.pvops.xenbus_xs import (
    XBT_NIL,
    xenbus_exists,
    xenbus_printf,
    xenbus_read_unsigned,
    xenbus_transaction_end,
    xenbus_transaction_start,
)

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel

SRC = "drivers/net/xen-netfront.c"
PAGE_SIZE = 4096
XENNET_MAX_QUEUES_DEFAULT = 8  # module parameter max_queues (capped by the cpus)


def ring_size(slot_bytes: int, page: int = PAGE_SIZE) -> int:
    """__CONST_RING_SIZE: slots of *slot_bytes* fitting a page after the 64-byte header, as a power of 2."""
    n = (page - 64) // slot_bytes
    return 1 << (n.bit_length() - 1)


NET_TX_RING_SIZE = ring_size(12)  # union xen_netif_tx_request/response: 12 bytes -> 256
NET_RX_RING_SIZE = ring_size(8)  # union xen_netif_rx_request/response: 8 bytes -> 256


@dataclass(eq=False)
class netfront_queue:
    """struct netfront_queue: one tx/rx ring pair, its grant reservations, ports and IRQs."""

    id: int
    name: str
    tx_ring_ref: int = 0
    rx_ring_ref: int = 0
    tx_evtchn: int = 0
    rx_evtchn: int = 0
    tx_irq: int = 0
    rx_irq: int = 0
    gref_tx_head: list[int] = field(default_factory=list)
    gref_rx_head: list[int] = field(default_factory=list)


@dataclass(eq=False)
class netfront_info:
    """struct netfront_info: the netdev name, the queues, the negotiated features."""

    netdev: str
    queues: list[netfront_queue] = field(default_factory=list)
    split_evtchn: bool = False
    xdp_headroom: bool = False


def xennet_handle_tx(queue: netfront_queue) -> bool:
    """xennet_handle_tx: reap tx responses (none in the lab); False only when the device is broken."""
    return True


def xennet_handle_rx(queue: netfront_queue) -> bool:
    """xennet_handle_rx: count unconsumed rx responses (none in the lab), napi_schedule if any."""
    return True


def xennet_tx_interrupt(kernel: PvopsKernel, irq: int, queue: netfront_queue) -> int:
    """xennet_tx_interrupt: handle tx, then xen_irq_lateeoi (spurious: no responses)."""
    if xennet_handle_tx(queue):
        xen_irq_lateeoi(kernel, irq, XEN_EOI_FLAG_SPURIOUS)
    return IRQ_HANDLED


def xennet_rx_interrupt(kernel: PvopsKernel, irq: int, queue: netfront_queue) -> int:
    """xennet_rx_interrupt: handle rx, then xen_irq_lateeoi (spurious: no responses)."""
    if xennet_handle_rx(queue):
        xen_irq_lateeoi(kernel, irq, XEN_EOI_FLAG_SPURIOUS)
    return IRQ_HANDLED


def xennet_interrupt(kernel: PvopsKernel, irq: int, queue: netfront_queue) -> int:
    """xennet_interrupt: one port for both rings."""
    if xennet_handle_tx(queue) and xennet_handle_rx(queue):
        xen_irq_lateeoi(kernel, irq, XEN_EOI_FLAG_SPURIOUS)
    return IRQ_HANDLED


def netfront_probe(kernel: PvopsKernel, dev: xenbus_device) -> int:
    """netfront_probe: create the net device (eth<n>) and wait for the backend."""
    name = f"eth{len(kernel.netdevs)}"
    kernel.netdevs.append(name)
    dev.drvdata = netfront_info(netdev=name)
    kernel.record("netfront_probe", f"{dev.nodename}: net device {name}", SRC)
    return 0


def xennet_init_queue(kernel: PvopsKernel, q: netfront_queue) -> int:
    """xennet_init_queue: reserve the queue's tx and rx grant references (one per ring slot)."""
    err, tx = gnttab_alloc_grant_references(kernel, NET_TX_RING_SIZE)
    if err:
        return err
    err, rx = gnttab_alloc_grant_references(kernel, NET_RX_RING_SIZE)
    if err:
        gnttab_free_grant_references(kernel, tx)
        return err
    q.gref_tx_head, q.gref_rx_head = tx, rx
    return 0


def _bind(kernel: PvopsKernel, dev: xenbus_device, name: str, fn: Any, q: netfront_queue) -> tuple[int, int]:
    """xenbus_alloc_evtchn + bind_evtchn_to_irqhandler_lateeoi: (irq, port) or (-errno, port)."""
    err, port = xenbus_alloc_evtchn(kernel, dev)
    if err:
        return err, 0
    handler: Handler = lambda irq, dev_id: fn(kernel, irq, dev_id)  # noqa: E731
    irq = bind_evtchn_to_irqhandler_lateeoi(kernel, port, handler, 0, name, q)
    if irq < 0:
        xenbus_dev_fatal(kernel, dev, irq, "bind_evtchn_to_irqhandler failed")
    return irq, port


def setup_netfront_single(kernel: PvopsKernel, dev: xenbus_device, q: netfront_queue) -> int:
    """setup_netfront_single: one port and IRQ ("vif<n>-q<i>") for both rings."""
    irq, port = _bind(kernel, dev, q.name, xennet_interrupt, q)
    if irq < 0:
        return irq
    q.tx_irq = q.rx_irq = irq
    q.tx_evtchn = q.rx_evtchn = port
    return 0


def setup_netfront_split(kernel: PvopsKernel, dev: xenbus_device, q: netfront_queue) -> int:
    """setup_netfront_split: a tx port "<name>-tx", then an rx port "<name>-rx"."""
    irq, port = _bind(kernel, dev, f"{q.name}-tx", xennet_tx_interrupt, q)
    if irq < 0:
        return irq
    q.tx_irq, q.tx_evtchn = irq, port
    irq, port = _bind(kernel, dev, f"{q.name}-rx", xennet_rx_interrupt, q)
    if irq < 0:
        return irq
    q.rx_irq, q.rx_evtchn = irq, port
    return 0


def setup_netfront(kernel: PvopsKernel, dev: xenbus_device, info: netfront_info, q: netfront_queue) -> int:
    """setup_netfront: grant the tx then the rx ring, then the port(s)."""
    err, _, grefs = xenbus_setup_ring(kernel, dev)
    if err:
        return err
    q.tx_ring_ref = grefs[0]
    err, _, grefs = xenbus_setup_ring(kernel, dev)
    if err:
        return err
    q.rx_ring_ref = grefs[0]
    return (setup_netfront_split if info.split_evtchn else setup_netfront_single)(kernel, dev, q)


def write_queue_xenstore_keys(info: netfront_info, q: netfront_queue,
                              hierarchical: bool) -> list[tuple[str, str, object]]:
    """write_queue_xenstore_keys: a queue's ring refs and port(s), under queue-<n>/ if several."""
    pre = f"queue-{q.id}/" if hierarchical else ""
    keys: list[tuple[str, str, object]] = [(pre + "tx-ring-ref", "%u", q.tx_ring_ref),
                                           (pre + "rx-ring-ref", "%u", q.rx_ring_ref)]
    if info.split_evtchn:
        keys += [(pre + "event-channel-tx", "%u", q.tx_evtchn), (pre + "event-channel-rx", "%u", q.rx_evtchn)]
    else:
        keys.append((pre + "event-channel", "%u", q.tx_evtchn))
    return keys


def talk_to_netback(kernel: PvopsKernel, dev: xenbus_device, info: netfront_info) -> int:
    """talk_to_netback: negotiate, set up the queues, write the keys in one transaction."""
    assert dev.otherend is not None
    handle = dev.nodename.rsplit("/", 1)[1]
    max_queues = xenbus_read_unsigned(kernel, dev.otherend, "multi-queue-max-queues", 1)
    nqueues = max(1, min(max_queues, XENNET_MAX_QUEUES_DEFAULT, kernel.num_online_cpus()))
    info.split_evtchn = bool(xenbus_read_unsigned(kernel, dev.otherend, "feature-split-event-channels", 0))
    info.xdp_headroom = bool(xenbus_read_unsigned(kernel, dev.otherend, "feature-xdp-headroom", 0))
    if info.xdp_headroom:
        err = xenbus_printf(kernel, XBT_NIL, dev.nodename, "xdp-headroom", "%u", 0)
        if err:
            xenbus_dev_fatal(kernel, dev, err, "writing xdp-headroom")
            return err
    info.queues = [netfront_queue(id=i, name=f"vif{handle}-q{i}") for i in range(nqueues)]
    for q in info.queues:  # xennet_create_queues
        err = xennet_init_queue(kernel, q)
        if err:
            xennet_disconnect_backend(kernel, info)
            return err
    for q in info.queues:
        err = setup_netfront(kernel, dev, info, q)
        if err:
            xennet_disconnect_backend(kernel, info)
            return err
    while True:
        err, xbt = xenbus_transaction_start(kernel)
        if err:
            xenbus_dev_fatal(kernel, dev, err, "starting transaction")
            xennet_disconnect_backend(kernel, info)
            return err
        keys: list[tuple[str, str, object]] = []
        if xenbus_exists(kernel, XBT_NIL, dev.otherend, "multi-queue-max-queues"):
            keys.append(("multi-queue-num-queues", "%u", len(info.queues)))
        for q in info.queues:
            keys += write_queue_xenstore_keys(info, q, len(info.queues) > 1)
        keys += [("request-rx-copy", "%u", 1), ("feature-rx-notify", "%d", 1), ("feature-sg", "%d", 1),
                 ("feature-gso-tcpv4", "%d", 1), ("feature-gso-tcpv6", "%d", 1),
                 ("feature-ipv6-csum-offload", "%d", 1)]
        for key, fmt, value in keys:
            err = xenbus_printf(kernel, xbt, dev.nodename, key, fmt, value)
            if err:
                xenbus_transaction_end(kernel, xbt, True)
                xenbus_dev_fatal(kernel, dev, err, f"writing {key}")
                xennet_disconnect_backend(kernel, info)
                return err
        err = xenbus_transaction_end(kernel, xbt, False)
        if err == -EAGAIN:
            continue
        if err:
            xenbus_dev_fatal(kernel, dev, err, "completing transaction")
            xennet_disconnect_backend(kernel, info)
            return err
        break
    q = info.queues[0]
    kernel.record("talk_to_netback", f"{dev.nodename}: tx-ring-ref {q.tx_ring_ref}, rx-ring-ref "
                  f"{q.rx_ring_ref}, ports {q.tx_evtchn}/{q.rx_evtchn}", SRC)
    return 0


def xennet_disconnect_backend(kernel: PvopsKernel, info: netfront_info) -> None:
    """xennet_disconnect_backend: unbind the IRQs, end the ring grants, give back the reserved refs."""
    for q in info.queues:
        if q.tx_irq > 0:
            unbind_from_irqhandler(kernel, q.tx_irq, q)
        if q.rx_irq != q.tx_irq and q.rx_irq > 0:
            unbind_from_irqhandler(kernel, q.rx_irq, q)
        q.tx_irq = q.rx_irq = q.tx_evtchn = q.rx_evtchn = 0
        xenbus_teardown_ring(kernel, [q.tx_ring_ref])
        xenbus_teardown_ring(kernel, [q.rx_ring_ref])
        q.tx_ring_ref = q.rx_ring_ref = 0
        gnttab_free_grant_references(kernel, q.gref_tx_head)
        gnttab_free_grant_references(kernel, q.gref_rx_head)
    info.queues = []


def netback_changed(kernel: PvopsKernel, dev: xenbus_device, backend_state: int) -> None:
    """netback_changed: connect on the backend's InitWait (xennet_connect), close on Closing."""
    info: netfront_info | None = dev.drvdata
    if info is None:
        return
    if backend_state == XenbusStateInitWait:
        if dev.state != XenbusStateInitialising:
            return
        if talk_to_netback(kernel, dev, info):
            return
        if info.xdp_headroom:
            kernel.printk(KERN_INFO, "xen_netfront: backend supports XDP headroom")
        xenbus_switch_state(kernel, dev, XenbusStateConnected)
    elif backend_state == XenbusStateClosed and dev.state == XenbusStateClosed:
        return
    elif backend_state in (XenbusStateClosing, XenbusStateClosed):
        xennet_disconnect_backend(kernel, info)
        xenbus_frontend_closed(kernel, dev)


def xennet_remove(kernel: PvopsKernel, dev: xenbus_device) -> None:
    """xennet_remove: disconnect and unregister the net device."""
    info: netfront_info | None = dev.drvdata
    if info is not None:
        xennet_disconnect_backend(kernel, info)
        dev.drvdata = None


def netfront_driver() -> xenbus_driver:
    """The "vif" frontend xenbus_driver."""
    return xenbus_driver(name="vif", ids=["vif"], probe=netfront_probe, otherend_changed=netback_changed,
                         remove=xennet_remove)


def netif_init(kernel: PvopsKernel) -> int:
    """netif_init (module_init of xen-netfront): announce, register the "vif" frontend driver."""
    kernel.printk(KERN_INFO, "xen_netfront: Initialising Xen virtual ethernet driver")
    kernel.netfront_driver = netfront_driver()
    return xenbus_register_frontend(kernel, kernel.netfront_driver)

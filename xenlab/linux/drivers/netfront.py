"""The network frontend "vif": on the backend's InitWait, rings + ports + keys, straight to Connected.

Modern (drivers/net/xen-netfront.c, Linux 6.1): ``xennet_connect`` -> ``talk_to_netback``
reads the backend's multi-queue-max-queues, feature-split-event-channels and
feature-xdp-headroom, writes xdp-headroom, reserves each queue's tx and rx grant
references (NET_TX_RING_SIZE + NET_RX_RING_SIZE), grants the tx then the rx ring,
allocates the tx then the rx port (split channels: IRQs "vif0-q0-tx", "vif0-q0-rx";
else one "vif0-q0") and writes in one transaction multi-queue-num-queues, the ring
refs and ports, request-rx-copy, feature-rx-notify, feature-sg, feature-gso-tcpv4/v6
and feature-ipv6-csum-offload; then Connected. 2.6.18 (drivers/xen/netfront/
netfront.c) has one event channel (IRQ named after the netdev, "eth0") and writes
tx-ring-ref, rx-ring-ref, event-channel, request-rx-copy, feature-rx-notify,
feature-no-csum-offload, feature-sg, feature-gso-tcpv4.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xenlab.abi.errno import EAGAIN
from xenlab.abi.xenbus import (
    XenbusStateClosed,
    XenbusStateClosing,
    XenbusStateInitialising,
    XenbusStateInitWait,
)
from xenlab.linux.drivers.common import (
    IRQ_HANDLED,
    XEN_EOI_FLAG_SPURIOUS,
    frontend_bind_irq,
    irq_handler,
    unbind_irq,
    xen_irq_lateeoi,
)
from xenlab.linux.gnttab import gnttab_alloc_grant_references, gnttab_free_grant_references
from xenlab.linux.kernel import KERN_INFO
from xenlab.linux.xenbus.bus import xenbus_driver
from xenlab.linux.xenbus.client import (
    XBT_NIL,
    xenbus_dev_fatal,
    xenbus_exists,
    xenbus_frontend_closed,
    xenbus_printf,
    xenbus_read_unsigned,
    xenbus_setup_ring,
    xenbus_switch_state,
    xenbus_teardown_ring,
    xenbus_transaction_end,
    xenbus_transaction_start,
)
from xenlab.linux.xenbus.probe_frontend import xenbus_register_frontend

SRC = "drivers/net/xen-netfront.c"
SRC_2618 = "drivers/xen/netfront/netfront.c"
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
    reserved: netfront_queue | None = None  # 2.6.18: the grant reservations made at probe


def xennet_handle_tx(queue: netfront_queue) -> bool:
    """xennet_handle_tx: reap tx responses (none in the lab); False only when the device is broken."""
    return True


def xennet_handle_rx(queue: netfront_queue) -> bool:
    """xennet_handle_rx: count unconsumed rx responses (none in the lab), napi_schedule if any."""
    return True


def xennet_tx_interrupt(kernel: Any, irq: int, queue: netfront_queue) -> int:
    """xennet_tx_interrupt: handle tx, then xen_irq_lateeoi (spurious: no responses)."""
    if xennet_handle_tx(queue):
        xen_irq_lateeoi(kernel, irq, XEN_EOI_FLAG_SPURIOUS)
    return IRQ_HANDLED


def xennet_rx_interrupt(kernel: Any, irq: int, queue: netfront_queue) -> int:
    """xennet_rx_interrupt: handle rx, then xen_irq_lateeoi (spurious: no responses)."""
    if xennet_handle_rx(queue):
        xen_irq_lateeoi(kernel, irq, XEN_EOI_FLAG_SPURIOUS)
    return IRQ_HANDLED


def xennet_interrupt(kernel: Any, irq: int, queue: netfront_queue) -> int:
    """xennet_interrupt (one port for both rings; 2.6.18's netif_int, which has no late EOI)."""
    if xennet_handle_tx(queue) and xennet_handle_rx(queue):
        xen_irq_lateeoi(kernel, irq, XEN_EOI_FLAG_SPURIOUS)
    return IRQ_HANDLED


def netfront_probe(kernel: Any, dev: Any) -> int:
    """netfront_probe: create the net device (eth<n>) and wait for the backend."""
    netdevs = getattr(kernel, "netdevs", None)
    if netdevs is None:
        netdevs = []
        kernel.netdevs = netdevs
    name = f"eth{len(netdevs)}"
    netdevs.append(name)
    info = netfront_info(netdev=name)
    dev.drvdata = info
    kernel.record("netfront_probe", f"{dev.nodename}: net device {name}",
                  SRC_2618 if kernel.flavour == "2.6.18" else SRC)
    if kernel.flavour == "2.6.18":
        # create_netdev: a grant for every tx and every rx ring slot, reserved at probe time
        q = netfront_queue(id=0, name=name)
        err = xennet_init_queue(kernel, q)
        if err:
            kernel.printk("<1>", "#### netfront can't alloc tx grant refs")
            dev.drvdata = None
            return err
        info.reserved = q
    return 0


def xennet_init_queue(kernel: Any, q: netfront_queue) -> int:
    """xennet_init_queue: reserve the queue's tx and rx grant references (one per ring slot)."""
    tx = gnttab_alloc_grant_references(kernel, NET_TX_RING_SIZE)
    if isinstance(tx, int):
        return tx
    rx = gnttab_alloc_grant_references(kernel, NET_RX_RING_SIZE)
    if isinstance(rx, int):
        gnttab_free_grant_references(kernel, tx)
        return rx
    q.gref_tx_head, q.gref_rx_head = tx, rx
    return 0


def _setup_queue(kernel: Any, dev: Any, info: netfront_info, q: netfront_queue) -> int:
    """setup_netfront(_split/_single): grant the tx then the rx ring, allocate and bind the ports."""
    ref, _ = xenbus_setup_ring(kernel, dev)
    if ref < 0:
        return ref
    q.tx_ring_ref = ref
    ref, _ = xenbus_setup_ring(kernel, dev)
    if ref < 0:
        return ref
    q.rx_ring_ref = ref
    if kernel.flavour == "2.6.18":
        irq, port = frontend_bind_irq(kernel, dev, info.netdev, irq_handler(kernel, xennet_interrupt), q)
        if irq < 0:
            return irq
        q.tx_irq = q.rx_irq = irq
        q.tx_evtchn = q.rx_evtchn = port
        return 0
    if info.split_evtchn:
        irq, port = frontend_bind_irq(kernel, dev, f"{q.name}-tx", irq_handler(kernel, xennet_tx_interrupt),
                                      q)
        if irq < 0:
            return irq
        q.tx_irq, q.tx_evtchn = irq, port
        irq, port = frontend_bind_irq(kernel, dev, f"{q.name}-rx", irq_handler(kernel, xennet_rx_interrupt),
                                      q)
        if irq < 0:
            return irq
        q.rx_irq, q.rx_evtchn = irq, port
    else:
        irq, port = frontend_bind_irq(kernel, dev, q.name, irq_handler(kernel, xennet_interrupt), q)
        if irq < 0:
            return irq
        q.tx_irq = q.rx_irq = irq
        q.tx_evtchn = q.rx_evtchn = port
    return 0


def write_queue_xenstore_keys(info: netfront_info, q: netfront_queue, hierarchical: bool
                              ) -> list[tuple[str, object]]:
    """write_queue_xenstore_keys: a queue's ring refs and port(s), under queue-<n>/ if several."""
    pre = f"queue-{q.id}/" if hierarchical else ""
    keys: list[tuple[str, object]] = [(pre + "tx-ring-ref", q.tx_ring_ref),
                                      (pre + "rx-ring-ref", q.rx_ring_ref)]
    if info.split_evtchn:
        keys += [(pre + "event-channel-tx", q.tx_evtchn), (pre + "event-channel-rx", q.rx_evtchn)]
    else:
        keys.append((pre + "event-channel", q.tx_evtchn))
    return keys


def _keys(kernel: Any, dev: Any, info: netfront_info) -> list[tuple[str, object]]:
    if kernel.flavour == "2.6.18":
        q = info.queues[0]
        return [("tx-ring-ref", q.tx_ring_ref), ("rx-ring-ref", q.rx_ring_ref),
                ("event-channel", q.tx_evtchn), ("request-rx-copy", 1), ("feature-rx-notify", 1),
                ("feature-no-csum-offload", 0), ("feature-sg", 1), ("feature-gso-tcpv4", 1)]
    keys: list[tuple[str, object]] = []
    if xenbus_exists(kernel, XBT_NIL, dev.otherend, "multi-queue-max-queues"):
        keys.append(("multi-queue-num-queues", len(info.queues)))
    for q in info.queues:
        keys += write_queue_xenstore_keys(info, q, len(info.queues) > 1)
    return keys + [("request-rx-copy", 1), ("feature-rx-notify", 1), ("feature-sg", 1),
                           ("feature-gso-tcpv4", 1), ("feature-gso-tcpv6", 1),
                           ("feature-ipv6-csum-offload", 1)]


def talk_to_netback(kernel: Any, dev: Any, info: netfront_info) -> int:
    """talk_to_netback: negotiate, set up the queues, write the keys in one transaction."""
    from xenlab.linux.drivers.common import nr_cpus

    handle = dev.nodename.rsplit("/", 1)[1]
    nqueues = 1
    if kernel.flavour != "2.6.18":
        max_queues = xenbus_read_unsigned(kernel, dev.otherend, "multi-queue-max-queues", 1)
        nqueues = max(1, min(max_queues, XENNET_MAX_QUEUES_DEFAULT, nr_cpus(kernel)))
        split = xenbus_read_unsigned(kernel, dev.otherend, "feature-split-event-channels", 0)
        info.split_evtchn = bool(split)
        info.xdp_headroom = bool(xenbus_read_unsigned(kernel, dev.otherend, "feature-xdp-headroom", 0))
        if info.xdp_headroom:
            err = xenbus_printf(kernel, XBT_NIL, dev.nodename, "xdp-headroom", 0)
            if err:
                xenbus_dev_fatal(kernel, dev, err, "writing xdp-headroom")
                return err
    info.queues = [netfront_queue(id=i, name=f"vif{handle}-q{i}") for i in range(nqueues)]
    if kernel.flavour == "2.6.18" and info.reserved is not None:
        info.queues, info.reserved = [info.reserved], None
    if kernel.flavour != "2.6.18":
        for q in info.queues:  # xennet_create_queues
            err = xennet_init_queue(kernel, q)
            if err:
                xennet_disconnect_backend(kernel, info)
                return err
    for q in info.queues:
        err = _setup_queue(kernel, dev, info, q)
        if err:
            xennet_disconnect_backend(kernel, info)
            return err
    while True:
        err, xbt = xenbus_transaction_start(kernel)
        if err:
            xenbus_dev_fatal(kernel, dev, err, "starting transaction")
            xennet_disconnect_backend(kernel, info)
            return err
        for key, value in _keys(kernel, dev, info):
            err = xenbus_printf(kernel, xbt, dev.nodename, key, value)
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
                  f"{q.rx_ring_ref}, ports {q.tx_evtchn}/{q.rx_evtchn}",
                  SRC_2618 if kernel.flavour == "2.6.18" else SRC)
    return 0


def xennet_disconnect_backend(kernel: Any, info: netfront_info) -> None:
    """xennet_disconnect_backend: unbind the IRQs, end the ring grants, give back the reserved refs."""
    for q in info.queues:
        unbind_irq(kernel, q.tx_irq, q)
        if q.rx_irq != q.tx_irq:
            unbind_irq(kernel, q.rx_irq, q)
        q.tx_irq = q.rx_irq = q.tx_evtchn = q.rx_evtchn = 0
        xenbus_teardown_ring(kernel, q.tx_ring_ref)
        xenbus_teardown_ring(kernel, q.rx_ring_ref)
        q.tx_ring_ref = q.rx_ring_ref = 0
        gnttab_free_grant_references(kernel, q.gref_tx_head)
        gnttab_free_grant_references(kernel, q.gref_rx_head)
    info.queues = []


def netback_changed(kernel: Any, dev: Any, backend_state: int) -> None:
    """netback_changed / backend_changed: connect on the backend's InitWait, close on Closing."""
    info: netfront_info | None = dev.drvdata
    if info is None:
        return
    if backend_state == XenbusStateInitWait:
        if dev.state != XenbusStateInitialising:
            return
        if talk_to_netback(kernel, dev, info):
            return
        if kernel.flavour != "2.6.18" and info.xdp_headroom:
            kernel.printk(KERN_INFO, "xen_netfront: backend supports XDP headroom")
        from xenlab.abi.xenbus import XenbusStateConnected

        xenbus_switch_state(kernel, dev, XenbusStateConnected)
    elif backend_state == XenbusStateClosed and dev.state == XenbusStateClosed:
        return
    elif backend_state in (XenbusStateClosing, XenbusStateClosed):
        xennet_disconnect_backend(kernel, info)
        xenbus_frontend_closed(kernel, dev)


def xennet_remove(kernel: Any, dev: Any) -> None:
    """xennet_remove: disconnect and unregister the net device."""
    info: netfront_info | None = dev.drvdata
    if info is not None:
        xennet_disconnect_backend(kernel, info)
        dev.drvdata = None


def netfront_driver() -> xenbus_driver:
    """The "vif" frontend xenbus_driver."""
    return xenbus_driver(name="vif", ids=["vif"], probe=netfront_probe, otherend_changed=netback_changed,
                         remove=xennet_remove)


def netfront_init(kernel: Any) -> int:
    """netif_init (module_init of xen-netfront): announce, register the "vif" frontend driver."""
    if kernel.flavour != "2.6.18":
        kernel.printk(KERN_INFO, "xen_netfront: Initialising Xen virtual ethernet driver")
    else:
        kernel.printk(KERN_INFO, "netfront: Initialising virtual ethernet driver.")  # IPRINTK
    drv = netfront_driver()
    kernel.netfront_driver = drv
    return xenbus_register_frontend(kernel, drv)


"""The network backend "vif" in dom0: advertise features, make vif<dom>.<handle>, connect the rings.

Modern (drivers/net/xen-netback/xenbus.c, Linux 6.1): probe writes, in one
transaction, feature-sg, feature-gso-tcpv4/v6, feature-ipv6-csum-offload,
feature-rx-copy, feature-xdp-headroom, feature-rx-flip (0), feature-multicast-control
and feature-dynamic-multicast-control; then feature-split-event-channels,
multi-queue-max-queues and feature-ctrl-ring; goes InitWait and creates the vif
(``backend_create_xenvif``: reads handle, net device vif<dom>.<handle>). When the
frontend is Connected it maps each queue's rings and binds its ports ("vif1.0-q0-tx",
"vif1.0-q0-rx"), and switches to Connected once hotplug-status says "connected"
(the hotplug script, run by the toolstack). 2.6.18 (drivers/xen/netback/xenbus.c)
writes feature-sg, feature-gso-tcpv4, feature-rx-copy (1), feature-rx-flip (0) and binds
one port named after the vif.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xenlab.abi.errno import EAGAIN, EINVAL
from xenlab.abi.xenbus import (
    XenbusStateClosed,
    XenbusStateClosing,
    XenbusStateConnected,
    XenbusStateInitialised,
    XenbusStateInitialising,
    XenbusStateInitWait,
    XenbusStateUnknown,
)
from xenlab.linux.driver_model import device_unregister, kobject_uevent
from xenlab.linux.drivers.common import (
    IRQ_HANDLED,
    XEN_EOI_FLAG_SPURIOUS,
    backend_bind_irq,
    irq_handler,
    nr_cpus,
    unbind_irq,
    xen_irq_lateeoi,
)
from xenlab.linux.kernel import KERN_INFO
from xenlab.linux.xenbus.bus import xenbus_driver
from xenlab.linux.xenbus.client import (
    XBT_NIL,
    unregister_xenbus_watch,
    xenbus_dev_fatal,
    xenbus_dev_is_online,
    xenbus_map_ring_valloc,
    xenbus_printf,
    xenbus_read,
    xenbus_read_unsigned,
    xenbus_scanf_int,
    xenbus_switch_state,
    xenbus_transaction_end,
    xenbus_transaction_start,
    xenbus_watch_pathfmt,
)
from xenlab.linux.xenbus.probe_backend import xenbus_register_backend

SRC = "drivers/net/xen-netback/xenbus.c"
SRC_2618 = "drivers/xen/netback/xenbus.c"
SEPARATE_TX_RX_IRQ = 1  # module parameter separate_tx_rx_irq
PROVIDES_XDP_HEADROOM = 1


@dataclass(eq=False)
class xenvif_queue:
    """struct xenvif_queue: the rings mapped and the ports bound for one queue."""

    id: int
    name: str
    tx_ring_ref: int = 0
    rx_ring_ref: int = 0
    tx_irq: int = 0
    rx_irq: int = 0


@dataclass(eq=False)
class backend_info:
    """struct backend_info: the device, its vif, the state it wants, the hotplug-status watch."""

    dev: Any
    vif: str = ""
    state: int = XenbusStateInitialising
    queues: list[xenvif_queue] = field(default_factory=list)
    hotplug_status_watch: Any = None
    hotplug_script: str = ""


def xenvif_handle_tx_interrupt(queue: xenvif_queue) -> bool:
    """xenvif_handle_tx_interrupt (interface.c): unconsumed tx requests? (napi_schedule) -- none here."""
    return False


def xenvif_handle_rx_interrupt(queue: xenvif_queue) -> bool:
    """xenvif_handle_rx_interrupt (interface.c): rx work for the guest? (kick its thread) -- none here."""
    return False


def xenvif_tx_interrupt(kernel: Any, irq: int, queue: xenvif_queue) -> int:
    """xenvif_tx_interrupt (interface.c): no tx work -> xen_irq_lateeoi(irq, EOI_FLAG_SPURIOUS) at once."""
    if not xenvif_handle_tx_interrupt(queue):
        xen_irq_lateeoi(kernel, irq, XEN_EOI_FLAG_SPURIOUS)
    return IRQ_HANDLED


def xenvif_rx_interrupt(kernel: Any, irq: int, queue: xenvif_queue) -> int:
    """xenvif_rx_interrupt (interface.c): no rx work -> the spurious late EOI at once."""
    if not xenvif_handle_rx_interrupt(queue):
        xen_irq_lateeoi(kernel, irq, XEN_EOI_FLAG_SPURIOUS)
    return IRQ_HANDLED


def xenvif_interrupt(kernel: Any, irq: int, queue: xenvif_queue) -> int:
    """xenvif_interrupt (interface.c, one port for both rings): neither has work -> spurious late EOI."""
    has_tx = xenvif_handle_tx_interrupt(queue)
    has_rx = xenvif_handle_rx_interrupt(queue)
    if not has_tx and not has_rx:
        xen_irq_lateeoi(kernel, irq, XEN_EOI_FLAG_SPURIOUS)
    return IRQ_HANDLED


def _src(kernel: Any) -> str:
    return SRC_2618 if kernel.flavour == "2.6.18" else SRC


def netback_probe(kernel: Any, dev: Any) -> int:
    """netback_probe: advertise the features, InitWait, create the vif."""
    be = backend_info(dev=dev)
    dev.drvdata = be
    if kernel.flavour == "2.6.18":
        feats: list[tuple[str, int]] = [("feature-sg", 1), ("feature-gso-tcpv4", 1), ("feature-rx-copy", 1),
                                        ("feature-rx-flip", 0)]
    else:
        feats = [("feature-sg", 1), ("feature-gso-tcpv4", 1), ("feature-gso-tcpv6", 1),
                 ("feature-ipv6-csum-offload", 1), ("feature-rx-copy", 1),
                 ("feature-xdp-headroom", PROVIDES_XDP_HEADROOM), ("feature-rx-flip", 0),
                 ("feature-multicast-control", 1), ("feature-dynamic-multicast-control", 1)]
    while True:
        err, xbt = xenbus_transaction_start(kernel)
        if err:
            xenbus_dev_fatal(kernel, dev, err, "starting transaction")
            return err
        for key, value in feats:
            err = xenbus_printf(kernel, xbt, dev.nodename, key, value)
            if err:
                xenbus_transaction_end(kernel, xbt, True)
                xenbus_dev_fatal(kernel, dev, err, f"writing {key}")
                return err
        err = xenbus_transaction_end(kernel, xbt, False)
        if err != -EAGAIN:
            break
    if err:
        xenbus_dev_fatal(kernel, dev, err, "completing transaction")
        return err
    if kernel.flavour != "2.6.18":
        xenbus_printf(kernel, XBT_NIL, dev.nodename, "feature-split-event-channels", SEPARATE_TX_RX_IRQ)
        xenbus_printf(kernel, XBT_NIL, dev.nodename, "multi-queue-max-queues", nr_cpus(kernel))
        xenbus_printf(kernel, XBT_NIL, dev.nodename, "feature-ctrl-ring", 1)
    set_backend_state(kernel, be, XenbusStateInitWait)
    script = xenbus_read(kernel, XBT_NIL, dev.nodename, "script")
    be.hotplug_script = script if isinstance(script, str) else ""
    return backend_create_xenvif(kernel, be)


def backend_create_xenvif(kernel: Any, be: backend_info) -> int:
    """backend_create_xenvif: read handle, create net device vif<frontend domid>.<handle>."""
    dev = be.dev
    handle = xenbus_scanf_int(kernel, XBT_NIL, dev.nodename, "handle")
    if handle is None:
        xenbus_dev_fatal(kernel, dev, -EINVAL, "reading handle")
        return -EINVAL
    be.vif = f"vif{dev.otherend_id}.{handle}"
    kernel.record("xenvif_alloc", f"{dev.nodename}: net device {be.vif}", _src(kernel),
                  changes=[(f"{kernel.name}/netdev", be.vif, None, "down")])
    if kernel.flavour != "2.6.18":
        kobject_uevent(kernel, dev, "online")  # this kicks the hotplug scripts
    return 0


def backend_switch_state(kernel: Any, be: backend_info, state: int) -> None:
    """backend_switch_state: remember the state; write it unless waiting for the hotplug script."""
    be.state = state
    if be.hotplug_status_watch is None:
        xenbus_switch_state(kernel, be.dev, state)


def set_backend_state(kernel: Any, be: backend_info, state: int) -> None:
    """set_backend_state: walk from the current state to *state* (connect/disconnect on the way)."""
    cur = be.state
    if state == XenbusStateConnected and cur == XenbusStateInitWait:
        if connect(kernel, be) == 0:
            backend_switch_state(kernel, be, XenbusStateConnected)
        return
    if state in (XenbusStateClosing, XenbusStateClosed):
        if cur == XenbusStateConnected:
            backend_disconnect(kernel, be)
        if state == XenbusStateClosed and cur != XenbusStateClosing:
            backend_switch_state(kernel, be, XenbusStateClosing)
        backend_switch_state(kernel, be, state)
        return
    backend_switch_state(kernel, be, state)


def connect(kernel: Any, be: backend_info) -> int:
    """connect: map each queue's rings, bind its ports, then wait for hotplug-status."""
    dev, fe = be.dev, be.dev.otherend
    nqueues = 1
    if kernel.flavour != "2.6.18":
        nqueues = xenbus_read_unsigned(kernel, fe, "multi-queue-num-queues", 1)
    if nqueues > nr_cpus(kernel):
        xenbus_dev_fatal(kernel, dev, -EINVAL, f"guest requested {nqueues} queues, exceeding the maximum "
                         f"of {nr_cpus(kernel)}.")
        return -EINVAL
    if xenbus_read_unsigned(kernel, fe, "request-rx-copy", 0) != 1:
        xenbus_dev_fatal(kernel, dev, -EINVAL, "reading request-rx-copy")
        return -EINVAL
    for i in range(nqueues):
        q = xenvif_queue(id=i, name=f"{be.vif}-q{i}" if kernel.flavour != "2.6.18" else be.vif)
        xspath = fe if nqueues == 1 else f"{fe}/queue-{i}"
        vals = [xenbus_scanf_int(kernel, XBT_NIL, xspath, k) for k in ("tx-ring-ref", "rx-ring-ref")]
        if None in vals:
            xenbus_dev_fatal(kernel, dev, -EINVAL, f"reading {xspath}/ring-ref")
            return -EINVAL
        q.tx_ring_ref, q.rx_ring_ref = vals  # type: ignore[assignment]
        tx = xenbus_scanf_int(kernel, XBT_NIL, xspath, "event-channel-tx")
        rx = xenbus_scanf_int(kernel, XBT_NIL, xspath, "event-channel-rx")
        if tx is None or rx is None or kernel.flavour == "2.6.18":
            tx = rx = xenbus_scanf_int(kernel, XBT_NIL, xspath, "event-channel")
            if tx is None:
                xenbus_dev_fatal(kernel, dev, -EINVAL, f"reading {xspath}/event-channel(-tx/rx)")
                return -EINVAL
        err = xenbus_map_ring_valloc(kernel, dev, [q.tx_ring_ref, q.rx_ring_ref])
        if err:
            return err
        if tx == rx:
            handler = irq_handler(kernel, xenvif_interrupt)
            q.tx_irq = q.rx_irq = backend_bind_irq(kernel, dev, tx, q.name, handler, q)
        else:
            q.tx_irq = backend_bind_irq(kernel, dev, tx, f"{q.name}-tx",
                                        irq_handler(kernel, xenvif_tx_interrupt), q)
            q.rx_irq = backend_bind_irq(kernel, dev, rx, f"{q.name}-rx",
                                        irq_handler(kernel, xenvif_rx_interrupt), q)
        if q.tx_irq < 0 or q.rx_irq < 0:
            xenbus_dev_fatal(kernel, dev, min(q.tx_irq, q.rx_irq), f"mapping shared-frames {q.tx_ring_ref}/"
                             f"{q.rx_ring_ref} port tx {tx} rx {rx}")
            return min(q.tx_irq, q.rx_irq)
        be.queues.append(q)
        kernel.record("xenvif_connect_data", f"{q.name}: rings {q.tx_ring_ref}/{q.rx_ring_ref} mapped, ports "
                      f"{tx}/{rx} bound", _src(kernel))
    kernel.record("xenvif_carrier_on", f"{be.vif} up", _src(kernel),
                  changes=[(f"{kernel.name}/netdev", be.vif, "down", "up")])
    if kernel.flavour != "2.6.18":
        def changed(w: Any, path: str, token: str = "") -> None:
            hotplug_status_changed(kernel, be)

        watch = xenbus_watch_pathfmt(kernel, dev, changed, dev.nodename, "hotplug-status")
        if not isinstance(watch, int):
            be.hotplug_status_watch = watch
    return 0


def hotplug_status_changed(kernel: Any, be: backend_info) -> None:
    """hotplug_status_changed: once the script wrote "connected", complete the pending state change."""
    val = xenbus_read(kernel, XBT_NIL, be.dev.nodename, "hotplug-status")
    if isinstance(val, int) or val != "connected":
        return
    watch, be.hotplug_status_watch = be.hotplug_status_watch, None
    xenbus_switch_state(kernel, be.dev, be.state)
    if watch is not None:
        unregister_xenbus_watch(kernel, watch)
    if be.state == XenbusStateConnected:
        kernel.printk(KERN_INFO, f"vif {be.dev.name} {be.vif}: Guest Rx ready")


def backend_disconnect(kernel: Any, be: backend_info) -> None:
    """backend_disconnect: unbind every queue's IRQs and unmap its rings."""
    for q in be.queues:
        unbind_irq(kernel, q.tx_irq, q)
        if q.rx_irq != q.tx_irq:
            unbind_irq(kernel, q.rx_irq, q)
    if be.queues:
        kernel.record("xenvif_disconnect_data", f"{be.vif}: rings unmapped, IRQs freed", _src(kernel),
                      changes=[(f"{kernel.name}/netdev", be.vif, "up", "down")])
    be.queues = []


def frontend_changed(kernel: Any, dev: Any, frontend_state: int) -> None:
    """frontend_changed: follow the frontend (Connected -> connect; Closing/Closed -> tear down)."""
    be: backend_info | None = dev.drvdata
    if be is None:
        return
    if frontend_state == XenbusStateInitialising:
        if dev.state == XenbusStateClosed:
            kernel.printk(KERN_INFO, f"xen_netback: {dev.nodename}: prepare for reconnect")
            set_backend_state(kernel, be, XenbusStateInitWait)
    elif frontend_state in (XenbusStateInitialised, XenbusStateInitWait):
        return
    elif frontend_state == XenbusStateConnected:
        set_backend_state(kernel, be, XenbusStateConnected)
    elif frontend_state == XenbusStateClosing:
        set_backend_state(kernel, be, XenbusStateClosing)
    elif frontend_state in (XenbusStateClosed, XenbusStateUnknown):
        set_backend_state(kernel, be, XenbusStateClosed)
        if frontend_state == XenbusStateClosed and xenbus_dev_is_online(kernel, dev):
            return
        device_unregister(kernel, dev)
    else:
        xenbus_dev_fatal(kernel, dev, -EINVAL, f"saw state {frontend_state} at frontend")


def netback_remove(kernel: Any, dev: Any) -> None:
    """netback_remove: disconnect and free the vif."""
    be: backend_info | None = dev.drvdata
    if be is None:
        return
    if be.hotplug_status_watch is not None:
        unregister_xenbus_watch(kernel, be.hotplug_status_watch)
        be.hotplug_status_watch = None
    backend_disconnect(kernel, be)
    if be.vif and kernel.flavour != "2.6.18":
        kobject_uevent(kernel, dev, "offline")
    if be.vif:
        kernel.record("xenvif_free", f"net device {be.vif} removed", _src(kernel),
                      changes=[(f"{kernel.name}/netdev", be.vif, "down", None)])
    dev.drvdata = None


def netback_driver() -> xenbus_driver:
    """The "vif" backend xenbus_driver."""
    return xenbus_driver(name="vif", ids=["vif"], probe=netback_probe, otherend_changed=frontend_changed,
                         remove=netback_remove)


def netback_init(kernel: Any) -> int:
    """netback_init (module_init of xen-netback): register the "vif" backend driver."""
    drv = netback_driver()
    kernel.netback_driver = drv
    return xenbus_register_backend(kernel, drv)

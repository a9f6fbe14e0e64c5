"""drivers/net/xen-netback/xenbus.c, Linux 6.1: the network backend "vif" in dom0.

Probe writes, in one transaction, feature-sg, feature-gso-tcpv4/v6,
feature-ipv6-csum-offload, feature-rx-copy, feature-xdp-headroom, feature-rx-flip (0),
feature-multicast-control and feature-dynamic-multicast-control; then
feature-split-event-channels, multi-queue-max-queues and feature-ctrl-ring; goes InitWait
and creates the vif (``backend_create_xenvif``: reads handle, net device
vif<dom>.<handle>). When the frontend is Connected it maps each queue's rings and binds
its ports ("vif1.0-q0-tx", "vif1.0-q0-rx"), and switches to Connected once hotplug-status
says "connected" (the hotplug script, run by the toolstack).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
from xenlab.linux.kernel import KERN_INFO
from xenlab.linux.pvops.br_if import br_port_carrier_check
from xenlab.linux.pvops.events_base import (
    bind_interdomain_evtchn_to_irqhandler_lateeoi,
    unbind_from_irqhandler,
)
from xenlab.linux.pvops.netback_interface import (
    xenvif_interrupt,
    xenvif_queue,
    xenvif_rx_interrupt,
    xenvif_tx_interrupt,
)
from xenlab.linux.pvops.xenbus_client import (
    xenbus_dev_fatal,
    xenbus_map_ring_valloc,
    xenbus_switch_state,
    xenbus_watch_pathfmt,
)
from xenlab.linux.pvops.xenbus_probe import xenbus_device, xenbus_driver
from xenlab.linux.pvops.xenbus_probe_backend import xenbus_dev_is_online, xenbus_register_backend
from xenlab.linux.pvops.xenbus_xs import (
    XBT_NIL,
    unregister_xenbus_watch,
    xenbus_printf,
    xenbus_read,
    xenbus_read_unsigned,
    xenbus_scanf,
    xenbus_transaction_end,
    xenbus_transaction_start,
    xenbus_watch,
)

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel

SRC = "drivers/net/xen-netback/xenbus.c"
SEPARATE_TX_RX_IRQ = 1  # module parameter separate_tx_rx_irq
PROVIDES_XDP_HEADROOM = 1


@dataclass(eq=False)
class backend_info:
    """struct backend_info: the device, its vif, the state it wants, the hotplug-status watch."""

    dev: xenbus_device
    vif: str = ""
    state: int = XenbusStateInitialising
    queues: list[xenvif_queue] = field(default_factory=list)
    hotplug_status_watch: xenbus_watch = field(default_factory=xenbus_watch)
    have_hotplug_status_watch: bool = False
    hotplug_script: str = ""


def backend_disconnect(kernel: PvopsKernel, be: backend_info) -> None:
    """backend_disconnect: unbind every queue's IRQs and unmap its rings (xenvif_disconnect_data)."""
    for q in be.queues:
        if q.tx_irq > 0:
            unbind_from_irqhandler(kernel, q.tx_irq, q)
        if q.rx_irq != q.tx_irq and q.rx_irq > 0:
            unbind_from_irqhandler(kernel, q.rx_irq, q)
    if be.queues:
        kernel.record("xenvif_disconnect_data", f"{be.vif}: rings unmapped, IRQs freed", SRC,
                      changes=[(kernel.table("netdev"), be.vif, "up", "down")])
    be.queues = []


def backend_switch_state(kernel: PvopsKernel, be: backend_info, state: int) -> None:
    """backend_switch_state: remember the state; write it unless waiting for the hotplug script."""
    be.state = state
    if not be.have_hotplug_status_watch:
        xenbus_switch_state(kernel, be.dev, state)


def set_backend_state(kernel: PvopsKernel, be: backend_info, state: int) -> None:
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


def netback_remove(kernel: PvopsKernel, dev: xenbus_device) -> None:
    """netback_remove: disconnect and free the vif."""
    be: backend_info | None = dev.drvdata
    if be is None:
        return
    unregister_hotplug_status_watch(kernel, be)
    backend_disconnect(kernel, be)
    if be.vif:
        kobject_uevent(kernel, dev, "offline")
        kernel.record("xenvif_free", f"net device {be.vif} removed", SRC,
                      changes=[(kernel.table("netdev"), be.vif, "down", None)])
    dev.drvdata = None


def netback_probe(kernel: PvopsKernel, dev: xenbus_device) -> int:
    """netback_probe: advertise the features, InitWait, create the vif."""
    be = backend_info(dev=dev)
    dev.drvdata = be
    feats = [("feature-sg", "%d", 1), ("feature-gso-tcpv4", "%d", 1), ("feature-gso-tcpv6", "%d", 1),
             ("feature-ipv6-csum-offload", "%d", 1), ("feature-rx-copy", "%d", 1),
             ("feature-xdp-headroom", "%d", PROVIDES_XDP_HEADROOM), ("feature-rx-flip", "%d", 0),
             ("feature-multicast-control", "%d", 1), ("feature-dynamic-multicast-control", "%d", 1)]
    while True:
        err, xbt = xenbus_transaction_start(kernel)
        if err:
            xenbus_dev_fatal(kernel, dev, err, "starting transaction")
            return err
        for key, fmt, value in feats:
            err = xenbus_printf(kernel, xbt, dev.nodename, key, fmt, value)
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
    xenbus_printf(kernel, XBT_NIL, dev.nodename, "feature-split-event-channels", "%u", SEPARATE_TX_RX_IRQ)
    xenbus_printf(kernel, XBT_NIL, dev.nodename, "multi-queue-max-queues", "%u", kernel.num_online_cpus())
    xenbus_printf(kernel, XBT_NIL, dev.nodename, "feature-ctrl-ring", "%u", 1)
    set_backend_state(kernel, be, XenbusStateInitWait)
    script = xenbus_read(kernel, XBT_NIL, dev.nodename, "script")
    be.hotplug_script = script if isinstance(script, str) else ""
    return backend_create_xenvif(kernel, be)


def backend_create_xenvif(kernel: PvopsKernel, be: backend_info) -> int:
    """backend_create_xenvif: read handle, create net device vif<frontend domid>.<handle>."""
    dev = be.dev
    err, handle = xenbus_scanf(kernel, XBT_NIL, dev.nodename, "handle", "%li")
    if err != 1:
        xenbus_dev_fatal(kernel, dev, -EINVAL, "reading handle")
        return -EINVAL
    be.vif = f"vif{dev.otherend_id}.{handle}"
    kernel.record("xenvif_alloc", f"{dev.nodename}: net device {be.vif}", SRC,
                  changes=[(kernel.table("netdev"), be.vif, None, "down")])
    kobject_uevent(kernel, dev, "online")  # this kicks the hotplug scripts
    return 0


def frontend_changed(kernel: PvopsKernel, dev: xenbus_device, frontend_state: int) -> None:
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


def unregister_hotplug_status_watch(kernel: PvopsKernel, be: backend_info) -> None:
    """unregister_hotplug_status_watch: drop the hotplug-status watch if there is one."""
    if be.have_hotplug_status_watch:
        unregister_xenbus_watch(kernel, be.hotplug_status_watch)
        be.have_hotplug_status_watch = False


def hotplug_status_changed(kernel: PvopsKernel, be: backend_info) -> None:
    """hotplug_status_changed: once the script wrote "connected", complete the pending state change."""
    val = xenbus_read(kernel, XBT_NIL, be.dev.nodename, "hotplug-status")
    if isinstance(val, int) or val != "connected":
        return
    had = be.have_hotplug_status_watch
    be.have_hotplug_status_watch = False
    xenbus_switch_state(kernel, be.dev, be.state)
    if had:
        unregister_xenbus_watch(kernel, be.hotplug_status_watch)
    if be.state == XenbusStateConnected:
        kernel.printk(KERN_INFO, f"vif {be.dev.name} {be.vif}: Guest Rx ready")
        br_port_carrier_check(kernel, be.vif)  # xenvif_carrier_on -> linkwatch: NETDEV_CHANGE


def connect_data_rings(kernel: PvopsKernel, be: backend_info, q: xenvif_queue, xspath: str) -> int:
    """connect_data_rings: read a queue's ring refs and port(s), map the rings, bind the ports."""
    dev = be.dev
    refs = [xenbus_scanf(kernel, XBT_NIL, xspath, k, "%lu") for k in ("tx-ring-ref", "rx-ring-ref")]
    if any(err != 1 for err, _ in refs):
        xenbus_dev_fatal(kernel, dev, -EINVAL, f"reading {xspath}/ring-ref")
        return -EINVAL
    q.tx_ring_ref, q.rx_ring_ref = (v for _, v in refs)
    err_tx, tx = xenbus_scanf(kernel, XBT_NIL, xspath, "event-channel-tx", "%u")
    err_rx, rx = xenbus_scanf(kernel, XBT_NIL, xspath, "event-channel-rx", "%u")
    if err_tx != 1 or err_rx != 1:
        err, tx = xenbus_scanf(kernel, XBT_NIL, xspath, "event-channel", "%u")
        rx = tx
        if err != 1:
            xenbus_dev_fatal(kernel, dev, -EINVAL, f"reading {xspath}/event-channel(-tx/rx)")
            return -EINVAL
    err = xenbus_map_ring_valloc(kernel, dev, [q.tx_ring_ref, q.rx_ring_ref])
    if err:
        return err

    def bind(port: int, name: str, fn: Any) -> int:
        return bind_interdomain_evtchn_to_irqhandler_lateeoi(
            kernel, dev, port, lambda irq, dev_id: fn(kernel, irq, dev_id), 0, name, q)

    if tx == rx:
        q.tx_irq = q.rx_irq = bind(tx, q.name, xenvif_interrupt)
    else:
        q.tx_irq = bind(tx, f"{q.name}-tx", xenvif_tx_interrupt)
        q.rx_irq = bind(rx, f"{q.name}-rx", xenvif_rx_interrupt)
    if q.tx_irq < 0 or q.rx_irq < 0:
        xenbus_dev_fatal(kernel, dev, min(q.tx_irq, q.rx_irq), f"mapping shared-frames {q.tx_ring_ref}/"
                         f"{q.rx_ring_ref} port tx {tx} rx {rx}")
        return min(q.tx_irq, q.rx_irq)
    be.queues.append(q)
    kernel.record("xenvif_connect_data", f"{q.name}: rings {q.tx_ring_ref}/{q.rx_ring_ref} mapped, ports "
                  f"{tx}/{rx} bound", SRC)
    return 0


def connect(kernel: PvopsKernel, be: backend_info) -> int:
    """connect: map each queue's rings, bind its ports, then wait for hotplug-status."""
    dev, fe = be.dev, be.dev.otherend
    assert fe is not None
    nqueues = xenbus_read_unsigned(kernel, fe, "multi-queue-num-queues", 1)
    cpus = kernel.num_online_cpus()
    if nqueues > cpus:
        xenbus_dev_fatal(kernel, dev, -EINVAL, f"guest requested {nqueues} queues, exceeding the maximum "
                         f"of {cpus}.")
        return -EINVAL
    if xenbus_read_unsigned(kernel, fe, "request-rx-copy", 0) != 1:  # read_xenbus_vif_flags
        xenbus_dev_fatal(kernel, dev, -EINVAL, "reading request-rx-copy")
        return -EINVAL
    for i in range(nqueues):
        q = xenvif_queue(id=i, name=f"{be.vif}-q{i}")
        err = connect_data_rings(kernel, be, q, fe if nqueues == 1 else f"{fe}/queue-{i}")
        if err:
            return err
    kernel.record("xenvif_carrier_on", f"{be.vif} up", SRC,
                  changes=[(kernel.table("netdev"), be.vif, "down", "up")])

    def hotplug_status_changed_cb(watch: xenbus_watch, path: str, token: str) -> None:
        hotplug_status_changed(kernel, be)

    hotplug_status_changed_cb.__name__ = "hotplug_status_changed"
    if not xenbus_watch_pathfmt(kernel, dev, be.hotplug_status_watch, None, hotplug_status_changed_cb,
                                "%s/%s", dev.nodename, "hotplug-status"):
        be.have_hotplug_status_watch = True
    return 0


def netback_driver() -> xenbus_driver:
    """The "vif" backend xenbus_driver."""
    return xenbus_driver(name="vif", ids=["vif"], probe=netback_probe, otherend_changed=frontend_changed,
                         remove=netback_remove)


def xenvif_xenbus_init(kernel: PvopsKernel) -> int:
    """xenvif_xenbus_init (netback_init's registration): register the "vif" backend driver."""
    kernel.netback_driver = netback_driver()
    return xenbus_register_backend(kernel, kernel.netback_driver)

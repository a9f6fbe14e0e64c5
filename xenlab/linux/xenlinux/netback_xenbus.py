"""drivers/xen/netback/xenbus.c, XenLinux 2.6.18: the network backend "vif" on xenbus.

``netback_probe`` writes feature-sg, feature-gso-tcpv4, feature-rx-copy (1) and
feature-rx-flip (0) in one transaction, goes InitWait and creates the net device
vif<domid>.<handle> (``backend_create_netif``, netif_alloc in interface.c). When the
frontend is Connected, ``connect`` -> ``connect_rings`` reads its ring refs and port,
maps them and binds the port (``netif_map``), and the backend goes Connected.

``connect_rings`` gathers tx-ring-ref, rx-ring-ref and event-channel (one port for both
rings: 2.6.18 has no event-channel-tx/-rx), then reads request-rx-copy and the frontend's
feature flags, one READ each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from xenlab.abi.errno import EAGAIN, EINVAL, ENOENT
from xenlab.abi.xenbus import (
    XenbusStateClosed,
    XenbusStateClosing,
    XenbusStateConnected,
    XenbusStateInitialised,
    XenbusStateInitialising,
    XenbusStateInitWait,
    XenbusStateUnknown,
)
from xenlab.linux.driver_model import device_unregister
from xenlab.linux.kernel import KERN_INFO
from xenlab.linux.xenlinux.netback_interface import (
    free_netdev,
    netif_alloc,
    netif_disconnect,
    netif_map,
    netif_t,
)
from xenlab.linux.xenlinux.xenbus_backend_client import xenbus_dev_is_online
from xenlab.linux.xenlinux.xenbus_client import xenbus_dev_fatal, xenbus_switch_state
from xenlab.linux.xenlinux.xenbus_probe import xenbus_device, xenbus_driver
from xenlab.linux.xenlinux.xenbus_probe_backend import xenbus_register_backend
from xenlab.linux.xenlinux.xenbus_xs import (
    XBT_NIL,
    xenbus_gather,
    xenbus_printf,
    xenbus_read,
    xenbus_scanf,
    xenbus_transaction_end,
    xenbus_transaction_start,
)

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel

SRC = "drivers/xen/netback/xenbus.c"


@dataclass(eq=False)
class backend_info:
    """struct backend_info: the device, its netif, and the hotplug script named in the store."""

    dev: xenbus_device
    netif: netif_t | None = None
    hotplug_script: str = ""


def netback_remove(kernel: XenLinuxKernel, dev: xenbus_device) -> None:
    """netback_remove: disconnect and free the netif."""
    be: backend_info | None = dev.drvdata
    if be is None:
        return
    if be.netif is not None:
        netif_disconnect(kernel, be.netif)
        free_netdev(kernel, be.netif)
        be.netif = None
    dev.drvdata = None


def netback_probe(kernel: XenLinuxKernel, dev: xenbus_device) -> int:
    """netback_probe: the features in one transaction, InitWait, then the net device."""
    be = backend_info(dev=dev)
    dev.drvdata = be
    while True:
        err, xbt = xenbus_transaction_start(kernel)
        if err:
            xenbus_dev_fatal(kernel, dev, err, "starting transaction")
            return err
        for key, value in (("feature-sg", 1), ("feature-gso-tcpv4", 1), ("feature-rx-copy", 1),
                           ("feature-rx-flip", 0)):
            err = xenbus_printf(kernel, xbt, dev.nodename, key, "%d", value)
            if err:
                xenbus_transaction_end(kernel, xbt, 1)
                xenbus_dev_fatal(kernel, dev, err, f"writing {key}")
                return err
        err = xenbus_transaction_end(kernel, xbt, 0)
        if err != -EAGAIN:
            break
    if err:
        xenbus_dev_fatal(kernel, dev, err, "completing transaction")
        return err
    xenbus_switch_state(kernel, dev, XenbusStateInitWait)
    script = xenbus_read(kernel, XBT_NIL, dev.nodename, "script")  # what netback_uevent passes on
    be.hotplug_script = script if isinstance(script, str) else ""
    return backend_create_netif(kernel, be)


def backend_create_netif(kernel: XenLinuxKernel, be: backend_info) -> int:
    """backend_create_netif: read handle, netif_alloc the net device vif<domid>.<handle>."""
    dev = be.dev
    err, values = xenbus_scanf(kernel, XBT_NIL, dev.nodename, "handle", "%li")
    if err != 1:
        xenbus_dev_fatal(kernel, dev, -EINVAL, "reading handle")
        return -EINVAL
    be.netif = netif_alloc(kernel, dev, dev.otherend_id, values[0])
    return 0


def frontend_changed(kernel: XenLinuxKernel, dev: xenbus_device, frontend_state: int) -> None:
    """frontend_changed: follow the frontend (Connected -> connect; Closing/Closed -> tear down)."""
    be: backend_info | None = dev.drvdata
    if be is None:
        return
    if frontend_state == XenbusStateInitialising:
        if dev.state == XenbusStateClosed:
            kernel.printk(KERN_INFO, f"xen_netback: {dev.nodename}: prepare for reconnect")
            xenbus_switch_state(kernel, dev, XenbusStateInitWait)
    elif frontend_state in (XenbusStateInitialised, XenbusStateInitWait):
        return
    elif frontend_state == XenbusStateConnected:
        if dev.state != XenbusStateInitWait or connect(kernel, be) == 0:
            xenbus_switch_state(kernel, dev, XenbusStateConnected)
    elif frontend_state == XenbusStateClosing:
        if dev.state == XenbusStateConnected and be.netif is not None:
            netif_disconnect(kernel, be.netif)
        xenbus_switch_state(kernel, dev, XenbusStateClosing)
    elif frontend_state in (XenbusStateClosed, XenbusStateUnknown):
        if dev.state == XenbusStateConnected and be.netif is not None:
            netif_disconnect(kernel, be.netif)
        if dev.state != XenbusStateClosing:
            xenbus_switch_state(kernel, dev, XenbusStateClosing)
        xenbus_switch_state(kernel, dev, XenbusStateClosed)
        if frontend_state == XenbusStateClosed and xenbus_dev_is_online(kernel, dev):
            return
        device_unregister(kernel, dev)
    else:
        xenbus_dev_fatal(kernel, dev, -EINVAL, f"saw state {frontend_state} at frontend")


def connect(kernel: XenLinuxKernel, be: backend_info) -> int:
    """connect: connect_rings; the caller then switches to Connected."""
    return connect_rings(kernel, be)


def _scan_int(kernel: XenLinuxKernel, path: str, node: str) -> int:
    """xenbus_scanf(XBT_NIL, path, node, "%d", &val) < 0 ? 0 : val -- a feature flag of the frontend."""
    err, values = xenbus_scanf(kernel, XBT_NIL, path, node, "%d")
    return values[0] if err >= 1 else 0


def connect_rings(kernel: XenLinuxKernel, be: backend_info) -> int:
    """connect_rings: gather the ring refs and the port, then request-rx-copy and the feature flags
    (feature-rx-notify as the device's tx_queue_len is not 0, feature-sg, feature-gso-tcpv4,
    feature-no-csum-offload); netif_map them."""
    dev = be.dev
    fe = dev.otherend
    assert fe is not None and be.netif is not None
    err, values = xenbus_gather(kernel, XBT_NIL, fe, ("tx-ring-ref", "%lu"), ("rx-ring-ref", "%lu"),
                                ("event-channel", "%u"))
    if err:
        xenbus_dev_fatal(kernel, dev, err, f"reading {fe}/ring-ref and event-channel")
        return err
    tx_ring_ref, rx_ring_ref, evtchn = values
    err, _rx_copy = xenbus_scanf(kernel, XBT_NIL, fe, "request-rx-copy", "%u")  # copying_receiver
    if err == -ENOENT:
        err = 0
    if err < 0:
        xenbus_dev_fatal(kernel, dev, err, f"reading {fe}/request-rx-copy")
        return err
    for flag in ("feature-rx-notify", "feature-sg", "feature-gso-tcpv4", "feature-no-csum-offload"):
        _scan_int(kernel, fe, flag)  # the lab keeps no features: only the reads matter
    err = netif_map(kernel, dev, be.netif, tx_ring_ref, rx_ring_ref, evtchn)
    if err:
        xenbus_dev_fatal(kernel, dev, err, f"mapping shared-frames {tx_ring_ref}/{rx_ring_ref} port {evtchn}")
        return err
    return 0


def netif_xenbus_init(kernel: XenLinuxKernel) -> int:
    """netif_xenbus_init (from netback_init, module_init): register the "vif" backend driver."""
    kernel.netback_driver = xenbus_driver(name="vif", ids=["vif"], probe=netback_probe,
                                          otherend_changed=frontend_changed, remove=netback_remove)
    return xenbus_register_backend(kernel, kernel.netback_driver)

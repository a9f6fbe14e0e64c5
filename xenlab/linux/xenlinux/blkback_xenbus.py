"""drivers/xen/blkback/xenbus.c, XenLinux 2.6.18: the block backend "vbd" on xenbus.

``blkback_probe`` watches the device's own physical-device node and goes InitWait. The
hotplug script (run by the toolstack) writes physical-device "major:minor" (hex): the
watch (``backend_changed``) opens that block device (``vbd_create``, vbd.c). When the
frontend is Initialised, ``connect_ring`` gathers its ring-ref and event-channel, then its protocol,
and maps them (``blkif_map``, interface.c: IRQ "blkif-backend"); once both are there
``update_blkif_status`` runs ``connect``, which writes feature-barrier, sectors, info
and sector-size in one transaction and switches to Connected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xenlab.abi.errno import EAGAIN, EINVAL, ENOENT, ERANGE
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
from xenlab.linux.kernel import KERN_INFO, KERN_WARNING
from xenlab.linux.xenlinux.blkback_interface import (
    BLKIF_PROTOCOL_NATIVE,
    BLKIF_PROTOCOL_X86_32,
    BLKIF_PROTOCOL_X86_64,
    blkif_disconnect,
    blkif_map,
    blkif_t,
)
from xenlab.linux.xenlinux.blkback_vbd import vbd_create
from xenlab.linux.xenlinux.xenbus_backend_client import xenbus_dev_is_online
from xenlab.linux.xenlinux.xenbus_client import xenbus_dev_fatal, xenbus_switch_state, xenbus_watch_path2
from xenlab.linux.xenlinux.xenbus_probe import xenbus_device, xenbus_driver
from xenlab.linux.xenlinux.xenbus_probe_backend import xenbus_register_backend
from xenlab.linux.xenlinux.xenbus_xs import (
    XBT_NIL,
    unregister_xenbus_watch,
    xenbus_gather,
    xenbus_printf,
    xenbus_read,
    xenbus_scanf,
    xenbus_transaction_end,
    xenbus_transaction_start,
    xenbus_watch,
)

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel

SRC = "drivers/xen/blkback/xenbus.c"
XEN_IO_PROTO_ABI = {"x86_64-abi": BLKIF_PROTOCOL_X86_64, "x86_32-abi": BLKIF_PROTOCOL_X86_32}
XEN_IO_PROTO_ABI_NATIVE = "x86_64-abi"  # include/xen/interface/io/protocols.h on x86_64
VDISK_CDROM, VDISK_REMOVABLE, VDISK_READONLY = 1, 2, 4


@dataclass(eq=False)
class backend_info:
    """struct backend_info: the device, its blkif, the physical device and the watch on it."""

    dev: xenbus_device
    blkif: blkif_t
    major: int = 0
    minor: int = 0
    backend_watch: xenbus_watch = field(default_factory=lambda: xenbus_watch("", _unset))


def _unset(watch: xenbus_watch, path: str, token: str) -> None:
    """An unset watch callback (NULL)."""


def update_blkif_status(kernel: XenLinuxKernel, be: backend_info) -> None:
    """update_blkif_status: connect once both the ring and the vbd are there."""
    if not be.blkif.irq or be.blkif.bdev is None or be.dev.state == XenbusStateConnected:
        return
    connect(kernel, be)


def blkback_remove(kernel: XenLinuxKernel, dev: xenbus_device) -> None:
    """blkback_remove: drop the physical-device watch, disconnect, forget the blkif."""
    be: backend_info | None = dev.drvdata
    if be is None:
        return
    if be.backend_watch.node:
        unregister_xenbus_watch(kernel, be.backend_watch)
        be.backend_watch.node = ""
    blkif_disconnect(kernel, dev, be.blkif)
    dev.drvdata = None


def blkback_probe(kernel: XenLinuxKernel, dev: xenbus_device) -> int:
    """blkback_probe: a blkif for the frontend, a watch on physical-device, then InitWait."""
    be = backend_info(dev=dev, blkif=blkif_t(dev.otherend_id))
    dev.drvdata = be

    def backend_changed_cb(watch: xenbus_watch, path: str, token: str) -> None:
        backend_changed(kernel, be)  # container_of(watch, struct backend_info, backend_watch)

    backend_changed_cb.__name__ = "backend_changed"
    err = xenbus_watch_path2(kernel, dev, dev.nodename, "physical-device", be.backend_watch,
                             backend_changed_cb)
    if err:
        dev.drvdata = None
        return err
    kernel.record("blkback_probe", f"{dev.nodename}: backend for domain {dev.otherend_id}", SRC)
    return xenbus_switch_state(kernel, dev, XenbusStateInitWait)


def backend_changed(kernel: XenLinuxKernel, be: backend_info) -> None:
    """backend_changed: physical-device was written (by the hotplug script): open that device."""
    dev = be.dev
    err, values = xenbus_scanf(kernel, XBT_NIL, dev.nodename, "physical-device", "%x:%x")
    if err in (-ENOENT, -ERANGE):
        return  # XENBUS_EXIST_ERR: the hotplug script has not run yet
    if err != 2:
        xenbus_dev_fatal(kernel, dev, err if err < 0 else -EINVAL, "reading physical-device")
        return
    major, minor = values
    if be.blkif.bdev is not None:
        if (be.major, be.minor) != (major, minor):
            kernel.printk(KERN_WARNING, "blkback: changing physical device (from "
                          f"{be.major:x}:{be.minor:x} to "
                          f"{major:x}:{minor:x}) not supported.")
        return
    mode = xenbus_read(kernel, XBT_NIL, dev.nodename, "mode")
    if isinstance(mode, int):
        xenbus_dev_fatal(kernel, dev, mode, "reading mode")
        return
    assert dev.otherend is not None
    device_type = xenbus_read(kernel, XBT_NIL, dev.otherend, "device-type")
    cdrom = device_type == "cdrom"
    be.major, be.minor = major, minor
    err = vbd_create(kernel, dev, be.blkif, major, minor, "w" not in mode, cdrom)
    if err:
        be.major = be.minor = 0
        xenbus_dev_fatal(kernel, dev, err, "creating vbd structure")
        return
    update_blkif_status(kernel, be)


def frontend_changed(kernel: XenLinuxKernel, dev: xenbus_device, frontend_state: int) -> None:
    """frontend_changed: follow the frontend's state (connect, close, reconnect)."""
    be: backend_info | None = dev.drvdata
    if be is None:
        return
    if frontend_state == XenbusStateInitialising:
        if dev.state == XenbusStateClosed:
            kernel.printk(KERN_INFO, f"frontend_changed: {dev.nodename}: prepare for reconnect")
            xenbus_switch_state(kernel, dev, XenbusStateInitWait)
    elif frontend_state in (XenbusStateInitialised, XenbusStateConnected):
        if dev.state == XenbusStateConnected:
            return
        blkif_disconnect(kernel, dev, be.blkif)
        if connect_ring(kernel, be):
            blkif_disconnect(kernel, dev, be.blkif)
            return
        update_blkif_status(kernel, be)
    elif frontend_state == XenbusStateClosing:
        blkif_disconnect(kernel, dev, be.blkif)
        xenbus_switch_state(kernel, dev, XenbusStateClosing)
    elif frontend_state in (XenbusStateClosed, XenbusStateUnknown):
        if frontend_state == XenbusStateClosed:
            blkif_disconnect(kernel, dev, be.blkif)
            xenbus_switch_state(kernel, dev, XenbusStateClosed)
            if xenbus_dev_is_online(kernel, dev):
                return
        device_unregister(kernel, dev)
    elif frontend_state != XenbusStateInitWait:
        xenbus_dev_fatal(kernel, dev, -EINVAL, f"saw state {frontend_state} at frontend")


def connect(kernel: XenLinuxKernel, be: backend_info) -> None:
    """connect: feature-barrier, sectors, info, sector-size in one transaction, then Connected."""
    dev, blkif = be.dev, be.blkif
    bdev = blkif.bdev
    assert bdev is not None
    info = (VDISK_CDROM if blkif.cdrom else 0) | (VDISK_READONLY if blkif.readonly else 0)
    while True:
        err, xbt = xenbus_transaction_start(kernel)
        if err:
            xenbus_dev_fatal(kernel, dev, err, "starting transaction")
            return
        for key, fmt, value in (("feature-barrier", "%d", int(bdev.flush)), ("sectors", "%u", bdev.sectors),
                                ("info", "%u", info), ("sector-size", "%u", bdev.logical_block_size)):
            err = xenbus_printf(kernel, xbt, dev.nodename, key, fmt, value)
            if err:
                xenbus_dev_fatal(kernel, dev, err, f"writing {dev.nodename}/{key}")
                xenbus_transaction_end(kernel, xbt, 1)
                return
        err = xenbus_transaction_end(kernel, xbt, 0)
        if err == -EAGAIN:
            continue
        if err:
            xenbus_dev_fatal(kernel, dev, err, "ending transaction")
            return
        break
    kernel.record("connect", f"{dev.nodename}: {bdev.sectors} sectors advertised", SRC)
    err = xenbus_switch_state(kernel, dev, XenbusStateConnected)
    if err:
        xenbus_dev_fatal(kernel, dev, err, f"switching to Connected state {dev.nodename}")


def connect_ring(kernel: XenLinuxKernel, be: backend_info) -> int:
    """connect_ring: gather the frontend's ring-ref and event-channel, then its protocol ("%63s";
    missing: "unspecified, assuming native"); map them (blkif_map)."""
    dev = be.dev
    assert dev.otherend is not None
    err, values = xenbus_gather(kernel, XBT_NIL, dev.otherend, ("ring-ref", "%lu"), ("event-channel", "%u"))
    if err:
        xenbus_dev_fatal(kernel, dev, err, f"reading {dev.otherend}/ring-ref and event-channel")
        return err
    ring_ref, evtchn = values
    be.blkif.blk_protocol = BLKIF_PROTOCOL_NATIVE
    err, proto = xenbus_gather(kernel, XBT_NIL, dev.otherend, ("protocol", None))
    words = proto[0].split() if not err else []
    if not words:  # unreadable, or "%63s" matched nothing (-EINVAL)
        protocol = "unspecified, assuming native"
    else:
        protocol = words[0][:63]
        if protocol == XEN_IO_PROTO_ABI_NATIVE:
            be.blkif.blk_protocol = BLKIF_PROTOCOL_NATIVE
        elif protocol in XEN_IO_PROTO_ABI:
            be.blkif.blk_protocol = XEN_IO_PROTO_ABI[protocol]
        else:
            xenbus_dev_fatal(kernel, dev, err, f"unknown fe protocol {protocol}")
            return -1
    kernel.printk(KERN_INFO, f"blkback: ring-ref {ring_ref}, event-channel {evtchn}, protocol "
                  f"{be.blkif.blk_protocol} ({protocol})")
    err = blkif_map(kernel, dev, be.blkif, ring_ref, evtchn)
    if err:
        xenbus_dev_fatal(kernel, dev, err, f"mapping ring-ref {ring_ref} port {evtchn}")
        return err
    return 0


def blkif_xenbus_init(kernel: XenLinuxKernel) -> int:
    """blkif_xenbus_init: register the "vbd" backend driver."""
    kernel.blkback_driver = xenbus_driver(name="vbd", ids=["vbd"], probe=blkback_probe,
                                          otherend_changed=frontend_changed, remove=blkback_remove)
    return xenbus_register_backend(kernel, kernel.blkback_driver)

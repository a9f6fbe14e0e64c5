"""The block backend "vbd" in dom0: advertise features, wait for the disk and the frontend, connect.

Modern (drivers/block/xen-blkback/xenbus.c, Linux 6.1): probe writes
feature-max-indirect-segments, multi-queue-max-queues, max-ring-page-order, watches
its own physical-device and goes InitWait. The hotplug script (run by libxl) writes
physical-device "major:minor" (hex): the watch opens that block device. When the
frontend is Initialised, ``connect_ring`` maps its ring and binds its port
("blkif-backend"); once both are there ``connect`` writes, in one transaction, the
flush/discard/barrier/persistent features and sectors / info / sector-size /
physical-sector-size, and switches to Connected. 2.6.18 (drivers/xen/blkback/xenbus.c)
does the same with feature-barrier, sectors, info, sector-size.

The block devices dom0 can open are ``BlockDevice`` rows in ``kernel.block_devices``
(the machine adds the loop device the hotplug script sets up).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xenlab.abi.errno import EINVAL, ENOENT, ENOSYS
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
from xenlab.linux.drivers.blkback_thread import (
    xen_blkif_be_int,
    xen_blkif_ring,
    xen_blkif_start_threads,
    xen_blkif_stop_thread,
)
from xenlab.linux.drivers.common import backend_bind_irq, irq_handler, nr_cpus, unbind_irq
from xenlab.linux.genhd import BlockDevice, lookup_bdev
from xenlab.linux.kernel import KERN_INFO, KERN_WARNING
from xenlab.linux.xenbus.bus import xenbus_driver
from xenlab.linux.xenbus.client import (
    XBT_NIL,
    unregister_xenbus_watch,
    xenbus_dev_error,
    xenbus_dev_fatal,
    xenbus_dev_is_online,
    xenbus_gather,
    xenbus_map_ring_valloc,
    xenbus_printf,
    xenbus_read,
    xenbus_read_unsigned,
    xenbus_switch_state,
    xenbus_transaction_end,
    xenbus_transaction_start,
    xenbus_watch_pathfmt,
)
from xenlab.linux.xenbus.probe_backend import xenbus_register_backend

SRC = "drivers/block/xen-blkback/xenbus.c"
SRC_2618 = "drivers/xen/blkback/xenbus.c"
MAX_INDIRECT_SEGMENTS = 256
XEN_BLKIF_MAX_RING_ORDER = 4  # XENBUS_MAX_RING_GRANT_ORDER, the max_ring_page_order default
BLKIF_PROTOCOLS = {"x86_64-abi": 1, "x86_32-abi": 2}  # NATIVE is x86_64 on an x86_64 dom0
VDISK_CDROM, VDISK_REMOVABLE, VDISK_READONLY = 1, 2, 4


@dataclass(eq=False)
class backend_info:
    """struct backend_info + xen_blkif: the device, its vbd, ring and IRQ."""

    dev: Any
    major: int = 0
    minor: int = 0
    bdev: BlockDevice | None = None
    readonly: bool = False
    cdrom: bool = False
    rings: list[xen_blkif_ring] = field(default_factory=list)
    protocol: int = 1
    persistent: bool = False
    backend_watch: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def _src(kernel: Any) -> str:
    return SRC_2618 if kernel.flavour == "2.6.18" else SRC


def xen_blkbk_probe(kernel: Any, dev: Any) -> int:
    """xen_blkbk_probe / blkback_probe: advertise, watch physical-device, InitWait."""
    be = backend_info(dev=dev)
    dev.drvdata = be
    if kernel.flavour != "2.6.18":
        key = "feature-max-indirect-segments"
        if xenbus_printf(kernel, XBT_NIL, dev.nodename, key, MAX_INDIRECT_SEGMENTS):
            kernel.printk(KERN_WARNING, f"vbd {dev.name}: writing {dev.nodename}/{key}")
        if xenbus_printf(kernel, XBT_NIL, dev.nodename, "multi-queue-max-queues", nr_cpus(kernel)):
            kernel.printk(KERN_WARNING, "xen-blkback: Error writing multi-queue-max-queues")
    watch = xenbus_watch_pathfmt(kernel, dev, lambda w, path, token="": backend_changed(kernel, dev),
                                 dev.nodename, "physical-device")
    if isinstance(watch, int):
        dev.drvdata = None
        return watch
    be.backend_watch = watch
    if kernel.flavour != "2.6.18":
        xenbus_printf(kernel, XBT_NIL, dev.nodename, "max-ring-page-order", XEN_BLKIF_MAX_RING_ORDER)
    kernel.record("xen_blkbk_probe", f"{dev.nodename}: backend for domain {dev.otherend_id}", _src(kernel))
    return xenbus_switch_state(kernel, dev, XenbusStateInitWait)


def backend_changed(kernel: Any, dev: Any) -> None:
    """backend_changed: physical-device was written (by the hotplug script): open that device."""
    be: backend_info | None = dev.drvdata
    if be is None:
        return
    val = xenbus_read(kernel, XBT_NIL, dev.nodename, "physical-device")
    if isinstance(val, int):
        if val != -ENOENT:
            xenbus_dev_fatal(kernel, dev, val, "reading physical-device")
        return  # not written yet: the hotplug script has not run
    try:
        major, minor = (int(x, 16) for x in val.split(":"))
    except ValueError:
        xenbus_dev_fatal(kernel, dev, -EINVAL, "reading physical-device")
        return
    if be.bdev is not None:
        if (be.major, be.minor) != (major, minor):
            kernel.printk(KERN_WARNING, "xen-blkback: changing physical device (from "
                          f"{be.major:x}:{be.minor:x} to {major:x}:{minor:x}) not supported.")
        return
    mode = xenbus_read(kernel, XBT_NIL, dev.nodename, "mode")
    if isinstance(mode, int):
        xenbus_dev_fatal(kernel, dev, mode, "reading mode")
        return
    dtype = xenbus_read(kernel, XBT_NIL, dev.otherend, "device-type")
    be.cdrom = dtype == "cdrom"
    be.readonly = "w" not in mode
    bdev = lookup_bdev(kernel, major, minor)
    if bdev is None:
        kernel.printk(KERN_WARNING, f"xen-blkback: xen_vbd_create: device {(major << 20) | minor:08x} "
                      "could not be opened")
        xenbus_dev_fatal(kernel, dev, -ENOENT, "creating vbd structure")
        return
    be.major, be.minor, be.bdev = major, minor, bdev
    kernel.record("xen_vbd_create", f"{dev.nodename}: vbd on {bdev.name} ({major}:{minor}), "
                  f"{'ro' if be.readonly else 'rw'}", _src(kernel))
    xen_update_blkif_status(kernel, be)


def connect_ring(kernel: Any, be: backend_info) -> int:
    """connect_ring: read the frontend's ring-ref / event-channel / protocol, map and bind them."""
    dev = be.dev
    fe = dev.otherend
    proto = xenbus_read(kernel, XBT_NIL, fe, "protocol")
    protocol = "x86_64-abi" if isinstance(proto, int) or not proto else proto
    if protocol not in BLKIF_PROTOCOLS:
        xenbus_dev_fatal(kernel, dev, -EINVAL, f"unknown fe protocol {protocol}")
        return -EINVAL
    be.protocol = BLKIF_PROTOCOLS[protocol]
    nqueues = 1
    if kernel.flavour != "2.6.18":
        be.persistent = bool(xenbus_read_unsigned(kernel, fe, "feature-persistent", 0))
        nqueues = xenbus_read_unsigned(kernel, fe, "multi-queue-num-queues", 1)
        if nqueues > nr_cpus(kernel) or nqueues == 0:
            xenbus_dev_fatal(kernel, dev, -ENOSYS, f"Guest requested ({nqueues}) queues, exceeding the "
                             f"maximum of {nr_cpus(kernel)}.")
            return -ENOSYS
        kernel.printk(KERN_INFO, f"xen-blkback: {dev.nodename}: using {nqueues} queues, protocol "
                      f"{be.protocol} ({protocol}) {'persistent grants' if be.persistent else ''}")
    paths = [fe] if nqueues == 1 else [f"{fe}/queue-{i}" for i in range(nqueues)]
    for path in paths:
        err = read_per_ring_refs(kernel, be, path)
        if err:
            return err
    return 0


def read_per_ring_refs(kernel: Any, be: backend_info, path: str) -> int:
    """read_per_ring_refs: one ring's event-channel and ring-ref: map the ring, bind the port."""
    dev = be.dev
    vals = xenbus_gather(kernel, XBT_NIL, path, "event-channel", "ring-ref")
    if isinstance(vals, int):
        xenbus_dev_fatal(kernel, dev, vals, f"reading {path}/ring-ref")
        return vals
    evtchn, ring_ref = int(vals[0]), int(vals[1])
    if kernel.flavour == "2.6.18":
        proto = {v: k for k, v in BLKIF_PROTOCOLS.items()}.get(be.protocol, "x86_64-abi")
        kernel.printk(KERN_INFO, f"blkback: ring-ref {ring_ref}, event-channel {evtchn}, protocol "
                      f"{be.protocol} ({proto})")
    err = xenbus_map_ring_valloc(kernel, dev, [ring_ref])
    if err:
        return err
    ring = xen_blkif_ring(ring_ref, evtchn)
    irq = backend_bind_irq(kernel, dev, evtchn, "blkif-backend", irq_handler(kernel, xen_blkif_be_int), ring)
    if irq < 0:
        xenbus_dev_fatal(kernel, dev, irq, f"mapping ring-ref {ring_ref} port {evtchn}")
        return irq
    ring.irq = irq
    be.rings.append(ring)
    kernel.record("xen_blkif_map", f"{dev.nodename}: ring-ref {ring_ref} mapped, remote port {evtchn} bound "
                  f"(IRQ {irq})", _src(kernel))
    return 0


def xen_update_blkif_status(kernel: Any, be: backend_info) -> None:
    """xen_update_blkif_status: connect once both the ring and the vbd are there."""
    if not be.rings or be.bdev is None or be.dev.state == XenbusStateConnected:
        return
    connect(kernel, be)
    if be.dev.state != XenbusStateConnected or kernel.flavour == "2.6.18":
        return
    devpath = xenbus_read(kernel, XBT_NIL, be.dev.nodename, "dev")  # blkback_name: "<domid>.<dev>"
    if isinstance(devpath, int):
        xenbus_dev_error(kernel, be.dev, devpath, "get blkback dev name")
        return
    devname = devpath.split("/dev/", 1)[1] if "/dev/" in devpath else devpath
    xen_blkif_start_threads(kernel, be.rings, f"{be.dev.otherend_id}.{devname}")


def connect(kernel: Any, be: backend_info) -> None:
    """connect: write the disk's features and geometry in one transaction, then Connected."""
    dev, bdev = be.dev, be.bdev
    assert bdev is not None
    info = (VDISK_CDROM if be.cdrom else 0) | (VDISK_READONLY if be.readonly else 0)
    while True:
        err, xbt = xenbus_transaction_start(kernel)
        if err:
            xenbus_dev_fatal(kernel, dev, err, "starting transaction")
            return
        keys: list[tuple[str, object]] = []
        if kernel.flavour != "2.6.18":
            keys.append(("feature-flush-cache", int(bdev.flush)))
            if xenbus_read_unsigned(kernel, dev.nodename, "discard-enable", 1):
                if bdev.discard_granularity:
                    keys += [("discard-granularity", bdev.discard_granularity),
                             ("discard-alignment", bdev.discard_alignment),
                             ("discard-secure", int(bdev.secure_erase))]
                keys.append(("feature-discard", int(bool(bdev.discard_granularity))))
        keys.append(("feature-barrier", int(bdev.flush)))
        if kernel.flavour != "2.6.18":
            keys.append(("feature-persistent", 1))
        keys += [("sectors", bdev.sectors), ("info", info), ("sector-size", bdev.logical_block_size)]
        if kernel.flavour != "2.6.18":
            keys.append(("physical-sector-size", bdev.physical_block_size))
        for key, value in keys:
            err = xenbus_printf(kernel, xbt, dev.nodename, key, value)
            if err:
                xenbus_dev_fatal(kernel, dev, err, f"writing {dev.nodename}/{key}")
                xenbus_transaction_end(kernel, xbt, True)
                return
        err = xenbus_transaction_end(kernel, xbt, False)
        if err == -11:  # -EAGAIN: someone else changed what we read: again
            continue
        if err:
            xenbus_dev_fatal(kernel, dev, err, "ending transaction")
            return
        break
    kernel.record("connect", f"{dev.nodename}: {bdev.sectors} sectors advertised", _src(kernel))
    err = xenbus_switch_state(kernel, dev, XenbusStateConnected)
    if err:
        xenbus_dev_fatal(kernel, dev, err, f"{dev.nodename}: switching to Connected state")


def xen_blkif_disconnect(kernel: Any, be: backend_info) -> int:
    """xen_blkif_disconnect: unbind the IRQ and unmap the ring (idempotent)."""
    for ring in be.rings:
        xen_blkif_stop_thread(kernel, ring)
        unbind_irq(kernel, ring.irq, ring)
        kernel.record("xen_blkif_disconnect", f"{be.dev.nodename}: ring {ring.ring_ref} unmapped, IRQ "
                      f"{ring.irq} freed", _src(kernel))
    be.rings = []
    return 0


def frontend_changed(kernel: Any, dev: Any, frontend_state: int) -> None:
    """frontend_changed: follow the frontend's state (connect, close, reconnect)."""
    be: backend_info | None = dev.drvdata
    if be is None:
        return
    if frontend_state == XenbusStateInitialising:
        if dev.state == XenbusStateClosed:
            prefix = "frontend_changed: " if kernel.flavour == "2.6.18" else "xen-blkback: "
            kernel.printk(KERN_INFO, f"{prefix}{dev.nodename}: prepare for reconnect")
            xenbus_switch_state(kernel, dev, XenbusStateInitWait)
    elif frontend_state in (XenbusStateInitialised, XenbusStateConnected):
        if dev.state == XenbusStateConnected:
            return
        xen_blkif_disconnect(kernel, be)
        if connect_ring(kernel, be):
            xen_blkif_disconnect(kernel, be)
            return
        xen_update_blkif_status(kernel, be)
    elif frontend_state == XenbusStateClosing:
        if kernel.flavour == "2.6.18":
            xen_blkif_disconnect(kernel, be)
        xenbus_switch_state(kernel, dev, XenbusStateClosing)
    elif frontend_state in (XenbusStateClosed, XenbusStateUnknown):
        if frontend_state == XenbusStateClosed:
            xen_blkif_disconnect(kernel, be)
            xenbus_switch_state(kernel, dev, XenbusStateClosed)
            if xenbus_dev_is_online(kernel, dev):
                return
        device_unregister(kernel, dev)
    elif frontend_state not in (XenbusStateInitWait,):
        xenbus_dev_fatal(kernel, dev, -EINVAL, f"saw state {frontend_state} at frontend")


def xen_blkbk_remove(kernel: Any, dev: Any) -> None:
    """xen_blkbk_remove: drop the physical-device watch, disconnect, forget the vbd."""
    be: backend_info | None = dev.drvdata
    if be is None:
        return
    if be.backend_watch is not None:
        unregister_xenbus_watch(kernel, be.backend_watch)
        be.backend_watch = None
    xen_blkif_disconnect(kernel, be)
    dev.drvdata = None


def blkback_driver() -> xenbus_driver:
    """The "vbd" backend xenbus_driver."""
    return xenbus_driver(name="vbd", ids=["vbd"], probe=xen_blkbk_probe, otherend_changed=frontend_changed,
                         remove=xen_blkbk_remove)


def blkback_init(kernel: Any) -> int:
    """xen_blkif_init (module_init of xen-blkback): register the "vbd" backend driver."""
    drv = blkback_driver()
    kernel.blkback_driver = drv
    return xenbus_register_backend(kernel, drv)

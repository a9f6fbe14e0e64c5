"""drivers/block/xen-blkback/xenbus.c, Linux 6.1: the block backend "vbd" in dom0.

Probe writes feature-max-indirect-segments and multi-queue-max-queues, watches its own
physical-device, writes max-ring-page-order and goes InitWait. The hotplug script (run
by libxl) writes physical-device "major:minor" (hex): the watch opens that block device.
When the frontend is Initialised, ``connect_ring`` maps its ring and binds its port
("blkif-backend"); once both are there ``connect`` writes, in one transaction, the
flush/discard/barrier/persistent features and sectors / info / sector-size /
physical-sector-size, switches to Connected, and ``xen_update_blkif_status`` starts the
ring threads. The block devices dom0 can open are ``BlockDevice`` rows in
``kernel.block_devices`` (the machine adds the loop device the hotplug script sets up).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xenlab.abi.errno import EAGAIN, EINVAL, ENOENT, ENOSYS
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
from xenlab.linux.genhd import BlockDevice, lookup_bdev
from xenlab.linux.kernel import KERN_INFO, KERN_WARNING
from xenlab.linux.pvops.blkback_blkback import xen_blkif_be_int, xen_blkif_ring, xen_blkif_schedule
from xenlab.linux.pvops.events_base import (
    bind_interdomain_evtchn_to_irqhandler_lateeoi,
    unbind_from_irqhandler,
)
from xenlab.linux.pvops.xenbus_client import (
    xenbus_dev_error,
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
    xenbus_gather,
    xenbus_printf,
    xenbus_read,
    xenbus_read_unsigned,
    xenbus_transaction_end,
    xenbus_transaction_start,
    xenbus_watch,
)

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel

SRC = "drivers/block/xen-blkback/xenbus.c"
MAX_INDIRECT_SEGMENTS = 256
XEN_BLKIF_MAX_RING_ORDER = 4  # XENBUS_MAX_RING_GRANT_ORDER, the max_ring_page_order default
BLKIF_PROTOCOLS = {"x86_64-abi": 1, "x86_32-abi": 2}  # NATIVE is x86_64 on an x86_64 dom0
VDISK_CDROM, VDISK_REMOVABLE, VDISK_READONLY = 1, 2, 4


@dataclass(eq=False)
class backend_info:
    """struct backend_info + xen_blkif: the device, its vbd, rings and the physical-device watch."""

    dev: xenbus_device
    major: int = 0
    minor: int = 0
    bdev: BlockDevice | None = None
    readonly: bool = False
    cdrom: bool = False
    rings: list[xen_blkif_ring] = field(default_factory=list)
    protocol: int = 1
    persistent: bool = False
    backend_watch: xenbus_watch = field(default_factory=xenbus_watch)


def xen_blkif_start_threads(kernel: PvopsKernel, be: backend_info, name: str) -> None:
    """xen_update_blkif_status's tail: kthread_run(xen_blkif_schedule, ring, "%s-%d", name, i)."""
    for i, ring in enumerate(be.rings):
        # the ring thread never waits for another process-context task: it may run inside any wait
        ring.xenblkd = kernel.sched.kthread_run(xen_blkif_schedule, f"{name}-{i}", kernel, ring,
                                                owner=kernel.name, nests=True,
                                                wait=(ring.wq, lambda ring=ring: ring.waiting_reqs))
        kernel.record("kthread_run", f"{name}-{i} (pid {ring.xenblkd.pid}): ring {ring.ring_ref}'s "
                      "xen_blkif_schedule", SRC)


def xen_update_blkif_status(kernel: PvopsKernel, be: backend_info) -> None:
    """xen_update_blkif_status: connect once both the ring and the vbd are there, then start the threads."""
    if not be.rings or be.bdev is None or be.dev.state == XenbusStateConnected:
        return
    connect(kernel, be)
    if be.dev.state != XenbusStateConnected:
        return
    devpath = xenbus_read(kernel, XBT_NIL, be.dev.nodename, "dev")  # blkback_name: "<domid>.<dev>"
    if isinstance(devpath, int):
        xenbus_dev_error(kernel, be.dev, devpath, "get blkback dev name")
        return
    devname = devpath.split("/dev/", 1)[1] if "/dev/" in devpath else devpath
    xen_blkif_start_threads(kernel, be, f"{be.dev.otherend_id}.{devname}")


def xen_blkif_disconnect(kernel: PvopsKernel, be: backend_info) -> int:
    """xen_blkif_disconnect: stop each ring's thread, unbind its IRQ and unmap it (idempotent)."""
    for ring in be.rings:
        if ring.xenblkd is not None:  # kthread_stop: the thread sees kthread_should_stop() and exits
            kernel.sched.kthread_stop(ring.xenblkd)
            ring.xenblkd = None
        if ring.irq > 0:
            unbind_from_irqhandler(kernel, ring.irq, ring)
        kernel.record("xen_blkif_disconnect", f"{be.dev.nodename}: ring {ring.ring_ref} unmapped, IRQ "
                      f"{ring.irq} freed", SRC)
    be.rings = []
    return 0


def xen_blkbk_remove(kernel: PvopsKernel, dev: xenbus_device) -> None:
    """xen_blkbk_remove: drop the physical-device watch, disconnect, forget the vbd."""
    be: backend_info | None = dev.drvdata
    if be is None:
        return
    if be.backend_watch.node:
        unregister_xenbus_watch(kernel, be.backend_watch)
        be.backend_watch.node = ""
    xen_blkif_disconnect(kernel, be)
    dev.drvdata = None


def xen_blkbk_probe(kernel: PvopsKernel, dev: xenbus_device) -> int:
    """xen_blkbk_probe: advertise, watch physical-device, InitWait."""
    be = backend_info(dev=dev)
    dev.drvdata = be
    key = "feature-max-indirect-segments"
    if xenbus_printf(kernel, XBT_NIL, dev.nodename, key, "%d", MAX_INDIRECT_SEGMENTS):
        kernel.printk(KERN_WARNING, f"vbd {dev.name}: writing {dev.nodename}/{key}")
    if xenbus_printf(kernel, XBT_NIL, dev.nodename, "multi-queue-max-queues", "%u", kernel.num_online_cpus()):
        kernel.printk(KERN_WARNING, "xen-blkback: Error writing multi-queue-max-queues")

    def backend_changed_cb(watch: xenbus_watch, path: str, token: str) -> None:
        backend_changed(kernel, dev)

    backend_changed_cb.__name__ = "backend_changed"
    err = xenbus_watch_pathfmt(kernel, dev, be.backend_watch, None, backend_changed_cb, "%s/%s",
                               dev.nodename, "physical-device")
    if err:
        dev.drvdata = None
        return err
    xenbus_printf(kernel, XBT_NIL, dev.nodename, "max-ring-page-order", "%u", XEN_BLKIF_MAX_RING_ORDER)
    kernel.record("xen_blkbk_probe", f"{dev.nodename}: backend for domain {dev.otherend_id}", SRC)
    return xenbus_switch_state(kernel, dev, XenbusStateInitWait)


def backend_changed(kernel: PvopsKernel, dev: xenbus_device) -> None:
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
    assert dev.otherend is not None
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
                  f"{'ro' if be.readonly else 'rw'}", SRC)
    xen_update_blkif_status(kernel, be)


def frontend_changed(kernel: PvopsKernel, dev: xenbus_device, frontend_state: int) -> None:
    """frontend_changed: follow the frontend's state (connect, close, reconnect)."""
    be: backend_info | None = dev.drvdata
    if be is None:
        return
    if frontend_state == XenbusStateInitialising:
        if dev.state == XenbusStateClosed:
            kernel.printk(KERN_INFO, f"xen-blkback: {dev.nodename}: prepare for reconnect")
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
        xenbus_switch_state(kernel, dev, XenbusStateClosing)
    elif frontend_state in (XenbusStateClosed, XenbusStateUnknown):
        if frontend_state == XenbusStateClosed:
            xen_blkif_disconnect(kernel, be)
            xenbus_switch_state(kernel, dev, XenbusStateClosed)
            if xenbus_dev_is_online(kernel, dev):
                return
        device_unregister(kernel, dev)
    elif frontend_state != XenbusStateInitWait:
        xenbus_dev_fatal(kernel, dev, -EINVAL, f"saw state {frontend_state} at frontend")


def connect(kernel: PvopsKernel, be: backend_info) -> None:
    """connect: write the disk's features and geometry in one transaction, then Connected."""
    dev, bdev = be.dev, be.bdev
    assert bdev is not None
    info = (VDISK_CDROM if be.cdrom else 0) | (VDISK_READONLY if be.readonly else 0)
    while True:
        err, xbt = xenbus_transaction_start(kernel)
        if err:
            xenbus_dev_fatal(kernel, dev, err, "starting transaction")
            return
        keys: list[tuple[str, str, object]] = [("feature-flush-cache", "%d", int(bdev.flush))]
        if xenbus_read_unsigned(kernel, dev.nodename, "discard-enable", 1):  # xen_blkbk_discard
            if bdev.discard_granularity:
                keys += [("discard-granularity", "%u", bdev.discard_granularity),
                         ("discard-alignment", "%u", bdev.discard_alignment),
                         ("discard-secure", "%d", int(bdev.secure_erase))]
            keys.append(("feature-discard", "%d", int(bool(bdev.discard_granularity))))
        keys += [("feature-barrier", "%d", int(bdev.flush)), ("feature-persistent", "%u", 1),
                 ("sectors", "%llu", bdev.sectors), ("info", "%u", info),
                 ("sector-size", "%lu", bdev.logical_block_size),
                 ("physical-sector-size", "%u", bdev.physical_block_size)]
        for key, fmt, value in keys:
            err = xenbus_printf(kernel, xbt, dev.nodename, key, fmt, value)
            if err:
                xenbus_dev_fatal(kernel, dev, err, f"writing {dev.nodename}/{key}")
                xenbus_transaction_end(kernel, xbt, True)
                return
        err = xenbus_transaction_end(kernel, xbt, False)
        if err == -EAGAIN:
            continue
        if err:
            xenbus_dev_fatal(kernel, dev, err, "ending transaction")
            return
        break
    kernel.record("connect", f"{dev.nodename}: {bdev.sectors} sectors advertised", SRC)
    err = xenbus_switch_state(kernel, dev, XenbusStateConnected)
    if err:
        xenbus_dev_fatal(kernel, dev, err, f"{dev.nodename}: switching to Connected state")


def read_per_ring_refs(kernel: PvopsKernel, be: backend_info, path: str) -> int:
    """read_per_ring_refs: one ring's event-channel and ring-ref: map the ring, bind the port."""
    dev = be.dev
    err, vals = xenbus_gather(kernel, XBT_NIL, path, ("event-channel", "%u"), ("ring-ref", "%u"))
    if err:
        xenbus_dev_fatal(kernel, dev, err, f"reading {path}/ring-ref")
        return err
    evtchn, ring_ref = vals
    err = xenbus_map_ring_valloc(kernel, dev, [ring_ref])
    if err:
        return err
    ring = xen_blkif_ring(ring_ref, evtchn)
    irq = bind_interdomain_evtchn_to_irqhandler_lateeoi(
        kernel, dev, evtchn, lambda irq, dev_id: xen_blkif_be_int(kernel, irq, dev_id), 0, "blkif-backend",
        ring)
    if irq < 0:
        xenbus_dev_fatal(kernel, dev, irq, f"mapping ring-ref {ring_ref} port {evtchn}")
        return irq
    ring.irq = irq
    be.rings.append(ring)
    kernel.record("xen_blkif_map", f"{dev.nodename}: ring-ref {ring_ref} mapped, remote port {evtchn} bound "
                  f"(IRQ {irq})", SRC)
    return 0


def connect_ring(kernel: PvopsKernel, be: backend_info) -> int:
    """connect_ring: read the frontend's protocol, features and queues; map and bind each ring."""
    dev = be.dev
    fe = dev.otherend
    assert fe is not None
    proto = xenbus_read(kernel, XBT_NIL, fe, "protocol")
    protocol = "x86_64-abi" if isinstance(proto, int) or not proto else proto
    if protocol not in BLKIF_PROTOCOLS:
        xenbus_dev_fatal(kernel, dev, -EINVAL, f"unknown fe protocol {protocol}")
        return -EINVAL
    be.protocol = BLKIF_PROTOCOLS[protocol]
    be.persistent = bool(xenbus_read_unsigned(kernel, fe, "feature-persistent", 0))
    nqueues = xenbus_read_unsigned(kernel, fe, "multi-queue-num-queues", 1)
    cpus = kernel.num_online_cpus()
    if nqueues > cpus or nqueues == 0:
        xenbus_dev_fatal(kernel, dev, -ENOSYS, f"Guest requested ({nqueues}) queues, exceeding the "
                         f"maximum of {cpus}.")
        return -ENOSYS
    kernel.printk(KERN_INFO, f"xen-blkback: {dev.nodename}: using {nqueues} queues, protocol "
                  f"{be.protocol} ({protocol}) {'persistent grants' if be.persistent else ''}")
    paths = [fe] if nqueues == 1 else [f"{fe}/queue-{i}" for i in range(nqueues)]
    for path in paths:
        err = read_per_ring_refs(kernel, be, path)
        if err:
            return err
    return 0


def blkback_driver() -> xenbus_driver:
    """The "vbd" backend xenbus_driver (xen_blkbk_driver)."""
    return xenbus_driver(name="vbd", ids=["vbd"], probe=xen_blkbk_probe, otherend_changed=frontend_changed,
                         remove=xen_blkbk_remove)


def xen_blkif_init(kernel: PvopsKernel) -> int:
    """xen_blkif_init (module_init of xen-blkback): register the "vbd" backend driver."""
    kernel.blkback_driver = blkback_driver()
    return xenbus_register_backend(kernel, kernel.blkback_driver)

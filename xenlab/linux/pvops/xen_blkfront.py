"""drivers/block/xen-blkfront.c, Linux 6.1: the block frontend "vbd".

Probe only reads virtual-device; on the backend's InitWait ``talk_to_blkback`` grants the
ring, allocates and binds the port ("blkif"), writes ring-ref / event-channel / protocol /
feature-persistent in one transaction and goes Initialised; on the backend's Connected
``blkfront_connect`` reads sectors / info / sector-size and the features, adds the disk
(xvda...) and goes Connected.

After the disk is added the kernel reads its partition table: the lab models that one
read (one data segment, granted and kept as a persistent grant), which is why the next
grant reference a guest hands out is the ring's + 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xenlab.abi.errno import EAGAIN, ENOENT
from xenlab.abi.xenbus import (
    XenbusStateClosed,
    XenbusStateClosing,
    XenbusStateConnected,
    XenbusStateInitialised,
    XenbusStateInitialising,
    XenbusStateInitWait,
)
from xenlab.linux.irq import IRQ_HANDLED
from xenlab.linux.kernel import KERN_INFO
from xenlab.linux.mm import get_zeroed_page
from xenlab.linux.pvops.events_base import (
    XEN_EOI_FLAG_SPURIOUS,
    bind_evtchn_to_irqhandler_lateeoi,
    unbind_from_irqhandler,
    xen_irq_lateeoi,
)
from xenlab.linux.pvops.grant_table import (
    gnttab_alloc_grant_references,
    gnttab_claim_grant_reference,
    gnttab_end_foreign_access,
    gnttab_free_grant_references,
    gnttab_grant_foreign_access_ref,
)
from xenlab.linux.pvops.xen_page import virt_to_gfn
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
    xenbus_gather,
    xenbus_printf,
    xenbus_read_unsigned,
    xenbus_scanf,
    xenbus_transaction_end,
    xenbus_transaction_start,
)

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel
    from xenlab.xen.memory import Page

SRC = "drivers/block/xen-blkfront.c"
XEN_IO_PROTO_ABI_NATIVE = "x86_64-abi"  # include/xen/interface/io/protocols.h on x86_64
XENVBD_MAJOR = 202
PARTS_PER_DISK = 16
PARTS_PER_EXT_DISK = 256
EXTENDED = 1 << 28  # EXT_SHIFT 28: a virtual-device number in the extended range
XEN_BLKIF_MAX_QUEUES_DEFAULT = 4  # module parameter max_queues
MAX_INDIRECT_SEGMENTS_DEFAULT = 32  # module parameter max_indirect_segments


@dataclass(eq=False)
class blkfront_ring_info:
    """struct blkfront_ring_info: one ring's grant reference, page, port and IRQ."""

    id: int
    ring_ref: int = 0
    ring_page: Page | None = None
    evtchn: int = 0
    irq: int = 0


@dataclass(eq=False)
class blkfront_info:
    """struct blkfront_info: the vdevice, its rings, the disk and the negotiated features."""

    vdevice: int
    handle: int
    rinfo: list[blkfront_ring_info] = field(default_factory=list)
    disk_name: str = ""
    sectors: int = 0
    sector_size: int = 0
    feature_flush: bool = False
    feature_fua: bool = False
    feature_persistent: bool = False
    max_indirect_segments: int = 0
    bounce: bool = False
    persistent_grefs: tuple[int, ...] = ()
    connected: bool = False


def blkif_interrupt(kernel: PvopsKernel, irq: int, rinfo: blkfront_ring_info) -> int:
    """blkif_interrupt: reap responses (none in flight in the lab), then xen_irq_lateeoi (spurious)."""
    xen_irq_lateeoi(kernel, irq, XEN_EOI_FLAG_SPURIOUS)
    return IRQ_HANDLED


def encode_disk_name(n: int) -> str:
    """encode_disk_name: disk index 0 -> "a", 25 -> "z", 26 -> "aa"."""
    return (encode_disk_name(n // 26 - 1) if n >= 26 else "") + chr(ord("a") + n % 26)


def xlbd_disk_name(vdevice: int) -> str:
    """xlvbd_alloc_gendisk's name: xvd + encode_disk_name(offset); offset = minor / parts per disk
    (16 for (202 << 8) | minor, 256 for an extended (1 << 28) | minor vdevice)."""
    if vdevice & EXTENDED:
        offset = (vdevice & ~EXTENDED) // PARTS_PER_EXT_DISK
    else:
        offset = (vdevice & 0xFF) // PARTS_PER_DISK  # xen_translate_vdev, XENVBD_MAJOR
    return "xvd" + encode_disk_name(offset)


def blkfront_probe(kernel: PvopsKernel, dev: xenbus_device) -> int:
    """blkfront_probe: read virtual-device (or virtual-device-ext) and set up the per-device info."""
    err, vdevice = xenbus_scanf(kernel, XBT_NIL, dev.nodename, "virtual-device", "%i")
    if err != 1:
        err, vdevice = xenbus_scanf(kernel, XBT_NIL, dev.nodename, "virtual-device-ext", "%i")
        if err != 1:
            xenbus_dev_fatal(kernel, dev, -ENOENT, "reading virtual-device")
            return -ENOENT
    info = blkfront_info(vdevice=vdevice, handle=int(dev.nodename.rsplit("/", 1)[1]))
    dev.drvdata = info
    kernel.record("blkfront_probe", f"{dev.nodename}: virtual-device {vdevice}", SRC)
    return 0


def setup_blkring(kernel: PvopsKernel, dev: xenbus_device, rinfo: blkfront_ring_info) -> int:
    """setup_blkring: grant the ring page, allocate a port and bind it to IRQ "blkif" (lateeoi)."""
    err, pages, grefs = xenbus_setup_ring(kernel, dev)
    if err:
        return err
    rinfo.ring_ref, rinfo.ring_page = grefs[0], pages[0]
    err, rinfo.evtchn = xenbus_alloc_evtchn(kernel, dev)
    if err:
        return err
    irq = bind_evtchn_to_irqhandler_lateeoi(kernel, rinfo.evtchn,
                                            lambda irq, dev_id: blkif_interrupt(kernel, irq, dev_id),
                                            0, "blkif", rinfo)
    if irq <= 0:
        xenbus_dev_fatal(kernel, dev, irq, "bind_evtchn_to_irqhandler failed")
        return irq
    rinfo.irq = irq
    return 0


def negotiate_mq(kernel: PvopsKernel, dev: xenbus_device) -> int:
    """negotiate_mq: as many rings as the backend offers, at most max_queues (capped by the cpus)."""
    assert dev.otherend is not None
    backend_max = xenbus_read_unsigned(kernel, dev.otherend, "multi-queue-max-queues", 1)
    return max(1, min(backend_max, XEN_BLKIF_MAX_QUEUES_DEFAULT, kernel.num_online_cpus()))


def write_per_ring_nodes(info: blkfront_info) -> list[tuple[str, str, object]]:
    """write_per_ring_nodes: each ring's ring-ref and event-channel (under queue-<n>/ with several)."""
    if len(info.rinfo) == 1:
        r = info.rinfo[0]
        return [("ring-ref", "%u", r.ring_ref), ("event-channel", "%u", r.evtchn)]
    keys: list[tuple[str, str, object]] = [("multi-queue-num-queues", "%u", len(info.rinfo))]
    for r in info.rinfo:
        keys += [(f"queue-{r.id}/ring-ref", "%u", r.ring_ref),
                 (f"queue-{r.id}/event-channel", "%u", r.evtchn)]
    return keys


def talk_to_blkback(kernel: PvopsKernel, dev: xenbus_device, info: blkfront_info) -> int:
    """talk_to_blkback: rings + ports, the keys in one transaction, then Initialised."""
    info.rinfo = [blkfront_ring_info(i) for i in range(negotiate_mq(kernel, dev))]
    for rinfo in info.rinfo:
        err = setup_blkring(kernel, dev, rinfo)
        if err:
            blkif_free(kernel, info)
            return err
    while True:
        err, xbt = xenbus_transaction_start(kernel)
        if err:
            xenbus_dev_fatal(kernel, dev, err, "starting transaction")
            blkif_free(kernel, info)
            return err
        keys = write_per_ring_nodes(info) + [("protocol", "%s", XEN_IO_PROTO_ABI_NATIVE),
                                             ("feature-persistent", "%u", 1)]
        for key, fmt, value in keys:
            err = xenbus_printf(kernel, xbt, dev.nodename, key, fmt, value)
            if err:
                xenbus_transaction_end(kernel, xbt, True)
                xenbus_dev_fatal(kernel, dev, err, f"writing {key}")
                blkif_free(kernel, info)
                return err
        err = xenbus_transaction_end(kernel, xbt, False)
        if err == -EAGAIN:
            continue
        if err:
            xenbus_dev_fatal(kernel, dev, err, "completing transaction")
            blkif_free(kernel, info)
            return err
        break
    rings = ", ".join(f"ring-ref {r.ring_ref} event-channel {r.evtchn}" for r in info.rinfo)
    kernel.record("talk_to_blkback", f"{dev.nodename}: {rings}", SRC)
    xenbus_switch_state(kernel, dev, XenbusStateInitialised)
    return 0


def blkfront_connect(kernel: PvopsKernel, dev: xenbus_device, info: blkfront_info) -> None:
    """blkfront_connect: read the disk's size and features, add the disk, Connected."""
    if info.connected:
        return
    assert dev.otherend is not None
    err, vals = xenbus_gather(kernel, XBT_NIL, dev.otherend, ("sectors", "%llu"), ("info", "%u"),
                              ("sector-size", "%lu"))
    if err:
        xenbus_dev_fatal(kernel, dev, err, f"reading backend fields at {dev.otherend}")
        return
    info.sectors, _, info.sector_size = vals
    # blkfront_gather_backend_features
    barrier = xenbus_read_unsigned(kernel, dev.otherend, "feature-barrier", 0)
    info.feature_flush = info.feature_fua = bool(barrier)
    if xenbus_read_unsigned(kernel, dev.otherend, "feature-flush-cache", 0):
        info.feature_flush, info.feature_fua = True, False
    info.feature_persistent = bool(xenbus_read_unsigned(kernel, dev.otherend, "feature-persistent", 0))
    indirect = xenbus_read_unsigned(kernel, dev.otherend, "feature-max-indirect-segments", 0)
    info.max_indirect_segments = min(indirect, MAX_INDIRECT_SEGMENTS_DEFAULT)
    # backend not trusted -> bounce; persistent grants copy through their own pages too (inferred)
    info.bounce = not xenbus_read_unsigned(kernel, dev.nodename, "trusted", 1) or info.feature_persistent
    info.disk_name = xlbd_disk_name(info.vdevice)
    xenbus_switch_state(kernel, dev, XenbusStateConnected)
    info.connected = True
    kernel.record("blkfront_connect", f"{dev.nodename}: disk {info.disk_name}, {info.sectors} sectors of "
                  f"{info.sector_size} bytes", SRC,
                  changes=[(kernel.table("block"), info.disk_name, None, info.sectors)])
    flush = "barrier: enabled;" if info.feature_flush and info.feature_fua else (
        "flush diskcache: enabled;" if info.feature_flush else "barrier or flush: disabled;")
    kernel.printk(KERN_INFO, f"blkfront: {info.disk_name}: {flush} persistent grants: "
                  f"{'enabled;' if info.feature_persistent else 'disabled;'} indirect descriptors: "
                  f"{'enabled;' if info.max_indirect_segments else 'disabled;'} bounce buffer: "
                  f"{'enabled' if info.bounce else 'disabled'}")
    read_partition_table(kernel, dev, info)


def read_partition_table(kernel: PvopsKernel, dev: xenbus_device, info: blkfront_info) -> None:
    """device_add_disk's partition scan: one one-segment read (blkif_queue_rw_req), its page granted.

    With persistent grants the grant is kept and reused by later requests; without, the
    grant ends when the request completes.
    """
    err, chain = gnttab_alloc_grant_references(kernel, 1)
    if err:
        return
    ref = gnttab_claim_grant_reference(chain)
    page = get_zeroed_page(kernel)
    gnttab_grant_foreign_access_ref(kernel, ref, dev.otherend_id, virt_to_gfn(kernel, page), False)
    gnttab_free_grant_references(kernel, chain)
    if not info.feature_persistent:
        gnttab_end_foreign_access(kernel, ref)
    else:
        info.persistent_grefs += (ref,)
    kernel.record("blkif_queue_request", f"{info.disk_name}: read sector 0 (partition table), data page "
                  f"granted as ref {ref}", SRC)


def blkif_free(kernel: PvopsKernel, info: blkfront_info) -> None:
    """blkif_free: unbind each ring's IRQ (closing its port) and end the ring's grant."""
    for r in info.rinfo:
        if r.irq > 0:
            unbind_from_irqhandler(kernel, r.irq, r)
        r.irq = r.evtchn = 0
        xenbus_teardown_ring(kernel, [r.ring_ref])
        r.ring_ref = 0


def blkback_changed(kernel: PvopsKernel, dev: xenbus_device, backend_state: int) -> None:
    """blkback_changed: follow the backend's state."""
    info: blkfront_info | None = dev.drvdata
    if info is None:
        return
    if backend_state == XenbusStateInitWait:
        if dev.state == XenbusStateInitialising:
            talk_to_blkback(kernel, dev, info)
    elif backend_state == XenbusStateConnected:
        if dev.state not in (XenbusStateInitialised, XenbusStateConnected):
            if talk_to_blkback(kernel, dev, info):
                return
        blkfront_connect(kernel, dev, info)
    elif backend_state == XenbusStateClosed and dev.state == XenbusStateClosed:
        return
    elif backend_state in (XenbusStateClosing, XenbusStateClosed):
        blkfront_closing(kernel, dev, info)


def blkfront_closing(kernel: PvopsKernel, dev: xenbus_device, info: blkfront_info) -> None:
    """blkfront_closing: the backend is going: free the ring and port, tell it we are Closed."""
    if info.connected:
        kernel.record("blkfront_closing", f"{dev.nodename}: removing disk {info.disk_name}", SRC,
                      changes=[(kernel.table("block"), info.disk_name, info.sectors, None)])
        info.connected = False
    blkif_free(kernel, info)
    xenbus_frontend_closed(kernel, dev)


def blkfront_remove(kernel: PvopsKernel, dev: xenbus_device) -> None:
    """blkfront_remove: the device is being unregistered: free everything."""
    info: blkfront_info | None = dev.drvdata
    if info is not None:
        blkif_free(kernel, info)
        dev.drvdata = None


def blkfront_driver() -> xenbus_driver:
    """The "vbd" frontend xenbus_driver (blkfront_driver)."""
    return xenbus_driver(name="vbd", ids=["vbd"], probe=blkfront_probe, otherend_changed=blkback_changed,
                         remove=blkfront_remove)


def xlblk_init(kernel: PvopsKernel) -> int:
    """xlblk_init (module_init): check max_queues, register the "vbd" frontend driver."""
    cpus = kernel.num_online_cpus()
    if XEN_BLKIF_MAX_QUEUES_DEFAULT > cpus:
        kernel.printk(KERN_INFO, f"Invalid max_queues ({XEN_BLKIF_MAX_QUEUES_DEFAULT}), will use default "
                      f"max: {cpus}.")
    kernel.blkfront_driver = blkfront_driver()
    return xenbus_register_frontend(kernel, kernel.blkfront_driver)

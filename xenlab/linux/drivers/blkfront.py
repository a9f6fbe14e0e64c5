"""The block frontend "vbd": grant a ring, offer an event channel, wait for the backend's disk.

Modern (drivers/block/xen-blkfront.c, Linux 6.1): probe only reads virtual-device; on
the backend's InitWait ``talk_to_blkback`` grants the ring, allocates and binds the
port ("blkif"), writes ring-ref / event-channel / protocol / feature-persistent in one
transaction and goes Initialised; on the backend's Connected ``blkfront_connect``
reads sectors / info / sector-size and the features, adds the disk (xvda...) and goes
Connected. 2.6.18 (drivers/xen/blkfront/blkfront.c) talks to the backend already in
probe, without waiting for InitWait, and writes ring-ref / event-channel / protocol.

After the disk is added the kernel reads its partition table: the lab models that one
read (one data segment, granted and kept as a persistent grant in modern Linux), which
is why the next grant reference a guest hands out is the ring's + 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xenlab.abi.errno import EAGAIN, ENOENT
from xenlab.abi.xenbus import (
    XenbusStateClosed,
    XenbusStateClosing,
    XenbusStateConnected,
    XenbusStateInitialised,
    XenbusStateInitialising,
    XenbusStateInitWait,
)
from xenlab.linux.drivers.common import (
    IRQ_HANDLED,
    XEN_EOI_FLAG_SPURIOUS,
    frontend_bind_irq,
    irq_handler,
    nr_cpus,
    unbind_irq,
    xen_irq_lateeoi,
)
from xenlab.linux.gnttab import (
    get_zeroed_page,
    gnttab_alloc_grant_references,
    gnttab_claim_grant_reference,
    gnttab_free_grant_references,
    gnttab_grant_foreign_access_ref,
)
from xenlab.linux.kernel import KERN_INFO
from xenlab.linux.xenbus.bus import xenbus_driver
from xenlab.linux.xenbus.client import (
    XBT_NIL,
    xenbus_dev_fatal,
    xenbus_frontend_closed,
    xenbus_gather,
    xenbus_printf,
    xenbus_read_unsigned,
    xenbus_scanf_int,
    xenbus_setup_ring,
    xenbus_switch_state,
    xenbus_teardown_ring,
    xenbus_transaction_end,
    xenbus_transaction_start,
)
from xenlab.linux.xenbus.probe_frontend import xenbus_register_frontend

SRC = "drivers/block/xen-blkfront.c"
SRC_2618 = "drivers/xen/blkfront/blkfront.c"
XEN_IO_PROTO_ABI_NATIVE = "x86_64-abi"  # include/xen/interface/io/protocols.h on x86_64
XENVBD_MAJOR = 202
PARTS_PER_DISK = 16
PARTS_PER_EXT_DISK = 256
EXTENDED = 1 << 28  # EXT_SHIFT 28: a virtual-device number in the extended range
XEN_BLKIF_MAX_QUEUES_DEFAULT = 4  # module parameter max_queues
MAX_INDIRECT_SEGMENTS_DEFAULT = 32  # blkfront's max_indirect_segments parameter


@dataclass(eq=False)
class blkfront_ring_info:
    """struct blkfront_ring_info: one ring's grant reference, page, port and IRQ."""

    id: int
    ring_ref: int = 0
    ring_page: Any = None
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


def blkif_interrupt(kernel: Any, irq: int, rinfo: blkfront_ring_info) -> int:
    """blkif_interrupt: reap responses (none in flight in the lab), then xen_irq_lateeoi (spurious)."""
    xen_irq_lateeoi(kernel, irq, XEN_EOI_FLAG_SPURIOUS)
    return IRQ_HANDLED


def encode_disk_name(n: int) -> str:
    """encode_disk_name (xen-blkfront.c): disk index 0 -> "a", 25 -> "z", 26 -> "aa"."""
    return (encode_disk_name(n // 26 - 1) if n >= 26 else "") + chr(ord("a") + n % 26)


def xlbd_disk_name(vdevice: int) -> str:
    """xlvbd_alloc_gendisk's name: xvd + encode_disk_name(offset); offset = minor / parts per disk
    (16 for (202 << 8) | minor, 256 for an extended (1 << 28) | minor vdevice)."""
    if vdevice & EXTENDED:
        offset = (vdevice & ~EXTENDED) // PARTS_PER_EXT_DISK
    else:
        offset = (vdevice & 0xFF) // PARTS_PER_DISK  # xen_translate_vdev, XENVBD_MAJOR
    return "xvd" + encode_disk_name(offset)


def blkfront_probe(kernel: Any, dev: Any) -> int:
    """blkfront_probe: read virtual-device and set up the per-device info."""
    vdevice = xenbus_scanf_int(kernel, XBT_NIL, dev.nodename, "virtual-device")
    if vdevice is None:
        vdevice = xenbus_scanf_int(kernel, XBT_NIL, dev.nodename, "virtual-device-ext")
    if vdevice is None:
        xenbus_dev_fatal(kernel, dev, -ENOENT, "reading virtual-device")
        return -ENOENT
    info = blkfront_info(vdevice=vdevice, handle=int(dev.nodename.rsplit("/", 1)[1]))
    dev.drvdata = info
    kernel.record("blkfront_probe", f"{dev.nodename}: virtual-device {vdevice}",
                  SRC_2618 if kernel.flavour == "2.6.18" else SRC)
    if kernel.flavour == "2.6.18":
        err = talk_to_blkback(kernel, dev, info)
        if err:
            dev.drvdata = None
            return err
    return 0


def setup_blkring(kernel: Any, dev: Any, rinfo: blkfront_ring_info) -> int:
    """setup_blkring: grant the ring page, get a port bound to IRQ "blkif"."""
    ref, page = xenbus_setup_ring(kernel, dev)
    if ref < 0:
        return ref
    rinfo.ring_ref, rinfo.ring_page = ref, page
    irq, port = frontend_bind_irq(kernel, dev, "blkif", irq_handler(kernel, blkif_interrupt), rinfo)
    if irq < 0:
        return irq
    rinfo.irq, rinfo.evtchn = irq, port
    return 0


def negotiate_mq(kernel: Any, dev: Any) -> int:
    """negotiate_mq: as many rings as the backend offers, at most max_queues (capped by the cpus)."""
    if kernel.flavour == "2.6.18":
        return 1
    backend_max = xenbus_read_unsigned(kernel, dev.otherend, "multi-queue-max-queues", 1)
    return max(1, min(backend_max, XEN_BLKIF_MAX_QUEUES_DEFAULT, nr_cpus(kernel)))


def _ring_keys(info: blkfront_info, nodename: str) -> list[tuple[str, object]]:
    if len(info.rinfo) == 1:
        r = info.rinfo[0]
        return [("ring-ref", r.ring_ref), ("event-channel", r.evtchn)]
    keys: list[tuple[str, object]] = [("multi-queue-num-queues", len(info.rinfo))]
    for r in info.rinfo:
        keys += [(f"queue-{r.id}/ring-ref", r.ring_ref), (f"queue-{r.id}/event-channel", r.evtchn)]
    return keys


def talk_to_blkback(kernel: Any, dev: Any, info: blkfront_info) -> int:
    """talk_to_blkback / talk_to_backend: rings + ports, the keys in one transaction, Initialised."""
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
        keys = _ring_keys(info, dev.nodename) + [("protocol", XEN_IO_PROTO_ABI_NATIVE)]
        if kernel.flavour != "2.6.18":
            keys.append(("feature-persistent", 1))
        for key, value in keys:
            err = xenbus_printf(kernel, xbt, dev.nodename, key, value)
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
    kernel.record("talk_to_blkback", f"{dev.nodename}: {rings}",
                  SRC_2618 if kernel.flavour == "2.6.18" else SRC)
    xenbus_switch_state(kernel, dev, XenbusStateInitialised)
    return 0


def blkfront_connect(kernel: Any, dev: Any, info: blkfront_info) -> None:
    """blkfront_connect: read the disk's size and features, add the disk, Connected."""
    if info.connected:
        return
    vals = xenbus_gather(kernel, XBT_NIL, dev.otherend, "sectors", "info", "sector-size")
    if isinstance(vals, int):
        xenbus_dev_fatal(kernel, dev, vals, f"reading backend fields at {dev.otherend}")
        return
    info.sectors, info.sector_size = int(vals[0]), int(vals[2])
    barrier = xenbus_read_unsigned(kernel, dev.otherend, "feature-barrier", 0)
    info.feature_flush = info.feature_fua = bool(barrier)
    if kernel.flavour != "2.6.18":
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
                  f"{info.sector_size} bytes", SRC_2618 if kernel.flavour == "2.6.18" else SRC,
                  changes=[(f"{kernel.name}/block", info.disk_name, None, info.sectors)])
    if kernel.flavour != "2.6.18":
        flush = "barrier: enabled;" if info.feature_flush and info.feature_fua else (
            "flush diskcache: enabled;" if info.feature_flush else "barrier or flush: disabled;")
        kernel.printk(KERN_INFO, f"blkfront: {info.disk_name}: {flush} persistent grants: "
                      f"{'enabled;' if info.feature_persistent else 'disabled;'} indirect descriptors: "
                      f"{'enabled;' if info.max_indirect_segments else 'disabled;'} bounce buffer: "
                      f"{'enabled' if info.bounce else 'disabled'}")
    read_partition_table(kernel, dev, info)


def read_partition_table(kernel: Any, dev: Any, info: blkfront_info) -> None:
    """add_disk's partition scan: one one-segment read, its data page granted to the backend.

    With persistent grants (modern) the grant is kept and reused by later requests;
    2.6.18 grants for the request and ends the grant when it completes.
    """
    chain = gnttab_alloc_grant_references(kernel, 1)
    if isinstance(chain, int):
        return
    ref = gnttab_claim_grant_reference(chain)
    page = get_zeroed_page(kernel)
    gnttab_grant_foreign_access_ref(kernel, ref, dev.otherend_id, page.mfn, False)
    gnttab_free_grant_references(kernel, chain)
    if kernel.flavour == "2.6.18" or not info.feature_persistent:
        from xenlab.linux.gnttab import gnttab_end_foreign_access

        gnttab_end_foreign_access(kernel, ref)
    else:
        info.persistent_grefs += (ref,)
    kernel.record("blkif_queue_request", f"{info.disk_name}: read sector 0 (partition table), data page "
                  f"granted as ref {ref}", SRC)


def blkif_free(kernel: Any, info: blkfront_info) -> None:
    """blkif_free: unbind the IRQ (closing the port) and end the ring's grant."""
    for r in info.rinfo:
        unbind_irq(kernel, r.irq, r)
        r.irq = r.evtchn = 0
        xenbus_teardown_ring(kernel, r.ring_ref)
        r.ring_ref = 0


def blkback_changed(kernel: Any, dev: Any, backend_state: int) -> None:
    """blkback_changed / backend_changed: follow the backend's state."""
    info: blkfront_info | None = dev.drvdata
    if info is None:
        return
    if backend_state == XenbusStateInitWait:
        if kernel.flavour != "2.6.18" and dev.state == XenbusStateInitialising:
            talk_to_blkback(kernel, dev, info)
    elif backend_state == XenbusStateConnected:
        if kernel.flavour != "2.6.18" and dev.state not in (XenbusStateInitialised, XenbusStateConnected):
            if talk_to_blkback(kernel, dev, info):
                return
        blkfront_connect(kernel, dev, info)
    elif backend_state == XenbusStateClosed and dev.state == XenbusStateClosed:
        return
    elif backend_state in (XenbusStateClosing, XenbusStateClosed):
        blkfront_closing(kernel, dev, info)


def blkfront_closing(kernel: Any, dev: Any, info: blkfront_info) -> None:
    """blkfront_closing: the backend is going: free the ring and port, tell it we are Closed."""
    if info.connected:
        kernel.record("blkfront_closing", f"{dev.nodename}: removing disk {info.disk_name}", SRC,
                      changes=[(f"{kernel.name}/block", info.disk_name, info.sectors, None)])
        info.connected = False
    blkif_free(kernel, info)
    xenbus_frontend_closed(kernel, dev)


def blkfront_remove(kernel: Any, dev: Any) -> None:
    """blkfront_remove: the device is being unregistered: free everything."""
    info: blkfront_info | None = dev.drvdata
    if info is not None:
        blkif_free(kernel, info)
        dev.drvdata = None


def blkfront_driver() -> xenbus_driver:
    """The "vbd" frontend xenbus_driver."""
    return xenbus_driver(name="vbd", ids=["vbd"], probe=blkfront_probe, otherend_changed=blkback_changed,
                         remove=blkfront_remove)


def blkfront_init(kernel: Any) -> int:
    """xlblk_init (module_init): check max_queues, register the "vbd" frontend driver."""
    if kernel.flavour != "2.6.18":
        cpus = nr_cpus(kernel)
        if XEN_BLKIF_MAX_QUEUES_DEFAULT > cpus:
            kernel.printk(KERN_INFO, f"Invalid max_queues ({XEN_BLKIF_MAX_QUEUES_DEFAULT}), will use default "
                          f"max: {cpus}.")
    drv = blkfront_driver()
    kernel.blkfront_driver = drv
    return xenbus_register_frontend(kernel, drv)


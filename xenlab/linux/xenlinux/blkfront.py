"""drivers/xen/blkfront/blkfront.c, XenLinux 2.6.18: the block frontend "vbd".

``blkfront_probe`` reads virtual-device and talks to the backend at once, without waiting
for its InitWait (``talk_to_backend``): a ring page granted to the backend, a port
allocated for it and bound as IRQ "blkif" (``bind_listening_port_to_irqhandler``), then
ring-ref / event-channel / protocol in one transaction, and Initialised. On the
backend's Connected, ``connect`` reads sectors / info / sector-size and feature-barrier,
adds the disk (xvda...) and goes Connected. The disk name comes from vbd.c
(``xlbd_disk_name``).

After the disk is added the kernel reads its partition table: the lab models that one
read (one data segment, granted for the request and ended when it completes), which is
why the next grant reference the guest hands out is the ring's + 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xenlab.abi.errno import EAGAIN
from xenlab.abi.xenbus import (
    XenbusStateClosed,
    XenbusStateClosing,
    XenbusStateConnected,
    XenbusStateInitialised,
)
from xenlab.linux.irq import IRQ_HANDLED
from xenlab.linux.mm import get_zeroed_page
from xenlab.linux.xenlinux.evtchn import (
    bind_listening_port_to_irqhandler,
    irq_to_evtchn_port,
    unbind_from_irqhandler,
)
from xenlab.linux.xenlinux.gnttab import (
    gnttab_alloc_grant_references,
    gnttab_claim_grant_reference,
    gnttab_end_foreign_access,
    gnttab_free_grant_references,
    gnttab_grant_foreign_access_ref,
)
from xenlab.linux.xenlinux.page import virt_to_mfn
from xenlab.linux.xenlinux.xenbus_client import (
    xenbus_dev_fatal,
    xenbus_frontend_closed,
    xenbus_grant_ring,
    xenbus_switch_state,
)
from xenlab.linux.xenlinux.xenbus_probe import xenbus_device, xenbus_driver, xenbus_register_frontend
from xenlab.linux.xenlinux.xenbus_xs import (
    XBT_NIL,
    xenbus_gather,
    xenbus_printf,
    xenbus_scanf,
    xenbus_transaction_end,
    xenbus_transaction_start,
)

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel
    from xenlab.xen.memory import Page

SRC = "drivers/xen/blkfront/blkfront.c"
XEN_IO_PROTO_ABI_NATIVE = "x86_64-abi"  # include/xen/interface/io/protocols.h on x86_64
PARTS_PER_DISK = 16  # vbd.c: minors per xvd disk


@dataclass(eq=False)
class blkfront_info:
    """struct blkfront_info: the vdevice, its ring (ref, page, port, IRQ) and the disk."""

    vdevice: int
    handle: int
    ring_ref: int = 0
    ring_page: Page | None = None
    evtchn: int = 0
    irq: int = 0
    disk_name: str = ""
    sectors: int = 0
    sector_size: int = 0
    feature_barrier: bool = False
    connected: bool = False


def encode_disk_name(n: int) -> str:
    """The xvd letter(s) of disk index *n*: 0 -> "a", 25 -> "z", 26 -> "aa"."""
    return (encode_disk_name(n // 26 - 1) if n >= 26 else "") + chr(ord("a") + n % 26)


def xlbd_disk_name(vdevice: int) -> str:
    """xlvbd_add's name (vbd.c): xvd + the disk index, minor / PARTS_PER_DISK of (202 << 8) | minor."""
    return "xvd" + encode_disk_name((vdevice & 0xFF) // PARTS_PER_DISK)


def blkfront_probe(kernel: XenLinuxKernel, dev: xenbus_device) -> int:
    """blkfront_probe: read virtual-device, set up the info, and talk to the backend now."""
    err, values = xenbus_scanf(kernel, XBT_NIL, dev.nodename, "virtual-device", "%i")
    if err != 1:
        xenbus_dev_fatal(kernel, dev, err, "reading virtual-device")
        return err
    info = blkfront_info(vdevice=values[0], handle=int(dev.nodename.rsplit("/", 1)[1]))
    dev.drvdata = info
    kernel.record("blkfront_probe", f"{dev.nodename}: virtual-device {info.vdevice}", SRC)
    err = talk_to_backend(kernel, dev, info)
    if err:
        dev.drvdata = None
        return err
    return 0


def talk_to_backend(kernel: XenLinuxKernel, dev: xenbus_device, info: blkfront_info) -> int:
    """talk_to_backend: the ring and its port, then ring-ref / event-channel / protocol, Initialised."""
    err = setup_blkring(kernel, dev, info)
    if err:
        blkif_free(kernel, info)
        return err
    while True:
        err, xbt = xenbus_transaction_start(kernel)
        if err:
            xenbus_dev_fatal(kernel, dev, err, "starting transaction")
            blkif_free(kernel, info)
            return err
        for key, fmt, value in (("ring-ref", "%u", info.ring_ref), ("event-channel", "%u", info.evtchn),
                                ("protocol", "%s", XEN_IO_PROTO_ABI_NATIVE)):
            err = xenbus_printf(kernel, xbt, dev.nodename, key, fmt, value)
            if err:
                xenbus_transaction_end(kernel, xbt, 1)
                xenbus_dev_fatal(kernel, dev, err, f"writing {key}")
                blkif_free(kernel, info)
                return err
        err = xenbus_transaction_end(kernel, xbt, 0)
        if err == -EAGAIN:
            continue
        if err:
            xenbus_dev_fatal(kernel, dev, err, "completing transaction")
            blkif_free(kernel, info)
            return err
        break
    kernel.record("talk_to_backend", f"{dev.nodename}: ring-ref {info.ring_ref} event-channel {info.evtchn}",
                  SRC)
    xenbus_switch_state(kernel, dev, XenbusStateInitialised)
    return 0


def setup_blkring(kernel: XenLinuxKernel, dev: xenbus_device, info: blkfront_info) -> int:
    """setup_blkring: a ring page granted to the backend, a port for it bound as IRQ "blkif"."""
    page = get_zeroed_page(kernel)
    kernel.record("setup_blkring", f"{dev.nodename}: ring page mfn {page.mfn:#x}", SRC)
    err = xenbus_grant_ring(kernel, dev, virt_to_mfn(kernel, page))
    if err < 0:
        return err
    info.ring_ref, info.ring_page = err, page

    def blkif_int_cb(irq: int, dev_id: Any) -> int:
        return blkif_int(kernel, irq, dev_id)

    err = bind_listening_port_to_irqhandler(kernel, dev.otherend_id, blkif_int_cb, 0, "blkif", info)
    if err <= 0:
        xenbus_dev_fatal(kernel, dev, err, "bind_listening_port_to_irqhandler")
        return err
    info.irq = err
    info.evtchn = irq_to_evtchn_port(kernel, err)
    return 0


def backend_changed(kernel: XenLinuxKernel, dev: xenbus_device, backend_state: int) -> None:
    """backend_changed: Connected -> connect; Closing -> blkfront_closing (InitWait needs nothing)."""
    info: blkfront_info | None = dev.drvdata
    if info is None:
        return
    if backend_state == XenbusStateConnected:
        connect(kernel, dev, info)
    elif backend_state == XenbusStateClosed and dev.state == XenbusStateClosed:
        return
    elif backend_state in (XenbusStateClosing, XenbusStateClosed):
        blkfront_closing(kernel, dev, info)


def connect(kernel: XenLinuxKernel, dev: xenbus_device, info: blkfront_info) -> None:
    """connect: read the disk's size and feature-barrier, add the disk, Connected."""
    if info.connected:
        return
    assert dev.otherend is not None
    err, values = xenbus_gather(kernel, XBT_NIL, dev.otherend, ("sectors", "%llu"), ("info", "%u"),
                                ("sector-size", "%lu"))
    if err:
        xenbus_dev_fatal(kernel, dev, err, f"reading backend fields at {dev.otherend}")
        return
    info.sectors, _, info.sector_size = values
    err, barrier = xenbus_gather(kernel, XBT_NIL, dev.otherend, ("feature-barrier", "%lu"))
    info.feature_barrier = bool(barrier[0]) if not err else False
    info.disk_name = xlbd_disk_name(info.vdevice)
    xenbus_switch_state(kernel, dev, XenbusStateConnected)
    info.connected = True
    kernel.record("connect", f"{dev.nodename}: disk {info.disk_name}, {info.sectors} sectors of "
                  f"{info.sector_size} bytes", SRC,
                  changes=[(kernel.table("block"), info.disk_name, None, info.sectors)])
    blkif_queue_request(kernel, dev, info)


def blkif_queue_request(kernel: XenLinuxKernel, dev: xenbus_device, info: blkfront_info) -> None:
    """blkif_queue_request for add_disk's partition scan: one one-segment read of sector 0, its data
    page granted to the backend for the request (the grant ends when it completes)."""
    err, gref_head = gnttab_alloc_grant_references(kernel, 1)
    if err:
        return
    ref = gnttab_claim_grant_reference(gref_head)
    page = get_zeroed_page(kernel)
    gnttab_grant_foreign_access_ref(kernel, ref, dev.otherend_id, virt_to_mfn(kernel, page), 0)
    gnttab_free_grant_references(kernel, gref_head)
    gnttab_end_foreign_access(kernel, ref)  # blkif_completion
    kernel.record("blkif_queue_request", f"{info.disk_name}: read sector 0 (partition table), data page "
                  f"granted as ref {ref}", SRC)


def blkif_int(kernel: XenLinuxKernel, irq: int, info: blkfront_info) -> int:
    """blkif_int: reap the backend's responses (none in flight in the lab)."""
    return IRQ_HANDLED


def blkif_free(kernel: XenLinuxKernel, info: blkfront_info) -> None:
    """blkif_free: end the ring's grant, unbind the IRQ (closing the port)."""
    if info.irq > 0:
        unbind_from_irqhandler(kernel, info.irq, info)
    info.irq = info.evtchn = 0
    if info.ring_ref > 0:
        gnttab_end_foreign_access(kernel, info.ring_ref)
    info.ring_ref = 0


def blkfront_closing(kernel: XenLinuxKernel, dev: xenbus_device, info: blkfront_info) -> None:
    """blkfront_closing: the backend is going: remove the disk, free the ring and port, Closed."""
    if info.connected:
        kernel.record("blkfront_closing", f"{dev.nodename}: removing disk {info.disk_name}", SRC,
                      changes=[(kernel.table("block"), info.disk_name, info.sectors, None)])
        info.connected = False
    blkif_free(kernel, info)
    xenbus_frontend_closed(kernel, dev)


def blkfront_remove(kernel: XenLinuxKernel, dev: xenbus_device) -> None:
    """blkfront_remove: the device is being unregistered: free everything."""
    info: blkfront_info | None = dev.drvdata
    if info is not None:
        blkif_free(kernel, info)
        dev.drvdata = None


def xlblk_init(kernel: XenLinuxKernel) -> int:
    """xlblk_init (module_init): register the "vbd" frontend driver."""
    kernel.blkfront_driver = xenbus_driver(name="vbd", ids=["vbd"], probe=blkfront_probe,
                                           otherend_changed=backend_changed, remove=blkfront_remove)
    return xenbus_register_frontend(kernel, kernel.blkfront_driver)

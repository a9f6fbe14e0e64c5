"""drivers/xen/blkback/vbd.c, XenLinux 2.6.18: the virtual block device a blkif exports.

``vbd_create`` opens the physical device (major:minor) the hotplug script named; the
block devices dom0 can open are ``kernel.block_devices`` (xenlab.linux.genhd).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.abi.errno import ENOENT
from xenlab.linux.genhd import lookup_bdev

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.blkback_interface import blkif_t
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel
    from xenlab.linux.xenlinux.xenbus_probe import xenbus_device

SRC = "drivers/xen/blkback/vbd.c"


def vbd_create(kernel: XenLinuxKernel, dev: xenbus_device, blkif: blkif_t, major: int, minor: int,
               readonly: bool, cdrom: bool) -> int:
    """vbd_create: open major:minor for the blkif; 0 or -ENOENT."""
    bdev = lookup_bdev(kernel, major, minor)
    if bdev is None:
        return -ENOENT  # DPRINTK("vbd_creat: device %08x could not be opened.")
    blkif.bdev, blkif.readonly, blkif.cdrom = bdev, readonly, cdrom
    kernel.record("vbd_create", f"{dev.nodename}: vbd on {bdev.name} ({major}:{minor}), "
                  f"{'ro' if readonly else 'rw'}", SRC)
    return 0

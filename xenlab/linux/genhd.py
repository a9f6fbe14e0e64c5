"""The block devices a kernel can open (block/genhd.c: add_disk, del_gendisk), as far as blkback needs.

Both kernels keep them the same way for the lab: ``kernel.block_devices`` maps (major, minor)
to a ``BlockDevice``; a backend opens one by the number the hotplug script wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xenlab.linux.kernel import Kernel

SRC = "block/genhd.c"


@dataclass
class BlockDevice:
    """A block device dom0 can open (what bdev_* report for it).

    The defaults are a loop device over an image file on a 4 KiB-block filesystem, which
    is what the block hotplug script sets up: 512-byte sectors, flush supported, discard
    (hole punching) in 4096-byte units, no secure erase.
    """

    name: str
    sectors: int
    logical_block_size: int = 512
    physical_block_size: int = 512
    flush: bool = True
    discard_granularity: int = 4096  # 0: no discard support
    discard_alignment: int = 0
    secure_erase: bool = False


def add_disk(kernel: Kernel, major: int, minor: int, bdev: BlockDevice) -> None:
    """add_disk: make block device major:minor openable in this kernel (e.g. /dev/loop0 = 7:0)."""
    kernel.block_devices[(major, minor)] = bdev
    kernel.record("add_disk", f"block device {bdev.name} ({major}:{minor}), {bdev.sectors} sectors",
                  SRC, changes=[(kernel.table("block"), bdev.name, None, bdev.sectors)])


def del_gendisk(kernel: Kernel, major: int, minor: int) -> BlockDevice | None:
    """del_gendisk: block device major:minor is gone (`losetup -d`); returns it (None if absent)."""
    bdev = kernel.block_devices.pop((major, minor), None)
    if bdev is not None:
        kernel.record("del_gendisk", f"block device {bdev.name} ({major}:{minor}) removed", SRC,
                      changes=[(kernel.table("block"), bdev.name, bdev.sectors, None)])
    return bdev


def lookup_bdev(kernel: Kernel, major: int, minor: int) -> BlockDevice | None:
    """The block device major:minor if this kernel has it (blkdev_get_by_dev's lookup)."""
    return kernel.block_devices.get((major, minor))

"""drivers/block/loop.c, Linux 6.1: `losetup` binding an image file to /dev/loopN (what dom0's log says).

The block hotplug script runs `losetup /dev/loopN FILE` (util-linux issues LOOP_CONFIGURE):
``loop_configure`` binds the file and sizes the device through ``loop_set_size``, whose
``set_capacity_and_notify`` (block/genhd.c) logs the change, since an unbound loop device
has capacity 0 and its disk is live.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.linux.genhd import BlockDevice, add_disk
from xenlab.linux.kernel import KERN_INFO

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel

SRC = "drivers/block/loop.c"
LOOP_MAJOR = 7


def loop_configure(kernel: PvopsKernel, index: int, bdev: BlockDevice) -> int:
    """loop_configure (LOOP_CONFIGURE): bind the backing file to loop<index>, then size the device."""
    add_disk(kernel, LOOP_MAJOR, index, bdev)  # the lab's block device is openable from here on
    loop_set_size(kernel, index, bdev.sectors)
    return 0


def loop_set_size(kernel: PvopsKernel, index: int, size: int) -> None:
    """loop_set_size: set_capacity_and_notify from 0 (an unbound loop device) logs the new size."""
    text = f"loop{index}: detected capacity change from 0 to {size}"
    kernel.printk(KERN_INFO, text)
    kernel.record("set_capacity_and_notify", f"loop{index}: capacity 0 -> {size} sectors", "block/genhd.c",
                  printk=text)

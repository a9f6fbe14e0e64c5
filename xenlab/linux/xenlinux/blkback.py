"""drivers/xen/blkback/blkback.c, XenLinux 2.6.18: the backend's request handling and module init.

``blkif_be_int`` is the "blkif-backend" IRQ's handler: it wakes the blkif's thread
(``blkif_schedule``, which the lab does not run: its frontends queue no I/O).
``blkif_init`` (module_init) ends in ``blkif_xenbus_init`` (xenbus.c), which registers
the "vbd" backend driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.linux.irq import IRQ_HANDLED

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.blkback_interface import blkif_t
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel


def blkif_be_int(kernel: XenLinuxKernel, irq: int, blkif: blkif_t) -> int:
    """blkif_be_int: blkif_notify_work -- wake the blkif's thread (none runs in the lab)."""
    return IRQ_HANDLED

"""drivers/input/misc/xen-kbdfront.c, Linux 6.1: the "vkbd" frontend (a domU's only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.abi.errno import ENODEV
from xenlab.linux.pvops.xenbus_probe import xenbus_device, xenbus_driver
from xenlab.linux.pvops.xenbus_probe_frontend import xenbus_register_frontend

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel

SRC = "drivers/input/misc/xen-kbdfront.c"


def xenkbd_probe(kernel: PvopsKernel, dev: xenbus_device) -> int:
    """xenkbd_probe: a virtual keyboard/pointer device (none in the lab's scenarios; only recorded)."""
    kernel.record("xenkbd_probe", f"{dev.nodename}: xenkbd device (not connected by the lab)", SRC)
    return 0


def xenkbd_init(kernel: PvopsKernel) -> int:
    """xenkbd_init: -ENODEV in the initial domain, else register the "vkbd" frontend driver."""
    if kernel.xen_initial_domain():
        return -ENODEV
    return xenbus_register_frontend(kernel, xenbus_driver(name="vkbd", ids=["vkbd"], probe=xenkbd_probe))

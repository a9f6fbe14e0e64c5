"""drivers/video/fbdev/xen-fbfront.c, Linux 6.1: the "vfb" frontend (a domU's only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.abi.errno import ENODEV
from xenlab.linux.pvops.xenbus_probe import xenbus_device, xenbus_driver
from xenlab.linux.pvops.xenbus_probe_frontend import xenbus_register_frontend

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel

SRC = "drivers/video/fbdev/xen-fbfront.c"


def xenfb_probe(kernel: PvopsKernel, dev: xenbus_device) -> int:
    """xenfb_probe: a virtual framebuffer device (none in the lab's scenarios; only recorded)."""
    kernel.record("xenfb_probe", f"{dev.nodename}: xenfb device (not connected by the lab)", SRC)
    return 0


def xenfb_init(kernel: PvopsKernel) -> int:
    """xenfb_init: -ENODEV in the initial domain, else register the "vfb" frontend driver."""
    if kernel.xen_initial_domain():
        return -ENODEV
    return xenbus_register_frontend(kernel, xenbus_driver(name="vfb", ids=["vfb"], probe=xenfb_probe))

"""Console and other built-in frontends that register on bus "xen" but find no device.

The first PV console of a guest is not a xenbus device: hvc_xen takes its ring and
port from start_info (the toolstack's /local/domain/<F>/console/ keys), so dom0 sees a
backend node backend/console/<F>/0 in state Initialising that no kernel driver
claims (xenconsoled serves it from user space): on bus "xen-backend" it is the device
console-<F>-0 with no driver. hvc_xen also registers the "xenconsole" frontend driver
for extra consoles (device/console/<id>; modern probing skips console/0).
xen-fbfront ("vfb") and xen-kbdfront ("vkbd") register in a domU only (their init
returns -ENODEV in the initial domain). None of them has a device in the lab's
scenarios; their probe only records that it ran.
"""

from __future__ import annotations

from typing import Any

from xenlab.abi.errno import ENODEV
from xenlab.abi.start_info import SIF_INITDOMAIN
from xenlab.linux.xenbus.bus import xenbus_driver
from xenlab.linux.xenbus.probe_frontend import xenbus_register_frontend


def _probe(name: str) -> Any:
    def probe(kernel: Any, dev: Any) -> int:
        kernel.record(f"{name}_probe", f"{dev.nodename}: {name} device (not connected by the lab)",
                      "drivers/tty/hvc/hvc_xen.c" if name == "xencons" else "drivers/xen")
        return 0
    return probe


def _initial_domain(kernel: Any) -> bool:
    d = kernel.hv.domains[kernel.domid]
    return bool(d.start_info.flags & SIF_INITDOMAIN) or bool(getattr(d, "initdomain", False))


def xencons_init(kernel: Any) -> int:
    """xen_hvc_init's xenbus part (modern): register the "xenconsole" frontend driver (ids "console")."""
    if kernel.flavour == "2.6.18":
        return 0  # the 2.6.18 console (drivers/xen/console) registers no xenbus driver
    drv = xenbus_driver(name="xenconsole", ids=["console"], probe=_probe("xencons"))
    return xenbus_register_frontend(kernel, drv)


def xenfb_init(kernel: Any) -> int:
    """xenfb_init (xen-fbfront): -ENODEV in the initial domain, else register "vfb"."""
    if kernel.flavour == "2.6.18" or _initial_domain(kernel):
        return -ENODEV
    return xenbus_register_frontend(kernel, xenbus_driver(name="vfb", ids=["vfb"], probe=_probe("xenfb")))


def xenkbd_init(kernel: Any) -> int:
    """xenkbd_init (xen-kbdfront): -ENODEV in the initial domain, else register "vkbd"."""
    if kernel.flavour == "2.6.18" or _initial_domain(kernel):
        return -ENODEV
    return xenbus_register_frontend(kernel, xenbus_driver(name="vkbd", ids=["vkbd"], probe=_probe("xenkbd")))


def console_init(kernel: Any) -> int:
    """The built-in Xen drivers of a Debian 6.1 kernel: the xen_cpu/xen_memory buses, then the
    frontends xenconsole (always), vkbd and vfb (domU only)."""
    xen_subsys_init(kernel)
    err = xencons_init(kernel)
    xenkbd_init(kernel)
    xenfb_init(kernel)
    return err


def xen_subsys_init(kernel: Any) -> int:
    """The other Xen buses a Debian 6.1 kernel registers: "xen_memory" (xen-balloon's sysfs)
    everywhere and "xen_cpu" (drivers/xen/pcpu.c) in dom0 only; /sys/bus lists them next to
    "xen" and "xen-backend". 2.6.18 has neither."""
    from xenlab.linux.driver_model import bus_register, bus_type

    if kernel.flavour == "2.6.18":
        return 0
    err = 0
    if _initial_domain(kernel):
        err = bus_register(kernel, bus_type("xen_cpu"))
    return err or bus_register(kernel, bus_type("xen_memory"))

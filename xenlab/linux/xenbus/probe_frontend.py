"""The frontend bus "xen": device/<type>/<id> nodes become <type>-<id> devices.

Mirrors drivers/xen/xenbus/xenbus_probe_frontend.c (modern; in 2.6.18 the same code
sits in xenbus_probe.c): the bus id, the per-entry probe, the "device" watch, reading
the backend's details, xenbus_register_frontend, and the boot-time wait for devices.
"""

from __future__ import annotations

from typing import Any

from xenlab.abi.errno import EINVAL
from xenlab.abi.xenbus import XenbusStateConnected
from xenlab.linux.kernel import KERN_INFO, KERN_WARNING
from xenlab.linux.xenbus.bus import (
    XEN_BUS_ID_SIZE,
    make_bus,
    read_otherend_details,
    xen_bus_type,
    xenbus_dbg,
    xenbus_dev_changed,
    xenbus_driver,
    xenbus_otherend_changed,
    xenbus_probe_node,
    xenbus_register_driver_common,
)
from xenlab.linux.xenbus.client import xenbus_read_driver_state, xenbus_watch
from xenlab.linux.xenbus.globals import xb_globals

SRC = "drivers/xen/xenbus/xenbus_probe_frontend.c"
WAIT_SECONDS_2618 = 300  # 2.6.18: one 5-minute wait
WAIT_NONESSENTIAL, WAIT_ESSENTIAL = 30, 270  # modern: vfb/vkbd up to 30 s, the rest up to 270 s


def _prefix(kernel: Any) -> str:
    return "XENBUS: " if kernel.flavour == "2.6.18" else "xenbus_probe_frontend: "


def frontend_bus_id(kernel: Any, nodename: str) -> str | int:
    """frontend_bus_id: device/<type>/<id> => <type>-<id> (at most 19 characters)."""
    _, slash, rest = nodename.partition("/")
    if not slash or len(rest) >= XEN_BUS_ID_SIZE:
        kernel.printk(KERN_WARNING, f"{_prefix(kernel)}bad frontend {nodename}")
        return -EINVAL
    if "/" not in rest:
        kernel.printk(KERN_WARNING, f"{_prefix(kernel)}bus_id {rest} no slash")
        return -EINVAL
    return rest.replace("/", "-", 1)


def xenbus_probe_frontend(kernel: Any, xbus: xen_bus_type, type: str, name: str) -> int:
    """xenbus_probe_frontend: probe the node device/<type>/<name> (modern skips console/0)."""
    if kernel.flavour != "2.6.18" and type.startswith("console") and name.startswith("0"):
        # line 61: eight lines above the captured ":69" DPRINTK in the 6.1 source (inferred)
        xenbus_dbg(kernel, "xenbus_probe_frontend: (xenbus_probe_frontend:61) "
                   "Ignoring buggy device entry console/0")
        return 0
    nodename = f"{xbus.root}/{type}/{name}"
    xenbus_dbg(kernel, f"xenbus_probe_frontend: (xenbus_probe_frontend:69) {nodename}")
    return xenbus_probe_node(kernel, xbus, type, nodename)


def xenbus_uevent_frontend(kernel: Any, dev: Any) -> list[str]:
    """xenbus_uevent_frontend: MODALIAS=xen:<type> (2.6.18 also XENBUS_TYPE and XENBUS_PATH first)."""
    if kernel.flavour == "2.6.18":
        return [f"XENBUS_TYPE={dev.devicetype}", f"XENBUS_PATH={dev.nodename}",
                f"MODALIAS=xen:{dev.devicetype}"]
    return [f"MODALIAS=xen:{dev.devicetype}"]


def backend_changed(kernel: Any, dev: Any, path: str, token: str = "") -> None:
    """backend_changed: the backend's state node fired for a frontend device."""
    xenbus_otherend_changed(kernel, dev, path)


def read_backend_details(kernel: Any, dev: Any) -> int:
    """read_backend_details: read "backend-id" and "backend" of a frontend device."""
    return read_otherend_details(kernel, dev, "backend-id", "backend")


def xenbus_frontend(kernel: Any) -> xen_bus_type:
    """The kernel's frontend xen_bus_type ("xen", root "device", 2 levels), made on first use."""
    from xenlab.linux.xenbus.probe import xenbus_probe_state

    st = xenbus_probe_state(kernel)
    if st.frontend is None:
        st.frontend = make_bus(kernel, "xen", "device", 2, frontend_bus_id, xenbus_probe_frontend,
                               backend_changed)
        st.frontend.bus.uevent = lambda dev: xenbus_uevent_frontend(kernel, dev)
    return st.frontend


def frontend_changed(kernel: Any, watch: Any, path: str, token: str = "") -> None:
    """frontend_changed: the "device" watch fired: add or remove frontend devices."""
    xenbus_dbg(kernel, "xenbus_probe_frontend: (frontend_changed:178) ")
    kernel.record("frontend_changed", f"watch on device fired for {path}", SRC)
    xenbus_dev_changed(kernel, path, xenbus_frontend(kernel))


def fe_watch(kernel: Any) -> Any:
    """The static fe_watch on "device" (one per kernel)."""
    xbus = xenbus_frontend(kernel)
    if xbus.watch is None:
        xbus.watch = xenbus_watch("device",
                                  lambda w, path, token="": frontend_changed(kernel, w, path, token))
    return xbus.watch


def xenbus_register_frontend(kernel: Any, xdrv: xenbus_driver) -> int:
    """xenbus_register_frontend: register a frontend driver, then wait for its devices (late boot)."""
    xdrv.read_otherend_details = read_backend_details
    err = xenbus_register_driver_common(kernel, xdrv, xenbus_frontend(kernel))
    if err:
        return err
    wait_for_devices(kernel, xdrv)
    return 0


def _connecting(kernel: Any, dev: Any, drv: Any, ignore_nonessential: bool) -> bool:
    if dev.driver is None or (drv is not None and dev.driver is not drv):
        return False
    if ignore_nonessential and dev.nodename.startswith(("device/vkbd", "device/vfb")):
        return False
    return bool(dev.state < XenbusStateConnected)


def wait_for_devices(kernel: Any, xdrv: xenbus_driver | None) -> None:
    """wait_for_devices: after boot, wait (virtual seconds) until the frontends connect, then report."""
    from xenlab.linux.xenbus.probe import xenbus_probe_state

    if not xenbus_probe_state(kernel).ready_to_wait_for_devices:
        return
    xbus = xenbus_frontend(kernel)
    drv = xdrv.driver if xdrv is not None else None
    start = kernel.sched.now_ns
    waited = 0
    phases = [(WAIT_SECONDS_2618, False)] if kernel.flavour == "2.6.18" else \
        [(WAIT_NONESSENTIAL, False), (WAIT_ESSENTIAL, True)]
    line = ""
    for max_delay, essential_only in phases:
        while any(_connecting(kernel, d, drv, essential_only) for d in xbus.bus.devices):
            if kernel.sched.now_ns > start + (waited + 5) * 1_000_000_000:
                if not waited:
                    line = f"{_prefix(kernel)}Waiting for devices to initialise: "
                waited += 5
                line += f"{max_delay - waited}s..."
                if waited >= max_delay:
                    break
            kernel.sched.msleep(100)
    if line:
        kernel.printk(KERN_WARNING, line)
    for dev in list(xbus.bus.devices):
        if drv is not None and dev.driver is not drv:
            continue
        if dev.driver is None:
            kernel.printk(KERN_INFO, f"{_prefix(kernel)}Device with no driver: {dev.nodename}")
        elif dev.state < XenbusStateConnected:
            rstate = xenbus_read_driver_state(kernel, dev.otherend) if dev.otherend else 0
            kernel.printk(KERN_WARNING, f"{_prefix(kernel)}Timeout connecting to device: {dev.nodename} "
                          f"(local state {dev.state}, remote state {rstate})")


def boot_wait_for_devices(kernel: Any) -> int:
    """boot_wait_for_devices (late_initcall): from now on drivers wait for their devices; wait for all."""
    from xenlab.linux.xenbus.probe import xenbus_probe_state

    if kernel.flavour == "2.6.18" and xenbus_frontend(kernel).error:
        return 0
    xenbus_probe_state(kernel).ready_to_wait_for_devices = True
    kernel.record("boot_wait_for_devices", "late_initcall: wait for frontend devices", SRC)
    wait_for_devices(kernel, None)
    return 0


def frontend_probe_and_watch(kernel: Any) -> None:
    """frontend_probe_and_watch: enumerate device/ and watch it (the xenstore notifier, modern)."""
    from xenlab.linux.xenbus.bus import xenbus_probe_devices
    from xenlab.linux.xenbus.client import register_xenbus_watch

    xenbus_probe_devices(kernel, xenbus_frontend(kernel))
    register_xenbus_watch(kernel, fe_watch(kernel))


def xenbus_probe_frontend_init(kernel: Any) -> int:
    """xenbus_probe_frontend_init (subsys_initcall, modern): register bus "xen" and the notifier."""
    from xenlab.linux.driver_model import bus_register
    from xenlab.linux.xenbus.probe import register_xenstore_notifier

    xenbus_dbg(kernel, "xenbus_probe_frontend: (xenbus_probe_frontend_init:487) ")
    xbus = xenbus_frontend(kernel)
    err = bus_register(kernel, xbus.bus, fault="bus_register_frontend")
    xbus.error = err
    if err:
        return err
    register_xenstore_notifier(kernel, frontend_probe_and_watch)
    return 0


def xenstored_is_ready(kernel: Any) -> bool:
    """xenstored_ready > 0 for this kernel."""
    return xb_globals(kernel).xenstored_ready > 0

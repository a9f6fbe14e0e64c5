"""drivers/xen/xenbus/xenbus_probe_frontend.c, Linux 6.1: the frontend bus "xen" and the boot-time wait.

device/<type>/<id> nodes become <type>-<id> devices on bus "xen". A frontend driver
registers with ``xenbus_register_frontend``; once the kernel reached its late initcalls
(``boot_wait_for_devices``) a registration also waits (virtual seconds) until the
driver's devices connect: vfb/vkbd up to 30 s, the rest up to 270 s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.abi.errno import EINVAL
from xenlab.abi.xenbus import XenbusStateConnected
from xenlab.linux.driver_model import bus_register, bus_type, device, device_driver
from xenlab.linux.kernel import KERN_INFO, KERN_WARNING
from xenlab.linux.pvops.xenbus_client import xenbus_read_driver_state
from xenlab.linux.pvops.xenbus_probe import (
    XEN_BUS_ID_SIZE,
    XENBUS_DEV_ATTRS,
    register_xenstore_notifier,
    xen_bus_type,
    xenbus_dbg,
    xenbus_dev_changed,
    xenbus_dev_probe,
    xenbus_dev_remove,
    xenbus_device,
    xenbus_driver,
    xenbus_match,
    xenbus_otherend_changed,
    xenbus_probe_devices,
    xenbus_probe_node,
    xenbus_read_otherend_details,
    xenbus_register_driver_common,
)
from xenlab.linux.pvops.xenbus_xs import register_xenbus_watch, xenbus_watch

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel

SRC = "drivers/xen/xenbus/xenbus_probe_frontend.c"
PREFIX = "xenbus_probe_frontend: "
WAIT_NONESSENTIAL, WAIT_ESSENTIAL = 30, 270  # vfb/vkbd up to 30 s, the rest up to 270 s


def frontend_bus_id(kernel: PvopsKernel, nodename: str) -> str | int:
    """frontend_bus_id: device/<type>/<id> => <type>-<id> (at most 19 characters)."""
    _, slash, rest = nodename.partition("/")
    if not slash or len(rest) >= XEN_BUS_ID_SIZE:
        kernel.printk(KERN_WARNING, f"{PREFIX}bad frontend {nodename}")
        return -EINVAL
    if "/" not in rest:
        kernel.printk(KERN_WARNING, f"{PREFIX}bus_id {rest} no slash")
        return -EINVAL
    return rest.replace("/", "-", 1)


def xenbus_probe_frontend(kernel: PvopsKernel, xbus: xen_bus_type, type: str, name: str) -> int:
    """xenbus_probe_frontend: probe the node device/<type>/<name> (console/0 is skipped)."""
    if type.startswith("console") and name.startswith("0"):
        # line 61: eight lines above the captured ":69" DPRINTK in the 6.1 source
        xenbus_dbg(kernel, "xenbus_probe_frontend: (xenbus_probe_frontend:61) "
                   "Ignoring buggy device entry console/0")
        return 0
    nodename = f"{xbus.root}/{type}/{name}"
    xenbus_dbg(kernel, f"xenbus_probe_frontend: (xenbus_probe_frontend:69) {nodename}")
    return xenbus_probe_node(kernel, xbus, type, nodename)


def xenbus_uevent_frontend(dev: device) -> list[str]:
    """xenbus_uevent_frontend: MODALIAS=xen:<type>."""
    assert isinstance(dev, xenbus_device)
    return [f"MODALIAS=xen:{dev.devicetype}"]


def backend_changed(kernel: PvopsKernel, dev: xenbus_device, path: str) -> None:
    """backend_changed: the backend's state node fired for a frontend device."""
    xenbus_otherend_changed(kernel, dev, path)


def xenbus_frontend_dev_probe(kernel: PvopsKernel, dev: device) -> int:
    """xenbus_frontend_dev_probe: xenbus_dev_probe (the resume work is not modelled)."""
    assert isinstance(dev, xenbus_device)
    return xenbus_dev_probe(kernel, dev)


def new_xenbus_frontend(kernel: PvopsKernel) -> xen_bus_type:
    """The static struct xen_bus_type xenbus_frontend: bus "xen", root "device", 2 levels."""
    xbus = xen_bus_type(root="device", levels=2, get_bus_id=frontend_bus_id, probe=xenbus_probe_frontend,
                        bus=bus_type("xen", dev_attrs=dict(XENBUS_DEV_ATTRS)),
                        otherend_changed=backend_changed)
    xbus.bus.match = xenbus_match
    xbus.bus.probe = lambda dev: xenbus_frontend_dev_probe(kernel, dev)
    xbus.bus.remove = lambda dev: _remove(kernel, dev)
    xbus.bus.uevent = xenbus_uevent_frontend
    return xbus


def _remove(kernel: PvopsKernel, dev: device) -> None:
    assert isinstance(dev, xenbus_device)
    xenbus_dev_remove(kernel, dev)


def frontend_changed(kernel: PvopsKernel, watch: xenbus_watch, path: str, token: str) -> None:
    """frontend_changed: the "device" watch fired: add or remove frontend devices."""
    xenbus_dbg(kernel, "xenbus_probe_frontend: (frontend_changed:178) ")
    kernel.record("frontend_changed", f"watch on device fired for {path}", SRC)
    xenbus_dev_changed(kernel, path, kernel.xenbus_frontend)


def read_backend_details(kernel: PvopsKernel, dev: xenbus_device) -> int:
    """read_backend_details: read "backend-id" and "backend" of a frontend device."""
    return xenbus_read_otherend_details(kernel, dev, "backend-id", "backend")


def is_device_connecting(dev: device, drv: device_driver | None, ignore_nonessential: bool) -> bool:
    """is_device_connecting: a bound device (of *drv*, if given) not yet Connected."""
    if not isinstance(dev, xenbus_device) or dev.driver is None:
        return False
    if drv is not None and dev.driver is not drv:
        return False
    if ignore_nonessential and dev.nodename.startswith(("device/vkbd", "device/vfb")):
        return False
    return bool(dev.state < XenbusStateConnected)


def print_device_status(kernel: PvopsKernel, dev: device, drv: device_driver | None) -> None:
    """print_device_status: "Device with no driver" / "Timeout connecting to device" for a stuck device."""
    if not isinstance(dev, xenbus_device) or (drv is not None and dev.driver is not drv):
        return
    if dev.driver is None:
        kernel.printk(KERN_INFO, f"{PREFIX}Device with no driver: {dev.nodename}")
    elif dev.state < XenbusStateConnected:
        rstate = xenbus_read_driver_state(kernel, dev.otherend) if dev.otherend else 0
        kernel.printk(KERN_WARNING, f"{PREFIX}Timeout connecting to device: {dev.nodename} "
                      f"(local state {dev.state}, remote state {rstate})")


def wait_for_devices(kernel: PvopsKernel, xdrv: xenbus_driver | None) -> None:
    """wait_for_devices: after boot, wait (virtual seconds) until the frontends connect, then report."""
    if not kernel.xb.ready_to_wait_for_devices:
        return
    xbus = kernel.xenbus_frontend
    drv = xdrv.driver if xdrv is not None else None
    start = kernel.sched.now_ns
    waited = 0
    line = ""
    for max_delay, essential_only in ((WAIT_NONESSENTIAL, False), (WAIT_ESSENTIAL, True)):  # wait_loop x 2
        while any(is_device_connecting(d, drv, essential_only) for d in xbus.bus.devices):
            if kernel.sched.now_ns > start + (waited + 5) * 1_000_000_000:
                if not waited:
                    line = f"{PREFIX}Waiting for devices to initialise: "
                waited += 5
                line += f"{max_delay - waited}s..."
                if waited >= max_delay:
                    break
            kernel.sched.msleep(100)
    if line:
        kernel.printk(KERN_WARNING, line)
    for dev in list(xbus.bus.devices):
        print_device_status(kernel, dev, drv)


def xenbus_register_frontend(kernel: PvopsKernel, xdrv: xenbus_driver) -> int:
    """__xenbus_register_frontend: register a frontend driver, then wait for its devices (late boot)."""
    xdrv.read_otherend_details = read_backend_details
    err = xenbus_register_driver_common(kernel, xdrv, kernel.xenbus_frontend)
    if err:
        return err
    wait_for_devices(kernel, xdrv)
    return 0


def frontend_probe_and_watch(kernel: PvopsKernel) -> None:
    """frontend_probe_and_watch (the xenstore notifier): enumerate device/ and watch it (fe_watch)."""
    xbus = kernel.xenbus_frontend
    xenbus_probe_devices(kernel, xbus)

    def frontend_changed_cb(watch: xenbus_watch, path: str, token: str) -> None:
        frontend_changed(kernel, watch, path, token)

    frontend_changed_cb.__name__ = "frontend_changed"
    xbus.watch.node, xbus.watch.callback = "device", frontend_changed_cb
    register_xenbus_watch(kernel, xbus.watch)


def xenbus_probe_frontend_init(kernel: PvopsKernel) -> int:
    """xenbus_probe_frontend_init (subsys_initcall): register bus "xen" and the xenstore notifier."""
    xenbus_dbg(kernel, "xenbus_probe_frontend: (xenbus_probe_frontend_init:487) ")
    xbus = kernel.xenbus_frontend
    err = bus_register(kernel, xbus.bus, fault="bus_register_frontend")
    xbus.error = err
    if err:
        return err
    register_xenstore_notifier(kernel, frontend_probe_and_watch)
    return 0


def boot_wait_for_devices(kernel: PvopsKernel) -> int:
    """boot_wait_for_devices (late_initcall): from now on drivers wait for their devices; wait for all."""
    kernel.xb.ready_to_wait_for_devices = True
    kernel.record("boot_wait_for_devices", "late_initcall: wait for frontend devices", SRC)
    wait_for_devices(kernel, None)
    return 0



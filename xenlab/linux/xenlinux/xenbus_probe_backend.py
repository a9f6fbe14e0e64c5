"""drivers/xen/xenbus/xenbus_probe_backend.c, XenLinux 2.6.18: the backend bus "xen-backend".

backend/<type>/<frontend domid>/<id> nodes become <type>-<domid>-<id> devices (the bus
id is made after reading the node's frontend-id and frontend); the two-level
enumeration, the "backend" watch, reading the frontend's details and
xenbus_register_backend. xenbus_probe_init and xenbus_probe (xenbus_probe.c) reach this
file through xenbus_backend_bus_register, xenbus_backend_device_register and
xenbus_backend_probe_and_watch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.abi.errno import EINVAL, ENOENT, ENOSPC, ERANGE
from xenlab.linux.driver_model import bus_register, bus_unregister, device_register
from xenlab.linux.kernel import KERN_WARNING
from xenlab.linux.xenlinux.xenbus_probe import (
    BUS_ID_SIZE,
    dev_changed,
    new_bus,
    read_otherend_details,
    xen_bus_type,
    xenbus_device,
    xenbus_driver,
    xenbus_probe_devices,
    xenbus_probe_node,
    xenbus_register_driver_common,
)
from xenlab.linux.xenlinux.xenbus_xs import (
    XBT_NIL,
    register_xenbus_watch,
    watch_callback,
    xenbus_directory,
    xenbus_exists,
    xenbus_gather,
    xenbus_watch,
)

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel

SRC = "drivers/xen/xenbus/xenbus_probe_backend.c"


def read_frontend_details(kernel: XenLinuxKernel, xendev: xenbus_device) -> int:
    """read_frontend_details: read "frontend-id" and "frontend" of a backend device."""
    return read_otherend_details(kernel, xendev, "frontend-id", "frontend")


def backend_bus_id(kernel: XenLinuxKernel, nodename: str) -> str | int:
    """backend_bus_id: backend/<type>/<fe-domid>/<id> => <type>-<frontend-id>-<id>."""
    parts = nodename.split("/")
    if len(parts) < 3 or not parts[1]:
        return -EINVAL
    err, values = xenbus_gather(kernel, XBT_NIL, nodename, ("frontend-id", "%i"), ("frontend", None))
    if err:
        return err
    domid, frontend = values
    if not frontend:
        return -ERANGE
    if not xenbus_exists(kernel, XBT_NIL, frontend, ""):
        return -ENOENT
    bus_id = f"{parts[1]}-{domid}-{parts[-1]}"
    return -ENOSPC if len(bus_id) >= BUS_ID_SIZE else bus_id


def xenbus_backend_type(kernel: XenLinuxKernel) -> xen_bus_type:
    """The static xenbus_backend: bus "xen-backend", root "backend", 3 levels."""
    return new_bus(kernel, "xen-backend", "backend", 3, backend_bus_id, xenbus_probe_backend,
                   xenbus_uevent_backend)


def xenbus_uevent_backend(dev: xenbus_device) -> list[str]:
    """xenbus_uevent_backend: what /sbin/hotplug wants: XENBUS_TYPE, XENBUS_PATH, XENBUS_BASE_PATH."""
    return [f"XENBUS_TYPE={dev.devicetype}", f"XENBUS_PATH={dev.nodename}", "XENBUS_BASE_PATH=backend"]


def xenbus_register_backend(kernel: XenLinuxKernel, drv: xenbus_driver) -> int:
    """xenbus_register_backend: register a backend driver on "xen-backend"."""
    drv.read_otherend_details = read_frontend_details
    return xenbus_register_driver_common(kernel, drv, kernel.xenbus_backend)


def xenbus_probe_backend_unit(kernel: XenLinuxKernel, dir: str, type: str, name: str) -> int:
    """xenbus_probe_backend_unit: probe the node <dir>/<name>."""
    return xenbus_probe_node(kernel, kernel.xenbus_backend, type, f"{dir}/{name}")


def xenbus_probe_backend(kernel: XenLinuxKernel, bus: xen_bus_type, type: str, domid: str) -> int:
    """xenbus_probe_backend: probe every unit under backend/<type>/<domid>."""
    nodename = f"{bus.root}/{type}/{domid}"
    units = xenbus_directory(kernel, XBT_NIL, nodename, "")
    if isinstance(units, int):
        return units
    for unit in units:
        err = xenbus_probe_backend_unit(kernel, nodename, type, unit)
        if err:
            return err
    return 0


def backend_changed(kernel: XenLinuxKernel, watch: xenbus_watch, path: str, token: str) -> None:
    """backend_changed: be_watch fired: add or remove backend devices."""
    kernel.record("backend_changed", f"watch on backend fired for {path}", SRC)
    dev_changed(kernel, path, kernel.xenbus_backend)


def be_watch(kernel: XenLinuxKernel) -> xenbus_watch:
    """The static be_watch on "backend" (an address in the kernel image)."""
    bus = kernel.xenbus_backend
    if bus.watch is None:
        bus.watch = xenbus_watch("backend", watch_callback(kernel, backend_changed), symbol="be_watch")
    return bus.watch


def xenbus_backend_probe_and_watch(kernel: XenLinuxKernel) -> None:
    """xenbus_backend_probe_and_watch: enumerate backend/ and watch it."""
    xenbus_probe_devices(kernel, kernel.xenbus_backend)
    register_xenbus_watch(kernel, be_watch(kernel))


def xenbus_backend_bus_register(kernel: XenLinuxKernel) -> None:
    """xenbus_backend_bus_register: bus_register "xen-backend", keeping the result in .error."""
    be = kernel.xenbus_backend
    be.error = bus_register(kernel, be.bus, fault="bus_register_backend")
    if be.error:
        kernel.printk(KERN_WARNING, f"XENBUS: Error registering backend bus: {be.error}")


def xenbus_backend_device_register(kernel: XenLinuxKernel) -> None:
    """xenbus_backend_device_register: the root device "xen-backend" (unregister the bus if it fails)."""
    be = kernel.xenbus_backend
    if be.error:
        return
    be.error = device_register(kernel, be.dev, fault="device_register_backend")
    if be.error:
        bus_unregister(kernel, be.bus)
        kernel.printk(KERN_WARNING, f"XENBUS: Error registering backend device: {be.error}")

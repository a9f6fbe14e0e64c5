"""drivers/xen/xenbus/xenbus_probe_backend.c, Linux 6.1: the backend bus "xen-backend".

backend/<type>/<domid>/<id> nodes become <type>-<frontend-id>-<id> devices; the bus id
is read from the node's frontend-id and frontend. A frontend-state event is queued for a
backend device only if none is pending already (``frontend_will_handle``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.abi.errno import EINVAL, ENOENT, ENOSPC, ERANGE
from xenlab.linux.driver_model import bus_register, bus_type, device
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
from xenlab.linux.pvops.xenbus_xs import (
    XBT_NIL,
    register_xenbus_watch,
    xenbus_directory,
    xenbus_exists,
    xenbus_gather,
    xenbus_read_unsigned,
    xenbus_watch,
)

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel

SRC = "drivers/xen/xenbus/xenbus_probe_backend.c"


def backend_bus_id(kernel: PvopsKernel, nodename: str) -> str | int:
    """backend_bus_id: backend/<type>/<domid>/<id> => <type>-<frontend-id>-<id>."""
    parts = nodename.split("/")
    if len(parts) < 3 or not parts[1]:
        return -EINVAL
    err, vals = xenbus_gather(kernel, XBT_NIL, nodename, ("frontend-id", "%i"), ("frontend", None))
    if err:
        return err
    domid, frontend = vals
    if not frontend:
        return -ERANGE
    if not xenbus_exists(kernel, XBT_NIL, frontend, ""):
        return -ENOENT
    bus_id = f"{parts[1]}-{domid}-{parts[-1]}"
    return -ENOSPC if len(bus_id) >= XEN_BUS_ID_SIZE else bus_id


def xenbus_uevent_backend(kernel: PvopsKernel, dev: device) -> list[str]:
    """xenbus_uevent_backend: MODALIAS, then what /sbin/hotplug wants: type, path, base path."""
    assert isinstance(dev, xenbus_device)
    xenbus_dbg(kernel, "xenbus: (xenbus_uevent_backend:102) ")
    return [f"MODALIAS=xen-backend:{dev.devicetype}", f"XENBUS_TYPE={dev.devicetype}",
            f"XENBUS_PATH={dev.nodename}", "XENBUS_BASE_PATH=backend"]


def xenbus_probe_backend_unit(kernel: PvopsKernel, xbus: xen_bus_type, dir: str, type: str, name: str) -> int:
    """xenbus_probe_backend_unit: probe the node <dir>/<name>."""
    return xenbus_probe_node(kernel, xbus, type, f"{dir}/{name}")


def xenbus_probe_backend(kernel: PvopsKernel, xbus: xen_bus_type, type: str, domid: str) -> int:
    """xenbus_probe_backend: probe every unit under backend/<type>/<domid>."""
    nodename = f"{xbus.root}/{type}/{domid}"
    units = xenbus_directory(kernel, XBT_NIL, nodename, "")
    if isinstance(units, int):
        return units
    for unit in units:
        err = xenbus_probe_backend_unit(kernel, xbus, nodename, type, unit)
        if err:
            return err
    return 0


def frontend_will_handle(watch: xenbus_watch, path: str, token: str) -> bool:
    """frontend_will_handle: queue a frontend-state event only if none is already pending."""
    return watch.nr_pending == 0


def frontend_changed(kernel: PvopsKernel, dev: xenbus_device, path: str) -> None:
    """frontend_changed: the frontend's state node fired for a backend device."""
    xenbus_otherend_changed(kernel, dev, path)


def backend_changed(kernel: PvopsKernel, watch: xenbus_watch, path: str, token: str) -> None:
    """backend_changed: the "backend" watch fired: add or remove backend devices."""
    xenbus_dbg(kernel, "xenbus: (backend_changed:215) ")
    kernel.record("backend_changed", f"watch on backend fired for {path}", SRC)
    xenbus_dev_changed(kernel, path, kernel.xenbus_backend)


def read_frontend_details(kernel: PvopsKernel, dev: xenbus_device) -> int:
    """read_frontend_details: read "frontend-id" and "frontend" of a backend device."""
    return xenbus_read_otherend_details(kernel, dev, "frontend-id", "frontend")


def xenbus_dev_is_online(kernel: PvopsKernel, dev: xenbus_device) -> int:
    """xenbus_dev_is_online: the backend's "online" node (the toolstack keeps 1 until unplug)."""
    return 1 if xenbus_read_unsigned(kernel, dev.nodename, "online", 0) else 0


def xenbus_register_backend(kernel: PvopsKernel, xdrv: xenbus_driver) -> int:
    """__xenbus_register_backend: register a backend driver on "xen-backend"."""
    xdrv.read_otherend_details = read_frontend_details
    return xenbus_register_driver_common(kernel, xdrv, kernel.xenbus_backend)


def backend_probe_and_watch(kernel: PvopsKernel) -> None:
    """backend_probe_and_watch (the xenstore notifier): enumerate backend/ and watch it (be_watch)."""
    xbus = kernel.xenbus_backend
    xenbus_probe_devices(kernel, xbus)

    def backend_changed_cb(watch: xenbus_watch, path: str, token: str) -> None:
        backend_changed(kernel, watch, path, token)

    backend_changed_cb.__name__ = "backend_changed"
    xbus.watch.node, xbus.watch.callback = "backend", backend_changed_cb
    register_xenbus_watch(kernel, xbus.watch)


def new_xenbus_backend(kernel: PvopsKernel) -> xen_bus_type:
    """The static struct xen_bus_type xenbus_backend: bus "xen-backend", root "backend", 3 levels."""
    xbus = xen_bus_type(root="backend", levels=3, get_bus_id=backend_bus_id, probe=xenbus_probe_backend,
                        bus=bus_type("xen-backend", dev_attrs=dict(XENBUS_DEV_ATTRS)),
                        otherend_changed=frontend_changed, otherend_will_handle=frontend_will_handle)
    xbus.bus.match = xenbus_match
    xbus.bus.probe = lambda dev: _probe(kernel, dev)
    xbus.bus.remove = lambda dev: _remove(kernel, dev)
    xbus.bus.uevent = lambda dev: xenbus_uevent_backend(kernel, dev)
    return xbus


def _probe(kernel: PvopsKernel, dev: device) -> int:
    assert isinstance(dev, xenbus_device)
    return xenbus_dev_probe(kernel, dev)


def _remove(kernel: PvopsKernel, dev: device) -> None:
    assert isinstance(dev, xenbus_device)
    xenbus_dev_remove(kernel, dev)


def xenbus_probe_backend_init(kernel: PvopsKernel) -> int:
    """xenbus_probe_backend_init (subsys_initcall): register "xen-backend" and the xenstore notifier."""
    xenbus_dbg(kernel, "xenbus: (xenbus_probe_backend_init:299) ")
    xbus = kernel.xenbus_backend
    err = bus_register(kernel, xbus.bus, fault="bus_register_backend")
    xbus.error = err
    if err:
        return err
    register_xenstore_notifier(kernel, backend_probe_and_watch)
    return 0

"""The backend bus "xen-backend": backend/<type>/<domid>/<id> nodes become <type>-<domid>-<id>.

Mirrors drivers/xen/xenbus/xenbus_probe_backend.c (2.6.18 and modern): the bus id
(read from the node's frontend-id and frontend), the two-level enumeration, the
"backend" watch, reading the frontend's details, xenbus_register_backend.
"""

from __future__ import annotations

from typing import Any

from xenlab.abi.errno import EINVAL, ENOENT, ENOSPC, ERANGE
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
from xenlab.linux.xenbus.client import XBT_NIL, xenbus_directory, xenbus_exists, xenbus_gather, xenbus_watch

SRC = "drivers/xen/xenbus/xenbus_probe_backend.c"


def backend_bus_id(kernel: Any, nodename: str) -> str | int:
    """backend_bus_id: backend/<type>/<domid>/<id> => <type>-<frontend-id>-<id>."""
    parts = nodename.split("/")
    if len(parts) < 3 or not parts[1]:
        return -EINVAL
    vals = xenbus_gather(kernel, XBT_NIL, nodename, "frontend-id", "frontend")
    if isinstance(vals, int):
        return vals
    try:
        domid = int(vals[0], 0)
    except ValueError:
        return -EINVAL
    if not vals[1]:
        return -ERANGE
    if not xenbus_exists(kernel, XBT_NIL, vals[1], ""):
        return -ENOENT
    bus_id = f"{parts[1]}-{domid}-{parts[-1]}"
    return -ENOSPC if len(bus_id) >= XEN_BUS_ID_SIZE else bus_id


def xenbus_probe_backend(kernel: Any, xbus: xen_bus_type, type: str, domid: str) -> int:
    """xenbus_probe_backend: probe every unit under backend/<type>/<domid>."""
    nodename = f"{xbus.root}/{type}/{domid}"
    units = xenbus_directory(kernel, XBT_NIL, nodename, "")
    if isinstance(units, int):
        return units
    for unit in units:
        err = xenbus_probe_node(kernel, xbus, type, f"{nodename}/{unit}")
        if err:
            return err
    return 0


def frontend_changed(kernel: Any, dev: Any, path: str, token: str = "") -> None:
    """frontend_changed: the frontend's state node fired for a backend device."""
    xenbus_otherend_changed(kernel, dev, path)


def xenbus_uevent_backend(dev: Any) -> list[str]:
    """xenbus_uevent_backend: MODALIAS, then what /sbin/hotplug wants: type, path, base path."""
    xenbus_dbg(dev.xbus.kernel, "xenbus: (xenbus_uevent_backend:102) ")
    return [f"MODALIAS=xen-backend:{dev.devicetype}", f"XENBUS_TYPE={dev.devicetype}",
            f"XENBUS_PATH={dev.nodename}", "XENBUS_BASE_PATH=backend"]


def frontend_will_handle(watch: Any, path: str, token: str) -> bool:
    """frontend_will_handle: queue a frontend-state event only if none is already pending (modern)."""
    return watch.nr_pending == 0


def read_frontend_details(kernel: Any, dev: Any) -> int:
    """read_frontend_details: read "frontend-id" and "frontend" of a backend device."""
    return read_otherend_details(kernel, dev, "frontend-id", "frontend")


def xenbus_backend(kernel: Any) -> xen_bus_type:
    """The kernel's backend xen_bus_type ("xen-backend", root "backend", 3 levels), made on first use."""
    from xenlab.linux.xenbus.probe import xenbus_probe_state

    st = xenbus_probe_state(kernel)
    if st.backend is None:
        st.backend = make_bus(kernel, "xen-backend", "backend", 3, backend_bus_id, xenbus_probe_backend,
                              frontend_changed)
        st.backend.otherend_will_handle = frontend_will_handle
        st.backend.bus.uevent = xenbus_uevent_backend
    return st.backend


def backend_changed(kernel: Any, watch: Any, path: str, token: str = "") -> None:
    """backend_changed: the "backend" watch fired: add or remove backend devices."""
    xenbus_dbg(kernel, "xenbus: (backend_changed:215) ")
    kernel.record("backend_changed", f"watch on backend fired for {path}", SRC)
    xenbus_dev_changed(kernel, path, xenbus_backend(kernel))


def be_watch(kernel: Any) -> Any:
    """The static be_watch on "backend" (one per kernel)."""
    xbus = xenbus_backend(kernel)
    if xbus.watch is None:
        xbus.watch = xenbus_watch("backend",
                                  lambda w, path, token="": backend_changed(kernel, w, path, token))
    return xbus.watch


def xenbus_register_backend(kernel: Any, xdrv: xenbus_driver) -> int:
    """xenbus_register_backend: register a backend driver on "xen-backend"."""
    xdrv.read_otherend_details = read_frontend_details
    return xenbus_register_driver_common(kernel, xdrv, xenbus_backend(kernel))


def backend_probe_and_watch(kernel: Any) -> None:
    """backend_probe_and_watch / xenbus_backend_probe_and_watch: enumerate backend/ and watch it."""
    from xenlab.linux.xenbus.bus import xenbus_probe_devices
    from xenlab.linux.xenbus.client import register_xenbus_watch

    xenbus_probe_devices(kernel, xenbus_backend(kernel))
    register_xenbus_watch(kernel, be_watch(kernel))


def xenbus_probe_backend_init(kernel: Any) -> int:
    """xenbus_probe_backend_init (subsys_initcall, modern): register "xen-backend" and the notifier."""
    from xenlab.linux.driver_model import bus_register
    from xenlab.linux.xenbus.probe import register_xenstore_notifier

    xenbus_dbg(kernel, "xenbus: (xenbus_probe_backend_init:299) ")
    xbus = xenbus_backend(kernel)
    err = bus_register(kernel, xbus.bus, fault="bus_register_backend")
    xbus.error = err
    if err:
        return err
    register_xenstore_notifier(kernel, backend_probe_and_watch)
    return 0

"""The xenbus bus type, devices and drivers, and how a store node becomes a bound device.

Theory of operation
-------------------
Mirrors the bus-independent half of drivers/xen/xenbus/xenbus_probe.c (2.6.18 and
modern share it almost line for line). A ``xen_bus_type`` wraps a driver-model
``bus_type`` with the store side: its root ("device" or "backend", relative to
/local/domain/<self>), how many path levels name one device, how a node becomes a
bus id, and which otherend-changed callback its devices use.

``xenbus_probe_devices`` lists root/<type>/... and calls the bus's ``probe`` per
entry, which ends in ``xenbus_probe_node``: only a node whose ``state`` reads 1
(Initialising) becomes a ``xenbus_device``; ``device_register`` then lets the driver
model match it to a driver by devicetype and call ``xenbus_dev_probe``: read the other
end's id and path (``talk_to_otherend``), run the driver's probe, and watch
<otherend>/state (``watch_otherend``). The watch fires once at once, so the driver's
``otherend_changed`` sees the other end's current state immediately.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xenlab.abi.errno import ENODEV, ENOENT, ERANGE
from xenlab.abi.xenbus import XenbusStateClosed, XenbusStateInitialising
from xenlab.linux.driver_model import (
    bus_for_each_dev,
    bus_type,
    device,
    device_driver,
    device_register,
    device_unregister,
    driver_register,
)
from xenlab.linux.kernel import KERN_WARNING
from xenlab.linux.xenbus.client import (
    XBT_NIL,
    unregister_xenbus_watch,
    xenbus_dev_error,
    xenbus_dev_fatal,
    xenbus_directory,
    xenbus_exists,
    xenbus_gather,
    xenbus_read_driver_state,
    xenbus_strstate,
    xenbus_switch_state,
    xenbus_watch_pathfmt,
)

SRC = "drivers/xen/xenbus/xenbus_probe.c"
XEN_BUS_ID_SIZE = 20


@dataclass(eq=False)
class xenbus_device_id:
    """struct xenbus_device_id: the devicetype a driver handles."""

    devicetype: str


@dataclass(eq=False)
class xenbus_driver:
    """struct xenbus_driver: ids, probe/remove and otherend_changed, plus the embedded device_driver."""

    name: str
    ids: list[str]
    probe: Callable[[Any, Any], int] | None = None  # probe(kernel, dev) -> 0 / -errno
    otherend_changed: Callable[[Any, Any, int], Any] | None = None  # (kernel, dev, state)
    remove: Callable[[Any, Any], Any] | None = None
    read_otherend_details: Callable[[Any, Any], int] | None = None
    driver: device_driver | None = None


@dataclass(eq=False)
class xenbus_device(device):
    """struct xenbus_device: a device named by a store node, with its state and other end."""

    nodename: str = ""
    devicetype: str = ""
    state: int = XenbusStateInitialising
    otherend: str | None = None
    otherend_id: int = 0
    otherend_watch: Any = None
    xbus: Any = None  # the xen_bus_type it sits on
    drvdata: Any = None  # dev_set_drvdata: the driver's private state


@dataclass(eq=False)
class xen_bus_type:
    """struct xen_bus_type: root, levels, bus id maker, probe, otherend callback, error, the bus."""

    root: str
    levels: int
    get_bus_id: Callable[[Any, str], str | int]
    probe: Callable[[Any, xen_bus_type, str, str], int]
    bus: bus_type
    otherend_changed: Callable[[Any, Any, str, str], Any] | None = None
    # modern backend: frontend_will_handle (queue an otherend event only if none is pending)
    otherend_will_handle: Callable[..., bool] | None = None
    error: int = -ENODEV  # 2.6.18: the bus_register (or root device_register) result
    dev: device | None = None  # 2.6.18: the bus root device under /sys/devices
    watch: Any = None  # the "device" / "backend" watch
    kernel: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def xenbus_dbg(kernel: Any, text: str) -> None:
    """pr_debug/dev_dbg of drivers/xen/xenbus/*: printed by the modern kernel booted with
    dyndbg="file drivers/xen/xenbus/* +p" (as the reference machine is; ``kernel.xenbus_dyndbg``
    turns it off); 2.6.18 builds them out (no DEBUG). Line numbers are those of Linux 6.1."""
    if kernel.flavour != "2.6.18" and getattr(kernel, "xenbus_dyndbg", True):
        kernel.printk("<7>", text)


def _state_attr(dev: Any) -> str:
    return xenbus_strstate(dev.xbus.kernel, dev.state) + "\n"


def xenbus_dev_attrs(flavour: str) -> dict[str, Callable[[Any], str]]:
    """The sysfs files of a xenbus device: nodename, devtype (+ modalias, state in modern Linux)."""
    attrs: dict[str, Callable[[Any], str]] = {
        "nodename": lambda d: d.nodename + "\n",
        "devtype": lambda d: d.devicetype + "\n",
    }
    if flavour != "2.6.18":
        attrs["modalias"] = lambda d: f"{d.bus.name}:{d.devicetype}\n"
        attrs["state"] = _state_attr
    return attrs


def xenbus_match(dev: Any, drv: device_driver) -> int:
    """xenbus_match: does one of the driver's ids equal the device's devicetype (xenbus_probe.c)."""
    xdrv = drv.owner
    return int(xdrv is not None and dev.devicetype in xdrv.ids)


def make_bus(kernel: Any, name: str, root: str, levels: int, get_bus_id: Callable[[Any, str], str | int],
             probe: Callable[[Any, xen_bus_type, str, str], int],
             otherend_changed: Callable[[Any, Any, str, str], Any]) -> xen_bus_type:
    """A xen_bus_type whose driver-model bus probes with xenbus_dev_probe."""
    xbus = xen_bus_type(root=root, levels=levels, get_bus_id=get_bus_id, probe=probe,
                        bus=bus_type(name, dev_attrs=xenbus_dev_attrs(kernel.flavour)),
                        otherend_changed=otherend_changed, kernel=kernel)
    xbus.bus.match = xenbus_match
    xbus.bus.probe = lambda dev: xenbus_dev_probe(kernel, dev)
    xbus.bus.remove = lambda dev: xenbus_dev_remove(kernel, dev)
    return xbus


# -- the other end ------------------------------------------------------------------
def read_otherend_details(kernel: Any, dev: xenbus_device, id_node: str, path_node: str) -> int:
    """xenbus_read_otherend_details: read the other end's domid and path; -errno via dev_fatal."""
    vals = xenbus_gather(kernel, XBT_NIL, dev.nodename, id_node, path_node)
    if isinstance(vals, int):
        xenbus_dev_fatal(kernel, dev, vals, f"reading other end details from {dev.nodename}")
        return vals
    try:
        dev.otherend_id = int(vals[0], 0)
    except ValueError:
        xenbus_dev_fatal(kernel, dev, -ERANGE, f"reading other end details from {dev.nodename}")
        return -ERANGE
    dev.otherend = vals[1]
    if not dev.otherend or not xenbus_exists(kernel, XBT_NIL, dev.otherend, ""):
        xenbus_dev_fatal(kernel, dev, -ENOENT, f"unable to read other end from {dev.nodename}.  "
                         "missing or inaccessible.")
        dev.otherend = None
        return -ENOENT
    kernel.record("read_otherend_details", f"{dev.nodename}: other end is domain {dev.otherend_id} at "
                  f"{dev.otherend}", SRC)
    return 0


def talk_to_otherend(kernel: Any, dev: xenbus_device) -> int:
    """talk_to_otherend: forget the old other end and read it again (xenbus_probe.c)."""
    free_otherend_watch(kernel, dev)
    dev.otherend = None
    xdrv = dev.driver.owner
    return xdrv.read_otherend_details(kernel, dev)


def free_otherend_watch(kernel: Any, dev: xenbus_device) -> None:
    """free_otherend_watch: unregister the <otherend>/state watch if any (xenbus_probe.c)."""
    if dev.otherend_watch is not None:
        unregister_xenbus_watch(kernel, dev.otherend_watch)
        dev.otherend_watch = None


def xenbus_otherend_changed(kernel: Any, dev: xenbus_device, path: str) -> None:
    """xenbus_otherend_changed: the other end's state node fired: tell the driver (xenbus_probe.c)."""
    if dev.otherend is None or not path.startswith(dev.otherend):
        return
    state = xenbus_read_driver_state(kernel, dev.otherend)
    node = dev.otherend_watch.node if dev.otherend_watch is not None else f"{dev.otherend}/state"
    xenbus_dbg(kernel, f"{dev_name_prefix(dev)}xenbus: state is {state}, ({xenbus_strstate(kernel, state)}), "
               f"{node}, {path}")
    kernel.record("xenbus_otherend_changed", f"{dev.nodename}: other end is "
                  f"{xenbus_strstate(kernel, state)}", SRC)
    xdrv = dev.driver.owner if dev.driver is not None else None
    if xdrv is not None and xdrv.otherend_changed is not None:
        xdrv.otherend_changed(kernel, dev, state)


def dev_name_prefix(dev: device) -> str:
    """"<driver> <device>: " as dev_printk prefixes it."""
    from xenlab.linux.driver_model import dev_driver_string
    return f"{dev_driver_string(dev)} {dev.name}: "


def watch_otherend(kernel: Any, dev: xenbus_device) -> int:
    """watch_otherend: watch <otherend>/state with the bus's otherend_changed (xenbus_probe.c)."""
    xbus = dev.xbus

    def callback(watch: Any, path: str, token: str = "") -> None:
        xbus.otherend_changed(kernel, dev, path, token)

    will_handle = xbus.otherend_will_handle if kernel.flavour != "2.6.18" else None
    watch = xenbus_watch_pathfmt(kernel, dev, callback, dev.otherend or "", "state", will_handle=will_handle)
    if isinstance(watch, int):
        return watch
    dev.otherend_watch = watch
    return 0


# -- probe / remove -----------------------------------------------------------------
def xenbus_dev_probe(kernel: Any, dev: xenbus_device) -> int:
    """xenbus_dev_probe: talk_to_otherend, the driver's probe, watch_otherend (xenbus_probe.c)."""
    xdrv: xenbus_driver = dev.driver.owner
    xenbus_dbg(kernel, f"xenbus: xenbus_probe (xenbus_dev_probe:279) {dev.nodename}.")
    kernel.record("xenbus_dev_probe", f"{dev.nodename}: driver {xdrv.name!r}", SRC)
    err = 0
    if xdrv.probe is None or dev.devicetype not in xdrv.ids:
        err = -ENODEV
    else:
        err = talk_to_otherend(kernel, dev)
        if err:
            if kernel.flavour == "2.6.18":
                kernel.printk(KERN_WARNING, f"xenbus_probe: talk_to_otherend on {dev.nodename} failed.")
            else:
                kernel.printk(KERN_WARNING, f"{dev_name_prefix(dev)}talk_to_otherend on {dev.nodename} "
                              "failed.")
            return err
        err = xdrv.probe(kernel, dev)
        if not err:
            err = watch_otherend(kernel, dev)
            if err:
                if kernel.flavour == "2.6.18":
                    kernel.printk(KERN_WARNING, f"xenbus_probe: watch_otherend on {dev.nodename} failed.")
                else:
                    kernel.printk(KERN_WARNING, f"{dev_name_prefix(dev)}watch_otherend on {dev.nodename} "
                                  "failed.")
                return err
            return 0
    xenbus_dev_error(kernel, dev, err, f"xenbus_dev_probe on {dev.nodename}")
    xenbus_switch_state(kernel, dev, XenbusStateClosed)
    return -ENODEV if kernel.flavour == "2.6.18" else err


def xenbus_dev_remove(kernel: Any, dev: xenbus_device) -> None:
    """xenbus_dev_remove: drop the otherend watch, run the driver's remove, switch to Closed."""
    xenbus_dbg(kernel, f"xenbus: xenbus_probe (xenbus_dev_remove:344) {dev.nodename}.")
    free_otherend_watch(kernel, dev)
    xdrv = dev.driver.owner if dev.driver is not None else None
    if xdrv is not None and xdrv.remove is not None:
        xdrv.remove(kernel, dev)
    dev.otherend = None
    xenbus_switch_state(kernel, dev, XenbusStateClosed)


def xenbus_register_driver_common(kernel: Any, xdrv: xenbus_driver, xbus: xen_bus_type) -> int:
    """xenbus_register_driver_common: make the device_driver and driver_register it (xenbus_probe.c)."""
    if kernel.flavour == "2.6.18" and xbus.error:
        return xbus.error
    xdrv.driver = device_driver(xdrv.name or xdrv.ids[0], bus=xbus.bus, owner=xdrv)
    return driver_register(kernel, xdrv.driver)


# -- enumeration --------------------------------------------------------------------
def xenbus_probe_node(kernel: Any, xbus: xen_bus_type, type: str, nodename: str) -> int:
    """xenbus_probe_node: make a xenbus_device for a node in state Initialising (xenbus_probe.c)."""
    state = xenbus_read_driver_state(kernel, nodename)
    if kernel.flavour == "2.6.18" and xbus.error:
        return xbus.error
    if state != XenbusStateInitialising:
        kernel.record("xenbus_probe_node", f"{nodename}: state {state} ({xenbus_strstate(kernel, state)}), "
                      "not a new device: skipped", SRC)
        return 0
    dev = xenbus_device(nodename=nodename, devicetype=type, state=XenbusStateInitialising,
                        bus=xbus.bus, xbus=xbus, parent=xbus.dev,
                        release=lambda d: xenbus_dev_release(kernel, d))
    bus_id = xbus.get_bus_id(kernel, nodename)
    if isinstance(bus_id, int):
        return bus_id
    dev.name = bus_id
    kernel.record("xenbus_probe_node", f"{nodename}: new {type} device {bus_id!r} on bus {xbus.bus.name!r}",
                  SRC, changes=[(f"{kernel.name}/xenbus_state", nodename, None, XenbusStateInitialising)])
    err = device_register(kernel, dev)
    if err:
        kernel.record("xenbus_probe_node", f"{nodename}: device_register failed: {err}", SRC,
                      changes=[(f"{kernel.name}/xenbus_state", nodename, XenbusStateInitialising, None)])
    return err


def xenbus_dev_release(kernel: Any, dev: Any) -> None:
    """xenbus_dev_release: the last reference went: the xenbus_device is freed (xenbus_probe.c)."""
    kernel.record("xenbus_dev_release", f"{dev.nodename}: xenbus_device freed", SRC,
                  changes=[(f"{kernel.name}/xenbus_state", dev.nodename, dev.state, None)])


def xenbus_probe_devices(kernel: Any, xbus: xen_bus_type) -> int:
    """xenbus_probe_devices: list <root>/<type>/... and probe each entry (xenbus_probe.c)."""
    if kernel.flavour == "2.6.18" and xbus.error:
        return xbus.error
    types = xenbus_directory(kernel, XBT_NIL, xbus.root, "")
    if isinstance(types, int):
        return types
    for type in types:
        names = xenbus_directory(kernel, XBT_NIL, xbus.root, type)
        if isinstance(names, int):
            return names
        for name in names:
            err = xbus.probe(kernel, xbus, type, name)
            if err:
                return err
    return 0


def xenbus_device_find(xbus: xen_bus_type, nodename: str) -> xenbus_device | None:
    """xenbus_device_find: the device on the bus whose nodename is *nodename*."""
    for dev in xbus.bus.devices:
        if getattr(dev, "nodename", None) == nodename:
            return dev  # type: ignore[return-value]
    return None


def xenbus_cleanup_devices(kernel: Any, xbus: xen_bus_type, path: str) -> None:
    """xenbus_cleanup_devices: unregister every device at or below *path* (xenbus_probe.c)."""
    def below(dev: Any) -> int:
        xenbus_dbg(kernel, f"xenbus: xenbus_probe (cleanup_dev:424) {path}.")
        n = dev.nodename
        return int(n == path or n.startswith(path + "/"))

    found: list[Any] = []

    def pick(d: Any) -> int:
        if below(d):
            found.append(d)
            return 1
        return 0

    while True:
        found.clear()
        bus_for_each_dev(xbus.bus, pick)
        if not found:
            return
        device_unregister(kernel, found[0])


def xenbus_dev_changed(kernel: Any, node: str, xbus: xen_bus_type) -> None:
    """xenbus_dev_changed / dev_changed: a watch under the root fired: add or remove devices."""
    if (kernel.flavour == "2.6.18" and xbus.error) or node.count("/") < 2:
        return
    if not xenbus_exists(kernel, XBT_NIL, node, ""):
        xenbus_cleanup_devices(kernel, xbus, node)
        return
    parts = node.split("/")
    type = parts[1][:XEN_BUS_ID_SIZE - 1]
    if len(parts) < xbus.levels + 1:
        return
    root = "/".join(parts[: xbus.levels + 1])
    if xenbus_device_find(xbus, root) is None:
        xenbus_probe_node(kernel, xbus, type, root)

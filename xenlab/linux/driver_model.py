"""A small Linux driver model: bus_type, device, device_driver and how they meet.

Theory of operation
-------------------
The kernel's driver core (drivers/base/{bus,core,dd,driver}.c) keeps, per bus, a list
of devices and a list of drivers. ``bus_register`` creates the bus (and with it
/sys/bus/<name>/{devices,drivers}); ``device_register`` adds a device and then tries
every driver of its bus in registration order: ``bus->match(dev, drv)`` first, and if
it matches, ``really_probe`` binds the driver and calls ``bus->probe(dev)`` (or
``drv->probe``). A probe error unbinds again and the next driver is tried.
``driver_register`` does the same from the other side: it walks the devices already
on the bus that have no driver. Unregistering removes the device (calling the bus's
or driver's ``remove`` first).

Kernel functions here return 0 or -errno as the kernel does. A fault can be injected
per call (``fault="device_register"``): if that name is in ``kernel.faults`` the call
fails with -ENOMEM before changing anything, as an allocation failure would.

State lives on the Kernel: ``kernel.buses`` (name -> bus_type, registration order)
and ``kernel.root_devices`` (devices with no bus, e.g. the 2.6.18 xenbus root devices
"xen" and "xen-backend" under /sys/devices). ``xenlab.linux.sysfs`` renders both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xenlab.abi.errno import EBUSY, EEXIST, EINVAL, ENODEV, ENOMEM, ENXIO, errno_name

if TYPE_CHECKING:
    from xenlab.linux.kernel import Kernel

SRC_BUS = "drivers/base/bus.c"
SRC_CORE = "drivers/base/core.c"
SRC_DD = "drivers/base/dd.c"
SRC_DRIVER = "drivers/base/driver.c"


@dataclass(eq=False)
class device_driver:
    """struct device_driver: a named driver on one bus, with optional probe/remove."""

    name: str
    bus: bus_type | None = None
    probe: Callable[[device], int] | None = None
    remove: Callable[[device], Any] | None = None
    owner: Any = None  # the xenbus_driver (or other wrapper) this driver belongs to
    registered: bool = False

    def __repr__(self) -> str:
        return f"device_driver({self.name!r} on {self.bus.name if self.bus else None!r})"


@dataclass(eq=False)
class device:
    """struct device: a named device, on a bus or not, bound to at most one driver."""

    name: str = ""
    bus: bus_type | None = None
    parent: device | None = None
    driver: device_driver | None = None
    release: Callable[[device], Any] | None = None
    # sysfs attribute files: name -> show() returning the file's text
    attrs: dict[str, Callable[[], str]] = field(default_factory=dict)
    registered: bool = False

    def dev_name(self) -> str:
        """dev_name(): the device's name (its bus id)."""
        return self.name

    def __repr__(self) -> str:
        return f"device({self.name!r}, bus={self.bus.name if self.bus else None!r}, " \
               f"driver={self.driver.name if self.driver else None!r})"


@dataclass(eq=False)
class bus_type:
    """struct bus_type: a bus name, its match/probe/remove hooks and its klists."""

    name: str
    match: Callable[[device, device_driver], int] | None = None
    probe: Callable[[device], int] | None = None
    remove: Callable[[device], Any] | None = None
    # attribute files every device on this bus gets (bus->dev_groups): name -> show(dev)
    dev_attrs: dict[str, Callable[[device], str]] = field(default_factory=dict)
    # bus->uevent: the KEY=value lines the bus adds to a device's uevent file
    uevent: Callable[[device], list[str]] | None = None
    devices: list[device] = field(default_factory=list)
    drivers: list[device_driver] = field(default_factory=list)
    registered: bool = False

    def __repr__(self) -> str:
        return f"bus_type({self.name!r}, {len(self.devices)} devices, {len(self.drivers)} drivers)"


def dev_driver_string(dev: device) -> str:
    """dev_driver_string: the bound driver's name, else the bus's name (drivers/base/core.c)."""
    if dev.driver is not None:
        return dev.driver.name
    return dev.bus.name if dev.bus is not None else ""


def dev_printk(kernel: Kernel, level: str, dev: device, text: str) -> None:
    """dev_printk/dev_err/dev_warn: printk prefixed with "<driver> <device>: " (include/linux/device.h)."""
    kernel.printk(level, f"{dev_driver_string(dev)} {dev.name}: {text}")


def _injected(kernel: Kernel, fault: str | None, function: str, what: str, source: str) -> int:
    if fault is not None and kernel.fault(fault):
        kernel.record(function, f"{what}: fails with -ENOMEM (fault {fault!r} injected)", source)
        return -ENOMEM
    return 0


# -- buses ----------------------------------------------------------------
def bus_register(kernel: Kernel, bus: bus_type, *, fault: str | None = None) -> int:
    """bus_register: create the bus and /sys/bus/<name>/{devices,drivers} (drivers/base/bus.c)."""
    err = _injected(kernel, fault, "bus_register", f"bus {bus.name!r}", SRC_BUS)
    if err:
        return err
    buses = kernel.buses
    if bus.name in buses:
        kernel.record("bus_register", f"bus {bus.name!r} already exists: -EEXIST", SRC_BUS)
        return -EEXIST
    buses[bus.name] = bus
    bus.registered = True
    kernel.record("bus_register", f"registered bus {bus.name!r}: /sys/bus/{bus.name}/devices and /drivers",
                  SRC_BUS, changes=[(f"{kernel.name}/bus", bus.name, None, "registered")])
    return 0


def bus_unregister(kernel: Kernel, bus: bus_type) -> None:
    """bus_unregister: remove the bus's drivers and devices, then the bus (drivers/base/bus.c)."""
    for drv in list(bus.drivers):
        driver_unregister(kernel, drv)
    for dev in list(bus.devices):
        device_unregister(kernel, dev)
    kernel.buses.pop(bus.name, None)
    bus.registered = False
    kernel.record("bus_unregister", f"unregistered bus {bus.name!r}", SRC_BUS,
                  changes=[(f"{kernel.name}/bus", bus.name, "registered", None)])


def bus_for_each_dev(bus: bus_type, fn: Callable[[device], int]) -> int:
    """bus_for_each_dev: call fn on each device in order until it returns non-zero (drivers/base/bus.c)."""
    for dev in list(bus.devices):
        ret = fn(dev)
        if ret:
            return ret
    return 0


# -- binding --------------------------------------------------------------
def _dev_key(dev: device) -> str:
    """A device's key in the trace tables: "<bus>/<name>", or the name for a device on no bus."""
    return f"{dev.bus.name}/{dev.name}" if dev.bus is not None else dev.name


def _bind_row(kernel: Kernel, dev: device, before: str | None,
              after: str | None) -> tuple[str, str, Any, Any]:
    return (f"{kernel.name}/device_driver", _dev_key(dev), before, after)


def really_probe(kernel: Kernel, dev: device, drv: device_driver) -> int:
    """really_probe: bind drv, call bus->probe or drv->probe, unbind on error (drivers/base/dd.c)."""
    dev.driver = drv
    kernel.record("really_probe", f"bound {dev.name} to driver {drv.name!r}, probing", SRC_DD,
                  changes=[_bind_row(kernel, dev, None, drv.name)])
    bus = dev.bus
    if bus is not None and bus.probe is not None:
        ret = bus.probe(dev)
    elif drv.probe is not None:
        ret = drv.probe(dev)
    else:
        ret = 0
    if ret:
        dev.driver = None
        kernel.record("really_probe", f"probe of {dev.name} by {drv.name!r} failed: {ret} "
                      f"({errno_name(ret)})", SRC_DD, changes=[_bind_row(kernel, dev, drv.name, None)])
        if ret not in (-ENODEV, -ENXIO):
            kernel.printk("<4>", f"{drv.name}: probe of {dev.name} failed with error {ret}")
        return 0
    if kernel.KOBJ_BIND_UEVENTS:
        kobject_uevent(kernel, dev, "bind")  # driver_bound
    return 1


def driver_probe_device(kernel: Kernel, drv: device_driver, dev: device) -> int:
    """driver_probe_device: try drv on dev if the bus says they match; 1 if bound (drivers/base/dd.c)."""
    bus = dev.bus
    if bus is not None and bus.match is not None and not bus.match(dev, drv):
        return 0
    return really_probe(kernel, dev, drv)


def device_attach(kernel: Kernel, dev: device) -> int:
    """device_attach: try each driver of the device's bus in order until one binds (drivers/base/dd.c)."""
    if dev.driver is not None or dev.bus is None:
        return 1 if dev.driver is not None else 0
    for drv in list(dev.bus.drivers):
        if driver_probe_device(kernel, drv, dev):
            return 1
    return 0


def driver_attach(kernel: Kernel, drv: device_driver) -> int:
    """driver_attach: try drv on every unbound device already on its bus (drivers/base/dd.c)."""
    assert drv.bus is not None
    for dev in list(drv.bus.devices):
        if dev.driver is None and dev.registered:
            driver_probe_device(kernel, drv, dev)
    return 0


def device_release_driver(kernel: Kernel, dev: device) -> None:
    """device_release_driver: call remove and unbind the device's driver (drivers/base/dd.c)."""
    drv = dev.driver
    if drv is None:
        return
    if dev.bus is not None and dev.bus.remove is not None:
        dev.bus.remove(dev)
    elif drv.remove is not None:
        drv.remove(dev)
    dev.driver = None
    kernel.record("device_release_driver", f"unbound {dev.name} from driver {drv.name!r}", SRC_DD,
                  changes=[_bind_row(kernel, dev, drv.name, None)])
    if kernel.KOBJ_BIND_UEVENTS:
        kobject_uevent(kernel, dev, "unbind")


# -- uevents -------------------------------------------------------------
def kobject_uevent(kernel: Kernel, dev: device, action: str) -> None:
    """kobject_uevent: tell user space (udev) about *dev*: "add", "remove", "bind", "unbind",
    "online", "offline"; the bus's uevent hook adds its variables (lib/kobject_uevent.c)."""
    env = [f"ACTION={action}", f"DEVPATH=/devices/{dev.name}"]
    if dev.bus is not None and dev.bus.uevent is not None:
        env += dev.bus.uevent(dev)
    kernel.record("kobject_uevent", f"{dev.name}: {action} (" + " ".join(env[2:]) + ")",
                  "lib/kobject_uevent.c")


# -- devices --------------------------------------------------------------
def device_register(kernel: Kernel, dev: device, *, fault: str | None = None) -> int:
    """device_register: add the device to sysfs and its bus, then probe drivers (drivers/base/core.c)."""
    err = _injected(kernel, fault, "device_register", f"device {dev.name!r}", SRC_CORE)
    if err:
        return err
    where = f"bus {dev.bus.name!r}" if dev.bus else "/sys/devices"
    siblings = dev.bus.devices if dev.bus is not None else kernel.root_devices
    if any(d.name == dev.name for d in siblings):
        kernel.record("device_register", f"device {dev.name!r} already on {where}: -EEXIST", SRC_CORE)
        return -EEXIST
    siblings.append(dev)
    dev.registered = True
    kernel.record("device_add", f"added device {dev.name!r} on {where}", SRC_CORE,
                  changes=[(f"{kernel.name}/device", _dev_key(dev), None, "registered")])
    kobject_uevent(kernel, dev, "add")
    if dev.bus is not None:
        device_attach(kernel, dev)
    return 0


def device_unregister(kernel: Kernel, dev: device) -> None:
    """device_unregister: unbind the driver, remove the device from bus and sysfs (drivers/base/core.c)."""
    if not dev.registered:
        return
    device_release_driver(kernel, dev)
    siblings = dev.bus.devices if dev.bus is not None else kernel.root_devices
    if dev in siblings:
        siblings.remove(dev)
    dev.registered = False
    kernel.record("device_del", f"removed device {dev.name!r}", SRC_CORE,
                  changes=[(f"{kernel.name}/device", _dev_key(dev), "registered", None)])
    kobject_uevent(kernel, dev, "remove")
    if dev.release is not None:
        dev.release(dev)


def device_create_file(kernel: Kernel, dev: device, name: str, show: Callable[[], str]) -> int:
    """device_create_file: add one sysfs attribute file to the device (drivers/base/core.c)."""
    if name in dev.attrs:
        return -EEXIST
    dev.attrs[name] = show
    kernel.record("device_create_file", f"{dev.name}/{name}", SRC_CORE)
    return 0


# -- drivers --------------------------------------------------------------
def driver_register(kernel: Kernel, drv: device_driver, *, fault: str | None = None) -> int:
    """driver_register: add the driver to its bus, probe the devices waiting there (drivers/base/driver.c)."""
    err = _injected(kernel, fault, "driver_register", f"driver {drv.name!r}", SRC_DRIVER)
    if err:
        return err
    bus = drv.bus
    if bus is None or not bus.registered:
        # the kernel would oops on the missing bus private data; we refuse instead
        kernel.record("driver_register", f"driver {drv.name!r}: bus not registered: -EINVAL", SRC_DRIVER)
        return -EINVAL
    if any(d.name == drv.name for d in bus.drivers):
        kernel.printk("<3>", f"Error: Driver '{drv.name}' is already registered, aborting...")
        return -EBUSY
    bus.drivers.append(drv)
    drv.registered = True
    kernel.record("driver_register", f"registered driver {drv.name!r} on bus {bus.name!r}", SRC_DRIVER,
                  changes=[(f"{kernel.name}/driver", f"{bus.name}/{drv.name}", None, "registered")])
    return driver_attach(kernel, drv)


def driver_unregister(kernel: Kernel, drv: device_driver) -> None:
    """driver_unregister: unbind drv's devices and remove it from its bus (drivers/base/driver.c)."""
    bus = drv.bus
    if bus is None or drv not in bus.drivers:
        return
    for dev in list(bus.devices):
        if dev.driver is drv:
            device_release_driver(kernel, dev)
    bus.drivers.remove(drv)
    drv.registered = False
    kernel.record("driver_unregister", f"unregistered driver {drv.name!r} from bus {bus.name!r}", SRC_DRIVER,
                  changes=[(f"{kernel.name}/driver", f"{bus.name}/{drv.name}", "registered", None)])


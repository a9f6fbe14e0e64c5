"""drivers/xen/xenbus/xenbus_probe.c, XenLinux 2.6.18: the xenbus buses, probing, xenbus_probe_init.

Theory of operation
-------------------
``xenbus_probe_init`` (one postcore_initcall) registers the frontend bus "xen" and the
backend bus "xen-backend" (keeping each result in the bus's ``.error``), finds the store
page and event channel (dom0 makes them: a zeroed page and
EVTCHNOP_alloc_unbound(DOMID_SELF, 0), published as /proc/xen/xsd_kva and xsd_port; a PV
domU takes them from start_info; PV-on-HVM from HVM params), creates /proc/xen/xenbus,
runs ``xs_init``, registers the two bus root devices, and in a domU probes at once. dom0
waits: the first store interrupt runs ``wake_waiting``, which sets xenstored_ready and
schedules ``probe_work`` (``xenbus_probe``): enumerate device/ and backend/, watch them,
then call the xenstore notifier chain (the balloon, reboot.c, cpu_hotplug.c).

A ``xen_bus_type`` wraps a driver-model ``bus_type`` with the store side: its root
("device" or "backend", relative to /local/domain/<self>), how many path levels name a
device, how a node becomes a bus id. ``xenbus_probe_devices`` lists root/<type>/... and
calls the bus's ``probe`` per entry, which ends in ``xenbus_probe_node``: only a node
whose ``state`` reads 1 (Initialising) becomes a ``xenbus_device``; ``device_register``
lets the driver model match it to a driver by devicetype and call ``xenbus_dev_probe``:
read the other end's id and path (``talk_to_otherend``), run the driver's probe, and
watch <otherend>/state (``watch_otherend``). The watch fires once at once, so the
driver's ``otherend_changed`` sees the other end's current state immediately.

The frontend half (frontend_bus_id, xenbus_probe_frontend, fe_watch, wait_for_devices)
is in this file in 2.6.18; the backend half is xenbus_probe_backend.c, which this file
calls through the three functions xenbus_probe.h declares (the kernel object links them:
``XenLinuxKernel.xenbus_backend_*``). Every call returns 0 or -errno; the faults in
``FAULTS`` make the error paths reachable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xenlab.abi.errno import EINVAL, ENODEV, ENOENT, ENOMEM, ENOSYS
from xenlab.abi.event_channel import DOMID_SELF
from xenlab.abi.hvm import HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN
from xenlab.abi.start_info import SIF_INITDOMAIN
from xenlab.abi.xenbus import XenbusStateClosed, XenbusStateConnected, XenbusStateInitialising
from xenlab.abi.xs_wire import xenstore_domain_interface
from xenlab.linux.driver_model import (
    bus_for_each_dev,
    bus_register,
    bus_type,
    bus_unregister,
    device,
    device_driver,
    device_register,
    device_unregister,
    driver_register,
)
from xenlab.linux.kernel import KERN_INFO, KERN_WARNING
from xenlab.linux.mm import free_page, get_zeroed_page, page_chain
from xenlab.linux.xenlinux.hvm import hvm_get_parameter
from xenlab.linux.xenlinux.xen_proc import create_xen_proc_entry
from xenlab.linux.xenlinux.xenbus_client import (
    xenbus_dev_error,
    xenbus_dev_fatal,
    xenbus_read_driver_state,
    xenbus_strstate,
    xenbus_switch_state,
    xenbus_watch_path2,
)
from xenlab.linux.xenlinux.xenbus_dev import xenbus_dev_init
from xenlab.linux.xenlinux.xenbus_xs import (
    XBT_NIL,
    register_xenbus_watch,
    unregister_xenbus_watch,
    watch_callback,
    xenbus_directory,
    xenbus_exists,
    xenbus_gather,
    xenbus_watch,
    xs_init,
)

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel
    from xenlab.xen.memory import Page

SRC = "drivers/xen/xenbus/xenbus_probe.c"
BUS_ID_SIZE = 20
PAGE_OFFSET = 0xFFFF880000000000  # __PAGE_OFFSET of x86_64 XenLinux (mach-xen/asm/page.h): the direct map
PAGE_SHIFT, PAGE_SIZE = 12, 4096  # asm/page.h

#: Faults the probe checks (kernel.faults), with what each does.
FAULTS: tuple[tuple[str, str], ...] = (
    ("bus_register_frontend", "bus_register of the frontend bus \"xen\" fails (-ENOMEM)"),
    ("bus_register_backend", "bus_register of the backend bus \"xen-backend\" fails (-ENOMEM)"),
    ("get_zeroed_page", "get_zeroed_page returns NULL for dom0's store page"),
    ("alloc_unbound_enosys", "EVTCHNOP_alloc_unbound for dom0's store port returns -ENOSYS"),
    ("xs_init", "xs_init fails (-ENOMEM)"),
    ("device_register", "device_register of the xenbus root device \"xen\" fails (-ENOMEM)"),
    ("device_register_backend", "device_register of the root device \"xen-backend\" fails (-ENOMEM)"),
)


# -- the types of include/xen/xenbus.h and xenbus_probe.h --------------------------------------
@dataclass(eq=False)
class xenbus_driver:
    """struct xenbus_driver: ids, probe/remove and otherend_changed, plus the embedded device_driver."""

    name: str
    ids: list[str]
    probe: Callable[[XenLinuxKernel, xenbus_device], int] | None = None
    otherend_changed: Callable[[XenLinuxKernel, xenbus_device, int], Any] | None = None
    remove: Callable[[XenLinuxKernel, xenbus_device], Any] | None = None
    read_otherend_details: Callable[[XenLinuxKernel, xenbus_device], int] | None = None
    driver: device_driver | None = None


@dataclass(eq=False)
class xenbus_device(device):
    """struct xenbus_device: a device named by a store node, with its state and other end."""

    nodename: str = ""
    devicetype: str = ""
    state: int = XenbusStateInitialising
    otherend: str | None = None
    otherend_id: int = 0
    otherend_watch: xenbus_watch = field(default_factory=lambda: xenbus_watch("", _no_callback))
    xbus: xen_bus_type | None = None  # the xen_bus_type it sits on
    drvdata: Any = None  # dev_set_drvdata: the driver's private state


def _no_callback(watch: xenbus_watch, path: str, token: str) -> None:
    """An unset watch callback (NULL)."""


@dataclass(eq=False)
class xen_bus_type:
    """struct xen_bus_type: root, levels, bus id maker, probe, error, the bus and its root device."""

    root: str
    levels: int
    get_bus_id: Callable[[XenLinuxKernel, str], str | int]
    probe: Callable[[XenLinuxKernel, xen_bus_type, str, str], int]
    bus: bus_type
    dev: device
    error: int = -ENODEV  # the bus_register (or root device_register) result
    watch: xenbus_watch | None = None  # fe_watch / be_watch


@dataclass
class XenbusProbe:
    """The rest of the file-scope state of xenbus_probe.c: the notifier chain, the wait flag."""

    xenstore_chain: list[Callable[[XenLinuxKernel], Any]] = field(default_factory=list)
    ready_to_wait_for_devices: bool = False
    probed: int = 0  # how many times xenbus_probe ran (the lab's count)


def xendev_show_nodename(dev: xenbus_device) -> str:
    """xendev_show_nodename: the sysfs file "nodename"."""
    return dev.nodename + "\n"


def xendev_show_devtype(dev: xenbus_device) -> str:
    """xendev_show_devtype: the sysfs file "devtype"."""
    return dev.devicetype + "\n"


def new_bus(kernel: XenLinuxKernel, name: str, root: str, levels: int,
            get_bus_id: Callable[[XenLinuxKernel, str], str | int],
            probe: Callable[[XenLinuxKernel, xen_bus_type, str, str], int],
            uevent: Callable[[xenbus_device], list[str]]) -> xen_bus_type:
    """A static xen_bus_type as its file initialises it: .bus matching and probing with xenbus_dev_*."""
    bus = bus_type(name, dev_attrs={"nodename": xendev_show_nodename, "devtype": xendev_show_devtype})
    bus.match = xenbus_match
    bus.probe = lambda dev: xenbus_dev_probe(kernel, dev)  # type: ignore[arg-type]
    bus.remove = lambda dev: xenbus_dev_remove(kernel, dev)  # type: ignore[arg-type]
    bus.uevent = uevent
    return xen_bus_type(root=root, levels=levels, get_bus_id=get_bus_id, probe=probe, bus=bus,
                        dev=device(name))


def xenbus_frontend_type(kernel: XenLinuxKernel) -> xen_bus_type:
    """The static xenbus_frontend: bus "xen", root "device", 2 levels (device/<type>/<id>)."""
    return new_bus(kernel, "xen", "device", 2, frontend_bus_id, xenbus_probe_frontend, xenbus_uevent_frontend)


# -- matching and the other end ------------------------------------------------------------------
def match_device(ids: list[str], dev: xenbus_device) -> str | None:
    """match_device: the id equal to the device's devicetype, or None."""
    return next((i for i in ids if i == dev.devicetype), None)


def xenbus_match(dev: device, drv: device_driver) -> int:
    """xenbus_match: does one of the driver's ids equal the device's devicetype."""
    xdrv = drv.owner
    return int(isinstance(xdrv, xenbus_driver) and isinstance(dev, xenbus_device)
               and match_device(xdrv.ids, dev) is not None)


def frontend_bus_id(kernel: XenLinuxKernel, nodename: str) -> str | int:
    """frontend_bus_id: device/<type>/<id> => <type>-<id> (at most 19 characters)."""
    _, slash, rest = nodename.partition("/")
    if not slash or len(rest) >= BUS_ID_SIZE:
        kernel.printk(KERN_WARNING, f"XENBUS: bad frontend {nodename}")
        return -EINVAL
    if "/" not in rest:
        kernel.printk(KERN_WARNING, f"XENBUS: bus_id {rest} no slash")
        return -EINVAL
    return rest.replace("/", "-", 1)


def free_otherend_details(dev: xenbus_device) -> None:
    """free_otherend_details: forget the other end's path."""
    dev.otherend = None


def free_otherend_watch(kernel: XenLinuxKernel, dev: xenbus_device) -> None:
    """free_otherend_watch: unregister the <otherend>/state watch if any."""
    if dev.otherend_watch.node:
        unregister_xenbus_watch(kernel, dev.otherend_watch)
        dev.otherend_watch.node = ""


def read_otherend_details(kernel: XenLinuxKernel, xendev: xenbus_device, id_node: str, path_node: str) -> int:
    """read_otherend_details: read the other end's domid and path; -errno via dev_fatal."""
    err, values = xenbus_gather(kernel, XBT_NIL, xendev.nodename, (id_node, "%i"), (path_node, None))
    if err:
        xenbus_dev_fatal(kernel, xendev, err, f"reading other end details from {xendev.nodename}")
        return err
    xendev.otherend_id, xendev.otherend = values
    if not xendev.otherend or not xenbus_exists(kernel, XBT_NIL, xendev.otherend, ""):
        xenbus_dev_fatal(kernel, xendev, -ENOENT, f"unable to read other end from {xendev.nodename}.  "
                         "missing or inaccessible.")
        free_otherend_details(xendev)
        return -ENOENT
    kernel.record("read_otherend_details", f"{xendev.nodename}: other end is domain {xendev.otherend_id} at "
                  f"{xendev.otherend}", SRC)
    return 0


def read_backend_details(kernel: XenLinuxKernel, xendev: xenbus_device) -> int:
    """read_backend_details: read "backend-id" and "backend" of a frontend device."""
    return read_otherend_details(kernel, xendev, "backend-id", "backend")


def xenbus_uevent_frontend(dev: xenbus_device) -> list[str]:
    """xenbus_uevent_frontend: XENBUS_TYPE, XENBUS_PATH, then MODALIAS=xen:<type>."""
    return [f"XENBUS_TYPE={dev.devicetype}", f"XENBUS_PATH={dev.nodename}", f"MODALIAS=xen:{dev.devicetype}"]


def otherend_changed(kernel: XenLinuxKernel, dev: xenbus_device, path: str) -> None:
    """otherend_changed: the other end's state node fired: tell the driver (unless the watch is stale)."""
    if dev.otherend is None or not path.startswith(dev.otherend):
        return  # "Ignoring watch at %s"
    state = xenbus_read_driver_state(kernel, dev.otherend)
    kernel.record("otherend_changed", f"{dev.nodename}: other end is {xenbus_strstate(state)}", SRC)
    xdrv = dev.driver.owner if dev.driver is not None else None
    if isinstance(xdrv, xenbus_driver) and xdrv.otherend_changed is not None:
        xdrv.otherend_changed(kernel, dev, state)


def talk_to_otherend(kernel: XenLinuxKernel, dev: xenbus_device) -> int:
    """talk_to_otherend: forget the old other end and read it again."""
    assert dev.driver is not None and isinstance(dev.driver.owner, xenbus_driver)
    xdrv = dev.driver.owner
    free_otherend_watch(kernel, dev)
    free_otherend_details(dev)
    assert xdrv.read_otherend_details is not None
    return xdrv.read_otherend_details(kernel, dev)


def watch_otherend(kernel: XenLinuxKernel, dev: xenbus_device) -> int:
    """watch_otherend: watch <otherend>/state with otherend_changed."""
    def otherend_changed_cb(watch: xenbus_watch, path: str, token: str) -> None:
        otherend_changed(kernel, dev, path)

    otherend_changed_cb.__name__ = "otherend_changed"
    return xenbus_watch_path2(kernel, dev, dev.otherend or "", "state", dev.otherend_watch,
                              otherend_changed_cb)


def xenbus_dev_probe(kernel: XenLinuxKernel, dev: xenbus_device) -> int:
    """xenbus_dev_probe: talk_to_otherend, the driver's probe, watch_otherend."""
    assert dev.driver is not None and isinstance(dev.driver.owner, xenbus_driver)
    xdrv = dev.driver.owner
    kernel.record("xenbus_dev_probe", f"{dev.nodename}: driver {xdrv.name!r}", SRC)
    if xdrv.probe is None or match_device(xdrv.ids, dev) is None:
        err = -ENODEV
    else:
        err = talk_to_otherend(kernel, dev)
        if err:
            kernel.printk(KERN_WARNING, f"xenbus_probe: talk_to_otherend on {dev.nodename} failed.")
            return err
        err = xdrv.probe(kernel, dev)
        if not err:
            err = watch_otherend(kernel, dev)
            if err:
                kernel.printk(KERN_WARNING, f"xenbus_probe: watch_otherend on {dev.nodename} failed.")
                return err
            return 0
    xenbus_dev_error(kernel, dev, err, f"xenbus_dev_probe on {dev.nodename}")
    xenbus_switch_state(kernel, dev, XenbusStateClosed)
    return -ENODEV


def xenbus_dev_remove(kernel: XenLinuxKernel, dev: xenbus_device) -> None:
    """xenbus_dev_remove: drop the otherend watch, run the driver's remove, switch to Closed."""
    free_otherend_watch(kernel, dev)
    free_otherend_details(dev)
    xdrv = dev.driver.owner if dev.driver is not None else None
    if isinstance(xdrv, xenbus_driver) and xdrv.remove is not None:
        xdrv.remove(kernel, dev)
    xenbus_switch_state(kernel, dev, XenbusStateClosed)


def xenbus_register_driver_common(kernel: XenLinuxKernel, drv: xenbus_driver, bus: xen_bus_type) -> int:
    """xenbus_register_driver_common: the bus's error, or driver_register of the embedded driver
    under xenwatch_mutex (no watch callback runs while the driver probes its devices)."""
    if bus.error:
        return bus.error
    drv.driver = device_driver(drv.name or drv.ids[0], bus=bus.bus, owner=drv)
    kernel.xs_state.xenwatch_mutex.lock()
    ret = driver_register(kernel, drv.driver)
    kernel.xs_state.xenwatch_mutex.unlock()
    return ret


def xenbus_register_frontend(kernel: XenLinuxKernel, drv: xenbus_driver) -> int:
    """xenbus_register_frontend: register a frontend driver, then wait for its devices (a module)."""
    drv.read_otherend_details = read_backend_details
    err = xenbus_register_driver_common(kernel, drv, kernel.xenbus_frontend)
    if err:
        return err
    wait_for_devices(kernel, drv)
    return 0


# -- finding and removing devices -----------------------------------------------------------------
def xenbus_device_find(nodename: str, bus: bus_type) -> xenbus_device | None:
    """xenbus_device_find: the device on the bus whose nodename is *nodename* (cmp_dev)."""
    for dev in bus.devices:
        if isinstance(dev, xenbus_device) and dev.nodename == nodename:
            return dev
    return None


def xenbus_cleanup_devices(kernel: XenLinuxKernel, path: str, bus: bus_type) -> None:
    """xenbus_cleanup_devices: unregister every device at or below *path* (cleanup_dev), one by one."""
    found: list[xenbus_device] = []

    def cleanup_dev(dev: device) -> int:
        """cleanup_dev: the device at *path* or in a subdirectory of it."""
        if isinstance(dev, xenbus_device) and (dev.nodename == path or dev.nodename.startswith(path + "/")):
            found.append(dev)
            return 1
        return 0

    while True:
        found.clear()
        bus_for_each_dev(bus, cleanup_dev)
        if not found:
            return
        device_unregister(kernel, found[0])


def xenbus_dev_release(kernel: XenLinuxKernel, dev: xenbus_device) -> None:
    """xenbus_dev_release: the last reference went: the xenbus_device is freed."""
    kernel.record("xenbus_dev_release", f"{dev.nodename}: xenbus_device freed", SRC,
                  changes=[(kernel.table("xenbus_state"), dev.nodename, dev.state, None)])


# -- enumeration ----------------------------------------------------------------------------------
def xenbus_probe_node(kernel: XenLinuxKernel, bus: xen_bus_type, type: str, nodename: str) -> int:
    """xenbus_probe_node: make a xenbus_device for a node in state Initialising, and register it."""
    state = xenbus_read_driver_state(kernel, nodename)
    if bus.error:
        return bus.error
    if state != XenbusStateInitialising:  # "Device is not new, so ignore it."
        kernel.record("xenbus_probe_node", f"{nodename}: state {state} ({xenbus_strstate(state)}), "
                      "not a new device: skipped", SRC)
        return 0
    xendev = xenbus_device(nodename=nodename, devicetype=type, state=XenbusStateInitialising,
                           bus=bus.bus, xbus=bus, parent=bus.dev,
                           release=lambda d: xenbus_dev_release(kernel, d))  # type: ignore[arg-type]
    bus_id = bus.get_bus_id(kernel, nodename)
    if isinstance(bus_id, int):
        return bus_id
    xendev.name = bus_id
    kernel.record("xenbus_probe_node", f"{nodename}: new {type} device {bus_id!r} on bus {bus.bus.name!r}",
                  SRC, changes=[(kernel.table("xenbus_state"), nodename, None, XenbusStateInitialising)])
    err = device_register(kernel, xendev)
    if err:
        kernel.record("xenbus_probe_node", f"{nodename}: device_register failed: {err}", SRC,
                      changes=[(kernel.table("xenbus_state"), nodename, XenbusStateInitialising, None)])
    return err


def xenbus_probe_frontend(kernel: XenLinuxKernel, bus: xen_bus_type, type: str, name: str) -> int:
    """xenbus_probe_frontend: probe the node device/<type>/<name>."""
    return xenbus_probe_node(kernel, bus, type, f"{bus.root}/{type}/{name}")


def xenbus_probe_device_type(kernel: XenLinuxKernel, bus: xen_bus_type, type: str) -> int:
    """xenbus_probe_device_type: list <root>/<type> and probe each entry."""
    names = xenbus_directory(kernel, XBT_NIL, bus.root, type)
    if isinstance(names, int):
        return names
    for name in names:
        err = bus.probe(kernel, bus, type, name)
        if err:
            return err
    return 0


def xenbus_probe_devices(kernel: XenLinuxKernel, bus: xen_bus_type) -> int:
    """xenbus_probe_devices: list <root>/ and probe each device type."""
    if bus.error:
        return bus.error
    types = xenbus_directory(kernel, XBT_NIL, bus.root, "")
    if isinstance(types, int):
        return types
    for type in types:
        err = xenbus_probe_device_type(kernel, bus, type)
        if err:
            return err
    return 0


def dev_changed(kernel: XenLinuxKernel, node: str, bus: xen_bus_type) -> None:
    """dev_changed: a watch under the root fired: add the device it names, or remove what went."""
    if bus.error or node.count("/") < 2:
        return
    if not xenbus_exists(kernel, XBT_NIL, node, ""):
        xenbus_cleanup_devices(kernel, node, bus.bus)
        return
    parts = node.split("/")
    type = parts[1][:BUS_ID_SIZE - 1]
    if len(parts) < bus.levels + 1:
        return  # strsep_len: -ERANGE
    root = "/".join(parts[: bus.levels + 1])
    if xenbus_device_find(root, bus.bus) is None:
        xenbus_probe_node(kernel, bus, type, root)


def frontend_changed(kernel: XenLinuxKernel, watch: xenbus_watch, path: str, token: str) -> None:
    """frontend_changed: fe_watch fired: add or remove frontend devices."""
    kernel.record("frontend_changed", f"watch on device fired for {path}", SRC)
    dev_changed(kernel, path, kernel.xenbus_frontend)


def fe_watch(kernel: XenLinuxKernel) -> xenbus_watch:
    """The static fe_watch on "device" (an address in the kernel image)."""
    bus = kernel.xenbus_frontend
    if bus.watch is None:
        bus.watch = xenbus_watch("device", watch_callback(kernel, frontend_changed), symbol="fe_watch")
    return bus.watch


# -- xenstore notifiers and xenbus_probe ------------------------------------------------------------
def register_xenstore_notifier(kernel: XenLinuxKernel, fn: Callable[[XenLinuxKernel], Any]) -> int:
    """register_xenstore_notifier: call fn now if xenstored is ready, else queue it on xenstore_chain."""
    if kernel.xb.xenstored_ready > 0:
        fn(kernel)
    else:
        kernel.xenbus.xenstore_chain.append(fn)
    return 0


def xenbus_probe(kernel: XenLinuxKernel) -> None:
    """xenbus_probe: enumerate and watch device/ and backend/, then run the xenstore notifier chain."""
    kernel.xenbus.probed += 1
    if kernel.xb.xenstored_ready <= 0:
        kernel.panic(f"kernel BUG at {SRC}: xenbus_probe with xenstored_ready <= 0")
    kernel.record("xenbus_probe", "enumerate device/ and backend/, watch them, notify", SRC)
    xenbus_probe_devices(kernel, kernel.xenbus_frontend)
    register_xenbus_watch(kernel, fe_watch(kernel))
    kernel.xenbus_backend_probe_and_watch()  # no bus check: be_watch is registered even if the bus failed
    for fn in list(kernel.xenbus.xenstore_chain):  # blocking_notifier_call_chain
        fn(kernel)


def _probe_work_state(kernel: XenLinuxKernel, function: str, summary: str, state: str) -> None:
    """probe_work moves on (the "<kernel>/work" row): queued, running, done."""
    xb = kernel.xb
    old, xb.probe_work_state = xb.probe_work_state, state
    kernel.record(function, summary, "kernel/workqueue.c",
                  changes=[(kernel.table("work"), "probe_work", old, state)])


def _schedule_probe_work(kernel: XenLinuxKernel) -> None:
    """schedule_work(&probe_work): run xenbus_probe on the events workqueue thread."""
    _probe_work_state(kernel, "schedule_work", "probe_work queued: xenbus_probe runs on events/0", "queued")
    kernel.sched.kthread_run(_run_workqueue, "events/0", kernel, owner=kernel.name)


def _run_workqueue(kernel: XenLinuxKernel) -> None:
    """run_workqueue (kernel/workqueue.c) on events/0: take probe_work off the list, run xenbus_probe."""
    _probe_work_state(kernel, "run_workqueue", "probe_work taken off the list: xenbus_probe runs", "running")
    xenbus_probe(kernel)
    _probe_work_state(kernel, "run_workqueue", "probe_work done: xenbus_probe returned", "done")


def xenbus_probe_ran(kernel: XenLinuxKernel) -> bool:
    """True once xenbus_probe has run in this kernel (what the capture's summary calls "probe ran")."""
    return kernel.xenbus.probed > 0


# -- /proc/xen/xsd_kva and xsd_port ---------------------------------------------------------------------
def xsd_kva_read(kernel: XenLinuxKernel) -> str:
    """xsd_kva_read: "0x%p" of xen_store_interface, the page's direct-map address."""
    d = kernel.hv.domains[kernel.domid]
    return f"0x{PAGE_OFFSET + (d.mfn_to_pfn(kernel.xb.xen_store_mfn) << 12):x}"


def xsd_port_read(kernel: XenLinuxKernel) -> str:
    """xsd_port_read: "%d" of xen_store_evtchn."""
    return f"{kernel.xb.xen_store_evtchn}"


# -- xenbus_probe_init ----------------------------------------------------------------------------
def _set_store(kernel: XenLinuxKernel, page: Page, evtchn: int, frame: int | None = None) -> None:
    """xen_store_mfn, xen_store_evtchn, xen_store_interface = mfn_to_virt(xen_store_mfn) (PV-on-HVM:
    xen_store_mfn holds the pfn the page was ioremapped from, *frame*).

    A PV kernel reaches the page through its direct map: the step records the whole chain
    (<kernel>/store_page: virt -> phys -> pfn -> mfn); an HVM guest's ioremap'd page has none.
    """
    xb = kernel.xb
    frame = page.mfn if frame is None else frame
    rows = [row for row in ((kernel.table("xenbus"), "xen_store_mfn", xb.xen_store_mfn or None, frame),
                            (kernel.table("xenbus"), "xen_store_evtchn", xb.xen_store_evtchn or None, evtchn))
            if row[2] != row[3]]
    xb.xen_store_page = page
    xb.xen_store_mfn = frame
    xb.xen_store_evtchn = evtchn
    xb.xen_store_interface = xenstore_domain_interface.from_buffer(page.buf)
    intf = xb.xen_store_interface  # the indices as the page holds them (a zeroed page: all 0)
    rows += [(kernel.table("ring"), k, None, int(getattr(intf, k)))
             for k in ("req_cons", "req_prod", "rsp_cons", "rsp_prod")]
    what = f"pfn {frame:#x}" if frame != page.mfn else f"mfn {page.mfn:#x}"
    if not kernel.hv.domains[kernel.domid].hvm:  # an HVM guest's page is ioremap'd, not direct-mapped
        chain = page_chain(kernel, page.mfn)
        old = dict(xb.store_chain)
        rows += [(kernel.table("store_page"), k, old.get(k), v) for k, v in chain if old.get(k) != v]
        xb.store_chain = chain
        what += " at " + " -> ".join(f"{k} {v:#x}" for k, v in chain)
    kernel.record("xen_store_interface", f"store page {what}, event channel {evtchn}", SRC, changes=rows)


def ioremap(kernel: XenLinuxKernel, phys_addr: int, size: int) -> Page | None:
    """ioremap (arch/x86_64/mm/ioremap.c of the guest's native kernel): map guest-physical *phys_addr*.

    An HVM guest's physical addresses are its pfns; the translation to a machine frame is
    Xen's (the hardware's second-stage tables), not the guest's. None if nothing is there."""
    d = kernel.hv.domains[kernel.domid]
    mfn = d.p2m.get(phys_addr >> PAGE_SHIFT)
    page = None if mfn is None else kernel.hv.memory.page(mfn)
    where = "" if page else ": nothing mapped there"
    kernel.record("ioremap", f"phys {phys_addr:#x}, {size} bytes{where}", "arch/x86_64/mm/ioremap.c")
    return page


def xenbus_probe_init(kernel: XenLinuxKernel) -> int:
    """xenbus_probe_init (postcore_initcall): buses, store page and port, xs_init, root devices."""
    how = "postcore_initcall" if kernel.kconfig().CONFIG_XEN else "xenbus_init() from xen-platform-pci.ko"
    kernel.record("xenbus_probe_init", how, SRC,  # the statics, as the image holds them
                  changes=[(kernel.table("xenbus"), "xenstored_ready", None, kernel.xb.xenstored_ready),
                           (kernel.table("xenbus"), "xenbus_irq", None, kernel.xb.xenbus_irq),
                           (kernel.table("work"), "probe_work", None, "idle"),  # DECLARE_WORK
                           kernel.xs_state.xenwatch_mutex.init_row()])  # DEFINE_MUTEX
    xb = kernel.xb
    fe = kernel.xenbus_frontend
    fe.error = bus_register(kernel, fe.bus, fault="bus_register_frontend")
    if fe.error:
        kernel.printk(KERN_WARNING, f"XENBUS: Error registering frontend bus: {fe.error}")
    kernel.xenbus_backend_bus_register()
    d = kernel.hv.domains[kernel.domid]
    page: Page | None = None
    if d.start_info.flags & SIF_INITDOMAIN:  # "Domain0 doesn't have a store_evtchn or store_mfn yet."
        if kernel.fault("get_zeroed_page"):
            kernel.record("get_zeroed_page", "returns NULL (fault 'get_zeroed_page' injected)",
                          "mm/page_alloc.c")
            return -ENOMEM
        page = get_zeroed_page(kernel)
        kernel.record("get_zeroed_page", f"store page: mfn {page.mfn:#x}", "mm/page_alloc.c")
        # xen_store_mfn = xen_start_info->store_mfn = pfn_to_mfn(...): set before the port is asked for
        kernel.record("xenbus_probe_init", f"xen_store_mfn = start_info->store_mfn = {page.mfn:#x}", SRC,
                      changes=[(kernel.table("xenbus"), "xen_store_mfn", xb.xen_store_mfn or None, page.mfn)])
        xb.xen_store_mfn = page.mfn
        d.start_info.store_mfn = page.mfn
        if kernel.fault("alloc_unbound_enosys"):
            err = -ENOSYS
            kernel.record("HYPERVISOR_event_channel_op", "EVTCHNOP_alloc_unbound: -ENOSYS (fault "
                          "'alloc_unbound_enosys' injected)", SRC)
        else:
            err = kernel.hv.evtchn_alloc_unbound(kernel.domid, DOMID_SELF, 0)
        if err == -ENOSYS:  # goto err: the page is freed, xen_store_mfn and store_mfn keep its mfn
            free_page(kernel, page)
            return err
        if err < 0:
            kernel.panic(f"kernel BUG at {SRC}: EVTCHNOP_alloc_unbound returned {err}")
        _set_store(kernel, page, err)
        d.start_info.store_evtchn = xb.xen_store_evtchn
        create_xen_proc_entry(kernel, "xsd_kva", 0o600, lambda: xsd_kva_read(kernel))
        create_xen_proc_entry(kernel, "xsd_port", 0o400, lambda: xsd_port_read(kernel))
    elif d.hvm:  # #else of #ifndef MODULE: xenbus built into xen-platform-pci.ko (PV-on-HVM)
        kernel.record("xenbus_probe_init", "PV-on-HVM domU: xenstored_ready = 1; the store from HVM params",
                      SRC, changes=[(kernel.table("xenbus"), "xenstored_ready", xb.xenstored_ready, 1)])
        xb.xenstored_ready = 1
        evtchn = hvm_get_parameter(kernel, HVM_PARAM_STORE_EVTCHN)
        pfn = hvm_get_parameter(kernel, HVM_PARAM_STORE_PFN)
        store = ioremap(kernel, pfn << PAGE_SHIFT, PAGE_SIZE)
        if store is None:  # the lab's stand-in for the oops of a NULL xen_store_interface
            kernel.panic(f"Unable to handle kernel NULL pointer dereference: xen_store_interface "
                         f"(HVM_PARAM_STORE_PFN {pfn:#x} maps nothing)")
        _set_store(kernel, store, evtchn, pfn)
    else:
        old = xb.xenstored_ready
        xb.xenstored_ready = 1
        kernel.record("xenbus_probe_init", "PV domU: store from start_info, xenstored_ready = 1", SRC,
                      changes=[(kernel.table("xenbus"), "xenstored_ready", old, 1)])
        _set_store(kernel, kernel.hv.memory.page(d.start_info.store_mfn), d.start_info.store_evtchn)
    xenbus_dev_init(kernel)
    xb.probe_work = lambda: _schedule_probe_work(kernel)
    err = -ENOMEM if kernel.fault("xs_init") else xs_init(kernel)  # "Initialize the interface to xenstore."
    if err:
        kernel.printk(KERN_WARNING, f"XENBUS: Error initializing xenstore comms: {err}")
        if page is not None:
            free_page(kernel, page)
        return err
    if not fe.error:  # "Register ourselves with the kernel device subsystem"
        fe.error = device_register(kernel, fe.dev, fault="device_register")
        if fe.error:
            bus_unregister(kernel, fe.bus)
            kernel.printk(KERN_WARNING, f"XENBUS: Error registering frontend device: {fe.error}")
    kernel.xenbus_backend_device_register()
    if not d.start_info.flags & SIF_INITDOMAIN:
        xenbus_probe(kernel)
    return 0


# -- waiting for the frontends at boot ---------------------------------------------------------------
def is_disconnected_device(dev: device, drv: device_driver | None) -> bool:
    """is_disconnected_device: a device with a driver (*drv* if given) that is not Connected yet."""
    if dev.driver is None or (drv is not None and dev.driver is not drv):
        return False
    return isinstance(dev, xenbus_device) and dev.state < XenbusStateConnected


def exists_disconnected_device(kernel: XenLinuxKernel, drv: device_driver | None) -> bool:
    """exists_disconnected_device: is any frontend device still connecting."""
    if kernel.xenbus_frontend.error:
        return True
    return any(is_disconnected_device(d, drv) for d in kernel.xenbus_frontend.bus.devices)


def print_device_status(kernel: XenLinuxKernel, dev: device, drv: device_driver | None) -> None:
    """print_device_status: "Device with no driver" or "Timeout connecting to device"."""
    if drv is not None and dev.driver is not drv:
        return
    assert isinstance(dev, xenbus_device)
    if dev.driver is None:
        kernel.printk(KERN_INFO, f"XENBUS: Device with no driver: {dev.nodename}")
        return
    if dev.state < XenbusStateConnected:
        rstate = xenbus_read_driver_state(kernel, dev.otherend) if dev.otherend else 0
        kernel.printk(KERN_WARNING, f"XENBUS: Timeout connecting to device: {dev.nodename} "
                      f"(local state {dev.state}, remote state {rstate})")


def wait_for_devices(kernel: XenLinuxKernel, xendrv: xenbus_driver | None) -> None:
    """wait_for_devices: after boot, wait (virtual seconds, at most 300) until the frontends connect."""
    if not kernel.xenbus.ready_to_wait_for_devices:
        return
    drv = xendrv.driver if xendrv is not None else None
    start = kernel.sched.now_ns
    waited = 0
    line = ""
    while exists_disconnected_device(kernel, drv):
        if kernel.sched.now_ns > start + (waited + 5) * 1_000_000_000:
            if not waited:
                line = "XENBUS: Waiting for devices to initialise: "
            waited += 5
            line += f"{300 - waited}s..."
            if waited >= 300:
                break
        kernel.sched.msleep(100)
    if line:
        kernel.printk(KERN_WARNING, line)
    for dev in list(kernel.xenbus_frontend.bus.devices):
        print_device_status(kernel, dev, drv)


def boot_wait_for_devices(kernel: XenLinuxKernel) -> int:
    """boot_wait_for_devices (late_initcall): from now on drivers wait for their devices; wait for all."""
    if not kernel.xenbus_frontend.error:
        kernel.xenbus.ready_to_wait_for_devices = True
        kernel.record("boot_wait_for_devices", "late_initcall: wait for frontend devices", SRC)
        wait_for_devices(kernel, None)
    return 0

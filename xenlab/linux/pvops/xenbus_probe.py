"""drivers/xen/xenbus/xenbus_probe.c, Linux 6.1: the xenbus bus core and bringing xenbus up.

Theory of operation
-------------------
A ``xen_bus_type`` wraps a driver-model ``bus_type`` with the store side: its root
("device" or "backend", relative to /local/domain/<self>), how many path levels name one
device, how a node becomes a bus id, and which otherend-changed callback its devices use.
``xenbus_probe_devices`` lists root/<type>/... and calls the bus's ``probe`` per entry,
which ends in ``xenbus_probe_node``: only a node whose ``state`` reads 1 (Initialising)
becomes a ``xenbus_device``; ``device_register`` then lets the driver model match it to a
driver by devicetype and call ``xenbus_dev_probe``: read the other end's id and path
(``talk_to_otherend``), run the driver's probe, and watch <otherend>/state
(``watch_otherend``). The watch fires once at once, so the driver's ``otherend_changed``
sees the other end's current state immediately.

Bring-up is spread over initcall levels: ``xenbus_init`` (postcore: store kind XS_PV /
XS_HVM / XS_LOCAL, dom0's page + alloc_unbound(SELF, DOMID_SELF) in
``xenstored_local_init``, ``xs_init``, the /proc/xen mount point),
``xenbus_probe_frontend_init`` and ``xenbus_probe_backend_init`` (subsys: register the
buses and a xenstore notifier that enumerates), ``xenbus_probe_initcall`` (device: probe
now for XS_PV, else a "xenbus_probe" kthread that probes on the first wake-up of xb_waitq,
i.e. when xenstored first notifies dom0). ``xenbus_probe`` sets xenstored_ready and runs
the notifier chain. Every call returns 0 or -errno; the faults in ``FAULTS`` make the
error paths reachable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xenlab.abi.errno import EINVAL, ENODEV, ENOENT, ENOMEM, ENOSYS
from xenlab.abi.event_channel import DOMID_SELF
from xenlab.abi.hvm import HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN
from xenlab.abi.xenbus import XenbusStateClosed, XenbusStateInitialising
from xenlab.abi.xs_wire import XENSTORE_CONNECTED, xenstore_domain_interface
from xenlab.base.sched import Task
from xenlab.linux.driver_model import (
    bus_for_each_dev,
    bus_type,
    dev_driver_string,
    device,
    device_driver,
    device_register,
    device_unregister,
    driver_register,
)
from xenlab.linux.irq import IRQ_HANDLED, free_irq
from xenlab.linux.kernel import KERN_ERR, KERN_WARNING, ChangeRow
from xenlab.linux.mm import free_page, get_zeroed_page, page_chain
from xenlab.linux.pvops.events_base import bind_evtchn_to_irqhandler
from xenlab.linux.pvops.hvm import hvm_get_parameter
from xenlab.linux.pvops.proc_generic import proc_create_mount_point
from xenlab.linux.pvops.xenbus_client import (
    xenbus_dev_error,
    xenbus_dev_fatal,
    xenbus_read_driver_state,
    xenbus_strstate,
    xenbus_switch_state,
    xenbus_watch_pathfmt,
)
from xenlab.linux.pvops.xenbus_xs import (
    XBT_NIL,
    unregister_xenbus_watch,
    xenbus_directory,
    xenbus_exists,
    xenbus_gather,
    xenbus_watch,
    xs_init,
)

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel
    from xenlab.xen.memory import Page

SRC = "drivers/xen/xenbus/xenbus_probe.c"
XEN_BUS_ID_SIZE = 20
XS_UNKNOWN, XS_PV, XS_HVM, XS_LOCAL = 0, 1, 2, 3
ALL_ONES = (1 << 64) - 1  # an HVM_PARAM_STORE_PFN of ~0ULL: "invalid/uninitialized", wait for it
XS_DOMAIN_TYPE_NAMES = {XS_UNKNOWN: "XS_UNKNOWN", XS_PV: "XS_PV", XS_HVM: "XS_HVM", XS_LOCAL: "XS_LOCAL"}

#: Faults this kernel's xenbus bring-up checks (kernel.faults), with what each does.
FAULTS: tuple[tuple[str, str], ...] = (
    ("bus_register_frontend", "bus_register of the frontend bus \"xen\" fails (-ENOMEM)"),
    ("bus_register_backend", "bus_register of the backend bus \"xen-backend\" fails (-ENOMEM)"),
    ("get_zeroed_page", "get_zeroed_page returns NULL for dom0's store page"),
    ("alloc_unbound_enosys", "EVTCHNOP_alloc_unbound for dom0's store port returns -ENOSYS"),
    ("xs_init", "xs_init fails (-ENOMEM)"),
)


@dataclass
class XenbusGlobals:
    """xenbus_probe.c's globals: the store's port, page and kind, xenstored_ready, the notifier chain.

    Also the "xenbus_probe" thread and how often xenbus_probe ran (the lab's), and
    xenbus_probe_frontend.c's ready_to_wait_for_devices.
    """

    xen_store_evtchn: int = 0
    xen_store_mfn: int = 0  # xen_store_gfn (a PV guest's gfn is its mfn, an HVM guest's its pfn)
    xen_store_page: Page | None = None
    xen_store_interface: xenstore_domain_interface | None = None
    xenstored_ready: int = 0
    xen_store_domain_type: int = XS_UNKNOWN
    xenstore_chain: list[Callable[[PvopsKernel], Any]] = field(default_factory=list)
    probe_task: Task | None = None
    probed: int = 0
    ready_to_wait_for_devices: bool = False
    xs_init_irq: int = -1  # the "xenstore_late_init" IRQ while an HVM guest waits for its store
    #: where xenbus_probe is (the "<kernel>/work" row "xenbus_probe"): idle, queued, running, done
    probe_state: str = "idle"
    #: the store page's (virt, phys, pfn, mfn) as xen_store_interface reaches it ("<kernel>/store_page")
    store_chain: tuple[tuple[str, int], ...] = ()


@dataclass(eq=False)
class xenbus_driver:
    """struct xenbus_driver: ids, probe/remove and otherend_changed, plus the embedded device_driver."""

    name: str
    ids: list[str]
    probe: Callable[[PvopsKernel, xenbus_device], int] | None = None
    otherend_changed: Callable[[PvopsKernel, xenbus_device, int], Any] | None = None
    remove: Callable[[PvopsKernel, xenbus_device], Any] | None = None
    read_otherend_details: Callable[[PvopsKernel, xenbus_device], int] | None = None
    driver: device_driver | None = None


@dataclass(eq=False)
class xenbus_device(device):
    """struct xenbus_device: a device named by a store node, with its state and other end."""

    nodename: str = ""
    devicetype: str = ""
    state: int = XenbusStateInitialising
    otherend: str | None = None
    otherend_id: int = 0
    otherend_watch: xenbus_watch = field(default_factory=xenbus_watch)
    xbus: xen_bus_type | None = None  # the xen_bus_type it sits on
    drvdata: Any = None  # dev_set_drvdata: the driver's private state

    @property
    def xdrv(self) -> xenbus_driver | None:
        """to_xenbus_driver(dev->driver)."""
        return self.driver.owner if self.driver is not None else None


@dataclass(eq=False)
class xen_bus_type:
    """struct xen_bus_type: root, levels, bus id maker, probe, otherend callbacks, the bus; its watch."""

    root: str
    levels: int
    get_bus_id: Callable[[PvopsKernel, str], str | int]
    probe: Callable[[PvopsKernel, xen_bus_type, str, str], int]
    bus: bus_type
    otherend_changed: Callable[[PvopsKernel, xenbus_device, str], Any]
    otherend_will_handle: Callable[[xenbus_watch, str, str], bool] | None = None
    error: int = -ENODEV  # the bus_register result (-ENODEV until it ran)
    watch: xenbus_watch = field(default_factory=xenbus_watch)  # fe_watch / be_watch


def xenbus_dbg(kernel: PvopsKernel, text: str) -> None:
    """pr_debug/dev_dbg of drivers/xen/xenbus/*: printed if booted with dyndbg="file drivers/xen/xenbus/* +p".

    The reference machine is (``kernel.xenbus_dyndbg`` turns it off); line numbers are Linux 6.1's.
    """
    if kernel.xenbus_dyndbg:
        kernel.printk("<7>", text)


def dev_name_prefix(dev: device) -> str:
    """"<driver> <device>: " as dev_printk prefixes it."""
    return f"{dev_driver_string(dev)} {dev.name}: "


def xenbus_match(dev: device, drv: device_driver) -> int:
    """xenbus_match: does one of the driver's ids equal the device's devicetype."""
    xdrv = drv.owner
    return int(xdrv is not None and isinstance(dev, xenbus_device) and dev.devicetype in xdrv.ids)


def free_otherend_details(dev: xenbus_device) -> None:
    """free_otherend_details: forget the other end's path."""
    dev.otherend = None


def free_otherend_watch(kernel: PvopsKernel, dev: xenbus_device) -> None:
    """free_otherend_watch: unregister the <otherend>/state watch if there is one."""
    if dev.otherend_watch.node:
        unregister_xenbus_watch(kernel, dev.otherend_watch)
        dev.otherend_watch.node = ""


def talk_to_otherend(kernel: PvopsKernel, dev: xenbus_device) -> int:
    """talk_to_otherend: forget the old other end and read it again (the driver's read_otherend_details)."""
    xdrv = dev.xdrv
    assert xdrv is not None and xdrv.read_otherend_details is not None
    free_otherend_watch(kernel, dev)
    free_otherend_details(dev)
    return xdrv.read_otherend_details(kernel, dev)


def watch_otherend(kernel: PvopsKernel, dev: xenbus_device) -> int:
    """watch_otherend: watch <otherend>/state with the bus's otherend_changed."""
    xbus = dev.xbus
    assert xbus is not None

    def otherend_changed(watch: xenbus_watch, path: str, token: str) -> None:
        xbus.otherend_changed(kernel, dev, path)

    return xenbus_watch_pathfmt(kernel, dev, dev.otherend_watch, xbus.otherend_will_handle, otherend_changed,
                                "%s/%s", dev.otherend or "", "state")


def xenbus_read_otherend_details(kernel: PvopsKernel, dev: xenbus_device, id_node: str,
                                 path_node: str) -> int:
    """xenbus_read_otherend_details: read the other end's domid ("%i") and path; -errno via dev_fatal."""
    err, vals = xenbus_gather(kernel, XBT_NIL, dev.nodename, (id_node, "%i"), (path_node, None))
    if err:
        xenbus_dev_fatal(kernel, dev, err, f"reading other end details from {dev.nodename}")
        return err
    dev.otherend_id, dev.otherend = vals
    if not dev.otherend or not xenbus_exists(kernel, XBT_NIL, dev.otherend, ""):
        xenbus_dev_fatal(kernel, dev, -ENOENT, f"unable to read other end from {dev.nodename}.  "
                         "missing or inaccessible.")
        free_otherend_details(dev)
        return -ENOENT
    kernel.record("read_otherend_details", f"{dev.nodename}: other end is domain {dev.otherend_id} at "
                  f"{dev.otherend}", SRC)
    return 0


def xenbus_otherend_changed(kernel: PvopsKernel, dev: xenbus_device, path: str) -> None:
    """xenbus_otherend_changed: the other end's state node fired: tell the driver."""
    if dev.otherend is None or not path.startswith(dev.otherend):
        return
    state = xenbus_read_driver_state(kernel, dev.otherend)
    node = dev.otherend_watch.node or f"{dev.otherend}/state"
    xenbus_dbg(kernel, f"{dev_name_prefix(dev)}xenbus: state is {state}, ({xenbus_strstate(state)}), "
               f"{node}, {path}")
    kernel.record("xenbus_otherend_changed", f"{dev.nodename}: other end is {xenbus_strstate(state)}", SRC)
    xdrv = dev.xdrv
    if xdrv is not None and xdrv.otherend_changed is not None:
        xdrv.otherend_changed(kernel, dev, state)


def xenbus_dev_probe(kernel: PvopsKernel, dev: xenbus_device) -> int:
    """xenbus_dev_probe: talk_to_otherend, the driver's probe, watch_otherend."""
    xdrv = dev.xdrv
    assert xdrv is not None
    xenbus_dbg(kernel, f"xenbus: xenbus_probe (xenbus_dev_probe:279) {dev.nodename}.")
    kernel.record("xenbus_dev_probe", f"{dev.nodename}: driver {xdrv.name!r}", SRC)
    if xdrv.probe is None or dev.devicetype not in xdrv.ids:
        err = -ENODEV
    else:
        err = talk_to_otherend(kernel, dev)
        if err:
            kernel.printk(KERN_WARNING, f"{dev_name_prefix(dev)}talk_to_otherend on {dev.nodename} failed.")
            return err
        err = xdrv.probe(kernel, dev)
        if not err:
            err = watch_otherend(kernel, dev)
            if err:
                kernel.printk(KERN_WARNING, f"{dev_name_prefix(dev)}watch_otherend on {dev.nodename} failed.")
                return err
            return 0
    xenbus_dev_error(kernel, dev, err, f"xenbus_dev_probe on {dev.nodename}")
    xenbus_switch_state(kernel, dev, XenbusStateClosed)
    return err


def xenbus_dev_remove(kernel: PvopsKernel, dev: xenbus_device) -> None:
    """xenbus_dev_remove: drop the otherend watch, run the driver's remove, switch to Closed."""
    xenbus_dbg(kernel, f"xenbus: xenbus_probe (xenbus_dev_remove:344) {dev.nodename}.")
    free_otherend_watch(kernel, dev)
    xdrv = dev.xdrv
    if xdrv is not None and xdrv.remove is not None:
        xdrv.remove(kernel, dev)
    free_otherend_details(dev)
    xenbus_switch_state(kernel, dev, XenbusStateClosed)


def xenbus_register_driver_common(kernel: PvopsKernel, xdrv: xenbus_driver, xbus: xen_bus_type) -> int:
    """xenbus_register_driver_common: make the device_driver and driver_register it."""
    xdrv.driver = device_driver(xdrv.name or xdrv.ids[0], bus=xbus.bus, owner=xdrv)
    return driver_register(kernel, xdrv.driver)


def xenbus_device_find(xbus: xen_bus_type, nodename: str) -> xenbus_device | None:
    """xenbus_device_find: the device on the bus whose nodename is *nodename*."""
    for dev in xbus.bus.devices:
        if isinstance(dev, xenbus_device) and dev.nodename == nodename:
            return dev
    return None


def xenbus_cleanup_devices(kernel: PvopsKernel, xbus: xen_bus_type, path: str) -> None:
    """xenbus_cleanup_devices: unregister every device at or below *path* (cleanup_dev per device)."""
    found: list[device] = []

    def cleanup_dev(dev: device) -> int:
        xenbus_dbg(kernel, f"xenbus: xenbus_probe (cleanup_dev:424) {path}.")
        n = dev.nodename if isinstance(dev, xenbus_device) else ""
        if n == path or n.startswith(path + "/"):
            found.append(dev)
            return 1
        return 0

    while True:
        found.clear()
        bus_for_each_dev(xbus.bus, cleanup_dev)
        if not found:
            return
        device_unregister(kernel, found[0])


def xenbus_dev_release(kernel: PvopsKernel, dev: device) -> None:
    """xenbus_dev_release: the last reference went: the xenbus_device is freed."""
    assert isinstance(dev, xenbus_device)
    kernel.record("xenbus_dev_release", f"{dev.nodename}: xenbus_device freed", SRC,
                  changes=[(kernel.table("xenbus_state"), dev.nodename, dev.state, None)])


def _state_attr(dev: xenbus_device) -> str:
    return xenbus_strstate(dev.state) + "\n"


#: the sysfs files of a xenbus device (nodename_show, devtype_show, modalias_show, state_show)
XENBUS_DEV_ATTRS: dict[str, Callable[[Any], str]] = {
    "nodename": lambda d: d.nodename + "\n",
    "devtype": lambda d: d.devicetype + "\n",
    "modalias": lambda d: f"{d.bus.name}:{d.devicetype}\n",
    "state": _state_attr,
}


def xenbus_probe_node(kernel: PvopsKernel, xbus: xen_bus_type, type: str, nodename: str) -> int:
    """xenbus_probe_node: make a xenbus_device for a node in state Initialising and register it."""
    state = xenbus_read_driver_state(kernel, nodename)
    if state != XenbusStateInitialising:
        kernel.record("xenbus_probe_node", f"{nodename}: state {state} ({xenbus_strstate(state)}), "
                      "not a new device: skipped", SRC)
        return 0
    dev = xenbus_device(nodename=nodename, devicetype=type, state=XenbusStateInitialising,
                        bus=xbus.bus, xbus=xbus, parent=None,
                        release=lambda d: xenbus_dev_release(kernel, d))
    bus_id = xbus.get_bus_id(kernel, nodename)
    if isinstance(bus_id, int):
        return bus_id
    dev.name = bus_id
    kernel.record("xenbus_probe_node", f"{nodename}: new {type} device {bus_id!r} on bus {xbus.bus.name!r}",
                  SRC, changes=[(kernel.table("xenbus_state"), nodename, None, XenbusStateInitialising)])
    err = device_register(kernel, dev)
    if err:
        kernel.record("xenbus_probe_node", f"{nodename}: device_register failed: {err}", SRC,
                      changes=[(kernel.table("xenbus_state"), nodename, XenbusStateInitialising, None)])
    return err


def xenbus_probe_devices(kernel: PvopsKernel, xbus: xen_bus_type) -> int:
    """xenbus_probe_devices: list <root>/<type>/... and probe each entry (xenbus_probe_device_type)."""
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


def xenbus_dev_changed(kernel: PvopsKernel, node: str, xbus: xen_bus_type) -> None:
    """xenbus_dev_changed: a watch under the bus root fired: add or remove devices."""
    if node.count("/") < 2:
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


def register_xenstore_notifier(kernel: PvopsKernel, fn: Callable[[PvopsKernel], Any]) -> int:
    """register_xenstore_notifier: call fn now if xenstored is ready, else chain it for xenbus_probe."""
    if kernel.xb.xenstored_ready > 0:
        fn(kernel)
    else:
        kernel.xb.xenstore_chain.append(fn)
    return 0


def xenbus_probe(kernel: PvopsKernel) -> None:
    """xenbus_probe: xenstored_ready = 1, then the xenstore notifier chain (which enumerates the buses)."""
    xb = kernel.xb
    xb.probed += 1
    old = xb.xenstored_ready
    xb.xenstored_ready = 1
    work, xb.probe_state = xb.probe_state, "running"
    kernel.record("xenbus_probe", "xenstored_ready = 1; run the xenstore notifier chain", SRC,
                  changes=[(kernel.table("xenbus"), "xenstored_ready", old, 1),
                           (kernel.table("work"), "xenbus_probe", work, "running")])
    if xb.xen_store_interface is None:  # an HVM guest that waited: its pfn came with the late event
        memremap_store(kernel, xb.xen_store_mfn, xb.xen_store_evtchn)
    if xb.xs_init_irq >= 0:  # not unbound: xb_init_comms binds the port again at once
        free_irq(kernel, xb.xs_init_irq, kernel.comms.xb_waitq)
        xb.xs_init_irq = -1
    if xb.xen_store_domain_type == XS_HVM:  # deferred by xenbus_init: the callback works by now
        xs_init(kernel)
    for fn in list(xb.xenstore_chain):
        fn(kernel)
    xb.probe_state = "done"
    kernel.record("xenbus_probe", "the xenstore notifier chain ran: probe done", SRC,
                  changes=[(kernel.table("work"), "xenbus_probe", "running", "done")])


def xenbus_probe_thread(kernel: PvopsKernel) -> None:
    """xenbus_probe_thread after its one sleep on xb_waitq (any wake-up ends it): probe, then the thread
    ends. xenbus_probe_initcall passes that sleep to kthread_run (_first_wake_up)."""
    xenbus_dbg(kernel, "xenbus: xenbus_probe (xenbus_probe_thread:817) probing.")
    xenbus_probe(kernel)
    kernel.sched.kthread_exit()


def _first_wake_up() -> Callable[[], bool]:
    """The condition of a wait that ends at the first wake-up (prepare_to_wait; schedule())."""
    calls = [0]

    def woken() -> bool:
        calls[0] += 1
        return calls[0] > 1

    return woken


def xs_interface_ready(kernel: PvopsKernel) -> bool:
    """XS_INTERFACE_READY: the store page is mapped and its connection field says XENSTORE_CONNECTED."""
    intf = kernel.xb.xen_store_interface
    return intf is not None and intf.connection == XENSTORE_CONNECTED


def xs_hvm_defer_init_for_callback(kernel: PvopsKernel) -> bool:
    """xs_hvm_defer_init_for_callback: an HVM guest without the vector callback waits for platform-pci."""
    return kernel.xb.xen_store_domain_type == XS_HVM and not kernel.xen_have_vector_callback


def xenbus_probe_initcall(kernel: PvopsKernel) -> int:
    """xenbus_probe_initcall (device_initcall): probe now (XS_PV, a ready XS_HVM) or start "xenbus_probe"."""
    xb = kernel.xb
    kernel.record("xenbus_probe_initcall", "device_initcall", SRC)
    kind, ready = xb.xen_store_domain_type, xs_interface_ready(kernel)
    if kind == XS_PV or (kind == XS_HVM and not xs_hvm_defer_init_for_callback(kernel) and ready):
        xenbus_probe(kernel)
    if kind == XS_LOCAL or not ready:
        old, xb.probe_state = xb.probe_state, "queued"
        kernel.record("xenbus_probe_initcall", "xenbus_probe queued: the \"xenbus_probe\" thread runs it at "
                      "the first wake-up of xb_waitq", SRC, changes=[(kernel.table("work"), "xenbus_probe",
                                                                      old, "queued")])
        xb.probe_task = kernel.sched.kthread_run(xenbus_probe_thread, "xenbus_probe", kernel,
                                                 owner=kernel.name,
                                                 wait=(kernel.comms.xb_waitq, _first_wake_up()))
    return 0


def xenbus_probe_ran(kernel: PvopsKernel) -> bool:
    """True once xenbus_probe has run in this kernel (what the capture's summary calls "probe ran")."""
    return kernel.xb.probed > 0


def _set_store(kernel: PvopsKernel, page: Page, evtchn: int, gfn: int | None = None) -> None:
    """xen_store_gfn, xen_store_evtchn, xen_store_interface (*gfn*: an HVM guest's pfn; else the mfn):
    a PV kernel's gfn_to_virt (the direct map, whose chain virt -> phys -> pfn -> mfn the step records
    on <kernel>/store_page); an HVM one's memremap has none."""
    xb = kernel.xb
    gfn = page.mfn if gfn is None else gfn
    rows = [row for row in ((kernel.table("xenbus"), "xen_store_mfn", xb.xen_store_mfn or None, gfn),
                            (kernel.table("xenbus"), "xen_store_evtchn", xb.xen_store_evtchn or None, evtchn))
            if row[2] != row[3]]
    xb.xen_store_page = page
    xb.xen_store_mfn = gfn
    xb.xen_store_evtchn = evtchn
    xb.xen_store_interface = xenstore_domain_interface.from_buffer(page.buf)
    intf = xb.xen_store_interface  # the indices as the page holds them (a zeroed page: all 0)
    rows += [(kernel.table("ring"), k, None, int(getattr(intf, k)))
             for k in ("req_cons", "req_prod", "rsp_cons", "rsp_prod")]
    what = f"pfn {gfn:#x}" if gfn != page.mfn else f"mfn {page.mfn:#x}"
    if not kernel.hv.domains[kernel.domid].hvm:  # an HVM guest's page is memremap'd, not direct-mapped
        chain, old = page_chain(kernel, page.mfn), dict(xb.store_chain)
        rows += [(kernel.table("store_page"), k, old.get(k), v) for k, v in chain if old.get(k) != v]
        xb.store_chain = chain
        what += " at " + " -> ".join(f"{k} {v:#x}" for k, v in chain)
    kernel.record("xen_store_interface", f"store page {what}, event channel {evtchn}", SRC, changes=rows)


def memremap_store(kernel: PvopsKernel, gfn: int, evtchn: int) -> int:
    """memremap(xen_store_gfn << XEN_PAGE_SHIFT, XEN_PAGE_SIZE, MEMREMAP_WB): an HVM guest maps its own
    guest-physical page (no p2m lookup in the guest: the hardware's second-stage tables translate).
    0, or -EINVAL when nothing is mapped there ("cannot map HVM_PARAM_STORE_PFN")."""
    d = kernel.hv.domains[kernel.domid]
    mfn = d.p2m.get(gfn)
    page = None if mfn is None else kernel.hv.memory.page(mfn)
    if page is None:
        line = f"xenbus_init: cannot map HVM_PARAM_STORE_PFN={gfn:x}"
        kernel.printk(KERN_ERR, line)
        kernel.record("memremap", f"{gfn << 12:#x}: nothing there", "kernel/iomem.c", printk=line)
        return -EINVAL
    kernel.record("memremap", f"phys {gfn << 12:#x} (pfn {gfn:#x}), 4096 bytes, MEMREMAP_WB",
                  "kernel/iomem.c")
    _set_store(kernel, page, evtchn, gfn)
    return 0


def xenbus_late_init(kernel: PvopsKernel, irq: int, dev_id: Any) -> int:
    """xenbus_late_init ("xenstore_late_init" IRQ): once HVM_PARAM_STORE_PFN is valid, wake xb_waitq."""
    err, v = hvm_get_parameter(kernel, HVM_PARAM_STORE_PFN)
    if err or not v or v == ALL_ONES:
        return IRQ_HANDLED
    xb = kernel.xb
    kernel.record("xenbus_late_init", f"xen_store_gfn = {v:#x}; wake_up(&xb_waitq)", SRC,
                  changes=[(kernel.table("xenbus"), "xen_store_mfn", xb.xen_store_mfn or None, v)])
    xb.xen_store_mfn = v
    kernel.sched.wake_up(kernel.comms.xb_waitq)
    return IRQ_HANDLED


def _xenbus_init_hvm(kernel: PvopsKernel) -> int:
    """xenbus_init's case XS_HVM: HVM_PARAM_STORE_PFN, memremap, or wait for xenstore_late_init."""
    xb = kernel.xb
    err, v = hvm_get_parameter(kernel, HVM_PARAM_STORE_PFN)
    if err:
        return err
    if not v:  # "Uninitialized hvm_params are zero": xenstore was not set up
        kernel.record("xenbus_init", "HVM_PARAM_STORE_PFN is 0: -ENOENT", SRC)
        return -ENOENT
    wait = v == ALL_ONES
    if not wait:
        err = memremap_store(kernel, v, xb.xen_store_evtchn)
        if err:
            return err
        wait = not xs_interface_ready(kernel)
    if wait:
        err = bind_evtchn_to_irqhandler(kernel, xb.xen_store_evtchn,
                                        lambda irq, dev_id: xenbus_late_init(kernel, irq, dev_id), 0,
                                        "xenstore_late_init", kernel.comms.xb_waitq)
        if err < 0:
            line = f"xenstore_late_init couldn't bind irq err={err}"
            kernel.printk(KERN_ERR, line)
            kernel.record("xenbus_init", line, SRC, printk=line)
            return err
        xb.xs_init_irq = err
        kernel.record("xenbus_init", f"store not ready: irq {err} \"xenstore_late_init\" waits for it", SRC)
    return 0


def xenstored_local_init(kernel: PvopsKernel) -> int:
    """xenstored_local_init: dom0 makes the store: a zeroed page and alloc_unbound(SELF, DOMID_SELF)."""
    if kernel.fault("get_zeroed_page"):
        kernel.record("get_zeroed_page", "returns NULL (fault 'get_zeroed_page' injected)", "mm/page_alloc.c")
        return -ENOMEM
    page = get_zeroed_page(kernel)
    kernel.record("get_zeroed_page", f"store page: mfn {page.mfn:#x}", "mm/page_alloc.c")
    if kernel.fault("alloc_unbound_enosys"):
        err = -ENOSYS
        kernel.record("HYPERVISOR_event_channel_op", "EVTCHNOP_alloc_unbound: -ENOSYS (fault "
                      "'alloc_unbound_enosys' injected)", SRC)
    else:
        err = kernel.hv.evtchn_alloc_unbound(kernel.domid, DOMID_SELF, DOMID_SELF)
    if err == -ENOSYS:
        free_page(kernel, page)
        return err
    if err < 0:
        kernel.panic(f"kernel BUG at {SRC}: EVTCHNOP_alloc_unbound returned {err}")
    _set_store(kernel, page, err)
    return 0


def xenbus_init(kernel: PvopsKernel) -> int:
    """xenbus_init (postcore_initcall): store kind, store page and port, xs_init, /proc/xen.

    PV: the store is in start_info. HVM (xen_hvm_domain()): HVM_PARAM_STORE_EVTCHN, then
    HVM_PARAM_STORE_PFN through hvm_get_parameter; pfn 0 is -ENOENT; all ones (a dom0less
    guest whose store comes later), or a page whose ``connection`` is not XENSTORE_CONNECTED,
    means: bind the port to "xenstore_late_init" and let xenbus_probe_initcall's thread wait;
    else memremap the pfn. xs_init is left to xenbus_probe (the callback may not work yet).
    """
    xb = kernel.xb
    xb.xen_store_domain_type = XS_UNKNOWN
    d = kernel.hv.domains[kernel.domid]
    hvm = d.hvm  # xen_hvm_domain(); a PV kernel is xen_pv_domain()
    initial = kernel.xen_initial_domain()
    statics: list[ChangeRow] = [  # the statics as the image holds them
        (kernel.table("xenbus"), "xenstored_ready", None, xb.xenstored_ready),
        (kernel.table("xenbus"), "xenbus_irq", None, kernel.comms.xenbus_irq)]
    kind = XS_PV
    rows: list[ChangeRow] = []
    if hvm:
        kind = XS_HVM
        kernel.record("xenbus_init", "postcore_initcall: xen_hvm_domain()", SRC, changes=statics)
        statics = []
        err, v = hvm_get_parameter(kernel, HVM_PARAM_STORE_EVTCHN)
        if err:
            return err  # out_error: xen_store_domain_type stays XS_UNKNOWN
        rows.append((kernel.table("xenbus"), "xen_store_evtchn", xb.xen_store_evtchn or None, v or None))
        xb.xen_store_evtchn = v
        if not v and initial:
            kind = XS_LOCAL
    if not hvm and not d.start_info.store_evtchn:
        kind = XS_LOCAL
    name = XS_DOMAIN_TYPE_NAMES[kind]
    locks = (kernel.comms.xb_write_mutex, kernel.comms.xs_response_mutex, kernel.xs.xs_watch_rwsem,
             kernel.xs.xenwatch_mutex)
    rows = statics + [(kernel.table("xenbus"), "xen_store_domain_type", None, name),
                      (kernel.table("work"), "xenbus_probe", None, "idle"),
                      *(lock.init_row() for lock in locks)] + rows
    if not hvm and d.start_info.store_evtchn:
        rows.append((kernel.table("xenbus"), "xenstored_ready", xb.xenstored_ready, 1))
        xb.xenstored_ready = 1
    xb.xen_store_domain_type = kind
    kernel.record("xenbus_init", f"postcore_initcall: store kind {name}", SRC,
                  changes=[r for r in rows if r[2] != r[3]])
    err = 0
    if kind == XS_LOCAL:
        err = xenstored_local_init(kernel)
    elif kind == XS_PV:
        _set_store(kernel, kernel.hv.memory.page(d.start_info.store_mfn), d.start_info.store_evtchn)
    else:
        err = _xenbus_init_hvm(kernel)
    if not err and kind != XS_HVM:
        err = -ENOMEM if kernel.fault("xs_init") else xs_init(kernel)
        if err:
            kernel.printk(KERN_WARNING, f"xenbus: Error initializing xenstore comms: {err}")
    if err:
        xb.xen_store_domain_type = XS_UNKNOWN
        return err
    proc_create_mount_point(kernel, "xen")
    return 0

"""Bringing xenbus up: 2.6.18 ``xenbus_probe_init`` and the modern ``xenbus_init`` family.

Theory of operation
-------------------
2.6.18 (drivers/xen/xenbus/xenbus_probe.c, one postcore_initcall) registers the
frontend bus "xen" and the backend bus "xen-backend" (keeping each result in the bus's
``.error``), finds the store page and event channel (dom0 makes them: a zeroed page
and EVTCHNOP_alloc_unbound(DOMID_SELF, 0), published as /proc/xen/xsd_kva and
xsd_port; a PV domU takes them from start_info; PV-on-HVM from HVM params), creates
/proc/xen/xenbus, runs ``xs_init``, registers the two bus root devices, and in a domU
probes at once. dom0 waits: the first store interrupt runs ``wake_waiting``, which
sets xenstored_ready and schedules ``probe_work`` (here: ``kernel.xb.probe_work``).

Modern Linux splits this over initcall levels: ``xenbus_init`` (postcore: store kind
XS_PV / XS_HVM / XS_LOCAL, dom0's page + alloc_unbound(SELF, DOMID_SELF), ``xs_init``),
``xenbus_probe_frontend_init`` and ``xenbus_probe_backend_init`` (subsys: register the
buses and a xenstore notifier that enumerates), ``xenbus_probe_initcall`` (device:
probe now for XS_PV, else a "xenbus_probe" kthread that probes on the first wake-up
of xb_waitq, i.e. when xenstored first notifies dom0).

What the Machine calls, in order
--------------------------------
2.6.18:  ``xenbus_probe_init(kernel)`` (postcore) -> driver inits (``blkfront_init`` ...)
         -> ``boot_wait_for_devices(kernel)`` (late; domU).
modern:  ``xenbus_init(kernel)`` (postcore) -> ``xenbus_probe_backend_init(kernel)``
         then ``xenbus_probe_frontend_init(kernel)`` (subsys) -> ``console_init(kernel)``
         (xenlab.linux.drivers.console: xen_cpu/xen_memory buses, xenconsole, vkbd, vfb)
         -> ``xenbus_probe_initcall(kernel)`` (device) -> ``boot_wait_for_devices``
         (late; domU). Let the scheduler run after boot so dom0's "xenbus_probe" thread is
         asleep on xb_waitq before xenstored's first notify. ``xenfs_mount(kernel)``
         (xenlab.linux.procfs_xen) is `mount -t xenfs`. Modules any time later:
         ``blkback_init``/``netback_init`` (dom0), ``blkfront_init``/``netfront_init`` (domU;
         after boot_wait_for_devices they wait until their devices connect).
Toolstack side: ``add_block_device`` + ``block_hotplug_writes`` (blkback) and
``vif_hotplug_writes`` (netback) play the hotplug scripts once a backend is in InitWait.
Every call returns 0 or -errno; the faults in ``FAULTS`` make the error paths reachable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xenlab.abi.errno import ENODEV, ENOENT, ENOMEM, ENOSYS
from xenlab.abi.event_channel import DOMID_SELF
from xenlab.abi.start_info import HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN, SIF_INITDOMAIN
from xenlab.linux.driver_model import bus_register, bus_unregister, device, device_register
from xenlab.linux.gnttab import free_page, get_zeroed_page
from xenlab.linux.kernel import KERN_WARNING
from xenlab.linux.procfs_xen import create_xen_proc_entries_2618, proc_create_mount_point, xenbus_dev_init
from xenlab.linux.xenbus.bus import xenbus_dbg, xenbus_probe_devices
from xenlab.linux.xenbus.comms import xb_waitq
from xenlab.linux.xenbus.globals import XS_HVM, XS_LOCAL, XS_PV, XS_UNKNOWN, xb_globals
from xenlab.linux.xenbus.probe_backend import (
    backend_probe_and_watch,
    xenbus_backend,
    xenbus_probe_backend_init,
)
from xenlab.linux.xenbus.probe_frontend import (
    boot_wait_for_devices,
    fe_watch,
    xenbus_frontend,
    xenbus_probe_frontend_init,
)

XS_NAMES = {XS_PV: "XS_PV", XS_HVM: "XS_HVM", XS_LOCAL: "XS_LOCAL"}

SRC = "drivers/xen/xenbus/xenbus_probe.c"

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

__all__ = ["FAULTS", "boot_wait_for_devices", "xenbus_init", "xenbus_probe", "xenbus_probe_init",
           "xenbus_probe_initcall", "xenbus_probe_backend_init", "xenbus_probe_frontend_init"]


@dataclass
class XenbusProbeState:
    """What xenbus_probe.c keeps besides the globals: the buses, the notifier chain, the wait flag."""

    frontend: Any = None
    backend: Any = None
    xenstore_chain: list[Callable[[Any], Any]] = field(default_factory=list)
    ready_to_wait_for_devices: bool = False
    probe_task: Any = None
    probed: int = 0  # how many times xenbus_probe ran


def xenbus_probe_state(kernel: Any) -> XenbusProbeState:
    """The kernel's probe state (``kernel.xenbus_probe``), created on first use."""
    st = getattr(kernel, "xenbus_probe", None)
    if st is None:
        st = XenbusProbeState()
        kernel.xenbus_probe = st
    return st


def _xs(kernel: Any) -> Any:
    from xenlab.linux.xenbus.client import _xs as xs_layer
    return xs_layer(kernel)


# -- notifiers ----------------------------------------------------------------------
def register_xenstore_notifier(kernel: Any, fn: Callable[[Any], Any]) -> int:
    """register_xenstore_notifier: call fn now if xenstored is ready, else queue it (xenbus_probe.c)."""
    if xb_globals(kernel).xenstored_ready > 0:
        fn(kernel)
    else:
        xenbus_probe_state(kernel).xenstore_chain.append(fn)
    return 0


def _call_chain(kernel: Any) -> None:
    for fn in list(xenbus_probe_state(kernel).xenstore_chain):
        fn(kernel)


# -- xenbus_probe --------------------------------------------------------------------
def xenbus_probe(kernel: Any) -> None:
    """xenbus_probe: 2.6.18 enumerates and watches both buses, then notifies; modern only notifies."""
    xb = xb_globals(kernel)
    st = xenbus_probe_state(kernel)
    st.probed += 1
    if kernel.flavour == "2.6.18":
        if xb.xenstored_ready <= 0:
            kernel.panic(f"kernel BUG at {SRC}: xenbus_probe with xenstored_ready <= 0")
        kernel.record("xenbus_probe", "enumerate device/ and backend/, watch them, notify", SRC)
        from xenlab.linux.xenbus.client import register_xenbus_watch

        xenbus_probe_devices(kernel, xenbus_frontend(kernel))
        register_xenbus_watch(kernel, fe_watch(kernel))
        if not xenbus_backend(kernel).error:
            backend_probe_and_watch(kernel)
        _call_chain(kernel)
        return
    old = xb.xenstored_ready
    xb.xenstored_ready = 1
    kernel.record("xenbus_probe", "xenstored_ready = 1; run the xenstore notifier chain", SRC,
                  changes=[(f"{kernel.name}/xenbus", "xenstored_ready", old, 1)])
    if xb.xen_store_domain_type == XS_HVM:
        _xs(kernel).xs_init(kernel)
    _call_chain(kernel)


def _schedule_probe_work(kernel: Any) -> None:
    """schedule_work(&probe_work): run xenbus_probe on the events workqueue thread."""
    kernel.record("schedule_work", "probe_work queued: xenbus_probe runs on events/0", "kernel/workqueue.c")
    kernel.sched.kthread_run(lambda: xenbus_probe(kernel), "events/0", owner=kernel.name)


# -- the store page ------------------------------------------------------------------
def _domain(kernel: Any) -> Any:
    return kernel.hv.domains[kernel.domid]


def _map_interface(kernel: Any, page: Any) -> Any:
    from xenlab.abi.xs_wire import xenstore_domain_interface

    return xenstore_domain_interface.from_buffer(page.buf)


def _free_page(kernel: Any, page: Any) -> None:
    free_page(kernel, page)


def _set_store(kernel: Any, page: Any, evtchn: int) -> None:
    xb = xb_globals(kernel)
    rows = [(f"{kernel.name}/xenbus", "xen_store_mfn", xb.xen_store_mfn or None, page.mfn),
            (f"{kernel.name}/xenbus", "xen_store_evtchn", xb.xen_store_evtchn or None, evtchn)]
    xb.xen_store_page = page
    xb.xen_store_mfn = page.mfn
    xb.xen_store_evtchn = evtchn
    xb.xen_store_interface = _map_interface(kernel, page)
    kernel.record("xen_store_interface", f"store page mfn {page.mfn:#x}, event channel {evtchn}", SRC,
                  changes=rows)


def _alloc_store_locally(kernel: Any, remote_dom: int) -> int:
    """dom0: a zeroed page and an unbound port xenstored will bind to; 0 or -errno."""
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
        err = kernel.hv.evtchn_alloc_unbound(kernel.domid, DOMID_SELF, remote_dom)
    if err == -ENOSYS:
        _free_page(kernel, page)
        return err
    if err < 0:
        kernel.panic(f"kernel BUG at {SRC}: EVTCHNOP_alloc_unbound returned {err}")
    _set_store(kernel, page, err)
    return 0


# -- 2.6.18 --------------------------------------------------------------------------
def xenbus_probe_init(kernel: Any) -> int:
    """xenbus_probe_init (2.6.18 postcore_initcall): buses, store page and port, xs_init, root devices."""
    if kernel.flavour != "2.6.18":
        raise ValueError("xenbus_probe_init is the 2.6.18 entry point; a modern kernel uses xenbus_init")
    kernel.record("xenbus_probe_init", "postcore_initcall", SRC)
    if getattr(kernel, "hv", None) is None:
        return -ENODEV
    xb = xb_globals(kernel)
    fe, be = xenbus_frontend(kernel), xenbus_backend(kernel)
    fe.dev, be.dev = device("xen"), device("xen-backend")
    fe.error = bus_register(kernel, fe.bus, fault="bus_register_frontend")
    if fe.error:
        kernel.printk(KERN_WARNING, f"XENBUS: Error registering frontend bus: {fe.error}")
    be.error = bus_register(kernel, be.bus, fault="bus_register_backend")
    if be.error:
        kernel.printk(KERN_WARNING, f"XENBUS: Error registering backend bus: {be.error}")
    d = _domain(kernel)
    if d.start_info.flags & SIF_INITDOMAIN:
        err = _alloc_store_locally(kernel, 0)
        if err == -ENOMEM:
            return err  # the seed returns at once: nothing to free yet
        if err:
            return err  # -ENOSYS: page already freed; the buses stay registered
        d.start_info.store_mfn = xb.xen_store_mfn
        d.start_info.store_evtchn = xb.xen_store_evtchn
        create_xen_proc_entries_2618(kernel)
    elif getattr(d, "hvm", False):
        kernel.record("xenbus_probe_init", "HVM: xenstored_ready = 1", SRC,
                      changes=[(f"{kernel.name}/xenbus", "xenstored_ready", xb.xenstored_ready, 1)])
        xb.xenstored_ready = 1
        evtchn = d.hvm_params.get(HVM_PARAM_STORE_EVTCHN, 0)
        pfn = d.hvm_params.get(HVM_PARAM_STORE_PFN, 0)
        page = kernel.hv.memory.page(d.pfn_to_mfn(pfn))
        kernel.record("ioremap", f"HVM_PARAM_STORE_PFN {pfn:#x} mapped (HVM_PARAM_STORE_EVTCHN {evtchn})",
                      "arch/x86/mm/ioremap.c")
        _set_store(kernel, page, evtchn)
    else:
        old = xb.xenstored_ready
        xb.xenstored_ready = 1
        kernel.record("xenbus_probe_init", "PV domU: store from start_info, xenstored_ready = 1", SRC,
                      changes=[(f"{kernel.name}/xenbus", "xenstored_ready", old, 1)])
        _set_store(kernel, kernel.hv.memory.page(d.start_info.store_mfn), d.start_info.store_evtchn)
    xenbus_dev_init(kernel)
    xb.probe_work = lambda: _schedule_probe_work(kernel)
    err = -ENOMEM if kernel.fault("xs_init") else _xs(kernel).xs_init(kernel)
    if err:
        kernel.printk(KERN_WARNING, f"XENBUS: Error initializing xenstore comms: {err}")
        if xb.xen_store_page is not None and d.start_info.flags & SIF_INITDOMAIN:
            _free_page(kernel, xb.xen_store_page)
        return err
    if not fe.error:
        fe.error = device_register(kernel, fe.dev, fault="device_register")
        if fe.error:
            bus_unregister(kernel, fe.bus)
            kernel.printk(KERN_WARNING, f"XENBUS: Error registering frontend device: {fe.error}")
    if not be.error:
        be.error = device_register(kernel, be.dev, fault="device_register_backend")
        if be.error:
            bus_unregister(kernel, be.bus)
            kernel.printk(KERN_WARNING, f"XENBUS: Error registering backend device: {be.error}")
    if not d.start_info.flags & SIF_INITDOMAIN:
        xenbus_probe(kernel)
    return 0


# -- modern --------------------------------------------------------------------------
def xenbus_init(kernel: Any) -> int:
    """xenbus_init (modern postcore_initcall): store kind, store page and port, xs_init, /proc/xen."""
    if kernel.flavour == "2.6.18":
        raise ValueError("xenbus_init is the modern entry point; a 2.6.18 kernel uses xenbus_probe_init")
    xb = xb_globals(kernel)
    xb.xen_store_domain_type = XS_UNKNOWN
    if getattr(kernel, "hv", None) is None:
        return -ENODEV
    d = _domain(kernel)
    hvm = bool(getattr(d, "hvm", False))
    initial = bool(d.start_info.flags & SIF_INITDOMAIN) or bool(getattr(d, "initdomain", False))
    kind = XS_HVM if hvm else XS_PV
    if (hvm and initial) or (not hvm and not d.start_info.store_evtchn):
        kind = XS_LOCAL
    rows = [(f"{kernel.name}/xenbus", "xen_store_domain_type", None, XS_NAMES[kind])]
    if not hvm and d.start_info.store_evtchn:
        rows.append((f"{kernel.name}/xenbus", "xenstored_ready", xb.xenstored_ready, 1))
        xb.xenstored_ready = 1
    xb.xen_store_domain_type = kind
    kernel.record("xenbus_init", f"postcore_initcall: store kind {XS_NAMES[kind]}", SRC, changes=rows)
    err = 0
    if kind == XS_LOCAL:
        err = _alloc_store_locally(kernel, DOMID_SELF)
    elif kind == XS_PV:
        _set_store(kernel, kernel.hv.memory.page(d.start_info.store_mfn), d.start_info.store_evtchn)
    else:
        evtchn = d.hvm_params.get(HVM_PARAM_STORE_EVTCHN, 0)
        pfn = d.hvm_params.get(HVM_PARAM_STORE_PFN, 0)
        if not pfn or pfn == (1 << 64) - 1:
            err = -ENOENT
        else:
            _set_store(kernel, kernel.hv.memory.page(d.pfn_to_mfn(pfn)), evtchn)
    if not err and kind != XS_HVM:
        err = -ENOMEM if kernel.fault("xs_init") else _xs(kernel).xs_init(kernel)
        if err:
            kernel.printk(KERN_WARNING, f"xenbus: Error initializing xenstore comms: {err}")
    if err:
        xb.xen_store_domain_type = XS_UNKNOWN
        return err
    proc_create_mount_point(kernel, "xen")
    return 0


def _xenbus_probe_thread(kernel: Any) -> None:
    """xenbus_probe_thread: sleep on xb_waitq until its first wake-up, then probe."""
    calls = [0]

    def woken() -> bool:
        calls[0] += 1
        return calls[0] > 1

    kernel.sched.wait_event(xb_waitq(kernel), woken)
    xenbus_dbg(kernel, "xenbus: xenbus_probe (xenbus_probe_thread:817) probing.")
    xenbus_probe(kernel)


def xenbus_probe_initcall(kernel: Any) -> int:
    """xenbus_probe_initcall (modern device_initcall): probe now (XS_PV) or start "xenbus_probe"."""
    xb = xb_globals(kernel)
    kernel.record("xenbus_probe_initcall", "device_initcall", SRC)
    if xb.xen_store_domain_type in (XS_PV, XS_HVM):  # HVM: the lab's guests have the vector callback
        xenbus_probe(kernel)
    if xb.xen_store_domain_type == XS_LOCAL:
        st = xenbus_probe_state(kernel)
        st.probe_task = kernel.sched.kthread_run(lambda: _xenbus_probe_thread(kernel), "xenbus_probe",
                                                 owner=kernel.name)
    return 0


def xenbus_probe_ran(kernel: Any) -> bool:
    """True once xenbus_probe has run in this kernel (what the capture's summary calls "probe ran")."""
    return xenbus_probe_state(kernel).probed > 0


"""2.6.18 xenbus_probe_init, line by line, and every error path the seed can take.

Each fault is injected through ``kernel.faults`` (the names in xenbus_probe.FAULTS) and the test
checks what the kernel printed and what it left behind. The store is the lab xenstored
xenstored on its ring, the hypervisor the real one (tests/xenbus_harness.py); the kernel
boots through its own stages up to "xenbus init" and the test calls xenbus_probe_init.
"""

from __future__ import annotations

import pytest
from xenbus_harness import Rig, tasks_of

from xenlab.abi.errno import ENOMEM, ENOSYS
from xenlab.linux.sysfs import sysfs
from xenlab.linux.xenlinux.kernel import XenLinuxKernel
from xenlab.linux.xenlinux.xen_proc import proc_xen_entries
from xenlab.linux.xenlinux.xenbus_probe import (
    FAULTS,
    xenbus_driver,
    xenbus_probe_init,
    xenbus_probe_ran,
    xenbus_register_frontend,
)


def kernel(domid: int = 0, faults: tuple[str, ...] = (),
           rig: Rig | None = None) -> tuple[XenLinuxKernel, Rig]:
    """A 2.6.18 kernel in dom0 (initial domain) or a PV domU, with *faults* injected, booted up to
    its "xenbus init" stage (a domU's dom0 is booted and runs xenstored)."""
    if domid == 0:
        rig = Rig("2.6.18", dom0_faults=faults)
        k = rig.dom0
    else:
        rig = rig or Rig("2.6.18")
        k = rig.create_domU(domid, faults=faults)
    assert isinstance(k, XenLinuxKernel)
    rig.boot(k, until="xenbus init")
    return k, rig


def dom0_ports(rig: Rig) -> list[int]:
    """dom0's event channels in use (port 0, reserved, included)."""
    return rig.hv.domains[0].ports_in_use()


def messages(k: XenLinuxKernel) -> list[str]:
    return [line.text for line in k.log]


def test_the_fault_names_are_the_ones_the_machine_offers() -> None:
    names = [name for name, _ in FAULTS]
    assert names[:6] == ["bus_register_frontend", "bus_register_backend", "get_zeroed_page",
                         "alloc_unbound_enosys", "xs_init", "device_register"]
    assert all(desc for _, desc in FAULTS)


def test_dom0_makes_the_store_page_and_port_and_waits_for_xenstored() -> None:
    k, rig = kernel(0)
    hv = rig.hv
    assert xenbus_probe_init(k) == 0
    assert sysfs(k).listdir("/sys/bus") == ["xen", "xen-backend"]
    assert sysfs(k).listdir("/sys/devices") == ["xen", "xen-backend"]  # the two bus root devices
    assert proc_xen_entries(k) == [("xenbus", 0o400), ("xsd_kva", 0o600), ("xsd_port", 0o400)]
    port = k.xb.xen_store_evtchn
    assert k.proc["xen/xsd_port"].read() == str(port)
    assert hv.domains[0].chns[port].summary() == ("unbound", 0)  # alloc_unbound(DOMID_SELF, remote 0)
    si = hv.domains[0].start_info
    assert (si.store_mfn, si.store_evtchn) == (k.xb.xen_store_mfn, port)
    assert k.proc["xen/xsd_kva"].read().startswith("0xffff88")
    assert k.xb.xenstored_ready == 0 and not xenbus_probe_ran(k)
    assert tasks_of(k) == ["xenwatch", "xenbus"]  # xs_init's two threads
    # xenstored's first kick on the store port: wake_waiting sets xenstored_ready and
    # schedules probe_work on the events/0 workqueue
    rig.boot(k, after="xenbus init", userspace=True)
    rig.start_xenstored()
    assert xenbus_probe_ran(k) and k.xb.xenstored_ready == 1
    # the cpu watch's first event runs on its own thread: cpu_hotplug.c:91 `.flags = XBWF_new_thread`
    assert tasks_of(k) == ["xenwatch", "xenbus", "oxenstored", "events/0", "xenwatch_cb"]


def test_a_domU_takes_the_store_from_start_info_and_probes_at_once() -> None:
    rig = Rig("2.6.18")
    rig.tool_write("/local/domain/1", "")
    rig.tool_set_perms("/local/domain/1", "n1")
    rig.tool_write("/local/domain/1/device/vif/0/state", "1")
    k, _ = kernel(1, rig=rig)
    hv = rig.hv
    assert xenbus_probe_init(k) == 0
    si = hv.domains[1].start_info
    assert (k.xb.xen_store_mfn, k.xb.xen_store_evtchn, k.xb.xenstored_ready) == (si.store_mfn,
                                                                                si.store_evtchn, 1)
    assert proc_xen_entries(k) == [("xenbus", 0o400)]
    assert xenbus_probe_ran(k)
    assert sysfs(k).listdir("/sys/bus/xen/devices") == ["vif-0"]
    assert sysfs(k).readlink("/sys/bus/xen/devices/vif-0") == "../../../devices/xen/vif-0"
    assert sysfs(k).listdir("/sys/devices/xen/vif-0") == ["devtype", "nodename", "subsystem", "uevent"]


def test_frontend_bus_register_fails() -> None:
    k, _ = kernel(0, ("bus_register_frontend",))
    assert xenbus_probe_init(k) == 0  # the seed carries on without the bus
    assert messages(k) == ["XENBUS: Error registering frontend bus: -12"]
    assert k.xenbus_frontend.error == -ENOMEM and k.xenbus_backend.error == 0
    assert sysfs(k).listdir("/sys/bus") == ["xen-backend"]
    assert sysfs(k).listdir("/sys/devices") == ["xen-backend"]  # no root device for a missing bus
    # a frontend driver registering later gets the stored error back
    assert xenbus_register_frontend(k, xenbus_driver(name="vif", ids=["vif"])) == -ENOMEM


def test_backend_bus_register_fails() -> None:
    k, _ = kernel(0, ("bus_register_backend",))
    assert xenbus_probe_init(k) == 0
    assert messages(k) == ["XENBUS: Error registering backend bus: -12"]
    assert sysfs(k).listdir("/sys/bus") == ["xen"]


def test_get_zeroed_page_returns_null() -> None:
    k, rig = kernel(0, ("get_zeroed_page",))
    ports, logged = dom0_ports(rig), len(k.log)
    assert xenbus_probe_init(k) == -ENOMEM
    assert messages(k)[logged:] == []  # the seed returns without a word
    assert sysfs(k).listdir("/sys/bus") == ["xen", "xen-backend"]  # buses stay registered
    assert proc_xen_entries(k) == [] and dom0_ports(rig) == ports
    assert k.xb.xen_store_mfn == 0


def test_alloc_unbound_enosys_frees_the_page_and_keeps_the_buses() -> None:
    k, rig = kernel(0, ("alloc_unbound_enosys",))
    logged = len(k.log)
    assert xenbus_probe_init(k) == -ENOSYS
    assert messages(k)[logged:] == []
    assert len(k.free_pages) == 1  # the zeroed page went back
    assert sysfs(k).listdir("/sys/bus") == ["xen", "xen-backend"]  # "Do not unregister the buses"
    assert proc_xen_entries(k) == [] and k.xb.xen_store_evtchn == 0
    assert tasks_of(k) == []  # xs_init never ran


def test_xs_init_fails() -> None:
    k, _ = kernel(0, ("xs_init",))
    logged = len(k.log)
    assert xenbus_probe_init(k) == -ENOMEM
    assert messages(k)[logged:] == ["XENBUS: Error initializing xenstore comms: -12"]
    assert len(k.free_pages) == 1
    assert sysfs(k).listdir("/sys/devices") == []  # root devices never registered
    assert sysfs(k).listdir("/sys/bus") == ["xen", "xen-backend"]


def test_device_register_of_the_frontend_root_fails() -> None:
    k, _ = kernel(0, ("device_register",))
    logged = len(k.log)
    assert xenbus_probe_init(k) == 0
    assert messages(k)[logged:] == ["XENBUS: Error registering frontend device: -12"]
    assert k.xenbus_frontend.error == -ENOMEM
    assert sysfs(k).listdir("/sys/bus") == ["xen-backend"]  # this path does unregister the bus
    assert sysfs(k).listdir("/sys/devices") == ["xen-backend"]


def test_device_register_of_the_backend_root_fails() -> None:
    k, _ = kernel(0, ("device_register_backend",))
    logged = len(k.log)
    assert xenbus_probe_init(k) == 0
    assert messages(k)[logged:] == ["XENBUS: Error registering backend device: -12"]
    assert sysfs(k).listdir("/sys/bus") == ["xen"]


def test_pv_on_hvm_takes_the_store_from_hvm_params() -> None:
    from xenlab.abi.hvm import HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN

    rig = Rig("2.6.18")
    k = rig.create_domU(2, hvm=True)
    rig.boot(k, until="xenbus init")
    d, guest = rig.hv.domains[2], rig.guests[2]
    pfn = d.mfn_to_pfn(guest.store_mfn)
    assert d.hvm_params[HVM_PARAM_STORE_PFN] == pfn
    first = len(k.trace)
    assert xenbus_probe_init(k) == 0
    # the #else branch: two HVMOP_get_param hypercalls, then ioremap of the pfn (not the mfn)
    ours = [(s.actor, s.function) for s in list(k.trace)[first:] if s.function in (
        "hvmop_get_param", "hvm_get_parameter", "ioremap")]
    assert ours == [("xen", "hvmop_get_param"), ("domU2", "hvm_get_parameter")] * 2 + [("domU2", "ioremap")]
    assert (k.xb.xen_store_mfn, k.xb.xen_store_evtchn, k.xb.xenstored_ready) == (
        pfn, d.hvm_params[HVM_PARAM_STORE_EVTCHN], 1)
    assert k.xb.xen_store_page is rig.hv.memory.page(guest.store_mfn)  # the hardware's translation
    assert xenbus_probe_ran(k)


def test_any_other_alloc_unbound_error_is_a_kernel_bug() -> None:
    from xenlab.linux.kernel import KernelPanic

    k, rig = kernel(0)
    rig.hv.evtchn_alloc_unbound = lambda caller, dom, remote: -22  # type: ignore[method-assign]
    with pytest.raises(KernelPanic, match="kernel BUG at drivers/xen/xenbus/xenbus_probe.c"):
        xenbus_probe_init(k)
    assert k.log[-1].text.startswith("Kernel panic - not syncing: kernel BUG")

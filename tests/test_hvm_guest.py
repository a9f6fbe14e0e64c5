"""An HVM guest running the PV drivers: Xen's HVM params, libxl's HVM build, both kernels' HVM branch.

An HVM guest has no start_info. The toolstack leaves the store and console in HVM params
(xg_dom_x86.c), the guest reads them with HVMOP_get_param (include/xen/hvm.h) and maps the
store page at its pfn (2.6.18: ioremap; 6.1: memremap), and xenbus comes up from there.
"""

from __future__ import annotations

import re

import pytest
from xenbus_harness import Rig, tasks_of

from xenlab.abi.errno import EEXIST, EINVAL, EPERM, ESRCH
from xenlab.abi.event_channel import DOMID_SELF
from xenlab.abi.hvm import (
    HVM_NR_PARAMS,
    HVM_PARAM_CALLBACK_IRQ,
    HVM_PARAM_CONSOLE_EVTCHN,
    HVM_PARAM_CONSOLE_PFN,
    HVM_PARAM_IOREQ_PFN,
    HVM_PARAM_PAE_ENABLED,
    HVM_PARAM_STORE_EVTCHN,
    HVM_PARAM_STORE_PFN,
    X86_HVM_END_SPECIAL_REGION,
    X86_HVM_NR_SPECIAL_PAGES,
    HVMOP_get_param,
    xen_hvm_param,
)
from xenlab.abi.xenbus import XenbusStateConnected
from xenlab.linux.pvops import hvm as pvops_hvm
from xenlab.linux.pvops.xenbus_probe import XS_HVM, xenbus_init, xenbus_probe_initcall
from xenlab.linux.xenlinux import hvm as xenlinux_hvm
from xenlab.sim.guest import device_states, toolstack
from xenlab.sim.machine import Machine
from xenlab.sim.scenarios import build
from xenlab.xen.hypervisor import Hypervisor

FLAVOURS = ("modern", "2.6.18")


@pytest.fixture(scope="module", params=FLAVOURS)
def hvm(request: pytest.FixtureRequest) -> Machine:
    return build("domU", flavour=request.param, guest_type="hvm")


def steps(m: Machine, actor: str, *functions: str) -> list[str]:
    return [f"{s.function}: {s.summary}" for s in m.trace if s.actor == actor and s.function in functions]


# -- Xen: do_hvm_op's HVMOP_get_param / HVMOP_set_param -----------------------------------------
def two_guests() -> Hypervisor:
    hv = Hypervisor()
    hv.domain_create(0, "Domain-0", privileged=True, initdomain=True)
    hv.domain_create(1, "hvm", hvm=True)
    hv.domain_create(2, "pv")
    hv.domain_create(3, "other-hvm", hvm=True)
    assert hv.hvm_set_param(0, 1, HVM_PARAM_STORE_PFN, 0xFEFFC) == 0
    assert hv.hvm_set_param(0, 1, HVM_PARAM_IOREQ_PFN, 0xFEFFD) == 0
    return hv


def test_a_guest_reads_its_store_params_through_the_hypercall() -> None:
    hv = two_guests()
    arg = xen_hvm_param(domid=DOMID_SELF, index=HVM_PARAM_STORE_PFN)
    assert hv.hvm_op(1, HVMOP_get_param, arg) == 0 and arg.value == 0xFEFFC
    assert hv.hvm_get_param(1, DOMID_SELF, HVM_PARAM_STORE_EVTCHN) == (0, 0)  # never set: reads 0
    assert hv.hvm_get_param(0, 1, HVM_PARAM_IOREQ_PFN) == (0, 0xFEFFD)  # dom0 may read anything


@pytest.mark.parametrize(("caller", "domid", "index", "err"), [
    (1, DOMID_SELF, HVM_PARAM_IOREQ_PFN, -EPERM),  # not on hvm_allow_get_param's guest list
    (1, DOMID_SELF, HVM_PARAM_PAE_ENABLED, -EINVAL),  # deprecated
    (1, DOMID_SELF, HVM_NR_PARAMS, -EINVAL),  # past the array
    (3, 1, HVM_PARAM_STORE_PFN, -EPERM),  # another guest's params (XSM_TARGET)
    (2, DOMID_SELF, HVM_PARAM_STORE_PFN, -EINVAL),  # a PV guest has none
    (0, 9, HVM_PARAM_STORE_PFN, -ESRCH),  # no such domain
])
def test_a_param_the_caller_may_not_read_gets_xens_error(caller: int, domid: int, index: int,
                                                         err: int) -> None:
    hv = two_guests()
    arg = xen_hvm_param(domid=domid, index=index, value=0x1234)
    assert hv.hvm_op(caller, HVMOP_get_param, arg) == err
    assert arg.value == 0x1234  # nothing copied back


def test_what_a_guest_may_set_for_itself() -> None:
    hv = two_guests()
    assert hv.hvm_set_param(1, DOMID_SELF, HVM_PARAM_STORE_PFN, 5) == -EPERM
    assert hv.hvm_set_param(1, DOMID_SELF, HVM_PARAM_CALLBACK_IRQ, 1) == 0
    assert hv.hvm_set_param(0, 1, HVM_PARAM_IOREQ_PFN, 0xFEFFE) == -EEXIST  # set once
    assert hv.domains[1].hvm_params == {HVM_PARAM_STORE_PFN: 0xFEFFC, HVM_PARAM_IOREQ_PFN: 0xFEFFD,
                                        HVM_PARAM_CALLBACK_IRQ: 1}
    rows = [c for s in hv.trace for c in s.changes if c.table == "xen/d1/hvm_params"]
    assert [(c.key, c.before, c.after) for c in rows] == [  # trace keys are strings
        (str(HVM_PARAM_STORE_PFN), None, 0xFEFFC), (str(HVM_PARAM_IOREQ_PFN), None, 0xFEFFD),
        (str(HVM_PARAM_CALLBACK_IRQ), None, 1)]


# -- the toolstack: libxl__build_hvm -------------------------------------------------------------
def test_the_store_and_console_sit_in_the_special_region(hvm: Machine) -> None:
    d = hvm.hv.domains[1]
    special = X86_HVM_END_SPECIAL_REGION - X86_HVM_NR_SPECIAL_PAGES  # special_pfn(0)
    b = toolstack(hvm).built[1]
    assert d.hvm_params[HVM_PARAM_STORE_PFN] == special + 4  # SPECIALPAGE_XENSTORE
    assert d.hvm_params[HVM_PARAM_CONSOLE_PFN] == special + 7  # SPECIALPAGE_CONSOLE
    assert (d.hvm_params[HVM_PARAM_STORE_EVTCHN], d.hvm_params[HVM_PARAM_CONSOLE_EVTCHN]) == (
        b.store_port, b.console_port)
    assert d.pfn_to_mfn(special + 4) == b.store_page.mfn
    # what a PV guest finds in start_info is not there
    assert (d.start_info.store_mfn, d.start_info.store_evtchn, d.start_info.console.domU.evtchn) == (0, 0, 0)


def test_libxl_writes_the_store_pfn_as_ring_ref_and_introduces_it(hvm: Machine) -> None:
    xs = toolstack(hvm).xs
    pfn = hvm.hv.domains[1].hvm_params[HVM_PARAM_STORE_PFN]
    assert xs.read("/local/domain/1/store/ring-ref") == str(pfn)
    assert xs.read("/libxl/1/type") == "hvm"
    vm = xs.read("/local/domain/1/vm")
    assert xs.read(f"{vm}/image/ostype") == "hvm"
    assert any(s.function == "xs_introduce_domain" and f"mfn {pfn:#x}" in s.summary for s in hvm.trace)


def test_xenstored_and_the_guest_share_one_frame(hvm: Machine) -> None:
    """Grant ref 1 names the pfn; Xen's p2m turns it into the frame both ends map."""
    intf = hvm.store_interface(1)
    assert intf is not None
    page = hvm.kernel(1).xen_store_page()
    assert page is not None and page.mfn == toolstack(hvm).built[1].store_page.mfn
    assert intf.req_prod == intf.req_cons and intf.req_prod > 0  # requests went round the ring


# -- the guest kernels ------------------------------------------------------------------------
def test_the_guest_reads_its_store_with_hvmop_get_param_and_maps_the_pfn(hvm: Machine) -> None:
    k = hvm.kernel(1)
    pfn = hvm.hv.domains[1].hvm_params[HVM_PARAM_STORE_PFN]
    gets = steps(hvm, "domU1", "hvm_get_parameter")
    assert gets[:2] == ["hvm_get_parameter: HVMOP_get_param STORE_EVTCHN = 0x1",
                        f"hvm_get_parameter: HVMOP_get_param STORE_PFN = {pfn:#x}"]
    xen = [s.summary for s in hvm.trace if s.actor == "xen" and s.function == "hvmop_get_param"]
    assert xen[:2] == ["d1: get param 2 of d1 = 0x1", f"d1: get param 1 of d1 = {pfn:#x}"]
    mapping = "ioremap" if k.flavour == "2.6.18" else "memremap"
    assert any(s.startswith(f"{mapping}: phys {pfn << 12:#x}") for s in steps(hvm, "domU1", mapping))
    assert k.xb.xen_store_mfn == pfn and k.xb.xen_store_evtchn == 1  # the gfn, not a machine frame
    assert not any("start_info" in s.summary for s in hvm.trace if s.actor == "domU1")  # PV only


def test_the_store_port_is_bound_and_the_devices_connect(hvm: Machine) -> None:
    k = hvm.kernel(1)
    assert hvm.errors == []
    b = toolstack(hvm).built[1]
    assert set(device_states(hvm, 1, b).values()) == {(XenbusStateConnected, XenbusStateConnected)}
    assert "xenbus" in hvm.domain(1).run("cat /proc/interrupts")
    assert k.xb.xenstored_ready == 1


def test_the_frontends_grant_their_rings_by_pfn(hvm: Machine) -> None:
    d = hvm.hv.domains[1]
    grants = [s.summary for s in hvm.trace if s.actor == "domU1" and s.function.startswith(
        "gnttab_grant_foreign_access")]
    frames = [int(re.search(r"frame (0x[0-9a-f]+)", g).group(1), 16) for g in grants]  # type: ignore[union-attr]
    assert frames and all(f in d.p2m for f in frames)  # guest frames (pfns), which Xen translates


def test_linux_6_1_sets_up_its_upcall_vector() -> None:
    m = build("domU", flavour="modern", guest_type="hvm")
    d = m.hv.domains[1]
    assert d.evtchn_upcall_vector == {0: 0xF3}  # HVMOP_set_evtchn_upcall_vector (Xen 4.17 offers it)
    assert d.hvm_params[HVM_PARAM_CALLBACK_IRQ] == 1  # "trick toolstack to think we are enlightened"
    log = [line.text for line in m.kernel(1).log]
    assert "Xen version 4.17." in log and "Xen HVM callback vector for event delivery is enabled" in log
    assert not any(line.startswith("Booting kernel on Xen") for line in log)  # the PV banner
    assert m.kernel(1).xb.xen_store_domain_type == XS_HVM
    assert "hvm_get_parameter: HVMOP_get_param CONSOLE_EVTCHN = 0x2" in steps(m, "domU1", "hvm_get_parameter")


def test_the_2_6_18_pv_on_hvm_drivers_start_from_the_platform_device() -> None:
    m = build("domU", flavour="2.6.18", guest_type="hvm")
    k = m.kernel(1)
    # 00:03.0 INTA reaches GSI 28 (>= 16): the callback is given as a PCI INTx line, type 1
    assert m.hv.domains[1].hvm_params[HVM_PARAM_CALLBACK_IRQ] == (1 << 56) | ((3 << 3) << 8)
    log = [line.text for line in k.log]
    assert log[log.index("Xen version 4.17."):][:2] == ["Xen version 4.17.", "Hypercall area is 1 pages."]
    assert steps(m, "domU1", "xenbus_probe_init")[0] == (
        "xenbus_probe_init: xenbus_init() from xen-platform-pci.ko")
    assert not k.kconfig().CONFIG_XEN
    assert "xen/privcmd" not in k.proc and "xen/xenbus" in k.proc  # no drivers/xen/privcmd/ here
    assert "xencons" not in m.domain(1).run("cat /proc/interrupts")


# -- errors -------------------------------------------------------------------------------------
def test_a_guest_asking_for_a_param_it_may_not_read_gets_eperm_in_both_kernels(hvm: Machine) -> None:
    k = hvm.kernel(1)
    if k.flavour == "2.6.18":
        assert xenlinux_hvm.hvm_get_parameter(k, HVM_PARAM_IOREQ_PFN) == 0  # a refusal reads as 0
        assert k.log[-1].text == f"cannot get hvm parameter {HVM_PARAM_IOREQ_PFN}: -{EPERM}."
    else:
        assert pvops_hvm.hvm_get_parameter(k, HVM_PARAM_IOREQ_PFN) == (-EPERM, 0)
        assert k.log[-1].text == f"Cannot get hvm parameter IOREQ_PFN ({HVM_PARAM_IOREQ_PFN}): -{EPERM}!"


def test_an_hvm_store_pfn_of_all_ones_waits_for_xenstore_late_init() -> None:
    """A dom0less guest: STORE_PFN is ~0 until the store is set up; the event brings the pfn."""
    rig = Rig("modern")
    k = rig.create_domU(3, hvm=True)
    hv, d = rig.hv, rig.hv.domains[3]
    pfn = d.hvm_params[HVM_PARAM_STORE_PFN]
    assert hv.hvm_set_param(0, 3, HVM_PARAM_STORE_PFN, (1 << 64) - 1) == 0
    rig.boot(k, until="xenbus init")
    assert xenbus_init(k) == 0
    assert k.xb.xen_store_interface is None and k.xb.xs_init_irq > 0
    assert xenbus_probe_initcall(k) == 0
    rig.settle()  # the thread sleeps on xb_waitq
    assert tasks_of(k) == ["xenbus_probe"] and k.xb.probed == 0
    assert hv.hvm_set_param(0, 3, HVM_PARAM_STORE_PFN, pfn) == 0  # the store is ready now
    store = ("interdomain", 3, k.xb.xen_store_evtchn)
    port = next(c.port for c in hv.domains[0].chns if c.summary() == store)  # xenstored's end
    assert hv.evtchn_send(0, port) == 0
    rig.settle()
    assert k.xb.probed == 1 and k.xb.xen_store_mfn == pfn and k.xb.xs_init_irq == -1
    assert "xenstore_late_init" not in [a.name for desc in k.irq_core.descs.values() for a in desc.actions]
    assert {"xenbus", "xenwatch"} <= set(tasks_of(k))

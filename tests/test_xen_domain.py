"""Domains: start_info, shared_info layouts, HVM params, the ctypes hypercall entry, destruction."""

from __future__ import annotations

import ctypes

import pytest

from xenlab.abi import event_channel as ev
from xenlab.abi.errno import EBUSY, EINVAL, ENOSYS, ESRCH
from xenlab.abi.hvm import HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN
from xenlab.abi.start_info import SIF_INITDOMAIN, SIF_PRIVILEGED
from xenlab.xen import Hypervisor, XenError, xen_check
from xenlab.xen.keyhandler import dump_evtchn_info


def two_domains(bits: int = 64) -> Hypervisor:
    hv = Hypervisor(bits=bits)
    hv.domain_create(0, "Domain-0", privileged=True, initdomain=True)
    hv.domain_create(1, "guest", vcpus=2)
    return hv


def test_dom0_start_info_says_privileged_initial_domain() -> None:
    hv = two_domains()
    si0, si1 = hv.domains[0].start_info, hv.domains[1].start_info
    assert si0.flags == SIF_PRIVILEGED | SIF_INITDOMAIN
    assert si1.flags == 0
    assert si0.magic == b"xen-3.0-x86_64"
    # start_info lives in the domain's own page: store_mfn is 8 bytes at offset 56
    si1.store_mfn, si1.store_evtchn = 0x1234, 2
    raw = hv.domains[1].start_info_page.buf
    assert int.from_bytes(raw[56:64], "little") == 0x1234 and int.from_bytes(raw[64:68], "little") == 2
    assert si1.shared_info == hv.domains[1].shared_info_page.mfn << 12


def test_32bit_guest_uses_the_x86_32_shared_info_layout() -> None:
    """For a 32-bit guest evtchn_mask sits at 2176 and the selector is 4 bytes at offset 4."""
    hv = two_domains(bits=32)
    port = hv.evtchn_bind_ipi(1, 0)
    for _ in range(40):
        port = hv.evtchn_bind_ipi(1, 0)
    assert port == 41
    d = hv.domains[1]
    d.shared_info.set_mask(port)
    raw = d.shared_info_page.buf
    assert raw[2176 + 5] == 1 << 1  # bit 41 of the mask
    hv.evtchn_unmask(1, port)
    hv.evtchn_send(1, port)
    assert raw[2048 + 5] == 1 << 1  # bit 41 of pending
    assert int.from_bytes(raw[4:8], "little") == 1 << 1  # selector word 41 // 32 = 1
    assert d.start_info.magic == b"xen-3.0-x86_32p"
    d.start_info.store_evtchn = 3  # the x86_32 start_info: store_evtchn at offset 48
    assert int.from_bytes(d.start_info_page.buf[48:52], "little") == 3


def test_hvm_params_and_domain_flags() -> None:
    hv = Hypervisor()
    d = hv.domain_create(5, "hvmguest", hvm=True)
    page = hv.populate_physmap(5)
    d.hvm_params[HVM_PARAM_STORE_PFN] = d.mfn_to_pfn(page.mfn)
    d.hvm_params[HVM_PARAM_STORE_EVTCHN] = 1
    assert hv.memory.page(d.pfn_to_mfn(d.hvm_params[HVM_PARAM_STORE_PFN])) is page
    assert (d.hvm, d.privileged, d.initdomain, d.max_vcpus) == (True, False, False, 1)


def test_domain_create_refuses_bad_requests() -> None:
    hv = two_domains()
    with pytest.raises(XenError, match="EEXIST"):
        hv.domain_create(1, "again")
    with pytest.raises(ValueError, match="not a real domain id"):
        hv.domain_create(0x7FF0, "self")
    with pytest.raises(ValueError, match="vcpus"):
        hv.domain_create(9, "big", vcpus=33)


def test_upcalls_masked_until_the_guest_enables_them() -> None:
    """Domain builders start every vcpu with evtchn_upcall_mask = 1."""
    hv = Hypervisor()
    d = hv.domain_create(0, "Domain-0", privileged=True, initdomain=True, upcalls_masked=True)
    seen: list[int] = []
    d.upcall = seen.append
    port = hv.evtchn_bind_ipi(0, 0)
    hv.evtchn_send(0, port)
    assert seen == [] and d.shared_info_page.buf[1] == 1 and d.shared_info_page.buf[0] == 1


def test_event_channel_op_fills_the_out_fields() -> None:
    """HYPERVISOR_event_channel_op with real argument structs, as a guest kernel calls it."""
    hv = two_domains()
    alloc = ev.evtchn_alloc_unbound(dom=ev.DOMID_SELF, remote_dom=0)
    assert hv.event_channel_op(1, ev.EVTCHNOP_alloc_unbound, alloc) == 0
    assert alloc.port == 1
    bind = ev.evtchn_bind_interdomain(remote_dom=1, remote_port=alloc.port)
    assert hv.event_channel_op(0, ev.EVTCHNOP_bind_interdomain, bind) == 0
    assert bind.local_port == 1
    status = ev.evtchn_status(dom=1, port=alloc.port)
    assert hv.event_channel_op(0, ev.EVTCHNOP_status, status) == 0
    assert status.status == ev.EVTCHNSTAT_interdomain
    assert (status.u.interdomain.dom, status.u.interdomain.port) == (0, 1)
    # the bytes of the OUT field are where the header puts them
    assert bytes(status)[16 + 4:16 + 8] == (1).to_bytes(4, "little")
    assert hv.event_channel_op(1, ev.EVTCHNOP_send, ev.evtchn_send(port=alloc.port)) == 0
    virq = ev.evtchn_bind_virq(virq=ev.VIRQ_DOM_EXC, vcpu=0)
    assert hv.event_channel_op(0, ev.EVTCHNOP_bind_virq, virq) == 0 and virq.port == 2
    # a failure leaves the OUT field alone
    again = ev.evtchn_bind_virq(virq=ev.VIRQ_DOM_EXC, vcpu=1, port=77)
    assert hv.event_channel_op(0, ev.EVTCHNOP_bind_virq, again) == -EINVAL and again.port == 77
    assert hv.event_channel_op(0, ev.EVTCHNOP_close, ev.evtchn_close(port=99)) == -EINVAL
    assert hv.event_channel_op(0, ev.EVTCHNOP_status, ev.evtchn_status(dom=9, port=1)) == -ESRCH
    # FIFO: no control block on a frame d0 does not own (gfn 0); the 2-level ABI has no priorities
    assert hv.event_channel_op(0, ev.EVTCHNOP_init_control, ev.evtchn_init_control()) == -EINVAL
    prio = ev.evtchn_set_priority(port=1, priority=3)
    assert hv.event_channel_op(0, ev.EVTCHNOP_set_priority, prio) == -ENOSYS
    assert hv.event_channel_op(0, 99, ev.evtchn_close()) == -ENOSYS
    # nothing was preempted, so there is no reset to continue
    assert hv.event_channel_op(0, ev.EVTCHNOP_reset_cont, ev.evtchn_reset(dom=ev.DOMID_SELF)) == -EBUSY
    with pytest.raises(TypeError, match="struct evtchn_send"):
        hv.event_channel_op(0, ev.EVTCHNOP_send, ev.evtchn_close(port=1))
    assert ctypes.sizeof(ev.evtchn_status) == 24


def test_destroying_a_guest_frees_dom0s_end_and_raises_dom_exc() -> None:
    hv = two_domains()
    got: list[int] = []
    hv.domains[0].upcall = got.append
    dom_exc = hv.evtchn_bind_virq(0, ev.VIRQ_DOM_EXC, 0)
    g = hv.evtchn_alloc_unbound(1, ev.DOMID_SELF, 0)
    local = hv.evtchn_bind_interdomain(0, 1, g)
    d0 = hv.domains[0]
    d0.shared_info.vcpu_info[0].evtchn_upcall_pending = 0
    d0.shared_info.vcpu_info[0].evtchn_pending_sel = 0
    d0.shared_info.clear_pending(local)
    got.clear()
    hv.domain_destroy(1)
    assert 1 not in hv.domains
    st = hv.evtchn_status(0, 0, local)
    assert (st.status, st.u.unbound.dom) == (ev.EVTCHNSTAT_unbound, 1)
    assert d0.shared_info.test_pending(dom_exc) and got == [0]


def test_xen_check_raises_with_the_errno_name() -> None:
    hv = two_domains()
    assert xen_check(hv.evtchn_bind_ipi(1, 0), "bind_ipi") == 1
    with pytest.raises(XenError, match=r"bind_ipi\(vcpu=7\): -ENOENT") as err:
        xen_check(hv.evtchn_bind_ipi(1, 7), "bind_ipi(vcpu=7)")
    assert err.value.name == "ENOENT"


def test_debug_key_e_dump_format() -> None:
    """'xl debug-keys e': port, [pending/masked/selector], s=ECS state n=vcpu x=0, then the peer."""
    hv = two_domains()
    hv.evtchn_bind_virq(0, ev.VIRQ_TIMER, 0)
    g = hv.evtchn_alloc_unbound(1, ev.DOMID_SELF, 0)
    hv.evtchn_bind_interdomain(0, 1, g)
    text = dump_evtchn_info(hv).splitlines()
    assert text[:4] == ["'e' pressed -> dumping event-channel info",
                        "Event channel information for domain 0:", "Polling vCPUs: {}", "    port [p/m/s]"]
    assert text[4] == "       1 [0/0/1]: s=5 n=0 x=0 v=0"
    assert text[5] == "       2 [1/0/1]: s=3 n=0 x=0 d=1 p=1"
    assert text[-1] == "       1 [0/0/0]: s=3 n=0 x=0 d=0 p=2"


def test_a_32bit_guest_beside_a_64bit_dom0() -> None:
    """Word size is per guest: a 32-bit PV guest on 64-bit Xen gets 1024 ports and the i386 layout."""
    hv = Hypervisor()
    hv.domain_create(0, "Domain-0", privileged=True, initdomain=True)
    d = hv.domain_create(2, "old32", bits=32)
    assert (d.bits, d.max_evtchns, hv.domains[0].max_evtchns) == (32, 1024, 4096)
    assert d.start_info.magic == b"xen-3.0-x86_32p"
    port = hv.evtchn_alloc_unbound(2, ev.DOMID_SELF, 0)
    local = hv.evtchn_bind_interdomain(0, 2, port)
    hv.evtchn_send(0, local)
    assert d.shared_info_page.buf[2048] == 1 << port and d.shared_info_page.buf[4] == 1  # sel @4 (i386)


def test_reprs_are_short_and_stable() -> None:
    hv = two_domains()
    hv.evtchn_bind_ipi(1, 0)
    assert repr(hv) == "Hypervisor(64-bit, 4 frame(s), domains: d0 'Domain-0', d1 'guest')"
    assert repr(hv.domains[0]) == "Domain(d0 'Domain-0', 1 vcpu(s), privileged, initdomain, 0 port(s) in use)"
    assert repr(hv.domains[1]) == "Domain(d1 'guest', 2 vcpu(s), 1 port(s) in use)"


def test_a_guest_shutdown_is_flagged_and_raises_dom_exc_in_dom0() -> None:
    """SCHEDOP_shutdown: the domain stays, getdomaininfo says why, dom0's VIRQ_DOM_EXC fires."""
    from xenlab.abi.domctl import SHUTDOWN_crash, SHUTDOWN_poweroff

    hv = two_domains()
    dom_exc = hv.evtchn_bind_virq(0, ev.VIRQ_DOM_EXC, 0)
    assert hv.domain_shutdown(1, SHUTDOWN_crash) == 0
    info = hv.getdomaininfo(1)
    assert not isinstance(info, int)
    assert (info.shutdown, info.shutdown_reason, info.dying) == (True, SHUTDOWN_crash, False)
    assert hv.domains[0].shared_info.test_pending(dom_exc)
    assert hv.domain_shutdown(1, SHUTDOWN_poweroff) == 0  # the first reason sticks
    assert hv.getdomaininfo(1).shutdown_reason == SHUTDOWN_crash  # type: ignore[union-attr]
    assert hv.domain_shutdown(1, 9) == -EINVAL and hv.domain_shutdown(7, 0) == -ESRCH
    hv.domain_destroy(1)
    assert hv.getdomaininfo(1) == -ESRCH


def test_dom_exc_can_go_to_a_xenstore_domain() -> None:
    """XEN_DOMCTL_set_virq_handler: a xenstore stub domain, not dom0, gets VIRQ_DOM_EXC."""
    hv = two_domains()
    hv.domain_create(2, "xenstore-stubdom")
    stub_port = hv.evtchn_bind_virq(2, ev.VIRQ_DOM_EXC, 0)
    dom0_port = hv.evtchn_bind_virq(0, ev.VIRQ_DOM_EXC, 0)
    assert hv.set_global_virq_handler(2, ev.VIRQ_DOM_EXC) == 0
    assert hv.set_global_virq_handler(2, ev.VIRQ_TIMER) == -EINVAL  # per-vcpu VIRQs have no handler
    hv.domain_destroy(1)
    assert hv.domains[2].shared_info.test_pending(stub_port)
    assert not hv.domains[0].shared_info.test_pending(dom0_port)
    hv.domain_destroy(2)  # the handler is gone: back to the hardware domain
    assert hv.domains[0].shared_info.test_pending(dom0_port)


def test_the_hypervisor_keeps_the_contract_in_developers_md() -> None:
    """Every `hv.name(params)` line of DEVELOPERS.md's Hypervisor block exists with those parameters."""
    import inspect
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "DEVELOPERS.md").read_text()
    block = text[text.index("### Hypervisor"):text.index("### What xenstored")]
    calls = re.findall(r"\bhv\.(\w+)\(([^)]*)\)", block)
    assert len(calls) >= 14
    hv = two_domains()
    for name, params in calls:
        if name == "memory":
            continue
        want = [p.split("=")[0].strip() for p in params.split(",") if p.strip()]
        have = list(inspect.signature(getattr(hv, name)).parameters)[: len(want)]
        assert have == want, name
    assert list(inspect.signature(hv.memory.alloc_page).parameters)[:1] == ["owner_domid"]

"""Event channels in the simulated Xen, lesson by lesson (xen/common/event_channel.c, event_2l.c).

Offsets are read straight from the shared_info page's bytes, with the numbers of the
public header (xen.h, x86_64): vcpu_info[v] at 64*v with evtchn_upcall_pending @0,
evtchn_upcall_mask @1, evtchn_pending_sel @8; evtchn_pending @2048; evtchn_mask @2560.
"""

from __future__ import annotations

import pytest

from xenlab.abi.errno import EEXIST, EINVAL, ENOENT, ENOSPC, EPERM, ESRCH
from xenlab.abi.event_channel import (
    DOMID_SELF,
    VIRQ_CONSOLE,
    VIRQ_DOM_EXC,
    VIRQ_TIMER,
    EVTCHNSTAT_closed,
    EVTCHNSTAT_interdomain,
    EVTCHNSTAT_ipi,
    EVTCHNSTAT_unbound,
    EVTCHNSTAT_virq,
)
from xenlab.base.trace import Trace
from xenlab.xen import Hypervisor

PENDING, MASK = 2048, 2560


def bit(page_buf: bytearray, base: int, port: int) -> int:
    """Bit *port* of the bitmap at byte *base* of a page, read from the raw bytes."""
    return page_buf[base + port // 8] >> (port % 8) & 1


def machine(bits: int = 64) -> tuple[Hypervisor, list[tuple[int, int]]]:
    """Xen with dom0 (privileged) and a guest d1; upcalls are logged as (domid, vcpu)."""
    hv = Hypervisor(trace=Trace(), bits=bits)
    upcalls: list[tuple[int, int]] = []
    hv.domain_create(0, "Domain-0", vcpus=2, privileged=True, initdomain=True)
    hv.domain_create(1, "guest", vcpus=2)
    for domid in (0, 1):
        hv.domains[domid].upcall = lambda v, domid=domid: upcalls.append((domid, v))
    return hv, upcalls


def table(hv: Hypervisor) -> list[tuple[int, int, str, int, int, int]]:
    """Every domain's port table as plain data, to prove a failed call changed nothing."""
    return [(d.domid, c.port, c.state.name, c.remote_dom, c.remote_port, c.notify_vcpu_id)
            for d in hv.domains.values() for c in d.chns]


def test_interdomain_channel_end_to_end() -> None:
    """The guest offers a port to dom0, dom0 binds it, the guest sends: dom0's bits light up."""
    hv, upcalls = machine()
    g = hv.evtchn_alloc_unbound(1, DOMID_SELF, 0)
    assert g == 1  # port 0 is reserved; the lowest free port is 1
    st = hv.evtchn_status(1, DOMID_SELF, g)
    assert (st.status, st.u.unbound.dom) == (EVTCHNSTAT_unbound, 0)

    d0 = hv.domains[0]
    buf = d0.shared_info_page.buf
    local = hv.evtchn_bind_interdomain(0, 1, g)
    assert local == 1
    # bind_interdomain sets the new local port pending (an early notify is not lost)
    assert bit(buf, PENDING, local) == 1
    assert buf[0] == 1  # vcpu_info[0].evtchn_upcall_pending
    assert int.from_bytes(buf[8:16], "little") == 1 << (local // 64)  # evtchn_pending_sel
    assert upcalls == [(0, 0)]
    st = hv.evtchn_status(0, 1, g)
    assert (st.status, st.u.interdomain.dom, st.u.interdomain.port) == (EVTCHNSTAT_interdomain, 0, local)

    # dom0 handles it the way Linux does: clear the flags it saw
    d0.shared_info.vcpu_info[0].evtchn_upcall_pending = 0
    d0.shared_info.vcpu_info[0].evtchn_pending_sel = 0
    d0.shared_info.clear_pending(local)

    assert hv.evtchn_send(1, g) == 0
    assert bit(buf, PENDING, local) == 1 and buf[0] == 1
    assert upcalls == [(0, 0), (0, 0)]
    # and back the other way
    assert hv.evtchn_send(0, local) == 0
    gbuf = hv.domains[1].shared_info_page.buf
    assert bit(gbuf, PENDING, g) == 1 and gbuf[0] == 1
    assert upcalls[-1] == (1, 0)


def test_port_on_a_high_word_sets_its_selector_bit() -> None:
    """Port 70 lives in word 1 of evtchn_pending: selector bit 1, byte 2048 + 8."""
    hv, _ = machine()
    for _ in range(70):
        hv.evtchn_bind_ipi(1, 0)
    port = hv.evtchn_bind_ipi(1, 1)
    assert port == 71
    buf = hv.domains[1].shared_info_page.buf
    assert hv.evtchn_send(1, port) == 0
    assert buf[PENDING + 8] == 1 << (71 - 64)
    # the IPI was bound to vcpu 1: its vcpu_info (64 bytes further on) got the selector
    assert buf[64] == 1 and int.from_bytes(buf[64 + 8:64 + 16], "little") == 0b10
    assert buf[0] == 0


def test_masked_port_loses_the_edge_and_unmask_reraises_it() -> None:
    """A send to a masked port only sets PENDING; EVTCHNOP_unmask re-raises selector and upcall."""
    hv, upcalls = machine()
    port = hv.evtchn_bind_ipi(1, 0)
    d1 = hv.domains[1]
    buf = d1.shared_info_page.buf
    d1.shared_info.set_mask(port)  # the guest masks it itself (sync_set_bit)
    assert bit(buf, MASK, port) == 1
    hv.evtchn_send(1, port)
    assert bit(buf, PENDING, port) == 1
    assert buf[0] == 0 and int.from_bytes(buf[8:16], "little") == 0
    assert upcalls == []
    # a second send changes nothing: the bit was already pending
    hv.evtchn_send(1, port)
    assert upcalls == []
    assert hv.evtchn_unmask(1, port) == 0
    assert bit(buf, MASK, port) == 0
    assert buf[0] == 1 and int.from_bytes(buf[8:16], "little") == 1
    assert upcalls == [(1, 0)]


def test_upcall_mask_holds_the_upcall_back() -> None:
    """With evtchn_upcall_mask set, upcall_pending is set but the guest is not interrupted."""
    hv, upcalls = machine()
    port = hv.evtchn_bind_ipi(1, 0)
    hv.domains[1].shared_info_page.buf[1] = 1  # vcpu_info[0].evtchn_upcall_mask
    hv.evtchn_send(1, port)
    assert hv.domains[1].shared_info_page.buf[0] == 1
    assert upcalls == []


def test_close_puts_the_peer_back_to_unbound_for_the_closer() -> None:
    """Closing one end of an interdomain channel leaves the other UNBOUND, reserved for the closer."""
    hv, _ = machine()
    g = hv.evtchn_alloc_unbound(1, DOMID_SELF, 0)
    local = hv.evtchn_bind_interdomain(0, 1, g)
    assert hv.evtchn_close(0, local) == 0
    assert hv.evtchn_status(0, 0, local).status == EVTCHNSTAT_closed
    st = hv.evtchn_status(1, DOMID_SELF, g)
    assert (st.status, st.u.unbound.dom) == (EVTCHNSTAT_unbound, 0)
    # closing cleared the port's pending bit (set by the bind), so a re-bind starts clean
    assert hv.domains[0].shared_info.test_pending(local) is False
    # dom0 can bind it again (xenstored reconnecting does exactly this)
    assert hv.evtchn_bind_interdomain(0, 1, g) == local
    # a send on an UNBOUND port is dropped silently
    hv.evtchn_close(1, g)
    assert hv.evtchn_status(0, 0, local).status == EVTCHNSTAT_unbound
    assert hv.evtchn_send(0, local) == 0


def test_ports_are_reused_lowest_first() -> None:
    hv, _ = machine()
    ports = [hv.evtchn_bind_ipi(1, 0) for _ in range(5)]
    assert ports == [1, 2, 3, 4, 5]
    hv.evtchn_close(1, 2)
    hv.evtchn_close(1, 4)
    assert hv.evtchn_bind_ipi(1, 0) == 2
    assert hv.evtchn_bind_ipi(1, 0) == 4
    assert hv.evtchn_bind_ipi(1, 0) == 6


@pytest.mark.parametrize("bits,limit", [(64, 4096), (32, 1024)])
def test_two_level_port_limit(bits: int, limit: int) -> None:
    """The 2-level ABI has BITS_PER_EVTCHN_WORD^2 ports: 4096 for 64-bit, 1024 for 32-bit guests."""
    hv, _ = machine(bits)
    with hv.trace.muted():
        ports = [hv.evtchn_bind_ipi(1, 0) for _ in range(limit - 1)]
    assert ports[-1] == limit - 1
    before = table(hv)
    assert hv.evtchn_bind_ipi(1, 0) == -ENOSPC
    assert hv.evtchn_alloc_unbound(1, DOMID_SELF, 0) == -ENOSPC
    assert table(hv) == before


def test_max_evtchn_port_limits_a_guest() -> None:
    """libxl gives a guest event_channels=1023 by default: ports above max_evtchn_port are refused."""
    hv = Hypervisor()
    hv.domain_create(0, "Domain-0", privileged=True, initdomain=True)
    hv.domain_create(2, "small", max_evtchn_port=3)
    assert [hv.evtchn_bind_ipi(2, 0) for _ in range(4)] == [1, 2, 3, -ENOSPC]


def test_virq_binding_rules() -> None:
    hv, upcalls = machine()
    port = hv.evtchn_bind_virq(0, VIRQ_DOM_EXC, 0)
    assert port == 1
    st = hv.evtchn_status(0, DOMID_SELF, port)
    assert (st.status, st.u.virq, st.vcpu) == (EVTCHNSTAT_virq, VIRQ_DOM_EXC, 0)
    assert hv.evtchn_bind_virq(0, VIRQ_DOM_EXC, 0) == -EEXIST
    assert hv.evtchn_bind_virq(0, VIRQ_CONSOLE, 1) == -EINVAL  # global VIRQs bind on vcpu 0
    assert hv.evtchn_bind_virq(0, VIRQ_TIMER, 1) == 2  # per-vcpu VIRQ on vcpu 1
    assert hv.evtchn_bind_virq(0, VIRQ_TIMER, 2) == -ENOENT  # no vcpu 2
    assert hv.evtchn_bind_virq(0, 24, 0) == -EINVAL  # NR_VIRQS is 24
    assert hv.send_guest_virq(0, VIRQ_DOM_EXC) is True
    assert upcalls == [(0, 0)]
    assert hv.send_guest_virq(1, VIRQ_DOM_EXC) is False  # the guest bound nothing


def test_ipi_status_and_bind_vcpu() -> None:
    hv, _ = machine()
    ipi = hv.evtchn_bind_ipi(1, 1)
    st = hv.evtchn_status(1, DOMID_SELF, ipi)
    assert (st.status, st.vcpu) == (EVTCHNSTAT_ipi, 1)
    assert hv.evtchn_bind_vcpu(1, ipi, 0) == -EINVAL  # an IPI keeps its vcpu
    g = hv.evtchn_alloc_unbound(1, DOMID_SELF, 0)
    assert hv.evtchn_bind_vcpu(1, g, 1) == 0
    assert hv.evtchn_status(1, DOMID_SELF, g).vcpu == 1
    assert hv.evtchn_bind_vcpu(1, g, 5) == -ENOENT


def test_error_returns_change_nothing() -> None:
    """Each bad call returns Xen's -errno and leaves every port table exactly as it was."""
    hv, _ = machine()
    g = hv.evtchn_alloc_unbound(1, DOMID_SELF, 0)
    ipi = hv.evtchn_bind_ipi(1, 0)
    before = table(hv)
    cases = [
        (hv.evtchn_alloc_unbound, (1, 0, 1), -EPERM),  # unprivileged, for another domain
        (hv.evtchn_alloc_unbound, (1, 7, 0), -ESRCH),  # no such domain
        (hv.evtchn_bind_interdomain, (0, 7, g), -ESRCH),
        (hv.evtchn_bind_interdomain, (0, 1, ipi), -EINVAL),  # remote port is not UNBOUND
        (hv.evtchn_bind_interdomain, (1, DOMID_SELF, g), -EINVAL),  # reserved for d0, not d1
        (hv.evtchn_bind_interdomain, (0, 1, 4000), -EINVAL),  # beyond d1's allocated ports
        (hv.evtchn_close, (1, 0), -EINVAL),  # port 0 is reserved
        (hv.evtchn_close, (1, 9), -EINVAL),  # free
        (hv.evtchn_send, (1, 9), -EINVAL),
        (hv.evtchn_send, (1, 0), -EINVAL),
        (hv.evtchn_unmask, (1, 5000), -EINVAL),
        (hv.evtchn_status, (1, 0, 1), -EPERM),  # another domain's port needs privilege
        (hv.evtchn_status, (1, 0, 4000), -EINVAL),  # ... but a bad port is reported first
        (hv.evtchn_status, (0, 9, 1), -ESRCH),
        (hv.evtchn_reset, (1, 0), -EPERM),
        (hv.evtchn_reset, (0, 1), -EINVAL),  # a foreign reset needs the domain paused
        (hv.evtchn_bind_ipi, (1, 2), -ENOENT),
        (hv.evtchn_bind_pirq, (1, 5), -EPERM),  # no access granted to the guest
        (hv.evtchn_bind_pirq, (0, 100000), -EINVAL),
    ]
    for fn, args, rc in cases:
        assert fn(*args) == rc, f"{fn.__name__}{args}"
        assert table(hv) == before, f"{fn.__name__}{args} changed a port table"
    # failures are in the trace too, with the errno named
    assert "-EPERM" in hv.trace.steps[-2].summary or "-EPERM" in hv.trace.dump()


def test_status_of_a_free_port_inside_the_table_is_closed() -> None:
    """Xen allocates ports in buckets of 64: status of a free port in a bucket is 'closed'."""
    hv, _ = machine()
    assert hv.evtchn_status(1, DOMID_SELF, 63).status == EVTCHNSTAT_closed
    assert hv.evtchn_status(1, DOMID_SELF, 64) == -EINVAL


def test_reset_closes_everything_and_frees_peers() -> None:
    hv, _ = machine()
    g = hv.evtchn_alloc_unbound(1, DOMID_SELF, 0)
    local = hv.evtchn_bind_interdomain(0, 1, g)
    hv.evtchn_bind_ipi(1, 0)
    hv.evtchn_bind_virq(1, VIRQ_TIMER, 0)
    assert hv.evtchn_reset(1, DOMID_SELF) == 0
    assert hv.domains[1].ports_in_use() == [0]
    st = hv.evtchn_status(0, 0, local)
    assert (st.status, st.u.unbound.dom) == (EVTCHNSTAT_unbound, 1)
    assert hv.evtchn_bind_virq(1, VIRQ_TIMER, 0) == 1  # the VIRQ is free to bind again
    hv.domain_pause(1)
    assert hv.evtchn_reset(0, 1) == 0


def test_trace_rows_replay_the_port_table() -> None:
    hv, _ = machine()
    g = hv.evtchn_alloc_unbound(1, DOMID_SELF, 0)
    step = len(hv.trace) - 1
    local = hv.evtchn_bind_interdomain(0, 1, g)
    hv.evtchn_close(1, g)
    assert hv.trace.state_at(step)["xen/d1/evtchn"][str(g)] == ("unbound", 0)
    end = hv.trace.state_at(len(hv.trace) - 1)
    assert str(g) not in end["xen/d1/evtchn"]
    assert end["xen/d0/evtchn"][str(local)] == ("unbound", 1)
    assert hv.trace.steps[-1].actor == "xen" and hv.trace.steps[-1].source == "xen/common/event_channel.c"


def test_unprivileged_alloc_for_itself_by_number_is_allowed() -> None:
    """XSM_TARGET lets a domain act on itself whether it says DOMID_SELF or its own id."""
    hv, _ = machine()
    assert hv.evtchn_alloc_unbound(1, 1, 0) == 1
    assert hv.evtchn_alloc_unbound(1, DOMID_SELF, DOMID_SELF) == 2  # loopback: reserved for itself
    st = hv.evtchn_status(1, 1, 2)
    assert (st.status, st.u.unbound.dom) == (EVTCHNSTAT_unbound, 1)
    assert hv.evtchn_bind_interdomain(1, DOMID_SELF, 2) == 3  # a domain may connect to itself


def test_dom0_allocates_a_guest_port_for_itself_like_the_toolstack() -> None:
    """xc_evtchn_alloc_unbound(dom=guest, remote=0): a privileged caller acts on another domain."""
    hv, _ = machine()
    port = hv.evtchn_alloc_unbound(0, 1, 0)
    assert port == 1 and hv.domains[1].chns[1].remote_dom == 0
    assert hv.domains[0].ports_in_use() == [0]  # nothing was allocated in dom0


def test_pirq_needs_access_and_binds_once() -> None:
    hv, _ = machine()
    hv.domains[1].irq_caps.add(9)
    assert hv.evtchn_bind_pirq(1, 9) == 1
    assert hv.evtchn_bind_pirq(1, 9) == -EEXIST
    assert hv.evtchn_send(1, 1) == -EINVAL  # nobody sends on a PIRQ port
    assert hv.evtchn_close(1, 1) == 0
    assert hv.evtchn_bind_pirq(1, 9) == 1


def test_hvm_guest_gets_the_callback_whatever_its_upcall_mask() -> None:
    """HVM guests are interrupted through the callback vector; the PV upcall mask is not consulted."""
    hv = Hypervisor()
    d = hv.domain_create(4, "hvm", hvm=True, upcalls_masked=True)
    seen: list[int] = []
    d.upcall = seen.append
    hv.evtchn_send(4, hv.evtchn_bind_ipi(4, 0))
    assert seen == [0]


def test_a_failed_call_is_in_the_trace_without_changes() -> None:
    hv, _ = machine()
    n = len(hv.trace)
    assert hv.evtchn_close(1, 5) == -EINVAL
    step = hv.trace.steps[n]
    assert (step.function, step.changes) == ("evtchn_close", ())
    assert step.summary.endswith("-> -EINVAL")

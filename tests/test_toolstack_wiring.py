"""What libxl, the domain builder, xenstored and xenconsoled do with the hypervisor, as on a real host.

- libxl creates a guest with max_evtchn_port = event_channels (1023 unless the config says);
- the domain builder seeds grant refs 0 (console) and 1 (xenstore) for dom0, and the
  daemons map the guest's pages through those refs (gntdev), not by frame number;
- every vcpu starts with its upcalls masked; the guest kernel unmasks them when it
  enables interrupts;
- `xl destroy` is domain_destroy in Xen, whose VIRQ_DOM_EXC makes xenstored ask
  getdomaininfo and fire @releaseDomain.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from xenlab.abi.domctl import SHUTDOWN_poweroff
from xenlab.abi.errno import ENOSPC, ESRCH
from xenlab.abi.event_channel import EVTCHN_FIFO_NR_CHANNELS
from xenlab.abi.grant_table import GTF_permit_access, GTF_reading, GTF_writing
from xenlab.sim.daemons import socket_client
from xenlab.sim.machine import Machine
from xenlab.sim.scenarios import build
from xenlab.xen.grant_table import shared_entry_v1


@pytest.fixture(scope="module")
def domu() -> Iterator[Machine]:
    m = build("domU", flavour="modern", seed=0)
    yield m
    m.shutdown()


def first(m: Machine, function: str, actor: str) -> int:
    """Index of the first trace step of *function* by *actor*."""
    return next(s.index for s in m.trace if s.function == function and s.actor == actor)


def test_a_guest_can_have_ports_up_to_1023_and_no_more() -> None:
    m = build("domU", flavour="modern", seed=0)
    try:
        hv = m.hv
        ports = []
        while (port := hv.evtchn_alloc_unbound(0, 1, 0)) > 0:
            ports.append(port)
        assert ports[-1] == 1023 == hv.domains[1].max_evtchn_port
        assert port == -ENOSPC
    finally:
        m.shutdown()


def test_dom0_is_not_limited_by_libxl(domu: Machine) -> None:
    """Xen builds dom0 with max_evtchn_port = -1 (setup.c), capped at INT_MAX: only the ABI limits it."""
    d0 = domu.hv.domains[0]
    assert d0.max_evtchn_port == 2**31 - 1
    # Linux 6.1 switched dom0 to FIFO (xen_evtchn_fifo_init): 2^17 ports, not the 2-level 64 x 64
    assert d0.evtchn_port_ops.name == "FIFO" and d0.max_evtchns == EVTCHN_FIFO_NR_CHANNELS


def test_grant_refs_0_and_1_name_the_console_and_store_pages_for_dom0(domu: Machine) -> None:
    b = domu.toolstack.built[1]
    d1 = domu.hv.domains[1]
    console, store = shared_entry_v1(d1, 0), shared_entry_v1(d1, 1)
    assert (int(console.domid), int(console.frame)) == (0, b.console_mfn)
    assert (int(store.domid), int(store.frame)) == (0, b.store_mfn)
    assert console.flags & GTF_permit_access and store.flags & GTF_permit_access


def test_xenstored_and_xenconsoled_mapped_the_pages_through_their_grants(domu: Machine) -> None:
    """Both refs are pinned read-write by dom0: the daemons' gntdev mappings."""
    d0, d1 = domu.hv.domains[0], domu.hv.domains[1]
    assert sorted(m[:2] for m in d0.maptrack.values()) == [(1, 0), (1, 1)]
    for ref in (0, 1):
        assert shared_entry_v1(d1, ref).flags & (GTF_reading | GTF_writing) == GTF_reading | GTF_writing
    assert domu.host.mapped[1] is domu.hv.memory.page(domu.toolstack.built[1].store_mfn).buf


def test_the_guest_gets_no_upcall_before_its_kernel_enables_interrupts(domu: Machine) -> None:
    enabled = first(domu, "xen_irq_enable", "domU1")
    upcalls = [s.index for s in domu.trace if s.function == "xen_evtchn_do_upcall" and s.actor == "domU1"]
    assert upcalls and min(upcalls) > enabled


def test_dom0s_upcalls_are_masked_until_its_kernel_enables_interrupts(domu: Machine) -> None:
    assert first(domu, "xen_irq_enable", "dom0") < first(domu, "xen_evtchn_do_upcall", "dom0")


def test_xl_destroy_makes_xenstored_fire_releaseDomain() -> None:
    m = build("domU", flavour="modern", seed=0)
    try:
        xs = socket_client(m, "xenstore-watch")
        xs.watch("@releaseDomain", "gone")
        xs.sock.take_events()  # the event every new watch fires once
        m.destroy_domU(1)
        assert m.hv.getdomaininfo(1) == -ESRCH
        assert ("@releaseDomain", "gone") in xs.sock.take_events()
        assert not m.hv.domains[0].maptrack  # both daemons unmapped the guest's pages
    finally:
        m.shutdown()


def test_a_guest_that_shuts_down_gets_releaseDomain_but_keeps_its_ring() -> None:
    """domain_cleanup: shut down but not dying -> @releaseDomain once; the connection stays until destroy."""
    m = build("domU", flavour="modern", seed=0)
    try:
        xs = socket_client(m, "xenstore-watch")
        xs.watch("@releaseDomain", "gone")
        xs.sock.take_events()
        assert m.hv.domain_shutdown(1, SHUTDOWN_poweroff) == 0
        m.settle()
        assert xs.sock.take_events() == [("@releaseDomain", "gone")]
        assert 1 in m.ring_server.rings and 1 in m.xenconsoled.ports
        m.destroy_domU(1)
        assert 1 not in m.ring_server.rings and 1 not in m.xenconsoled.ports
    finally:
        m.shutdown()

"""Late EOI: why dom0's console and backend ports end up unmasked, as on the real machine.

Binding an interdomain port makes Xen set it pending (an early notify is not lost). In
a modern dom0 the port's IRQ is on the "xen-dyn-lateeoi" chip: handling the event masks
the port until someone says "done" with xen_irq_lateeoi. Who says it differs per port:
blkback's ring thread, netback's interrupt handler (no work: a spurious EOI at once), and
for xenconsoled the write-back of the port to /dev/xen/evtchn. The mask is the port's
MASKED bit in its FIFO event word (Linux 6.1's default ABI, evtchn_fifo_mask) or, with
xen.fifo_events=0, its bit in shared_info's evtchn_mask (evtchn_2l_mask): every test runs
on both.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from xenlab.linux.pvops.events_base import evtchn_from_irq
from xenlab.linux.pvops.kernel import PvopsKernel
from xenlab.sim.machine import Machine
from xenlab.sim.scenarios import build
from xenlab.xen.event import evtchn_is_masked

ABIS = [pytest.param(None, id="fifo"), pytest.param(False, id="2level")]


@pytest.fixture(scope="module", params=ABIS)
def domu(request: pytest.FixtureRequest) -> Iterator[Machine]:
    m = build("domU", flavour="modern", seed=0, fifo_events=request.param)
    yield m
    m.shutdown()


def mask_fn(m: Machine, domid: int = 0) -> str:
    """The ABI's mask function, as the trace names it: evtchn_fifo_mask or evtchn_2l_mask."""
    k = m.kernel(domid)
    assert isinstance(k, PvopsKernel) and k.irq is not None and k.irq.evtchn_ops is not None
    return {"FIFO": "evtchn_fifo_mask", "2-level": "evtchn_2l_mask"}[k.irq.evtchn_ops.name]


def steps(m: Machine, function: str, text: str) -> list[int]:
    """Indexes of the trace steps of *function* whose summary mentions *text*."""
    return [s.index for s in m.trace if s.function == function and text in s.summary]


def mask_bit(k: PvopsKernel, port: int) -> bool:
    """Xen's evtchn_is_masked: the FIFO word's MASKED, or the 2-level shared_info bit."""
    d = k.hv.domains[k.domid]
    return evtchn_is_masked(d, d.chns[port])


def dom0_port(m: Machine, name: str) -> int:
    """dom0's port behind the IRQ whose handler is called *name* (as /proc/interrupts names it)."""
    return port_of(m, 0, name)


def test_blkback_port_is_masked_by_the_ack_and_unmasked_by_its_ring_thread(domu: Machine) -> None:
    port = dom0_port(domu, "blkif-backend")
    masked = steps(domu, mask_fn(domu), f"port {port} masked")
    eoi_by_thread = [s.index for s in domu.trace if s.function == "xen_blkif_schedule"]
    unmasked = steps(domu, "xen_irq_lateeoi", f"port {port} unmasked")
    assert masked and eoi_by_thread and unmasked
    assert masked[0] < eoi_by_thread[0] < unmasked[0]
    assert not mask_bit(domu.dom0.kernel, port)


def test_the_ring_thread_is_named_like_the_real_one(domu: Machine) -> None:
    names = [t.name for t in domu.sched.tasks if t.owner == "dom0"]
    assert "1.xvda-0" in names


def test_netback_sends_the_spurious_eoi_from_its_handler(domu: Machine) -> None:
    for port in (dom0_port(domu, "vif1.0-q0-tx"), dom0_port(domu, "vif1.0-q0-rx")):
        masked = steps(domu, mask_fn(domu), f"port {port} masked")
        unmasked = steps(domu, "xen_irq_lateeoi", f"port {port} unmasked")
        assert masked and unmasked and masked[0] < unmasked[0], port


def test_xenconsoled_writes_the_fired_console_port_back(domu: Machine) -> None:
    port = domu.xenconsoled.ports[1]
    read = steps(domu, "handle_ring_read", f"console port {port} fired")
    unmasked = steps(domu, "xen_irq_lateeoi", f"port {port} unmasked")
    assert read and unmasked and read[0] < unmasked[0]
    assert not mask_bit(domu.dom0.kernel, port)


def test_xl_destroy_stops_the_ring_thread() -> None:
    m = build("domU", flavour="modern", seed=0)
    try:
        m.destroy_domU(1)
        m.settle()
        thread = next(t for t in m.sched.tasks if t.name == "1.xvda-0")
        assert thread.state == "done"
    finally:
        m.shutdown()


def port_of(m: Machine, domid: int, name: str) -> int:
    """The port behind the IRQ called *name* in domain *domid*'s kernel."""
    k = m.kernel(domid)
    assert isinstance(k, PvopsKernel) and k.irq_core is not None
    [irq] = [d.irq for d in k.irq_core.descs.values() if any(a.name == name for a in d.actions)]
    return evtchn_from_irq(k, irq)


@pytest.mark.parametrize("fifo_events", ABIS)
@pytest.mark.parametrize("name", ["blkif", "vif0-q0-tx", "vif0-q0-rx"])
def test_a_kick_from_the_backend_leaves_the_frontends_port_unmasked(name: str,
                                                                   fifo_events: bool | None) -> None:
    m = build("domU", flavour="modern", seed=0, fifo_events=fifo_events)
    try:
        fe_port = port_of(m, 1, name)
        be_port = m.hv.domains[1].chns[fe_port].remote_port
        n = len(m.trace)
        assert m.hv.evtchn_send(0, be_port) == 0  # notify_remote_via_irq in dom0's backend
        new = [s.function for s in m.trace.steps[n:] if s.actor == "domU1"]
        assert new.index(mask_fn(m, 1)) < new.index("xen_irq_lateeoi")  # lateeoi_ack_dynirq's mask
        assert not mask_bit(m.kernel(1), fe_port)
    finally:
        m.shutdown()


@pytest.mark.parametrize("fifo_events", ABIS)
def test_blkbacks_port_stays_masked_until_its_thread_has_run(fifo_events: bool | None) -> None:
    m = build("domU", flavour="modern", seed=0, fifo_events=fifo_events)
    try:
        be_port = dom0_port(m, "blkif-backend")
        fe_port = m.hv.domains[0].chns[be_port].remote_port
        assert m.hv.evtchn_send(1, fe_port) == 0  # the frontend kicks: requests queued
        assert mask_bit(m.dom0.kernel, be_port)  # acked, the EOI is the thread's
        m.settle()
        assert not mask_bit(m.dom0.kernel, be_port)
    finally:
        m.shutdown()

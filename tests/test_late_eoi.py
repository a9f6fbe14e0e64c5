"""Late EOI: why dom0's console and backend ports end up unmasked, as on the real machine.

Binding an interdomain port makes Xen set it pending (an early notify is not lost). In
a modern dom0 the port's IRQ is on the "xen-dyn-lateeoi" chip: handling the event masks
the port until someone says "done" with xen_irq_lateeoi. Who says it differs per port:
blkback's ring thread, netback's interrupt handler (no work: a spurious EOI at once), and
for xenconsoled the write-back of the port to /dev/xen/evtchn.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from xenlab.sim.machine import Machine
from xenlab.sim.scenarios import build


@pytest.fixture(scope="module")
def domu() -> Iterator[Machine]:
    m = build("domU", flavour="modern", seed=0)
    yield m
    m.shutdown()


def steps(m: Machine, function: str, text: str) -> list[int]:
    """Indexes of the trace steps of *function* whose summary mentions *text*."""
    return [s.index for s in m.trace if s.function == function and text in s.summary]


def dom0_port(m: Machine, name: str) -> int:
    """dom0's port behind the IRQ whose handler is called *name* (as /proc/interrupts names it)."""
    from xenlab.linux.drivers.common import irq_port

    k = m.dom0.kernel
    [irq] = [d.irq for d in k.irq.core.descs.values() if any(a.name == name for a in d.actions)]
    return irq_port(k, irq)


def test_blkback_port_is_masked_by_the_ack_and_unmasked_by_its_ring_thread(domu: Machine) -> None:
    port = dom0_port(domu, "blkif-backend")
    masked = steps(domu, "lateeoi_ack_dynirq", f"port {port} masked")
    eoi_by_thread = [s.index for s in domu.trace if s.function == "xen_blkif_schedule"]
    unmasked = steps(domu, "xen_irq_lateeoi", f"port {port} unmasked")
    assert masked and eoi_by_thread and unmasked
    assert masked[0] < eoi_by_thread[0] < unmasked[0]
    assert not domu.dom0.kernel.irq.shared.test_mask(port)


def test_the_ring_thread_is_named_like_the_real_one(domu: Machine) -> None:
    names = [t.name for t in domu.sched.tasks if t.owner == "dom0"]
    assert "1.xvda-0" in names


def test_netback_sends_the_spurious_eoi_from_its_handler(domu: Machine) -> None:
    for port in (dom0_port(domu, "vif1.0-q0-tx"), dom0_port(domu, "vif1.0-q0-rx")):
        masked = steps(domu, "lateeoi_ack_dynirq", f"port {port} masked")
        unmasked = steps(domu, "xen_irq_lateeoi", f"port {port} unmasked")
        assert masked and unmasked and masked[0] < unmasked[0], port


def test_xenconsoled_writes_the_fired_console_port_back(domu: Machine) -> None:
    port = domu.xenconsoled.ports[1]
    read = steps(domu, "handle_ring_read", f"console port {port} fired")
    unmasked = steps(domu, "xen_irq_lateeoi", f"port {port} unmasked")
    assert read and unmasked and read[0] < unmasked[0]
    assert not domu.dom0.kernel.irq.shared.test_mask(port)


def test_xl_destroy_stops_the_ring_thread() -> None:
    m = build("domU", flavour="modern", seed=0)
    try:
        m.destroy_domU(1)
        m.settle()
        thread = next(t for t in m.sched.tasks if t.name == "1.xvda-0")
        assert thread.state == "done"
    finally:
        m.shutdown()

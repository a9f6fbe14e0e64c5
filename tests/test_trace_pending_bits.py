"""Replaying the trace gives back the pending bits Xen really holds, after the guests handled their events.

A guest clears a port's pending bit itself (sync_clear_bit in shared_info) when it acks the
event; the trace must say so, or a view stepping through it would show ports pending forever.
"""

from __future__ import annotations

import pytest

from xenlab import Machine


@pytest.mark.parametrize("flavour", ["modern", "2.6.18"])
def test_replayed_pending_bits_equal_the_shared_info_pages(flavour: str) -> None:
    m = Machine(flavour=flavour, seed=0)
    m.start_xenstored()
    m.create_domU(disks=["xvda"], vifs=1)
    state = m.trace.state_at(len(m.trace) - 1)
    for domid, dom in sorted(m.hv.domains.items()):
        table = state.get(f"xen/d{domid}/evtchn_pending", {})
        replayed = sorted(int(port) for port in table)
        real = [p for p in range(1, len(dom.chns)) if dom.shared_info.test_pending(p)]
        assert replayed == real, f"d{domid}: trace says pending {replayed}, shared_info says {real}"


def test_the_xenbus_port_is_not_left_pending_once_handled() -> None:
    """2-level (xen.fifo_events=0): dom0 clears the port's bit in shared_info's evtchn_pending."""
    m = Machine(flavour="modern", seed=0, fifo_events=False)
    m.start_xenstored()
    port = m.kernel(0).xb.xen_store_evtchn
    clears = [s for s in m.trace if s.function == "clear_evtchn" and f"port {port}:" in s.summary]
    assert clears, "dom0 never recorded clearing the xenbus port's pending bit"
    assert str(port) not in m.trace.state_at(len(m.trace) - 1).get("xen/d0/evtchn_pending", {})


def test_the_xenbus_port_is_not_left_pending_once_handled_fifo() -> None:
    """FIFO (the default): dom0 clears PENDING in the port's event word, and the word is 0 again."""
    m = Machine(flavour="modern", seed=0)
    m.start_xenstored()
    port = m.kernel(0).xb.xen_store_evtchn
    clears = [s for s in m.trace
              if s.function == "evtchn_fifo_clear_pending" and f"port {port}:" in s.summary]
    assert clears, "dom0 never recorded clearing the xenbus port's PENDING bit"
    assert str(port) not in m.trace.state_at(len(m.trace) - 1).get("xen/d0/event_word", {})

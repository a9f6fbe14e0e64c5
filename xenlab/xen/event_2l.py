"""2-level event delivery (xen/common/event_2l.c): PENDING/MASK bits, selector, upcall.

``evtchn_set_pending`` sets a port's PENDING bit; if it was already set, or the port
is MASKED, that is all (while masked the "edge" is lost: only an unmask re-checks);
otherwise it sets selector bit ``port / BITS_PER_EVTCHN_WORD`` and
``evtchn_upcall_pending`` of the port's vcpu, and when that flag goes 0 -> 1 with
upcalls unmasked it calls ``domain.upcall(vcpu)`` synchronously: the guest is
interrupted. ``evtchn_2l_unmask`` clears MASK and, if the port is still pending,
raises the selector and upcall the masked send could not.
"""

from __future__ import annotations

from xenlab.xen.domain import Domain
from xenlab.xen.record import Row, XenPart, domain_table

SRC = "xen/common/event_channel.c"
SRC_2L = "xen/common/event_2l.c"


class EventTwoLevel(XenPart):
    """The 2-level ABI's delivery half, shared by the hypercalls and Xen-raised VIRQs."""

    def evtchn_set_pending(self, d: Domain, vcpu: int, port: int) -> None:
        """evtchn_2l_set_pending (event_2l.c): PENDING bit, then selector and upcall if unmasked."""
        sh = d.shared_info
        if sh.evtchn_pending.test_and_set(port):
            self._rec("evtchn_2l_set_pending", f"d{d.domid} port {port}: already pending, nothing more",
                      source=SRC_2L)
            return
        rows: list[Row] = [(domain_table(d, "evtchn_pending"), port, None, 1)]
        if sh.evtchn_mask[port]:
            self._rec("evtchn_2l_set_pending", f"d{d.domid} port {port}: pending, but masked: no upcall "
                      "(the edge is lost until unmask)", rows, source=SRC_2L)
            return
        kick = self._mark_sel(d, vcpu, port, rows)
        self._rec("evtchn_2l_set_pending", f"d{d.domid} port {port}: pending; vcpu {vcpu} "
                  + ("selector and upcall_pending set" if kick else "already has an upcall pending"),
                  rows, source=SRC_2L)
        if kick:
            self._kick(d, vcpu)

    def _mark_sel(self, d: Domain, vcpu: int, port: int, rows: list[Row]) -> bool:
        """Set selector bit port/BITS; if it was clear, vcpu_mark_events_pending (event.c). True: 0 -> 1."""
        vi = d.shared_info.vcpu_info[vcpu]
        idx = port // d.bits
        sel = int(vi.evtchn_pending_sel)
        if sel >> idx & 1:
            return False
        vi.evtchn_pending_sel = sel | 1 << idx
        rows.append((domain_table(d, f"vcpu{vcpu}"), "evtchn_pending_sel", sel or None, sel | 1 << idx))
        if vi.evtchn_upcall_pending:
            return False
        vi.evtchn_upcall_pending = 1
        rows.append((domain_table(d, f"vcpu{vcpu}"), "evtchn_upcall_pending", None, 1))
        return True

    def _kick(self, d: Domain, vcpu: int) -> None:
        """vcpu_kick (xen/common/domain.c): the upcall now, if the vcpu's upcall mask allows (HVM: always)."""
        vi = d.shared_info.vcpu_info[vcpu]
        if d.upcall is not None and (d.hvm or not vi.evtchn_upcall_mask):
            d.upcall(vcpu)

    def evtchn_2l_unmask(self, d: Domain, port: int) -> None:
        """evtchn_2l_unmask (event_2l.c): clear MASK; if still PENDING, raise selector and upcall."""
        vcpu = d.chns[port].notify_vcpu_id
        sh = d.shared_info
        rows: list[Row] = []
        kick = False
        if sh.evtchn_mask.test_and_clear(port):
            rows.append((domain_table(d, "evtchn_mask"), port, 1, None))
            if sh.evtchn_pending[port]:
                kick = self._mark_sel(d, vcpu, port, rows)
        note = "was not masked"
        if rows:
            note = "unmasked" + (": still pending, the lost edge is re-raised" if sh.evtchn_pending[port]
                                 else "")
        self._rec("evtchn_unmask", f"d{d.domid} port {port} {note}", rows, source=SRC_2L)
        if kick:
            self._kick(d, vcpu)

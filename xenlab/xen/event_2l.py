"""2-level event delivery (xen/common/event_2l.c): PENDING/MASK bits, selector, upcall.

``evtchn_2l_set_pending`` sets a port's PENDING bit; if it was already set, or the port
is MASKED, that is all (while masked the "edge" is lost: only an unmask re-checks);
otherwise it sets selector bit ``port / BITS_PER_EVTCHN_WORD`` and
``evtchn_upcall_pending`` of the port's vcpu, and when that flag goes 0 -> 1 with
upcalls unmasked it calls ``domain.upcall(vcpu)`` synchronously: the guest is
interrupted. ``evtchn_2l_unmask`` clears MASK and, if the port is still pending,
raises the selector and upcall the masked send could not.

``evtchn_port_ops_2l`` is this ABI's ``struct evtchn_port_ops`` (xenlab.xen.event):
every domain starts with it (``evtchn_2l_init``), until its guest switches to FIFO.
"""

from __future__ import annotations

from functools import cached_property

from xenlab.xen.domain import Channel, Domain
from xenlab.xen.event import EvtchnPortOps, Rows, vcpu_kick, vcpu_mark_events_pending
from xenlab.xen.record import Row, XenPart, domain_table

SRC = "xen/common/event_channel.c"
SRC_2L = "xen/common/event_2l.c"


class EventTwoLevel(XenPart):
    """The 2-level ABI's port ops, shared by the hypercalls and Xen-raised VIRQs."""

    @cached_property
    def evtchn_port_ops_2l(self) -> EvtchnPortOps:
        """evtchn_port_ops_2l (event_2l.c): this hypervisor's table of the 2-level hooks."""
        return EvtchnPortOps("2-level", set_pending=self.evtchn_2l_set_pending,
                             clear_pending=self.evtchn_2l_clear_pending, unmask=self.evtchn_2l_unmask,
                             is_pending=evtchn_2l_is_pending, is_masked=evtchn_2l_is_masked,
                             print_state=evtchn_2l_print_state)

    def evtchn_2l_init(self, d: Domain) -> None:
        """evtchn_2l_init (event_2l.c): the domain's port ops are the 2-level ones."""
        d.evtchn_port_ops = self.evtchn_port_ops_2l

    def evtchn_2l_set_pending(self, d: Domain, vcpu: int, chn: Channel) -> None:
        """evtchn_2l_set_pending (event_2l.c): PENDING bit, then selector and upcall if unmasked."""
        port = chn.port
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
            vcpu_kick(d, vcpu)

    @staticmethod
    def _mark_sel(d: Domain, vcpu: int, port: int, rows: list[Row]) -> bool:
        """Set selector bit port/BITS; if it was clear, vcpu_mark_events_pending. True: upcall 0 -> 1."""
        vi = d.shared_info.vcpu_info[vcpu]
        idx = port // d.bits
        sel = int(vi.evtchn_pending_sel)
        if sel >> idx & 1:
            return False
        vi.evtchn_pending_sel = sel | 1 << idx
        rows.append((domain_table(d, f"vcpu{vcpu}"), "evtchn_pending_sel", sel or None, sel | 1 << idx))
        return vcpu_mark_events_pending(d, vcpu, rows)

    @staticmethod
    def evtchn_2l_clear_pending(d: Domain, chn: Channel, rows: Rows) -> None:
        """evtchn_2l_clear_pending (event_2l.c): clear the PENDING bit (the closing step records it)."""
        if d.shared_info.evtchn_pending.test_and_clear(chn.port):
            rows.append((domain_table(d, "evtchn_pending"), chn.port, 1, None))

    def evtchn_2l_unmask(self, d: Domain, chn: Channel) -> None:
        """evtchn_2l_unmask (event_2l.c): clear MASK; if still PENDING, raise selector and upcall."""
        port = chn.port
        vcpu = chn.notify_vcpu_id
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
            vcpu_kick(d, vcpu)


def evtchn_2l_is_pending(d: Domain, chn: Channel) -> bool:
    """evtchn_2l_is_pending (event_2l.c): the port's bit in shared_info's evtchn_pending."""
    return chn.port < d.bits * d.bits and bool(d.shared_info.evtchn_pending[chn.port])


def evtchn_2l_is_masked(d: Domain, chn: Channel) -> bool:
    """evtchn_2l_is_masked (event_2l.c): the port's bit in evtchn_mask (a port past the bitmap: masked)."""
    return chn.port >= d.bits * d.bits or bool(d.shared_info.evtchn_mask[chn.port])


def evtchn_2l_print_state(d: Domain, chn: Channel) -> str:
    """evtchn_2l_print_state (event_2l.c): the selector bit of the port's word on its vcpu."""
    sel = int(d.shared_info.vcpu_info[chn.notify_vcpu_id].evtchn_pending_sel)
    return str(sel >> (chn.port // d.bits) & 1)

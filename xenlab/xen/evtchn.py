"""Event channels as the hypervisor implements them (xen/common/event_channel.c).

Theory of operation
-------------------
Each domain has a table of ports (``Domain.chns``), grown a bucket at a time. Port 0
is ECS_RESERVED from birth, so a guest can use 0 as "no port". ``get_free_port``
hands out the lowest ECS_FREE port, failing with -ENOSPC past the ABI's limit (4096
ports for a 64-bit guest, 1024 for a 32-bit one) or the domain's ``max_evtchn_port``.

Every operation returns -errno exactly where Xen 4.17 does, and a failed call
changes no port's state (as in Xen, ``get_free_port`` may already have grown the
table by an empty bucket, which ``status`` can tell). These operations never touch a
port's pending or mask state themselves: they go through the domain's port ops
(``xenlab.xen.event``), the 2-level ABI of ``event_2l.py`` from domain_create, the
FIFO ABI of ``event_fifo.py`` once the guest called EVTCHNOP_init_control (its 2^17
ports raise ``max_evtchns``, and a closed port still LINKED on a queue is busy: not
handed out again until the guest unlinks it).

Each hypercall records one step (actor "xen") with rows for the tables it changed:
``xen/d<N>/evtchn`` (port -> state tuple, e.g. ``("unbound", 0)``,
``("interdomain", 1, 2)``, ``("virq", 3, 0)``), ``xen/d<N>/evtchn_vcpu`` (port ->
notify vcpu when not 0), ``xen/d<N>/evtchn_pending`` / ``evtchn_mask`` (port -> 1)
and ``xen/d<N>/vcpu<V>`` (``evtchn_upcall_pending``, ``evtchn_pending_sel``); the
bits a guest flips itself are not Xen's steps and are not recorded here.
"""

from __future__ import annotations

from typing import Any

from xenlab.abi.errno import EACCES, EEXIST, EINVAL, ENOENT, ENOSPC, ENOSYS, EPERM, ESRCH
from xenlab.abi.event_channel import (
    BIND_PIRQ__WILL_SHARE,
    DOMID_SELF,
    ECS,
    NR_VIRQS,
    PER_VCPU_VIRQS,
    EVTCHNSTAT_closed,
    EVTCHNSTAT_interdomain,
    EVTCHNSTAT_ipi,
    EVTCHNSTAT_pirq,
    EVTCHNSTAT_unbound,
    EVTCHNSTAT_virq,
    evtchn_status,
)
from xenlab.xen.domain import EVTCHNS_PER_BUCKET, Channel, Domain
from xenlab.xen.event import (
    evtchn_is_busy,
    evtchn_port_clear_pending,
    evtchn_port_init,
    evtchn_port_set_pending,
    evtchn_port_set_priority,
    evtchn_port_unmask,
    evtchn_usable,
)
from xenlab.xen.event_2l import SRC, EventTwoLevel
from xenlab.xen.event_fifo import EventFifo
from xenlab.xen.record import Row, domain_table


def virq_is_global(virq: int) -> bool:
    """virq_is_global (event_channel.c): all VIRQs but TIMER, DEBUG, XENOPROF and XENPMU."""
    return virq not in PER_VCPU_VIRQS


class EventChannels(EventTwoLevel, EventFifo):
    """The EVTCHNOP_* operations; mixed into Hypervisor (needs ``domains`` and ``trace``)."""

    # -- helpers --------------------------------------------------------------------
    def _fail(self, function: str, summary: str, rc: int) -> int:
        from xenlab.abi.errno import errno_name

        self._rec(function, f"{summary} -> -{errno_name(rc)}", source=SRC)
        return rc

    def _current(self, caller: int) -> Domain:
        try:
            return self.domains[caller]
        except KeyError:
            raise ValueError(f"caller d{caller} is not a domain of this hypervisor; domains: "
                             f"{', '.join(str(d) for d in sorted(self.domains))}") from None

    def _by_any_id(self, caller: int, dom: int) -> Domain | None:
        """rcu_lock_domain_by_any_id (event_channel.c): DOMID_SELF is the caller, else the domain or None."""
        if dom == DOMID_SELF:
            return self.domains[caller]
        return self.domains.get(dom)

    @staticmethod
    def _xsm_target(src: Domain, target: Domain) -> int:
        """xsm_default_action(XSM_TARGET) (xsm/dummy.h): itself or a privileged caller, else -EPERM."""
        return 0 if src is target or src.privileged else -EPERM

    @staticmethod
    def get_free_port(d: Domain) -> int:
        """get_free_port (event_channel.c): the lowest ECS_FREE port not busy, adding a bucket if needed."""
        if d.is_dying:
            return -EINVAL
        free = ECS.ECS_FREE
        busy = None  # the first free port still busy (FIFO: LINKED): the hint may not pass it
        for port in range(d.free_hint, len(d.chns)):  # every port below free_hint is in use
            if port > d.max_evtchn_port or port >= d.max_evtchns:
                return -ENOSPC
            chn = d.chns[port]
            if chn.state is free:
                if evtchn_is_busy(d, chn):  # evtchn_allocate_port: -EBUSY, try the next
                    busy = port if busy is None else busy
                    continue
                d.free_hint = port if busy is None else busy
                return port
        port = len(d.chns)
        if port >= d.max_evtchns or port > d.max_evtchn_port:
            return -ENOSPC
        d.chns.extend(Channel(p) for p in range(port, port + EVTCHNS_PER_BUCKET))
        d.free_hint = port if busy is None else busy
        return port

    def _set_state(self, d: Domain, chn: Channel, **fields: Any) -> list[Row]:
        """Change a port's fields; the trace rows: its state tuple, and its notify vcpu if that moved."""
        before, vcpu = chn.summary(), chn.notify_vcpu_id
        for name, value in fields.items():
            setattr(chn, name, value)
        rows: list[Row] = []
        if chn.summary() != before:
            rows.append((domain_table(d, "evtchn"), chn.port, before, chn.summary()))
        if chn.notify_vcpu_id != vcpu:
            rows.append((domain_table(d, "evtchn_vcpu"), chn.port, vcpu or None, chn.notify_vcpu_id or None))
        return rows

    # -- the operations -------------------------------------------------------------
    def evtchn_alloc_unbound(self, caller: int, dom: int, remote_dom: int) -> int:
        """evtchn_alloc_unbound (event_channel.c): a new UNBOUND port in *dom* for *remote_dom* to bind."""
        cur = self._current(caller)
        fn = "evtchn_alloc_unbound"
        what = f"d{caller}: alloc_unbound(dom={_dom(dom)}, remote_dom={_dom(remote_dom)})"
        d = self._by_any_id(caller, dom)
        if d is None:
            return self._fail(fn, f"{what}: no domain {dom}", -ESRCH)
        port = self.get_free_port(d)
        if port < 0:
            return self._fail(fn, f"{what}: no free port in d{d.domid}", port)
        rc = self._xsm_target(cur, d)
        if rc:
            return self._fail(fn, f"{what}: d{caller} is not privileged over d{d.domid}", rc)
        rdom = cur.domid if remote_dom == DOMID_SELF else remote_dom
        rows = self._set_state(d, d.chns[port], state=ECS.ECS_UNBOUND, remote_dom=rdom, notify_vcpu_id=0)
        evtchn_port_init(d, d.chns[port], rows)
        self._rec(fn, f"{what}: d{d.domid} port {port} UNBOUND, reserved for d{rdom}", rows, source=SRC)
        return port

    def evtchn_bind_interdomain(self, caller: int, remote_dom: int, remote_port: int) -> int:
        """evtchn_bind_interdomain (event_channel.c): a new local port joined to a remote UNBOUND one."""
        ld = self._current(caller)
        fn = "evtchn_bind_interdomain"
        what = f"d{caller}: bind_interdomain(remote_dom={_dom(remote_dom)}, remote_port={remote_port})"
        rd = self._by_any_id(caller, remote_dom)
        if rd is None:
            return self._fail(fn, f"{what}: no domain {remote_dom}", -ESRCH)
        lport = self.get_free_port(ld)
        if lport < 0:
            return self._fail(fn, f"{what}: no free port in d{caller}", lport)
        if not rd.port_is_valid(remote_port):
            return self._fail(fn, f"{what}: d{rd.domid} has no port {remote_port}", -EINVAL)
        rchn = rd.chns[remote_port]
        if rchn.state != ECS.ECS_UNBOUND or rchn.remote_dom != ld.domid:
            return self._fail(fn, f"{what}: d{rd.domid} port {remote_port} is not UNBOUND for d{caller}",
                              -EINVAL)
        lchn = ld.chns[lport]
        rows = self._set_state(ld, lchn, state=ECS.ECS_INTERDOMAIN, remote_dom=rd.domid,
                               remote_port=remote_port)
        rows += self._set_state(rd, rchn, state=ECS.ECS_INTERDOMAIN, remote_dom=ld.domid, remote_port=lport)
        evtchn_port_init(ld, lchn, rows)
        self._rec(fn, f"{what}: d{caller} port {lport} <-> d{rd.domid} port {remote_port}, local port "
                  "set pending (covers an early notify)", rows, source=SRC)
        evtchn_port_set_pending(ld, lchn.notify_vcpu_id, lchn)
        return lport

    def evtchn_bind_virq(self, caller: int, virq: int, vcpu: int) -> int:
        """evtchn_bind_virq (event_channel.c): a port for *virq* on *vcpu* (global VIRQs: vcpu 0 only)."""
        d = self._current(caller)
        fn = "evtchn_bind_virq"
        what = f"d{caller}: bind_virq(virq={virq}, vcpu={vcpu})"
        if not 0 <= virq < NR_VIRQS:
            return self._fail(fn, f"{what}: no such VIRQ", -EINVAL)
        if virq_is_global(virq) and vcpu != 0:
            return self._fail(fn, f"{what}: a global VIRQ binds on vcpu 0 only", -EINVAL)
        if not 0 <= vcpu < d.max_vcpus:
            return self._fail(fn, f"{what}: no vcpu {vcpu}", -ENOENT)
        if d.virq_to_evtchn[vcpu].get(virq):
            return self._fail(fn, f"{what}: already bound to port {d.virq_to_evtchn[vcpu][virq]}", -EEXIST)
        port = self.get_free_port(d)
        if port < 0:
            return self._fail(fn, f"{what}: no free port", port)
        rows = self._set_state(d, d.chns[port], state=ECS.ECS_VIRQ, virq=virq, notify_vcpu_id=vcpu)
        evtchn_port_init(d, d.chns[port], rows)
        d.virq_to_evtchn[vcpu][virq] = port
        row = (domain_table(d, f"vcpu{vcpu}_virq"), virq, None, port)
        self._rec(fn, f"{what}: port {port}", [*rows, row], source=SRC)
        return port

    def evtchn_bind_ipi(self, caller: int, vcpu: int) -> int:
        """evtchn_bind_ipi (event_channel.c): a port the domain can send to itself, delivered on *vcpu*."""
        d = self._current(caller)
        fn, what = "evtchn_bind_ipi", f"d{caller}: bind_ipi(vcpu={vcpu})"
        if not 0 <= vcpu < d.max_vcpus:
            return self._fail(fn, f"{what}: no vcpu {vcpu}", -ENOENT)
        port = self.get_free_port(d)
        if port < 0:
            return self._fail(fn, f"{what}: no free port", port)
        rows = self._set_state(d, d.chns[port], state=ECS.ECS_IPI, notify_vcpu_id=vcpu)
        evtchn_port_init(d, d.chns[port], rows)
        self._rec(fn, f"{what}: port {port}", rows, source=SRC)
        return port

    def evtchn_bind_pirq(self, caller: int, pirq: int, flags: int = 0) -> int:
        """evtchn_bind_pirq (event_channel.c): a port for physical IRQ *pirq* (needs access; once each)."""
        d = self._current(caller)
        fn = "evtchn_bind_pirq"
        share = " WILL_SHARE" if flags & BIND_PIRQ__WILL_SHARE else ""
        what = f"d{caller}: bind_pirq(pirq={pirq}{share})"
        if not 0 <= pirq < d.nr_pirqs:
            return self._fail(fn, f"{what}: d{caller} has {d.nr_pirqs} pirqs", -EINVAL)
        if not d.hvm and not (d.privileged or pirq in d.irq_caps):
            return self._fail(fn, f"{what}: no access to pirq {pirq}", -EPERM)
        if d.pirq_to_evtchn.get(pirq):
            return self._fail(fn, f"{what}: already bound to port {d.pirq_to_evtchn[pirq]}", -EEXIST)
        port = self.get_free_port(d)
        if port < 0:
            return self._fail(fn, f"{what}: no free port", port)
        rows = self._set_state(d, d.chns[port], state=ECS.ECS_PIRQ, pirq=pirq, notify_vcpu_id=0)
        evtchn_port_init(d, d.chns[port], rows)
        d.pirq_to_evtchn[pirq] = port
        self._rec(fn, f"{what}: port {port}", [*rows, (domain_table(d, "pirq"), pirq, None, port)],
                  source=SRC)
        return port

    def _close(self, d: Domain, port: int, rows: list[Row]) -> int:
        """evtchn_close(d, port, guest=1) (event_channel.c), rows collected by the caller: 0 or -EINVAL."""
        if not d.port_is_valid(port):
            return -EINVAL
        chn = d.chns[port]
        if chn.state in (ECS.ECS_FREE, ECS.ECS_RESERVED):
            return -EINVAL
        if chn.state == ECS.ECS_PIRQ:
            rows.append((domain_table(d, "pirq"), chn.pirq, port, None))
            del d.pirq_to_evtchn[chn.pirq]
        elif chn.state == ECS.ECS_VIRQ:
            for v, table in enumerate(d.virq_to_evtchn):
                if table.get(chn.virq) == port:
                    rows.append((domain_table(d, f"vcpu{v}_virq"), chn.virq, port, None))
                    del table[chn.virq]
        elif chn.state == ECS.ECS_INTERDOMAIN:
            d2 = self.domains[chn.remote_dom]
            rows += self._set_state(d2, d2.chns[chn.remote_port], state=ECS.ECS_UNBOUND,
                                    remote_dom=d.domid, remote_port=0)
        # evtchn_free: clear pending (no surprise on re-bind), back to vcpu 0, FREE.
        evtchn_port_clear_pending(d, chn, rows)
        rows += self._set_state(d, chn, state=ECS.ECS_FREE, notify_vcpu_id=0, remote_dom=0,
                                remote_port=0, virq=0, pirq=0)
        d.free_hint = min(d.free_hint, port)
        return 0

    def evtchn_close(self, caller: int, port: int) -> int:
        """evtchn_close (event_channel.c): free a port; an interdomain peer goes back to UNBOUND for us."""
        d = self._current(caller)
        before = d.chns[port].summary() if d.port_is_valid(port) else None
        rows: list[Row] = []
        rc = self._close(d, port, rows)
        if rc:
            return self._fail("evtchn_close", f"d{caller}: close port {port}: not in use", rc)
        extra = ""
        if before and before[0] == "interdomain":
            extra = f"; peer d{before[1]} port {before[2]} back to UNBOUND for d{caller}"
        kind = before[0] if before else "?"
        self._rec("evtchn_close", f"d{caller}: port {port} ({kind}) closed{extra}", rows, source=SRC)
        return 0

    def evtchn_send(self, caller: int, port: int) -> int:
        """evtchn_send (event_channel.c): notify the peer (interdomain), self (IPI); UNBOUND: dropped."""
        ld = self._current(caller)
        fn = "evtchn_send"
        if not ld.port_is_valid(port):
            return self._fail(fn, f"d{caller}: send on port {port}: no such port", -EINVAL)
        chn = ld.chns[port]
        if chn.state == ECS.ECS_INTERDOMAIN:
            rd = self.domains[chn.remote_dom]
            rchn = rd.chns[chn.remote_port]
            self._rec(fn, f"d{caller} port {port} -> d{rd.domid} port {rchn.port}", source=SRC)
            evtchn_port_set_pending(rd, rchn.notify_vcpu_id, rchn)
        elif chn.state == ECS.ECS_IPI:
            self._rec(fn, f"d{caller} port {port}: IPI to own vcpu {chn.notify_vcpu_id}", source=SRC)
            evtchn_port_set_pending(ld, chn.notify_vcpu_id, chn)
        elif chn.state == ECS.ECS_UNBOUND:
            self._rec(fn, f"d{caller} port {port} is UNBOUND: notification silently dropped", source=SRC)
        else:
            return self._fail(fn, f"d{caller}: send on port {port} ({chn.state.name})", -EINVAL)
        return 0

    def evtchn_status(self, caller: int, dom: int, port: int) -> evtchn_status | int:
        """evtchn_status (event_channel.c): the port as a guest sees it (EVTCHNSTAT_*), its vcpu and peer."""
        cur = self._current(caller)
        fn, what = "evtchn_status", f"d{caller}: status(dom={_dom(dom)}, port={port})"
        d = self._by_any_id(caller, dom)
        if d is None:
            return self._fail(fn, f"{what}: no domain {dom}", -ESRCH)
        if not d.port_is_valid(port):
            return self._fail(fn, f"{what}: beyond d{d.domid}'s {d.valid_evtchns} allocated ports", -EINVAL)
        rc = self._xsm_target(cur, d)
        if rc:
            return self._fail(fn, f"{what}: d{caller} is not privileged over d{d.domid}", rc)
        chn = d.chns[port]
        st = evtchn_status(dom=dom, port=port, vcpu=chn.notify_vcpu_id)
        s = chn.state
        if s in (ECS.ECS_FREE, ECS.ECS_RESERVED):
            st.status = EVTCHNSTAT_closed
        elif s == ECS.ECS_UNBOUND:
            st.status, st.u.unbound.dom = EVTCHNSTAT_unbound, chn.remote_dom
        elif s == ECS.ECS_INTERDOMAIN:
            st.status = EVTCHNSTAT_interdomain
            st.u.interdomain.dom, st.u.interdomain.port = chn.remote_dom, chn.remote_port
        elif s == ECS.ECS_PIRQ:
            st.status, st.u.pirq = EVTCHNSTAT_pirq, chn.pirq
        elif s == ECS.ECS_VIRQ:
            st.status, st.u.virq = EVTCHNSTAT_virq, chn.virq
        else:
            st.status = EVTCHNSTAT_ipi
        self._rec(fn, f"{what}: {s.name}", source=SRC)
        return st

    def evtchn_unmask(self, caller: int, port: int) -> int:
        """evtchn_unmask (event_channel.c): a valid port goes to its ABI's unmask hook; 0 or -EINVAL."""
        d = self._current(caller)
        if not d.port_is_valid(port):
            return self._fail("evtchn_unmask", f"d{caller}: unmask port {port}: no such port", -EINVAL)
        chn = d.chns[port]
        if not evtchn_usable(chn):  # evtchn_port_unmask skips it: a free port has no ABI state
            self._rec("evtchn_unmask", f"d{caller} port {port} is not bound: nothing to unmask", source=SRC)
        evtchn_port_unmask(d, chn)
        return 0

    def evtchn_set_priority(self, caller: int, port: int, priority: int) -> int:
        """evtchn_set_priority (event_channel.c): a port's FIFO queue; -ENOSYS on the 2-level ABI."""
        d = self._current(caller)
        fn, what = "evtchn_set_priority", f"d{caller}: set_priority(port={port}, priority={priority})"
        if not d.port_is_valid(port):
            return self._fail(fn, f"{what}: no such port", -EINVAL)
        chn = d.chns[port]
        before = chn.priority
        rc = evtchn_port_set_priority(d, chn, priority)
        if rc:
            why = {-ENOSYS: f"d{caller} uses the 2-level ABI (no priorities)",
                   -EACCES: f"port {port} is not bound"}.get(rc, "priorities are 0 (highest) to 15")
            return self._fail(fn, f"{what}: {why}", rc)
        rows: list[Row] = []
        if chn.priority != before:
            rows.append((domain_table(d, "evtchn_priority"), port, before or None, chn.priority or None))
        self._rec(fn, f"{what}: its next events queue at priority {priority}", rows, source=SRC)
        return 0

    def evtchn_bind_vcpu(self, caller: int, port: int, vcpu: int) -> int:
        """evtchn_bind_vcpu (event_channel.c): deliver on another vcpu (not IPIs or per-vcpu VIRQs)."""
        d = self._current(caller)
        fn, what = "evtchn_bind_vcpu", f"d{caller}: bind_vcpu(port={port}, vcpu={vcpu})"
        if not 0 <= vcpu < d.max_vcpus:
            return self._fail(fn, f"{what}: no vcpu {vcpu}", -ENOENT)
        if not d.port_is_valid(port):
            return self._fail(fn, f"{what}: no such port", -EINVAL)
        chn = d.chns[port]
        movable = (ECS.ECS_UNBOUND, ECS.ECS_INTERDOMAIN, ECS.ECS_PIRQ)
        if not (chn.state in movable or (chn.state == ECS.ECS_VIRQ and virq_is_global(chn.virq))):
            return self._fail(fn, f"{what}: a {chn.state.name} port keeps its vcpu", -EINVAL)
        old = chn.notify_vcpu_id
        rows: list[Row] = []
        if old != vcpu:
            rows = self._set_state(d, chn, notify_vcpu_id=vcpu)
        self._rec(fn, f"{what}: notify vcpu {old} -> {vcpu}", rows, source=SRC)
        return 0

    def evtchn_reset(self, caller: int, dom: int) -> int:
        """evtchn_reset (event_channel.c): close all ports of *dom* (self, or a paused one if privileged)."""
        cur = self._current(caller)
        fn, what = "evtchn_reset", f"d{caller}: reset(dom={_dom(dom)})"
        d = self._by_any_id(caller, dom)
        if d is None:
            return self._fail(fn, f"{what}: no domain {dom}", -ESRCH)
        rc = self._xsm_target(cur, d)
        if rc:
            return self._fail(fn, f"{what}: d{caller} is not privileged over d{d.domid}", rc)
        if d is not cur and not d.controller_pause_count:
            return self._fail(fn, f"{what}: d{d.domid} is not paused", -EINVAL)
        rows: list[Row] = []
        closed = [p for p in range(1, d.valid_evtchns) if self._close(d, p, rows) == 0]
        back = ""
        if d.evtchn_fifo is not None:  # switching back to the 2-level ABI
            self.evtchn_fifo_destroy(d, rows)
            self.evtchn_2l_init(d)
            rows.append((domain_table(d, "evtchn_port_ops"), "abi", "FIFO", None))
            back = "; FIFO ABI torn down, back to 2-level"
        self._rec(fn, f"{what}: closed ports {_ports(closed)}{back}", rows, source=SRC)
        return 0

    def send_guest_virq(self, domid: int, virq: int, vcpu: int = 0) -> bool:
        """send_guest_{vcpu,global}_virq (event_channel.c): raise a VIRQ; False if no port is bound."""
        d = self.domains[domid]
        v = vcpu if not virq_is_global(virq) else 0
        port = d.virq_to_evtchn[v].get(virq, 0) if v < d.max_vcpus else 0
        if not port:
            self._rec("send_guest_virq", f"d{domid}: VIRQ {virq} has no port bound: nothing sent", source=SRC)
            return False
        chn = d.chns[port]
        self._rec("send_guest_virq", f"d{domid}: VIRQ {virq} -> port {port}", source=SRC)
        evtchn_port_set_pending(d, chn.notify_vcpu_id, chn)
        return True


def _dom(dom: int) -> str:
    return "DOMID_SELF" if dom == DOMID_SELF else str(dom)


def _ports(ports: list[int]) -> str:
    return ", ".join(map(str, ports)) if ports else "none"

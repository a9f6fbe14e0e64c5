"""Domain life cycle as the toolstack drives it (xen/common/domain.c, domctl.c).

Pause/unpause, a guest's shutdown (SCHEDOP_shutdown: the domain stays, flagged, until
the toolstack destroys it), destruction (domain_kill: every event channel is closed,
so peers go back to UNBOUND), what ``XEN_DOMCTL_getdomaininfo`` reports, and the
global-VIRQ handler: VIRQ_DOM_EXC goes to the hardware domain unless the toolstack
named another (a xenstore stub domain) with ``XEN_DOMCTL_set_virq_handler``. Each of
these raises VIRQ_DOM_EXC the way Xen does, which is how xenstored learns it must run
its domain_cleanup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xenlab.abi import event_channel as ev
from xenlab.abi.domctl import (
    SHUTDOWN_MAX,
    SHUTDOWN_NAMES,
    DomainInfoFlags,
    XEN_DOMINF_dying,
    XEN_DOMINF_hvm_guest,
    XEN_DOMINF_paused,
    XEN_DOMINF_shutdown,
    XEN_DOMINF_shutdownshift,
)
from xenlab.abi.errno import EINVAL, ESRCH
from xenlab.xen.event_2l import SRC
from xenlab.xen.evtchn import EventChannels, virq_is_global
from xenlab.xen.grant_table import GrantTables

SRC_DOMAIN = "xen/common/domain.c"


@dataclass(frozen=True)
class DomainInfo(DomainInfoFlags):
    """struct xen_domctl_getdomaininfo, the part a toolstack or xenstored looks at."""

    nr_pages: int
    max_vcpu_id: int


class DomainControl(EventChannels, GrantTables):
    """Domain life-cycle operations; mixed into Hypervisor."""

    global_virq_handlers: dict[int, int]

    def domain_pause(self, domid: int) -> None:
        """domain_pause_by_systemcontroller (xen/common/domain.c): needed for a foreign evtchn reset."""
        self.domains[domid].controller_pause_count += 1

    def domain_unpause(self, domid: int) -> None:
        """domain_unpause_by_systemcontroller (xen/common/domain.c)."""
        d = self.domains[domid]
        d.controller_pause_count = max(0, d.controller_pause_count - 1)

    def hardware_domain(self) -> int | None:
        """hardware_domain: the initial domain (the lowest domid flagged initdomain), if any."""
        return min((x for x, d in self.domains.items() if d.initdomain), default=None)

    def set_global_virq_handler(self, domid: int, virq: int) -> int:
        """set_global_virq_handler (event_channel.c): *domid* receives global *virq*; 0 or -errno."""
        if domid not in self.domains:
            return -ESRCH
        if not 0 <= virq < ev.NR_VIRQS or not virq_is_global(virq):
            return -EINVAL
        old = self.global_virq_handlers.get(virq)
        self.global_virq_handlers[virq] = domid
        self._rec("set_global_virq_handler", f"VIRQ {virq} now goes to d{domid}",
                  [("xen/global_virq_handlers", virq, old, domid)], source=SRC)
        return 0

    def send_global_virq(self, virq: int) -> bool:
        """send_global_virq (event_channel.c): raise *virq* in its handler (default: the hardware domain)."""
        domid = self.global_virq_handlers.get(virq)
        if domid not in self.domains:
            domid = self.hardware_domain()
        if domid is None:
            return False
        return self.send_guest_virq(domid, virq)

    def domain_shutdown(self, domid: int, reason: int) -> int:
        """domain_shutdown (xen/common/domain.c): flag the domain shut down with *reason*, VIRQ_DOM_EXC."""
        d = self.domains.get(domid)
        if d is None:
            return -ESRCH
        if not 0 <= reason <= SHUTDOWN_MAX:
            return -EINVAL
        if d.is_shut_down:
            return 0  # the first reason sticks
        d.is_shut_down, d.shutdown_code = True, reason
        self._rec("domain_shutdown", f"d{domid} shut down ({SHUTDOWN_NAMES[reason]})",
                  [(f"xen/d{domid}/state", "shutdown", None, SHUTDOWN_NAMES[reason])], source=SRC_DOMAIN)
        self.send_global_virq(ev.VIRQ_DOM_EXC)
        return 0

    def domain_destroy(self, domid: int) -> None:
        """domain_kill + evtchn_destroy (domain.c): close every port, drop the domain, raise VIRQ_DOM_EXC."""
        d = self.domains[domid]
        d.is_dying = True
        for handle in sorted(d.maptrack):  # gnttab_release_mappings
            self.gnttab_unmap_grant_ref(domid, handle)
        rows: list[Any] = []
        for port in range(1, d.valid_evtchns):
            self._close(d, port, rows)
        if d.evtchn_fifo is not None:  # evtchn_destroy ends with evtchn_fifo_destroy
            self.evtchn_fifo_destroy(d, rows)
            rows.append((f"xen/d{domid}/evtchn_port_ops", "abi", "FIFO", None))
        del self.domains[domid]
        for virq, handler in list(self.global_virq_handlers.items()):
            if handler == domid:  # clear_global_virq_handlers
                del self.global_virq_handlers[virq]
                rows.append(("xen/global_virq_handlers", virq, domid, None))
        rows.append(("xen/domains", domid, d.name, None))
        self._rec("domain_kill", f"d{domid} '{d.name}' destroyed: its event channels closed", rows,
                  source=SRC_DOMAIN)
        self.send_global_virq(ev.VIRQ_DOM_EXC)

    def getdomaininfo(self, domid: int) -> DomainInfo | int:
        """XEN_DOMCTL_getdomaininfo (xen/common/domctl.c): flags and sizes of *domid*, or -ESRCH."""
        d = self.domains.get(domid)
        if d is None:
            return -ESRCH
        flags = (XEN_DOMINF_dying if d.is_dying else 0) | (XEN_DOMINF_hvm_guest if d.hvm else 0)
        if d.is_shut_down:
            flags |= XEN_DOMINF_shutdown | (d.shutdown_code or 0) << XEN_DOMINF_shutdownshift
        if d.controller_pause_count:
            flags |= XEN_DOMINF_paused
        return DomainInfo(domid, flags, len(d.p2m), d.max_vcpus - 1)

"""lsevtchn DOMID: a domain's event channels as the Xen tool prints them (tools/xcutils/lsevtchn.c).

The tool asks the hypervisor (EVTCHNOP_status) for port 0, 1, 2, ... until the call
fails (past the domain's last port), skips closed ports (port 0 is reserved and reads
as closed), and prints one line per port: ``%4d: VCPU %u: `` and what the port is.
Everything comes from ``hv.evtchn_status``, nothing from the guest kernel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.abi.event_channel import (
    EVTCHNSTAT_closed,
    EVTCHNSTAT_interdomain,
    EVTCHNSTAT_ipi,
    EVTCHNSTAT_pirq,
    EVTCHNSTAT_unbound,
    EVTCHNSTAT_virq,
)

if TYPE_CHECKING:
    from xenlab.abi.event_channel import evtchn_status
    from xenlab.xen.hypervisor import Hypervisor


def describe_status(status: evtchn_status) -> str:
    """The text lsevtchn prints after ``VCPU n: `` for one evtchn_status."""
    s = int(status.status)
    if s == EVTCHNSTAT_unbound:
        return f"Interdomain (Waiting connection) - Remote Domain {int(status.u.unbound.dom)}"
    if s == EVTCHNSTAT_interdomain:
        return (
            f"Interdomain (Connected) - Remote Domain {int(status.u.interdomain.dom)}, "
            f"Port {int(status.u.interdomain.port)}"
        )
    if s == EVTCHNSTAT_pirq:
        return f"Physical IRQ {int(status.u.pirq)}"
    if s == EVTCHNSTAT_virq:
        return f"Virtual IRQ {int(status.u.virq)}"
    if s == EVTCHNSTAT_ipi:
        return "IPI"
    return "Unknown"


def lsevtchn(hv: Hypervisor, domid: int, caller: int = 0) -> str:
    """lsevtchn: one line per open port of *domid*, from EVTCHNOP_status issued by *caller* (dom0)."""
    if domid not in hv.domains:
        raise ValueError(f"lsevtchn: no domain {domid} (domains: {', '.join(map(str, sorted(hv.domains)))})")
    lines = []
    port = 0
    while True:
        status = hv.evtchn_status(caller, domid, port)
        if isinstance(status, int):
            break
        if int(status.status) != EVTCHNSTAT_closed:
            lines.append(f"{port:4d}: VCPU {int(status.vcpu)}: {describe_status(status)}")
        port += 1
    return "".join(line + "\n" for line in lines)

"""Xen's debug keys as ``xl debug-keys`` shows them in ``xl dmesg`` (xen/common/keyhandler.c).

Only the 'e' key is modelled: ``dump_evtchn_info`` prints every domain's ports with
their pending/masked bits and the port ABI's own state (2-level: the selector bit;
FIFO: BUSY and the LINK of a LINKED word, "-" when not linked, "?" without an event
word), the state (the ECS_* number), notify vcpu and peer, in the format of
domain_dump_evtchn_info (xen/common/event_channel.c). Lines come without the
"(XEN) [timestamp]" prefix the console adds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.abi.event_channel import ECS
from xenlab.xen.event import evtchn_is_masked, evtchn_is_pending, evtchn_port_print_state

if TYPE_CHECKING:
    from xenlab.xen.domain import Domain
    from xenlab.xen.hypervisor import Hypervisor


def domain_dump_evtchn_info(d: Domain) -> list[str]:
    """domain_dump_evtchn_info (event_channel.c): one line per port in use (port 0 is never shown)."""
    lines = [f"Event channel information for domain {d.domid}:", "Polling vCPUs: {}", "    port [p/m/s]"]
    for chn in d.chns[1:]:
        if chn.state == ECS.ECS_FREE:
            continue
        p = chn.port
        text = (f"    {p:4d} [{int(evtchn_is_pending(d, chn))}/{int(evtchn_is_masked(d, chn))}/"
                f"{evtchn_port_print_state(d, chn)}]: s={int(chn.state)} n={chn.notify_vcpu_id} x=0")
        if chn.state == ECS.ECS_UNBOUND:
            text += f" d={chn.remote_dom}"
        elif chn.state == ECS.ECS_INTERDOMAIN:
            text += f" d={chn.remote_dom} p={chn.remote_port}"
        elif chn.state == ECS.ECS_PIRQ:
            text += f" p={chn.pirq} i={chn.pirq}"  # domain_pirq_to_irq: identity here (GSIs of dom0)
        elif chn.state == ECS.ECS_VIRQ:
            text += f" v={chn.virq}"
        lines.append(text)
    return lines


def dump_evtchn_info(hv: Hypervisor) -> str:
    """dump_evtchn_info (event_channel.c), the 'e' debug key: every domain's ports, lowest domid first."""
    lines = ["'e' pressed -> dumping event-channel info"]
    for domid in sorted(hv.domains):
        lines += domain_dump_evtchn_info(hv.domains[domid])
    return "\n".join(lines)

"""The port-ops seam between event_channel.c and the two port ABIs (xen/include/xen/event.h).

Theory of operation
-------------------
Xen keeps the hypercalls (bind, send, close, ...) ABI-blind: they reach a port's
PENDING/MASKED state only through ``d->evtchn_port_ops``, a table of hooks that
``evtchn_2l_init`` points at the 2-level ABI when the domain is created and
``evtchn_fifo_init_control`` switches to the FIFO ABI on the guest's first
EVTCHNOP_init_control (``evtchn_reset`` switches back). ``EvtchnPortOps`` is that
table; each ABI module builds one per hypervisor from its bound methods
(``evtchn_port_ops_2l``, ``evtchn_port_ops_fifo``), as Xen has one static const
struct per ABI. The functions below are the inline wrappers of event.h and
xen/common/event_channel.h: the only way event_channel.c (``evtchn.py``) and the
keyhandler touch a port's ABI state.

Lab adaptations: a hook that runs inside a bigger hypercall step (``init``,
``clear_pending``) appends its trace rows to that step's ``rows``; ``set_pending`` and
``unmask`` record their own step, as they did before the seam existed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xenlab.abi.errno import EACCES, ENOSYS
from xenlab.abi.event_channel import ECS

if TYPE_CHECKING:
    from xenlab.xen.domain import Channel, Domain

#: One trace row (table, key, before, after); the same shape as xenlab.xen.record.Row.
Rows = list[tuple[str, Any, Any, Any]]


@dataclass(frozen=True)
class EvtchnPortOps:
    """struct evtchn_port_ops (xen/include/xen/event.h): one port ABI's hooks; None = hook absent."""

    name: str  # the lab's label: "2-level" or "FIFO"
    set_pending: Callable[[Domain, int, Channel], None]
    clear_pending: Callable[[Domain, Channel, Rows], None]
    unmask: Callable[[Domain, Channel], None]
    is_pending: Callable[[Domain, Channel], bool]
    is_masked: Callable[[Domain, Channel], bool]
    print_state: Callable[[Domain, Channel], str]
    init: Callable[[Domain, Channel, Rows], None] | None = None
    is_busy: Callable[[Domain, Channel], bool] | None = None
    set_priority: Callable[[Domain, Channel, int], int] | None = None


def port_ops(d: Domain) -> EvtchnPortOps:
    """d->evtchn_port_ops (set by evtchn_2l_init at domain_create, so never absent on a live domain)."""
    ops = d.evtchn_port_ops
    if ops is None:
        raise RuntimeError(f"d{d.domid} has no evtchn_port_ops: it was not made by Hypervisor.domain_create")
    return ops


def evtchn_usable(chn: Channel) -> bool:
    """evtchn_usable (event.h): a port a guest uses (the lab has no Xen consumers): state > RESERVED."""
    return chn.state > ECS.ECS_RESERVED


def evtchn_port_init(d: Domain, chn: Channel, rows: Rows) -> None:
    """evtchn_port_init (event.h): the ABI's init hook for a port just bound (FIFO: default priority)."""
    init = port_ops(d).init
    if init is not None:
        init(d, chn, rows)


def evtchn_port_set_pending(d: Domain, vcpu_id: int, chn: Channel) -> None:
    """evtchn_port_set_pending (event.h): raise a usable port on *vcpu_id* through the domain's ABI."""
    if evtchn_usable(chn):
        port_ops(d).set_pending(d, vcpu_id, chn)


def evtchn_port_clear_pending(d: Domain, chn: Channel, rows: Rows) -> None:
    """evtchn_port_clear_pending (event.h): drop a usable port's pending state (evtchn_free does)."""
    if evtchn_usable(chn):
        port_ops(d).clear_pending(d, chn, rows)


def evtchn_is_pending(d: Domain, chn: Channel) -> bool:
    """evtchn_is_pending (event.h): usable and pending in the domain's ABI."""
    return evtchn_usable(chn) and port_ops(d).is_pending(d, chn)


def evtchn_is_masked(d: Domain, chn: Channel) -> bool:
    """evtchn_is_masked (event.h): not usable, or masked in the domain's ABI."""
    return not evtchn_usable(chn) or port_ops(d).is_masked(d, chn)


def evtchn_is_busy(d: Domain, chn: Channel) -> bool:
    """evtchn_is_busy (event_channel.h): still being cleaned up after close (FIFO: still LINKED)."""
    is_busy = port_ops(d).is_busy
    return is_busy is not None and is_busy(d, chn)


def evtchn_port_unmask(d: Domain, chn: Channel) -> None:
    """evtchn_port_unmask (event_channel.h): a usable port's unmask hook (re-raises if still pending)."""
    if evtchn_usable(chn):
        port_ops(d).unmask(d, chn)


def evtchn_port_set_priority(d: Domain, chn: Channel, priority: int) -> int:
    """evtchn_port_set_priority (event_channel.h): -ENOSYS without the hook (2-level), -EACCES if unusable."""
    set_priority = port_ops(d).set_priority
    if set_priority is None:
        return -ENOSYS
    if not evtchn_usable(chn):
        return -EACCES
    return set_priority(d, chn, priority)


def evtchn_port_print_state(d: Domain, chn: Channel) -> str:
    """evtchn_port_print_state (event_channel.h): the ABI's part of the 'e' debug key's [p/m/s] column."""
    return port_ops(d).print_state(d, chn)


def vcpu_kick(d: Domain, vcpu: int) -> None:
    """vcpu_kick (xen/arch/x86/domain.c): the upcall now, if the vcpu's upcall mask allows (HVM: always)."""
    vi = d.shared_info.vcpu_info[vcpu]
    if d.upcall is not None and (d.hvm or not vi.evtchn_upcall_mask):
        d.upcall(vcpu)


def vcpu_mark_events_pending(d: Domain, vcpu: int, rows: Rows) -> bool:
    """vcpu_mark_events_pending (xen/arch/x86/domain.c): set evtchn_upcall_pending; True if it went 0 -> 1.

    The caller kicks the vcpu (``vcpu_kick``) after recording its step when this returns True.
    """
    vi = d.shared_info.vcpu_info[vcpu]
    if vi.evtchn_upcall_pending:
        return False
    vi.evtchn_upcall_pending = 1
    rows.append((f"xen/d{d.domid}/vcpu{vcpu}", "evtchn_upcall_pending", None, 1))
    return True

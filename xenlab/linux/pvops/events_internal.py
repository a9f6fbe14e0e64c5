"""drivers/xen/events/events_internal.h, Linux 6.1: the port-ABI seam of the event-channel layer.

``struct evtchn_ops`` is what a port ABI (2-level: events_2l.c; FIFO: events_fifo.c)
fills in; ``xen_init_IRQ`` picks one and keeps it as ``evtchn_ops`` (here: the field of
the kernel's ``EventsState``). The header's static inline wrappers (``mask_evtchn``,
``unmask_evtchn``, ``clear_evtchn`` ...) call through it, so events_base.c never
names an ABI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xenlab.linux.kernel import ChangeRow
    from xenlab.linux.pvops.kernel import PvopsKernel

PortOp = Callable[["PvopsKernel", int], None]


@dataclass(frozen=True)
class evtchn_ops:
    """struct evtchn_ops: the operations of one event-channel port ABI."""

    name: str
    max_channels: Callable[[PvopsKernel], int]
    nr_channels: Callable[[PvopsKernel], int]
    remove: Callable[[PvopsKernel, int, int], None]
    bind_to_cpu: Callable[[PvopsKernel, int, int, int], None]
    clear_pending: Callable[[PvopsKernel, int, str], None]
    set_pending: PortOp
    is_pending: Callable[[PvopsKernel, int], bool]
    mask: Callable[[PvopsKernel, int, list[ChangeRow] | None], None]
    unmask: PortOp
    handle_events: Callable[[PvopsKernel, int], int]
    #: .setup (FIFO: grow the event array to cover the port); 2-level has none
    setup: Callable[[PvopsKernel, int], int] | None = None
    #: .percpu_init (FIFO: a control block for a cpu coming up); 2-level has none
    percpu_init: Callable[[PvopsKernel, int], int] | None = None


def _ops(kernel: PvopsKernel) -> evtchn_ops:
    assert kernel.irq is not None, f"{kernel.name}: no event-channel ABI before xen_init_IRQ"
    return kernel.irq.evtchn_ops


def xen_evtchn_max_channels(kernel: PvopsKernel) -> int:
    """xen_evtchn_max_channels: how many ports the chosen ABI can name."""
    return _ops(kernel).max_channels(kernel)


def xen_evtchn_port_setup(kernel: PvopsKernel, evtchn: int) -> int:
    """xen_evtchn_port_setup: let the ABI prepare a newly bound port (0 when it has no .setup)."""
    setup = _ops(kernel).setup
    return setup(kernel, evtchn) if setup is not None else 0


def xen_evtchn_port_remove(kernel: PvopsKernel, evtchn: int, cpu: int) -> None:
    """xen_evtchn_port_remove: the ABI forgets the port's cpu binding (it is being closed)."""
    _ops(kernel).remove(kernel, evtchn, cpu)


def xen_evtchn_port_bind_to_cpu(kernel: PvopsKernel, evtchn: int, cpu: int, old_cpu: int) -> None:
    """xen_evtchn_port_bind_to_cpu: deliver the port on *cpu* from now on."""
    _ops(kernel).bind_to_cpu(kernel, evtchn, cpu, old_cpu)


def clear_evtchn(kernel: PvopsKernel, port: int, why: str) -> None:
    """clear_evtchn: clear the port's pending bit (*why*: who clears it, for the trace)."""
    _ops(kernel).clear_pending(kernel, port, why)


def set_evtchn(kernel: PvopsKernel, port: int) -> None:
    """set_evtchn: set the port's pending bit."""
    _ops(kernel).set_pending(kernel, port)


def test_evtchn(kernel: PvopsKernel, port: int) -> bool:
    """test_evtchn: is the port pending?"""
    return _ops(kernel).is_pending(kernel, port)


def mask_evtchn(kernel: PvopsKernel, port: int, rows: list[ChangeRow] | None = None) -> None:
    """mask_evtchn: mask the port (its change row into *rows* if given, else a step of its own)."""
    _ops(kernel).mask(kernel, port, rows)


def unmask_evtchn(kernel: PvopsKernel, port: int) -> None:
    """unmask_evtchn: unmask the port (and re-raise an event that waited behind the mask)."""
    _ops(kernel).unmask(kernel, port)


def xen_evtchn_handle_events(kernel: PvopsKernel, cpu: int) -> int:
    """xen_evtchn_handle_events: let the ABI find and handle the pending ports of *cpu*; how many."""
    return _ops(kernel).handle_events(kernel, cpu)

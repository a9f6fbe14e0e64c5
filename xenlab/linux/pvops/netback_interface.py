"""drivers/net/xen-netback/interface.c, Linux 6.1: the queue interrupts of a vif.

With no work on a ring, the handler sends the late EOI at once (spurious), which unmasks
the port the lateeoi chip's ack masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from xenlab.linux.irq import IRQ_HANDLED
from xenlab.linux.pvops.events_base import XEN_EOI_FLAG_SPURIOUS, xen_irq_lateeoi

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel


@dataclass(eq=False)
class xenvif_queue:
    """struct xenvif_queue: the rings mapped and the ports bound for one queue."""

    id: int
    name: str
    tx_ring_ref: int = 0
    rx_ring_ref: int = 0
    tx_irq: int = 0
    rx_irq: int = 0


def xenvif_handle_tx_interrupt(queue: xenvif_queue) -> bool:
    """xenvif_handle_tx_interrupt: unconsumed tx requests? (napi_schedule) -- none here."""
    return False


def xenvif_tx_interrupt(kernel: PvopsKernel, irq: int, queue: xenvif_queue) -> int:
    """xenvif_tx_interrupt: no tx work -> xen_irq_lateeoi(irq, XEN_EOI_FLAG_SPURIOUS) at once."""
    if not xenvif_handle_tx_interrupt(queue):
        xen_irq_lateeoi(kernel, irq, XEN_EOI_FLAG_SPURIOUS)
    return IRQ_HANDLED


def xenvif_handle_rx_interrupt(queue: xenvif_queue) -> bool:
    """xenvif_handle_rx_interrupt: rx work for the guest? (kick its thread) -- none here."""
    return False


def xenvif_rx_interrupt(kernel: PvopsKernel, irq: int, queue: xenvif_queue) -> int:
    """xenvif_rx_interrupt: no rx work -> the spurious late EOI at once."""
    if not xenvif_handle_rx_interrupt(queue):
        xen_irq_lateeoi(kernel, irq, XEN_EOI_FLAG_SPURIOUS)
    return IRQ_HANDLED


def xenvif_interrupt(kernel: PvopsKernel, irq: int, queue: xenvif_queue) -> int:
    """xenvif_interrupt: one port for both rings: neither has work -> the spurious late EOI."""
    has_tx = xenvif_handle_tx_interrupt(queue)
    has_rx = xenvif_handle_rx_interrupt(queue)
    if not has_tx and not has_rx:
        xen_irq_lateeoi(kernel, irq, XEN_EOI_FLAG_SPURIOUS)
    return IRQ_HANDLED

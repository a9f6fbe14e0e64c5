"""What the split drivers share: binding their event channels to IRQs, per kernel flavour.

A 2.6.18 frontend binds with ``bind_listening_port_to_irqhandler`` (which allocates
the unbound port itself, drivers/xen/core/evtchn.c); a modern frontend first calls
``xenbus_alloc_evtchn`` and then ``bind_evtchn_to_irqhandler_lateeoi``
(drivers/xen/events/events_base.c). Backends bind the frontend's port with
``bind_interdomain_evtchn_to_irqhandler`` (modern: the _lateeoi variant). The IRQ
layer itself is xenlab.linux.evtchn (2.6.18) and xenlab.linux.events (modern).
"""

from __future__ import annotations

from typing import Any

from xenlab.linux.evtchn_tables import nr_vcpus
from xenlab.linux.xenbus.client import xenbus_alloc_evtchn, xenbus_dev_fatal

IRQ_HANDLED = 1
XEN_EOI_FLAG_SPURIOUS = 1  # include/xen/events.h: the event brought no work


def _layer(kernel: Any) -> Any:
    """The IRQ layer: evtchn (2.6.18) / events (modern)."""
    if kernel.flavour == "2.6.18":
        from xenlab.linux import evtchn
        return evtchn
    from xenlab.linux import events
    return events


def frontend_bind_irq(kernel: Any, dev: Any, name: str, handler: Any, dev_id: Any) -> tuple[int, int]:
    """Allocate a port for the other end and bind it to an IRQ called *name*: (irq, port) or (-errno, 0)."""
    if kernel.flavour == "2.6.18":
        evtchn = _layer(kernel)
        irq = evtchn.bind_listening_port_to_irqhandler(kernel, dev.otherend_id, handler, 0, name, dev_id)
        if irq < 0:
            xenbus_dev_fatal(kernel, dev, irq, "bind_listening_port_to_irqhandler")
            return irq, 0
        return irq, evtchn.irq_to_evtchn_port(kernel, irq)
    events = _layer(kernel)
    port = xenbus_alloc_evtchn(kernel, dev)
    if port < 0:
        return port, 0
    irq = events.bind_evtchn_to_irqhandler_lateeoi(kernel, port, handler, 0, name, dev_id)
    if irq < 0:
        xenbus_dev_fatal(kernel, dev, irq, "bind_evtchn_to_irqhandler failed")
        return irq, port
    return irq, port


def backend_bind_irq(kernel: Any, dev: Any, remote_port: int, name: str, handler: Any, dev_id: Any) -> int:
    """Bind the frontend's *remote_port* to a local port and an IRQ called *name*: the irq or -errno."""
    layer = _layer(kernel)
    if kernel.flavour == "2.6.18":
        return layer.bind_interdomain_evtchn_to_irqhandler(kernel, dev.otherend_id, remote_port, handler, 0,
                                                           name, dev_id)
    return layer.bind_interdomain_evtchn_to_irqhandler_lateeoi(kernel, dev.otherend_id, remote_port, handler,
                                                                0, name, dev_id)


def unbind_irq(kernel: Any, irq: int, dev_id: Any) -> None:
    """unbind_from_irqhandler: free the IRQ and close its port."""
    if irq <= 0:
        return
    _layer(kernel).unbind_from_irqhandler(kernel, irq, dev_id)


def irq_handler(kernel: Any, fn: Any) -> Any:
    """The (irq, dev_id) handler request_irq gets for a driver handler *fn*(kernel, irq, dev_id)."""
    return lambda irq, dev_id: fn(kernel, irq, dev_id)


def xen_irq_lateeoi(kernel: Any, irq: int, eoi_flags: int = 0) -> None:
    """xen_irq_lateeoi (events_base.c): a modern driver's late EOI unmasks its port; 2.6.18 has none."""
    eoi = getattr(_layer(kernel), "xen_irq_lateeoi", None)
    if kernel.flavour != "2.6.18" and eoi is not None:
        eoi(kernel, irq, eoi_flags)


def irq_port(kernel: Any, irq: int) -> int:
    """The local event-channel port behind *irq* (irq_to_evtchn_port / evtchn_from_irq)."""
    layer = _layer(kernel)
    if kernel.flavour == "2.6.18":
        return layer.irq_to_evtchn_port(kernel, irq)
    return layer.evtchn_from_irq(kernel, irq)


def nr_cpus(kernel: Any) -> int:
    """num_online_cpus(): the domain's vcpus (all of them are online once the kernel has booted)."""
    return nr_vcpus(kernel)

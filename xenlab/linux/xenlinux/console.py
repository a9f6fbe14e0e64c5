"""drivers/xen/console/console.c, XenLinux 2.6.18: the Xen virtual console's tty driver.

``xencons_init`` (module_init): a domU first sets up its console ring
(``xencons_ring_init``, drivers/xen/console/xencons_ring.c: the port from start_info
as IRQ "xencons"); then the tty driver is registered, and dom0, whose console is Xen's
own, binds VIRQ_CONSOLE as IRQ "console". The 2.6.18 console registers no xenbus
driver: dom0's backend/console/<F>/0 node stays a device with no driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xenlab.abi.event_channel import VIRQ_CONSOLE
from xenlab.linux.irq import IRQ_HANDLED
from xenlab.linux.xenlinux.evtchn import bind_virq_to_irqhandler
from xenlab.linux.xenlinux.xencons_ring import xencons_ring_init

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel


def xencons_priv_interrupt(irq: int, dev_id: Any) -> int:
    """xencons_priv_interrupt: dom0's console VIRQ: read Xen's console ring (nothing to read here)."""
    return IRQ_HANDLED


def xencons_init(kernel: XenLinuxKernel) -> int:
    """xencons_init: a domU's ring first (xencons_ring_init), then dom0's VIRQ_CONSOLE "console"."""
    if not kernel.hv.domains[kernel.domid].initdomain:
        return xencons_ring_init(kernel)
    return bind_virq_to_irqhandler(kernel, VIRQ_CONSOLE, 0, xencons_priv_interrupt, 0, "console", None)

"""drivers/xen/console/xencons_ring.c, XenLinux 2.6.18: a domU's console ring and its event channel.

``xencons_ring_init`` binds the console port the domain builder put in start_info
(``console.domU.evtchn``) with ``bind_caller_port_to_irqhandler`` as IRQ "xencons";
xenconsoled serves the other end from dom0's user space.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xenlab.abi.errno import ENODEV
from xenlab.linux.irq import IRQ_HANDLED
from xenlab.linux.kernel import KERN_ERR
from xenlab.linux.xenlinux.evtchn import bind_caller_port_to_irqhandler

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel

SRC = "drivers/xen/console/xencons_ring.c"


def handle_input(irq: int, dev_id: Any) -> int:
    """handle_input: take what xenconsoled put in the ring (nothing in the lab), then xencons_tx."""
    return IRQ_HANDLED


def xencons_ring_init(kernel: XenLinuxKernel) -> int:
    """xencons_ring_init: start_info's console port as IRQ "xencons"; the IRQ, or -errno."""
    d = kernel.hv.domains[kernel.domid]
    port = int(d.start_info.console.domU.evtchn)
    if d.initdomain or not port:
        kernel.record("xencons_ring_init", "no console event channel in start_info: no console IRQ", SRC)
        return -ENODEV
    irq = bind_caller_port_to_irqhandler(kernel, port, handle_input, 0, "xencons", None)
    if irq < 0:
        kernel.printk(KERN_ERR, f"XEN console request irq failed {irq}")
    return irq

"""drivers/tty/hvc/hvc_xen.c, Linux 6.1: the Xen console's IRQ and the "xenconsole" frontend driver.

The first PV console of a guest is not a xenbus device: ``xen_hvc_init`` takes its port
from start_info (dom0: VIRQ_CONSOLE; an HVM guest: HVM_PARAM_CONSOLE_EVTCHN/_PFN) and binds
it (a domU's with the lateeoi chip: its read path signals the late EOI); hvc_alloc then
requests the IRQ as "hvc_console". The driver "xenconsole" (ids "console") is for extra
consoles (device/console/<id>; console/0 is skipped by the frontend probe). The lab does the
parts at the times its boot records them: the binding with the late IRQs, the driver with the
built-in drivers, and request_irq (hvc_irq.c's ``notifier_add_irq``, from hvc_open) when kernel_init opens
/dev/console after the initcalls: that is when select_target_cpu picks its vcpu.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xenlab.abi.errno import ENODEV
from xenlab.abi.event_channel import VIRQ_CONSOLE
from xenlab.abi.hvm import HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN
from xenlab.linux import irq as irqcore
from xenlab.linux.irq import IRQ_HANDLED, IRQF_SHARED
from xenlab.linux.kernel import KERN_ERR
from xenlab.linux.pvops.events_base import bind_evtchn_to_irq_chip, bind_virq_to_irq, xen_irq_lateeoi
from xenlab.linux.pvops.hvm import hvm_get_parameter
from xenlab.linux.pvops.xenbus_probe import xenbus_device, xenbus_driver
from xenlab.linux.pvops.xenbus_probe_frontend import xenbus_register_frontend

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel

SRC = "drivers/tty/hvc/hvc_xen.c"


def _check(kernel: PvopsKernel, rc: int, what: str) -> int:
    if rc < 0:
        kernel.printk(KERN_ERR, f"{what} failed: {rc}")
    return rc


def xen_hvm_console_init(kernel: PvopsKernel) -> int:
    """xen_hvm_console_init: HVM_PARAM_CONSOLE_EVTCHN and _PFN (0: a toolstack that set up no PV
    console, -ENODEV), the ring memremapped at the pfn; the port, or -ENODEV."""
    r, evtchn = hvm_get_parameter(kernel, HVM_PARAM_CONSOLE_EVTCHN)
    if r < 0 or not evtchn:
        return -ENODEV
    r, gfn = hvm_get_parameter(kernel, HVM_PARAM_CONSOLE_PFN)
    if r < 0 or not gfn:
        return -ENODEV
    if gfn not in kernel.hv.domains[kernel.domid].p2m:
        return -ENODEV
    kernel.record("memremap", f"console ring: phys {gfn << 12:#x} (pfn {gfn:#x}), MEMREMAP_WB", SRC)
    return evtchn


def xen_hvc_init(kernel: PvopsKernel) -> int:
    """xen_hvc_init: bind the console port (dom0: VIRQ_CONSOLE; a PV domU: start_info's; an HVM domU:
    its HVM params') for hvc_alloc."""
    initial = kernel.xen_initial_domain()
    d = kernel.hv.domains[kernel.domid]
    if not initial and d.hvm:
        port = xen_hvm_console_init(kernel)
        if port < 0:
            kernel.record("hvc_console_init", "no PV console in the HVM params: no console IRQ", SRC)
            return 0
    else:
        port = int(d.start_info.console.domU.evtchn or 0)
    if not initial and not port:
        kernel.record("hvc_console_init", "no console event channel in start_info: no console IRQ", SRC)
        return 0
    if initial:
        irq = bind_virq_to_irq(kernel, VIRQ_CONSOLE, 0, False)  # xen_initial_domain_console_init
    else:
        irq = bind_evtchn_to_irq_chip(kernel, port, "xen-dyn-lateeoi")  # bind_evtchn_to_irq_lateeoi
    if irq < 0:
        return _check(kernel, irq, "xen_hvc_init")
    kernel.hvc_irq = irq
    return irq


def notifier_add_irq(kernel: PvopsKernel) -> int:
    """notifier_add_irq (drivers/tty/hvc/hvc_irq.c, from hvc_open): request_irq "hvc_console"."""
    if kernel.hvc_irq < 0:
        return 0
    initial = kernel.xen_initial_domain()

    def hvc_handle_interrupt(irq: int, dev_id: Any) -> int:
        if not initial:
            xen_irq_lateeoi(kernel, irq)  # domU_read_console signals the late EOI
        return IRQ_HANDLED

    rc = irqcore.request_irq(kernel, kernel.hvc_irq, hvc_handle_interrupt, IRQF_SHARED, "hvc_console", kernel)
    return rc if rc == 0 else _check(kernel, rc, "hvc_console request_irq")


def xencons_probe(kernel: PvopsKernel, dev: xenbus_device) -> int:
    """xencons_probe: an extra console device (none in the lab's scenarios; only recorded)."""
    kernel.record("xencons_probe", f"{dev.nodename}: xencons device (not connected by the lab)", SRC)
    return 0


def xencons_driver_register(kernel: PvopsKernel) -> int:
    """xen_hvc_init's tail: xenbus_register_frontend(&xencons_driver), "xenconsole" for ids "console"."""
    drv = xenbus_driver(name="xenconsole", ids=["console"], probe=xencons_probe)
    return xenbus_register_frontend(kernel, drv)

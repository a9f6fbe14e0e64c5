"""Not a mirror: the request_irq calls of dom0's platform drivers, in their initcall order.

The ACPI SCI (drivers/acpi/osl.c ``acpi_os_install_interrupt_handler``: GSI 9, "acpi",
shared), the i8042 controller (drivers/input/serio/i8042.c: AUX on 12, then KBD on 1,
"i8042", shared) and the CMOS RTC (drivers/rtc/rtc-cmos.c: 8, "rtc0"). Each IRQ is a
PIRQ that pci_xen_initial_domain registered; request_irq starts it, which binds its port.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xenlab.linux import irq as irqcore
from xenlab.linux.irq import IRQ_HANDLED, IRQF_SHARED
from xenlab.linux.kernel import KERN_ERR
from xenlab.linux.pvops.pci_xen import ACPI_SCI_GSI

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel

#: dom0's legacy devices and their GSIs: (gsi, request_irq name) in driver init order.
DOM0_LEGACY_DEVICES = ((12, "i8042"), (1, "i8042"), (8, "rtc0"))


def _handler(irq: int, dev_id: Any) -> int:
    return IRQ_HANDLED


def _request(kernel: PvopsKernel, irq: int, flags: int, name: str) -> int:
    rc = irqcore.request_irq(kernel, irq, _handler, flags, name, name)
    if rc < 0:
        kernel.printk(KERN_ERR, f"request_irq({irq}) failed: {rc}")
    return rc


def acpi_os_install_interrupt_handler(kernel: PvopsKernel) -> int:
    """acpi_os_install_interrupt_handler: the SCI handler "acpi" on GSI 9 (shared)."""
    return _request(kernel, ACPI_SCI_GSI, IRQF_SHARED, "acpi")


def dom0_legacy_devices(kernel: PvopsKernel) -> None:
    """i8042 (AUX on 12, then KBD on 1) and the RTC (8): request_irq binds each PIRQ's port."""
    for gsi, name in DOM0_LEGACY_DEVICES:
        _request(kernel, gsi, IRQF_SHARED if name == "i8042" else 0, name)

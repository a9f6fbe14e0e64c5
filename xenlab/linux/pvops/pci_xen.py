"""arch/x86/pci/xen.c, Linux 6.1: dom0's legacy GSIs become PIRQs (pci_xen_initial_domain)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.linux.pvops.events_base import NR_IRQS_LEGACY, xen_bind_pirq_gsi_to_irq

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel

ACPI_SCI_GSI = 9  # the ACPI SCI: level-triggered (the FADT's SCI interrupt on a PC)


def pci_xen_initial_domain(kernel: PvopsKernel) -> None:
    """pci_xen_initial_domain: legacy GSIs 0..15 (not 2, the cascade) become PIRQs, IRQ = GSI; SCI level."""
    assert kernel.irq is not None
    for gsi in range(min(NR_IRQS_LEGACY, kernel.irq.gsi_top)):
        if gsi == 2:
            continue  # the cascade: no ACPI override entry, not registered
        trigger = "ioapic-level" if gsi == ACPI_SCI_GSI else "ioapic-edge"
        xen_bind_pirq_gsi_to_irq(kernel, gsi, gsi, True, trigger)
    kernel.record("pci_xen_initial_domain", "legacy GSIs registered as PIRQs (IRQ = GSI); "
                  "their ports are bound when a driver's request_irq starts them", "arch/x86/pci/xen.c")

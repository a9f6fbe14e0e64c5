"""arch/x86/pci/xen.c, Linux 6.1: dom0's legacy GSIs become PIRQs (pci_xen_initial_domain)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.linux.pvops.events_base import NR_IRQS_LEGACY, xen_bind_pirq_gsi_to_irq

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel

ACPI_SCI_GSI = 9  # the ACPI SCI: level-triggered (the FADT's SCI interrupt on a PC)
ISA_TIMER_GSI = 2  # the MADT's interrupt source override: ISA IRQ 0 (the PIT) is wired to pin 2


def acpi_get_override_irq(gsi: int) -> int:
    """acpi_get_override_irq (arch/x86/kernel/apic/io_apic.c): 0 if an entry routes to pin *gsi*, else -1.

    The ISA IRQs 1, 3..15 sit on their own pins; IRQ 0 on ISA_TIMER_GSI; IRQ 2 is the
    cascade and has no entry. So every pin 1..15 has one, and pin 0 none.
    """
    wired = {ISA_TIMER_GSI if isa == 0 else isa for isa in range(NR_IRQS_LEGACY) if isa != 2}
    return 0 if gsi in wired else -1


def pci_xen_initial_domain(kernel: PvopsKernel) -> None:
    """pci_xen_initial_domain: legacy GSIs 1..15 become PIRQs, IRQ = GSI; SCI level.

    Only a GSI with an IO-APIC interrupt entry is registered (acpi_get_override_irq): the
    PC's MADT overrides ISA IRQ 0 (the timer) to GSI 2, so pin 2 has an entry and pin 0 has
    none.
    """
    assert kernel.irq is not None
    for gsi in range(min(NR_IRQS_LEGACY, kernel.irq.gsi_top)):
        if acpi_get_override_irq(gsi) == -1:
            continue  # pin 0: nothing is wired to it
        trigger = "ioapic-level" if gsi == ACPI_SCI_GSI else "ioapic-edge"
        xen_bind_pirq_gsi_to_irq(kernel, gsi, gsi, True, trigger)
    kernel.record("pci_xen_initial_domain", "legacy GSIs registered as PIRQs (IRQ = GSI); "
                  "their ports are bound when a driver's request_irq starts them", "arch/x86/pci/xen.c")

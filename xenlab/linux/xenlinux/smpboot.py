"""drivers/xen/core/smpboot.c, XenLinux 2.6.18: the vcpus' bring-up and their IPIs (and timers).

``smp_prepare_cpus`` binds cpu0's two IPIs (``xen_smp_intr_init``: "resched<cpu>"
(RESCHEDULE_VECTOR) then "callfunc<cpu>" (CALL_FUNCTION_VECTOR); cpu0's timer
``setup_cpu0_timer_irq`` bound before) and fills cpu_present_map with the other possible
vcpus -- under CONFIG_HOTPLUG_CPU only in dom0 (``is_initial_xendomain()``), so init's
smp_init brings up a domU's cpu0 alone. The core_initcall ``initialize_cpu_present_map``
then makes every possible cpu present, and a domU's secondary vcpus come up later, when
the xenstore "cpu" watcher of cpu_hotplug.c calls cpu_up for each (after xenbus).
``__cpu_up`` binds the vcpu's IPIs and its timer (``local_setup_timer``), marks it
online and starts it; the vcpu then turns its interrupts on (cpu_bringup).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xenlab.linux.irq import IRQ_HANDLED, SA_INTERRUPT
from xenlab.linux.kernel import KERN_ERR
from xenlab.linux.xenlinux.evtchn import CALL_FUNCTION_VECTOR, RESCHEDULE_VECTOR, bind_ipi_to_irqhandler
from xenlab.linux.xenlinux.time_xen import local_setup_timer

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel

SRC = "drivers/xen/core/smpboot.c"
NR_CPUS = 8  # CONFIG_NR_CPUS of the xen0/xenU defconfigs


def smp_reschedule_interrupt(irq: int, dev_id: Any) -> int:
    """smp_reschedule_interrupt (arch/x86_64/kernel/smp-xen.c): nothing to do but return."""
    return IRQ_HANDLED


def smp_call_function_interrupt(irq: int, dev_id: Any) -> int:
    """smp_call_function_interrupt (smp-xen.c): run the queued function (none in the lab)."""
    return IRQ_HANDLED


def cpu_possible_map(kernel: XenLinuxKernel) -> list[int]:
    """prefill_possible_map: the vcpus VCPUOP_is_up knows (the domain's vcpus, at most NR_CPUS)."""
    return list(range(min(kernel.hv.domains[kernel.domid].max_vcpus, NR_CPUS)))


def xen_smp_intr_init(kernel: XenLinuxKernel, cpu: int) -> int:
    """xen_smp_intr_init: "resched<cpu>", "callfunc<cpu>", and a secondary vcpu's timer; 0 or -errno."""
    for ipi, name, handler in ((RESCHEDULE_VECTOR, "resched", smp_reschedule_interrupt),
                               (CALL_FUNCTION_VECTOR, "callfunc", smp_call_function_interrupt)):
        rc = bind_ipi_to_irqhandler(kernel, ipi, cpu, handler, SA_INTERRUPT, f"{name}{cpu}", None)
        if rc < 0:
            kernel.printk(KERN_ERR, f"xen_smp_intr_init failed: {rc}")
            return rc
    if cpu != 0:
        return local_setup_timer(kernel, cpu)
    return 0


def cpu_bringup(kernel: XenLinuxKernel, cpu: int) -> None:
    """cpu_bringup: the new vcpu's first steps (cpu_init, identify_cpu), then local_irq_enable."""
    kernel.local_irq_enable(cpu)


def smp_prepare_cpus(kernel: XenLinuxKernel) -> None:
    """smp_prepare_cpus: cpu0's IPIs; each other possible vcpu into cpu_present_map (only in dom0
    under CONFIG_HOTPLUG_CPU)."""
    if xen_smp_intr_init(kernel, 0):
        kernel.panic(f"kernel BUG at {SRC}: smp_prepare_cpus: xen_smp_intr_init(0) failed")
    all_present = kernel.hv.domains[kernel.domid].initdomain or not kernel.kconfig().CONFIG_HOTPLUG_CPU
    present = [cpu for cpu in cpu_possible_map(kernel) if cpu == 0 or all_present]
    kernel.cpu_present_map = set(present)
    kernel.record("smp_prepare_cpus", f"cpu_present_map {present}"
                  + ("" if len(present) == len(cpu_possible_map(kernel)) else
                     " (CONFIG_HOTPLUG_CPU domU: the other vcpus come up through the xenstore cpu watch)"),
                  SRC, changes=[(kernel.table("cpu_present_map"), str(c), None, 1) for c in present])


def initialize_cpu_present_map(kernel: XenLinuxKernel) -> int:
    """initialize_cpu_present_map (core_initcall, CONFIG_HOTPLUG_CPU): cpu_present_map = cpu_possible_map."""
    if not kernel.kconfig().CONFIG_HOTPLUG_CPU:
        return 0
    new = [c for c in cpu_possible_map(kernel) if c not in kernel.cpu_present_map]
    kernel.cpu_present_map |= set(new)
    if new:
        kernel.record("initialize_cpu_present_map", f"cpus {new} present (core_initcall)", SRC,
                      changes=[(kernel.table("cpu_present_map"), str(c), None, 1) for c in new])
    return 0


def __cpu_up(kernel: XenLinuxKernel, cpu: int) -> int:
    """__cpu_up: bind the vcpu's IPIs and timer, mark it online, VCPUOP_up; it runs cpu_bringup."""
    rc = xen_smp_intr_init(kernel, cpu)
    if rc:
        return rc
    kernel.cpu_online_map.add(cpu)
    kernel.record("__cpu_up", f"cpu{cpu}: IPIs and timer VIRQ bound, online, VCPUOP_up", SRC,
                  changes=[(kernel.table("cpu_online_map"), str(cpu), None, 1)])
    cpu_bringup(kernel, cpu)
    return 0

"""The IRQs a booting Xen PV kernel binds, in the order it binds them.

The IRQ and port numbers a real machine shows are not constants: each is the lowest free
number at the moment of binding, so they follow from this order. The machine calls:

1. ``boot_early_irqs(kernel)`` -- before any initcall:
   ``xen_init_IRQ`` (tables, masks, upcall); ``time_init`` binds cpu0's timer VIRQ
   ("timer0"); ``smp_prepare_cpus`` binds cpu0's IPIs; ``smp_init`` brings up each
   secondary vcpu, whose IRQs are bound as it comes up (``xen_setup_cpu_irqs``).
   Modern (arch/x86/xen/time.c, smp.c, smp_pv.c, enlighten_pv.c, spinlock.c): cpu0:
   timer0, [spinlock0 when PV spinlocks are on, i.e. more than one vcpu],
   resched0, callfunc0, [debug0 only with 2-level events], callfuncsingle0, irqwork0;
   cpu N: timerN, reschedN, callfuncN, [debugN], callfuncsingleN, irqworkN (CPUHP
   prepare), then spinlockN (CPUHP online). 2.6.18 (arch/*/kernel/time-xen.c,
   drivers/xen/core/smpboot.c): timer0, resched0, callfunc0; cpu N: reschedN,
   callfuncN, timerN.
2. ``xenbus_init`` / ``xenbus_probe_init`` (postcore_initcall; not here: the xenbus
   modules). A PV dom0 allocates its store port with alloc_unbound (the next free port),
   a domU binds the port the toolstack allocated before it booted; either way the
   "xenbus" IRQ is the next free IRQ after step 1.
3. ``boot_late_irqs(kernel)`` -- later initcalls, in link/initcall order. dom0
   (``dom0_late_irqs``): the legacy GSIs become PIRQ IRQs with their GSI numbers
   (pci_xen_initial_domain), VIRQ_PCPU_STATE "xen-pcpu" (arch_initcall), the ACPI SCI
   PIRQ 9 "acpi" (subsys_initcall; a PIRQ's port is bound when request_irq starts it),
   VIRQ_MCA "mce"; then every kernel: ``hvc_console_init`` (dom0: VIRQ_CONSOLE; domU:
   the console port from start_info, lateeoi); then dom0's i8042 (PIRQ 12, then 1) and
   "rtc0" (PIRQ 8).
"""

from __future__ import annotations

from typing import Any

from xenlab.abi.event_channel import VIRQ_CONSOLE, VIRQ_DEBUG, VIRQ_MCA, VIRQ_PCPU_STATE, VIRQ_TIMER
from xenlab.linux import events as ev
from xenlab.linux import evtchn as l18
from xenlab.linux import irq as irqcore
from xenlab.linux.irq import (
    IRQ_HANDLED,
    IRQF_EARLY_RESUME,
    IRQF_FORCE_RESUME,
    IRQF_NOBALANCING,
    IRQF_PERCPU,
    IRQF_SHARED,
    IRQF_TIMER,
    SA_INTERRUPT,
)
from xenlab.linux.kernel import KERN_ERR

SRC_SMP = "arch/x86/xen/smp.c"
SRC_HVC = "drivers/tty/hvc/hvc_xen.c"

#: dom0's legacy devices and their GSIs: (gsi, trigger, request_irq name) in driver init order.
DOM0_ACPI_SCI = 9
DOM0_LEGACY_DEVICES = ((12, "edge", "i8042"), (1, "edge", "i8042"), (8, "edge", "rtc0"))


def _counter(kernel: Any, name: str) -> Any:
    def handler(irq: int, dev_id: Any) -> int:
        stats = kernel.irq.core.irq_stat.setdefault(name, [0] * kernel.irq.nr_cpus)
        stats[kernel.irq.this_cpu] += 1
        return IRQ_HANDLED

    return handler


def _plain(irq: int, dev_id: Any) -> int:
    return IRQ_HANDLED


def _is_dom0(kernel: Any) -> bool:
    d = kernel.hv.domains[kernel.domid]
    return bool(getattr(d, "initdomain", kernel.domid == 0))


def _check(kernel: Any, rc: int, what: str) -> int:
    if rc < 0:
        kernel.printk(KERN_ERR, f"{what} failed: {rc}")
    return rc


def xen_init_IRQ(kernel: Any, **kw: Any) -> Any:
    """init_IRQ -> xen_init_IRQ of the kernel's flavour (2.6.18 variant via ``variant=``)."""
    if kernel.flavour == "2.6.18":
        kw.setdefault("variant", getattr(kernel, "irq_variant", "L18"))  # set by a machine, if at all
        return l18.xen_init_IRQ(kernel, **kw)
    return ev.xen_init_IRQ(kernel, **kw)


def xen_setup_timer(kernel: Any, cpu: int) -> int:
    """xen_setup_timer / setup_cpu0_timer_irq / local_setup_timer: VIRQ_TIMER on *cpu* as "timer<cpu>"."""
    h = _plain
    if kernel.flavour == "2.6.18":
        return _check(
            kernel,
            l18.bind_virq_to_irqhandler(kernel, VIRQ_TIMER, cpu, h, SA_INTERRUPT, f"timer{cpu}", None),
            "timer",
        )
    flags = IRQF_PERCPU | IRQF_NOBALANCING | IRQF_TIMER | IRQF_FORCE_RESUME | IRQF_EARLY_RESUME
    return _check(
        kernel,
        ev.bind_virq_to_irqhandler(kernel, VIRQ_TIMER, cpu, h, flags, f"timer{cpu}", None),
        "xen_setup_timer",
    )


def xen_smp_intr_init(kernel: Any, cpu: int) -> int:
    """xen_smp_intr_init: the per-cpu IPIs (and the debug VIRQ with 2-level events)."""
    if kernel.flavour == "2.6.18":
        for ipi, name, stat in (
            (l18.RESCHEDULE_VECTOR, "resched", "RES"),
            (l18.CALL_FUNCTION_VECTOR, "callfunc", "CAL"),
        ):
            rc = l18.bind_ipi_to_irqhandler(
                kernel, ipi, cpu, _counter(kernel, stat), SA_INTERRUPT, f"{name}{cpu}", None
            )
            if rc < 0:
                return _check(kernel, rc, "xen_smp_intr_init")
        return 0
    flags = IRQF_PERCPU | IRQF_NOBALANCING
    steps: list[tuple[str, int, str]] = [
        ("resched", ev.XEN_RESCHEDULE_VECTOR, "RES"),
        ("callfunc", ev.XEN_CALL_FUNCTION_VECTOR, "CAL"),
    ]
    if not kernel.irq.fifo_events:
        steps.append(("debug", -1, ""))
    steps.append(("callfuncsingle", ev.XEN_CALL_FUNCTION_SINGLE_VECTOR, "CAL"))
    for name, ipi, stat in steps:
        if ipi < 0:
            rc = ev.bind_virq_to_irqhandler(kernel, VIRQ_DEBUG, cpu, _plain, flags, f"{name}{cpu}", None)
        else:
            rc = ev.bind_ipi_to_irqhandler(
                kernel, ipi, cpu, _counter(kernel, stat), flags, f"{name}{cpu}", None
            )
        if rc < 0:
            return _check(kernel, rc, "xen_smp_intr_init")
    return 0


def xen_smp_intr_init_pv(kernel: Any, cpu: int) -> int:
    """xen_smp_intr_init_pv (smp_pv.c): the irq_work IPI "irqwork<cpu>"."""
    rc = ev.bind_ipi_to_irqhandler(
        kernel,
        ev.XEN_IRQ_WORK_VECTOR,
        cpu,
        _counter(kernel, "IWI"),
        IRQF_PERCPU | IRQF_NOBALANCING,
        f"irqwork{cpu}",
        None,
    )
    return _check(kernel, rc, "xen_smp_intr_init_pv") if rc < 0 else 0


def xen_init_lock_cpu(kernel: Any, cpu: int) -> int:
    """xen_init_lock_cpu (spinlock.c): the "spinlock<cpu>" kicker IPI, if PV spinlocks are on (>1 vcpu)."""
    if kernel.irq.nr_cpus == 1:
        return 0  # xen_init_spinlocks: "PV spinlocks disabled" with one possible cpu
    rc = ev.bind_ipi_to_irqhandler(
        kernel, ev.XEN_SPIN_UNLOCK_VECTOR, cpu, _plain, IRQF_PERCPU | IRQF_NOBALANCING, f"spinlock{cpu}", None
    )
    if rc >= 0:
        kernel.irq.core.descs[rc].disabled = True  # disable_irq: "make sure it's never delivered"
    return rc if rc < 0 else 0


def mcheck_cpu_init(kernel: Any, cpu: int) -> None:
    """mcheck_cpu_init: the first machine_check_poll of a cpu, counted in MCP (arch/x86/kernel/cpu/mce)."""
    stats = kernel.irq.core.irq_stat.setdefault("MCP", [0] * kernel.irq.nr_cpus)
    stats[cpu] += 1


def xen_irq_enable(kernel: Any, cpu: int) -> None:
    """local_irq_enable on a Xen PV vcpu (xen_irq_enable): clear evtchn_upcall_mask; deliver what waits."""
    vcpu = kernel.hv.domains[kernel.domid].shared_info.vcpu_info[cpu]
    if vcpu.evtchn_upcall_mask:
        vcpu.evtchn_upcall_mask = 0
        kernel.record("xen_irq_enable", f"vcpu {cpu}: evtchn_upcall_mask cleared (interrupts on)",
                      "arch/x86/xen/irq.c")
        if vcpu.evtchn_upcall_pending:  # xen_force_evtchn_callback
            upcall = ev.xen_evtchn_do_upcall if kernel.flavour == "modern" else l18.evtchn_do_upcall
            upcall(kernel, cpu)


def xen_setup_cpu_irqs(kernel: Any, cpu: int) -> int:
    """Everything one vcpu binds, in its kernel's order (see the module docstring)."""
    kernel.record("xen_setup_cpu_irqs", f"cpu{cpu}: timer VIRQ and IPIs", SRC_SMP)
    mcheck_cpu_init(kernel, cpu)
    if kernel.flavour == "2.6.18":
        if cpu == 0:
            rc = xen_setup_timer(kernel, 0)
            return rc if rc < 0 else xen_smp_intr_init(kernel, 0)
        rc = xen_smp_intr_init(kernel, cpu)
        return rc if rc < 0 else min(0, xen_setup_timer(kernel, cpu))
    if cpu == 0:
        for fn in (xen_setup_timer, xen_init_lock_cpu, xen_smp_intr_init, xen_smp_intr_init_pv):
            rc = fn(kernel, 0)
            if rc < 0:
                return rc
        return 0
    for fn in (xen_setup_timer, xen_smp_intr_init, xen_smp_intr_init_pv, xen_init_lock_cpu):
        rc = fn(kernel, cpu)
        if rc < 0:
            return rc
    return 0


def boot_early_irqs(kernel: Any, **kw: Any) -> None:
    """Before the initcalls: xen_init_IRQ, then each vcpu's IRQs (cpu0 first), interrupts enabled on it."""
    xen_init_IRQ(kernel, **kw)
    for cpu in range(kernel.irq.nr_cpus):
        xen_setup_cpu_irqs(kernel, cpu)
        xen_irq_enable(kernel, cpu)


def pci_xen_initial_domain(kernel: Any) -> None:
    """pci_xen_initial_domain (arch/x86/pci/xen.c): legacy GSIs 0..15 become PIRQs, IRQ = GSI; SCI level."""
    if kernel.flavour == "2.6.18":
        return  # 2.6.18: PIRQs are IRQs 0..255 from xen_init_IRQ on
    for gsi in range(min(ev.NR_IRQS_LEGACY, kernel.irq.gsi_top)):
        if gsi == 2:
            continue  # the cascade: no ACPI override entry, not registered
        trigger = "ioapic-level" if gsi == DOM0_ACPI_SCI else "ioapic-edge"
        ev.xen_bind_pirq_gsi_to_irq(kernel, gsi, gsi, True, trigger)
    kernel.record(
        "pci_xen_initial_domain",
        "legacy GSIs registered as PIRQs (IRQ = GSI); "
        "their ports are bound when a driver's request_irq starts them",
        "arch/x86/pci/xen.c",
    )


def _request(kernel: Any, irq: int, flags: int, name: str) -> int:
    return _check(kernel, irqcore.request_irq(kernel, irq, _plain, flags, name, name), f"request_irq({irq})")


def dom0_late_irqs(kernel: Any) -> None:
    """dom0's initcalls after xenbus, up to the console: GSIs, xen-pcpu, ACPI SCI, mce (see docstring)."""
    pci_xen_initial_domain(kernel)
    if kernel.flavour == "modern":
        _check(
            kernel,
            ev.bind_virq_to_irqhandler(kernel, VIRQ_PCPU_STATE, 0, _plain, 0, "xen-pcpu", None),
            "xen_pcpu_init",
        )
    _request(kernel, DOM0_ACPI_SCI, IRQF_SHARED, "acpi")
    if kernel.flavour == "modern":
        _check(
            kernel,
            ev.bind_virq_to_irqhandler(kernel, VIRQ_MCA, 0, _plain, 0, "mce", None),
            "bind_virq_for_mce",
        )


def dom0_legacy_devices(kernel: Any) -> None:
    """i8042 (AUX PIRQ 12, then KBD PIRQ 1) and the RTC (PIRQ 8): request_irq binds each PIRQ's port."""
    for gsi, _trigger, name in DOM0_LEGACY_DEVICES:
        if kernel.flavour == "2.6.18" and name == "rtc0":
            name = "rtc"
        _request(kernel, gsi, IRQF_SHARED if name == "i8042" else 0, name)


def hvc_console_init(kernel: Any) -> int:
    """xen_hvc_init + request_irq "hvc_console" (2.6.18 xencons_init: dom0 VIRQ "console", domU "xencons")."""
    start_info = kernel.hv.domains[kernel.domid].start_info
    port = int(getattr(getattr(getattr(start_info, "console", None), "domU", None), "evtchn", 0) or 0)
    if not _is_dom0(kernel) and not port:
        kernel.record("hvc_console_init", "no console event channel in start_info: no console IRQ", SRC_HVC)
        return 0
    if kernel.flavour == "2.6.18":
        if _is_dom0(kernel):
            return l18.bind_virq_to_irqhandler(kernel, VIRQ_CONSOLE, 0, _plain, 0, "console", None)
        return l18.bind_caller_port_to_irqhandler(kernel, port, _plain, 0, "xencons", None)

    def handler(irq: int, dev_id: Any) -> int:
        if not _is_dom0(kernel):
            ev.xen_irq_lateeoi(kernel, irq)  # domU_read_console signals the late EOI
        return IRQ_HANDLED

    if _is_dom0(kernel):
        irq = ev.bind_virq_to_irq(kernel, VIRQ_CONSOLE, 0, False)
    else:
        irq = ev.bind_evtchn_to_irq_chip(kernel, port, "xen-dyn-lateeoi", False)
    if irq < 0:
        return _check(kernel, irq, "xen_hvc_init")
    rc = irqcore.request_irq(kernel, irq, handler, IRQF_SHARED, "hvc_console", kernel)
    return irq if rc == 0 else _check(kernel, rc, "hvc_console request_irq")


def boot_late_irqs(kernel: Any) -> None:
    """The IRQs bound after xenbus: dom0's devices and VIRQs, then the console, then dom0's legacy PIRQs."""
    if _is_dom0(kernel):
        dom0_late_irqs(kernel)
    hvc_console_init(kernel)
    if _is_dom0(kernel):
        dom0_legacy_devices(kernel)

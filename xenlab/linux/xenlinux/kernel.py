"""XenLinux 2.6.18 as one object: its subsystems as typed fields, its boot order, its /init.

The boot order is the initcall order of the linux-2.6.18-xen tree (``boot_stages``); each
stage calls the mirrored functions of this package. The few calls that go "up" between
two files of the package (drivers/xen/core/evtchn.c calls evtchn_device_upcall in
drivers/xen/evtchn/evtchn.c; xenbus_probe.c calls the xenbus_backend_* functions of
xenbus_probe_backend.c) are resolved here, as the linker resolves them in C: the
lower file calls a method of the kernel, which calls the other file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from xenlab.base.sched import WaitQueue
from xenlab.linux.irq import IRQ_HANDLED, IRQF_SHARED, request_irq
from xenlab.linux.kernel import KERN_ERR, BootStage, Kernel
from xenlab.linux.xenlinux import (
    balloon,
    blkback_xenbus,
    blkfront,
    console,
    cpu_hotplug,
    evtchn,
    evtchn_dev,
    irq_xen,
    netback_xenbus,
    netfront,
    reboot,
    smpboot,
    time_xen,
    xenbus_dev,
    xenbus_probe,
    xenbus_probe_backend,
)
from xenlab.linux.xenlinux.evtchn import EvtchnState
from xenlab.linux.xenlinux.evtchn_dev import EvtchnDev, per_user_data
from xenlab.linux.xenlinux.gnttab import GrantTable
from xenlab.linux.xenlinux.xenbus_comms import XenbusGlobals
from xenlab.linux.xenlinux.xenbus_probe import XenbusProbe, xen_bus_type, xenbus_driver
from xenlab.linux.xenlinux.xenbus_xs import XsState

if TYPE_CHECKING:
    from xenlab.xen.memory import Page

#: dom0's legacy devices and their PIRQs, in driver init order: (irq, request_irq name, shared)
ACPI_SCI = (9, "acpi", True)  # drivers/acpi/osl.c acpi_os_install_interrupt_handler
DOM0_LEGACY_DEVICES = ((12, "i8042", True), (1, "i8042", True), (8, "rtc", False))  # i8042.c, char/rtc.c


def _legacy_handler(irq: int, dev_id: object) -> int:
    """The handler of a legacy device's IRQ (nothing fires in the lab)."""
    return IRQ_HANDLED



@dataclass
class XenLinuxKernel(Kernel):
    """A XenLinux 2.6.18 kernel (x86_64, the xen0/xenU configs of the 2.6.18 tree)."""

    flavour: ClassVar[str] = "2.6.18"
    release: ClassVar[str] = "2.6.18-xen"
    #: the kernel faults this kernel checks (sim/faults.py offers them to a learner)
    FAULTS: ClassVar[tuple[tuple[str, str], ...]] = xenbus_probe.FAULTS

    #: which 2.6.18 build the IRQ layer is (evtchn.VARIANTS: "L18", "RH5-274", "RH5-8.el5")
    irq_variant: str = "L18"
    #: drivers/xen/core/evtchn.c (xen_init_IRQ)
    evtchn: EvtchnState | None = None
    #: drivers/xen/evtchn/evtchn.c: port_user[] and the open files of /dev/xen/evtchn
    evtchn_dev: EvtchnDev | None = None
    #: drivers/xen/core/gnttab.c
    gnttab: GrantTable = field(default_factory=GrantTable)
    #: the file-scope variables of xenbus_probe.c and xenbus_comms.c (store page, port, IRQ...)
    xb: XenbusGlobals = field(init=False)
    #: xenbus_xs.c's xs_state and watch lists
    xs_state: XsState = field(init=False)
    #: xenbus_probe.c's notifier chain and wait flag
    xenbus: XenbusProbe = field(default_factory=XenbusProbe)
    #: the static xen_bus_types of xenbus_probe.c and xenbus_probe_backend.c
    xenbus_frontend: xen_bus_type = field(init=False)
    xenbus_backend: xen_bus_type = field(init=False)
    #: the xenbus drivers the modules registered
    blkfront_driver: xenbus_driver | None = None
    netfront_driver: xenbus_driver | None = None
    blkback_driver: xenbus_driver | None = None
    netback_driver: xenbus_driver | None = None
    #: net devices netfront created (eth0, eth1...)
    netdevs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.xb = XenbusGlobals(xb_waitq=WaitQueue(f"{self.name}:xb_waitq"))
        self.xs_state = XsState.new(self)
        self.xenbus_frontend = xenbus_probe.xenbus_frontend_type(self)
        self.xenbus_backend = xenbus_probe_backend.xenbus_backend_type(self)

    def irq_ranges(self) -> dict[str, tuple[int, int]]:
        """PIRQ and DYNIRQ windows of include/asm-x86_64/mach-xen/irq_vectors.h ({} before xen_init_IRQ)."""
        if self.evtchn is None:
            return {}
        sp = self.evtchn.space
        return {"PIRQ": (sp.PIRQ_BASE, sp.NR_PIRQS), "DYNIRQ": (sp.DYNIRQ_BASE, sp.NR_DYNIRQS)}

    def irq_flags_mismatch(self, irq: int, irqflags: int, devname: str, old_flags: int,
                           old_name: str) -> str:
        """setup_irq's message (kernel/irq/manage.c, 2.6.18)."""
        return f"IRQ handler type mismatch for IRQ {irq}"

    # -- calls between the package's files (see the module docstring) ------------------------
    def evtchn_device_upcall(self, port: int) -> None:
        """core/evtchn.c -> evtchn/evtchn.c: a pending port with no IRQ."""
        evtchn_dev.evtchn_device_upcall(self, port)

    def xenbus_backend_bus_register(self) -> None:
        """xenbus_probe.c -> xenbus_probe_backend.c."""
        xenbus_probe_backend.xenbus_backend_bus_register(self)

    def xenbus_backend_device_register(self) -> None:
        """xenbus_probe.c -> xenbus_probe_backend.c."""
        xenbus_probe_backend.xenbus_backend_device_register(self)

    def xenbus_backend_probe_and_watch(self) -> None:
        """xenbus_probe.c -> xenbus_probe_backend.c."""
        xenbus_probe_backend.xenbus_backend_probe_and_watch(self)

    # -- boot --------------------------------------------------------------------------------------
    def xen_irq_enable(self, cpu: int) -> None:
        """local_irq_enable on vcpu *cpu* (__sti, mach-xen/asm/system.h): clear evtchn_upcall_mask and
        take the events that wait (force_evtchn_callback)."""
        vcpu = self.hv.domains[self.domid].shared_info.vcpu_info[cpu]
        if vcpu.evtchn_upcall_mask:
            vcpu.evtchn_upcall_mask = 0
            self.record("xen_irq_enable", f"vcpu {cpu}: evtchn_upcall_mask cleared (interrupts on)",
                        "include/asm-x86_64/mach-xen/asm/system.h")
            if vcpu.evtchn_upcall_pending:
                evtchn.evtchn_do_upcall(self, cpu)

    def boot_early_irqs(self) -> None:
        """init_IRQ (xen_init_IRQ), then cpu0's timer (late_time_init) and IPIs (smp_prepare_cpus),
        then each secondary vcpu's (__cpu_up); each vcpu then turns interrupts on."""
        st = evtchn.xen_init_IRQ(self, variant=self.irq_variant)
        for cpu in range(st.nr_cpus):
            self.record("xen_setup_cpu_irqs", f"cpu{cpu}: timer VIRQ and IPIs", "drivers/xen/core/smpboot.c")
            if cpu == 0 and time_xen.setup_cpu0_timer_irq(self) >= 0:
                smpboot.xen_smp_intr_init(self, 0)
            elif cpu:
                smpboot.xen_smp_intr_init(self, cpu)
            self.xen_irq_enable(cpu)
        self.proc_create("interrupts", 0o444, self.show_interrupts)

    def _request_legacy_irq(self, irq: int, name: str, shared: bool) -> int:
        """A legacy driver's request_irq on its PIRQ (the Phys-irq chip binds the port)."""
        rc = request_irq(self, irq, _legacy_handler, IRQF_SHARED if shared else 0, name, name)
        if rc < 0:
            self.printk(KERN_ERR, f"request_irq({irq}) failed: {rc}")
        return rc

    def boot_late_irqs(self, *, initdomain: bool) -> None:
        """The IRQs bound after xenbus: dom0's ACPI SCI, the console, then dom0's i8042 and rtc."""
        if initdomain:
            self._request_legacy_irq(*ACPI_SCI)
        console.xencons_init(self)
        if initdomain:
            for irq, name, shared in DOM0_LEGACY_DEVICES:
                self._request_legacy_irq(irq, name, shared)

    def boot_stages(self, *, initdomain: bool) -> list[BootStage]:
        """early IRQs, xenbus_probe_init (postcore), late IRQs, the built-in drivers' initcalls."""
        def drivers() -> None:
            balloon.balloon_init(self)
            reboot.setup_shutdown_event(self)
            cpu_hotplug.setup_vcpu_hotplug_event(self)
            if not initdomain:
                xenbus_probe.boot_wait_for_devices(self)

        return [("early IRQs", self.boot_early_irqs),
                ("xenbus init", lambda: xenbus_probe.xenbus_probe_init(self)),
                ("late IRQs", lambda: self.boot_late_irqs(initdomain=initdomain)),
                ("drivers", drivers)]

    def init_process(self, *, initdomain: bool) -> None:
        """dom0: modprobe blkbk, netbk (no xenfs in 2.6.18); a domU: insmod xenblk, xennet."""
        if initdomain:
            blkback_xenbus.blkif_xenbus_init(self)  # blkif_init -> blkif_xenbus_init
            netback_xenbus.netif_xenbus_init(self)  # netback_init -> netif_xenbus_init
        else:
            blkfront.xlblk_init(self)
            netfront.netif_init(self)

    # -- what the machine asks of a kernel ------------------------------------------------------
    def xenbus_dev_request(self, mtype: int, tx_id: int, payload: bytes) -> tuple[int, bytes]:
        """/proc/xen/xenbus (xenbus_dev.c): one request through the store ring."""
        return xenbus_dev.xenbus_dev_write(self, mtype, tx_id, payload)


    def xen_store_page(self) -> Page | None:
        """The page behind xen_store_interface (drivers/xen/xenbus/xenbus_probe.c, 2.6.18)."""
        return self.xb.xen_store_page

    def evtchn_open(self, comm: str) -> per_user_data:
        """open("/dev/xen/evtchn") (drivers/xen/evtchn/evtchn.c)."""
        return evtchn_dev.evtchn_open(self, comm=comm)

    def show_interrupts(self) -> str:
        """/proc/interrupts as arch/x86_64/kernel/irq-xen.c prints it."""
        return irq_xen.show_interrupts(self)

    def exhaust_irqs(self) -> str:
        """Mark every free dynamic IRQ bound (irq_bindcount 1), so find_unbound_irq finds none."""
        st = evtchn.evtchn_state(self)
        sp = st.space
        first = sp.DYNIRQ_BASE
        last = sp.DYNIRQ_BASE + sp.NR_DYNIRQS if st.variant == "L18" else sp.NR_IRQS
        taken = [irq for irq in range(first, last) if st.irq_bindcount[irq] == 0]
        for irq in taken:
            st.irq_bindcount[irq] = 1
        self.record("fault exhaust-irqs", f"{len(taken)} free dynamic IRQs ({taken[0]}..{taken[-1]}) "
                    "taken by other bindings", "xenlab/sim/faults.py",
                    changes=[(self.table("irq_bindcount"), str(i), 0, 1) for i in taken])
        return f"{len(taken)} dynamic IRQs taken"

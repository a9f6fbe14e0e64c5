"""XenLinux 2.6.18 as one object: its subsystems as typed fields, its boot order, its /init.

The boot order is the initcall order of the linux-2.6.18-xen tree (``boot_stages``: what
start_kernel and smp_init do first, then one stage per initcall level -- xenbus_probe_init is
postcore, cpu_hotplug arch, reboot.c and balloon subsys, the drivers device, and
boot_wait_for_devices late -- each level in link order); each stage calls the mirrored
functions of this package. Which build it is (``XenLinuxConfig``, ``KCONFIGS``) decides
what a config-dependent step does: a CONFIG_HOTPLUG_CPU domU's secondary vcpus come up
only through cpu_hotplug.c's watch, a dom0 without CONFIG_RTC binds no rtc PIRQ.

The few calls that go "up" between two files of the package (drivers/xen/core/evtchn.c
calls evtchn_device_upcall in drivers/xen/evtchn/evtchn.c; xenbus_probe.c calls the
xenbus_backend_* functions of xenbus_probe_backend.c; cpu_up of kernel/cpu.c calls
smpboot.c's __cpu_up) are resolved here, as the linker resolves them in C: the lower file
calls a method of the kernel, which calls the other file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from xenlab.abi.errno import EINVAL
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
    platform_pci,
    privcmd,
    reboot,
    smpboot,
    time_xen,
    xenbus_dev,
    xenbus_probe,
    xenbus_probe_backend,
)
from xenlab.linux.xenlinux.balloon import balloon_stats
from xenlab.linux.xenlinux.evtchn import EvtchnState
from xenlab.linux.xenlinux.evtchn_dev import EvtchnDev, per_user_data
from xenlab.linux.xenlinux.gnttab import GrantTable
from xenlab.linux.xenlinux.smpboot import __cpu_up as arch_cpu_up  # a dunder name: no mangling here
from xenlab.linux.xenlinux.xenbus_comms import XenbusGlobals
from xenlab.linux.xenlinux.xenbus_probe import XenbusProbe, xen_bus_type, xenbus_driver
from xenlab.linux.xenlinux.xenbus_xs import XsState, xenbus_watch

if TYPE_CHECKING:
    from xenlab.xen.memory import Page

#: dom0's legacy devices and their PIRQs: (irq, request_irq name, shared). The ACPI SCI is bound by
#: acpi_init (subsys_initcall, drivers/acpi/osl.c acpi_os_install_interrupt_handler); the rtc by
#: rtc_init (drivers/char/rtc.c, a device initcall linked before drivers/xen/) when CONFIG_RTC is set;
#: the two i8042 ports by i8042_init (drivers/input/serio/, linked after drivers/xen/).
ACPI_SCI = (9, "acpi", True)
RTC = (8, "rtc", False)
I8042_PORTS = ((12, "i8042", True), (1, "i8042", True))


@dataclass(frozen=True)
class XenLinuxConfig:
    """The .config symbols the modelled code paths test (one build: a defconfig of the tree)."""

    #: the config file this stands for
    name: str
    #: drivers/xen/core/cpu_hotplug.c is built; smp_prepare_cpus leaves a domU's secondary
    #: vcpus out of cpu_present_map (they come up through the xenstore "cpu" watch)
    CONFIG_HOTPLUG_CPU: bool
    #: drivers/char/rtc.c is built: dom0's rtc_init binds PIRQ 8
    CONFIG_RTC: bool
    #: a XenLinux (PV) kernel; off: a native kernel in an HVM guest with the PV-on-HVM drivers
    #: (unmodified_drivers: xen-platform-pci.ko builds xenbus as a MODULE, no console/, evtchn/, privcmd/)
    CONFIG_XEN: bool = True


#: The config each variant (evtchn.VARIANTS) stands for, as (dom0's, a domU's). L18: the tree's
#: buildconfigs/linux-defconfig_xen0_x86_64 and linux-defconfig_xenU_x86_64 (HOTPLUG_CPU=y,
#: "# CONFIG_RTC is not set" in both); RH5 -8.el5 and -274: one kernel for both,
#: configs/kernel-2.6.18-x86_64-xen.config (HOTPLUG_CPU=y, RTC=y).
KCONFIGS: dict[str, tuple[XenLinuxConfig, XenLinuxConfig]] = {
    "L18": (XenLinuxConfig("linux-defconfig_xen0_x86_64", True, False),
            XenLinuxConfig("linux-defconfig_xenU_x86_64", True, False)),
    "RH5-274": (XenLinuxConfig("kernel-2.6.18-x86_64-xen.config (-274)", True, True),) * 2,
    "RH5-8.el5": (XenLinuxConfig("kernel-2.6.18-x86_64-xen.config (-8.el5)", True, True),) * 2,
}
#: An HVM domU's kernel: native x86_64 2.6.18 + xen-platform-pci.ko (CONFIG_HOTPLUG_CPU as the
#: xenU build; the xen-vbd/xen-vnif frontends are the same drivers built as modules).
PV_ON_HVM_CONFIG = XenLinuxConfig("x86_64 native + unmodified_drivers (PV-on-HVM)", True, False, False)


def _legacy_handler(irq: int, dev_id: object) -> int:
    """The handler of a legacy device's IRQ (nothing fires in the lab)."""
    return IRQ_HANDLED



@dataclass
class XenLinuxKernel(Kernel):
    """A XenLinux 2.6.18 kernel (x86_64, the xen0/xenU configs of the 2.6.18 tree)."""

    flavour: ClassVar[str] = "2.6.18"
    release: ClassVar[str] = "2.6.18-xen"
    #: __PAGE_OFFSET of include/asm-x86_64/mach-xen/asm/page.h
    PAGE_OFFSET: ClassVar[int] = 0xFFFF880000000000
    #: the kernel faults this kernel checks (sim/faults.py offers them to a learner)
    FAULTS: ClassVar[tuple[tuple[str, str], ...]] = xenbus_probe.FAULTS

    #: which 2.6.18 build the IRQ layer is (evtchn.VARIANTS: "L18", "RH5-274", "RH5-8.el5")
    irq_variant: str = "L18"
    #: the .config of the build (None: KCONFIGS[irq_variant] for this domain, set at boot)
    config: XenLinuxConfig | None = None
    #: smpboot.c's cpu_present_map and cpu_online_map
    cpu_present_map: set[int] = field(default_factory=set)
    cpu_online_map: set[int] = field(default_factory=set)
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
    #: drivers/xen/balloon/balloon.c's bs (balloon_init)
    balloon: balloon_stats | None = None
    #: the xenbus drivers the modules registered
    blkfront_driver: xenbus_driver | None = None
    netfront_driver: xenbus_driver | None = None
    blkback_driver: xenbus_driver | None = None
    netback_driver: xenbus_driver | None = None
    #: the static struct xenbus_watch of the drivers (xenbus_xs.STATIC_WATCHES), made on first use
    static_watches: dict[str, xenbus_watch] = field(default_factory=dict)
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
    def kconfig(self) -> XenLinuxConfig:
        """The build this kernel is: ``config`` if set, else its variant's defconfig for its domain."""
        if self.config is None:
            dom0, domu = KCONFIGS[self.irq_variant]
            d = self.hv.domains[self.domid]
            self.config = dom0 if d.initdomain else PV_ON_HVM_CONFIG if d.hvm else domu
        return self.config

    def local_irq_enable(self, cpu: int) -> None:
        """local_irq_enable on vcpu *cpu* (__sti, include/asm-x86_64/mach-xen/asm/system.h): clear
        evtchn_upcall_mask and take the events that wait (force_evtchn_callback)."""
        vcpu = self.hv.domains[self.domid].shared_info.vcpu_info[cpu]
        if vcpu.evtchn_upcall_mask:
            vcpu.evtchn_upcall_mask = 0
            self.record("local_irq_enable", f"vcpu {cpu}: evtchn_upcall_mask cleared (interrupts on)",
                        "include/asm-x86_64/mach-xen/asm/system.h")
            if vcpu.evtchn_upcall_pending:
                evtchn.evtchn_do_upcall(self, cpu)

    def cpu_up(self, cpu: int) -> int:
        """cpu_up (kernel/cpu.c): -EINVAL if *cpu* is online or not present, else the arch's __cpu_up."""
        if cpu in self.cpu_online_map or cpu not in self.cpu_present_map:
            return -EINVAL
        return arch_cpu_up(self, cpu)

    def boot_early_irqs(self) -> None:
        """start_kernel's init_IRQ (xen_init_IRQ), local_irq_enable and late_time_init (cpu0's timer),
        then init's smp_prepare_cpus (cpu0's IPIs; cpu_present_map) and smp_init (cpu_up of each
        present cpu)."""
        evtchn.xen_init_IRQ(self, variant=self.irq_variant)
        self.cpu_online_map = {0}
        self.record("boot_cpu_init", "cpu0 is online (the boot vcpu)", "init/main.c",
                    changes=[(self.table("cpu_online_map"), "0", None, 1)])
        self.local_irq_enable(0)
        time_xen.setup_cpu0_timer_irq(self)
        smpboot.smp_prepare_cpus(self)
        for cpu in sorted(self.cpu_present_map - {0}):  # init/main.c smp_init
            self.cpu_up(cpu)
        self.proc_create("interrupts", 0o444, self.show_interrupts)

    def _request_legacy_irq(self, irq: int, name: str, shared: bool) -> int:
        """A legacy driver's request_irq on its PIRQ (the Phys-irq chip binds the port)."""
        rc = request_irq(self, irq, _legacy_handler, IRQF_SHARED if shared else 0, name, name)
        if rc < 0:
            self.printk(KERN_ERR, f"request_irq({irq}) failed: {rc}")
        return rc

    def arch_initcalls(self) -> None:
        """arch_initcall level: core_initcall's initialize_cpu_present_map ran before (smpboot.c:
        present = possible); then setup_vcpu_hotplug_event (cpu_hotplug.c)."""
        smpboot.initialize_cpu_present_map(self)
        cpu_hotplug.setup_vcpu_hotplug_event(self)

    def subsys_initcalls(self, *, initdomain: bool) -> None:
        """subsys_initcall level in link order: acpi_init (dom0's SCI, drivers/acpi/), then
        drivers/xen/: setup_shutdown_event (core/reboot.c), balloon_init (balloon/)."""
        if initdomain:
            self._request_legacy_irq(*ACPI_SCI)
        reboot.setup_shutdown_event(self)
        balloon.balloon_init(self)

    def device_initcalls(self, *, initdomain: bool) -> None:
        """device_initcall level in link order: dom0's rtc_init (drivers/char/, if CONFIG_RTC); then
        drivers/xen/: xencons_init (console/), evtchn_init (evtchn/), privcmd_init (privcmd/); then
        dom0's i8042_init (drivers/input/serio/)."""
        if initdomain and self.kconfig().CONFIG_RTC:
            self._request_legacy_irq(*RTC)
        if self.kconfig().CONFIG_XEN:  # drivers/xen/{console,evtchn,privcmd}/ are XenLinux's own
            console.xencons_init(self)
            evtchn_dev.evtchn_init(self)
            privcmd.privcmd_init(self)
        if initdomain:
            for irq, name, shared in I8042_PORTS:
                self._request_legacy_irq(irq, name, shared)

    def xenbus_init(self) -> int:
        """postcore_initcall(xenbus_probe_init); the PV-on-HVM build (no CONFIG_XEN): xen-platform-pci.ko's
        platform_pci_init, which calls xenbus_init() -> xenbus_probe_init."""
        if self.kconfig().CONFIG_XEN:
            return xenbus_probe.xenbus_probe_init(self)
        return platform_pci.platform_pci_init(self)

    def boot_stages(self, *, initdomain: bool) -> list[BootStage]:
        """The initcalls of the modelled files by level, each level in link order (init/main.c
        do_initcalls): early IRQs (before the initcalls), xenbus_probe_init (postcore), arch,
        subsys, device, late (boot_wait_for_devices)."""
        return [("early IRQs", self.boot_early_irqs),
                ("xenbus init", self.xenbus_init),
                ("arch initcalls", self.arch_initcalls),
                ("subsys initcalls", lambda: self.subsys_initcalls(initdomain=initdomain)),
                ("device initcalls", lambda: self.device_initcalls(initdomain=initdomain)),
                ("late initcalls", lambda: xenbus_probe.boot_wait_for_devices(self))]

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

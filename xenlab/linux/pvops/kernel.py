"""Linux 6.1 as one object: its subsystems as typed fields, its boot order, its /init.

The boot order is Linux 6.1's initcall order (``boot_stages``); each stage calls the
mirrored functions of this package. The IRQ and port numbers a real machine shows are
not constants: each is the lowest free number at the moment of binding, so they follow
from this order:

1. early IRQs, before any initcall: ``xen_init_IRQ`` (the event ABI: FIFO with cpu0's
   control block, "Using FIFO-based ABI", or 2-level with ``xen.fifo_events=0``; tables,
   masks, upcall); cpu0's timer0 (time_init), then ``xen_pv_smp_prepare_cpus``: [spinlock0
   when PV spinlocks are on, i.e. more than one vcpu], resched0, callfunc0, [debug0 only with
   2-level events], callfuncsingle0, irqwork0; each secondary cpu N as it comes up: timerN,
   reschedN, callfuncN, [debugN], callfuncsingleN, irqworkN (CPUHP_XEN_PREPARE), its FIFO
   control block (CPUHP_XEN_EVTCHN_PREPARE), then spinlockN (CPUHP online); interrupts go
   on on each vcpu.
2. ``xenbus_init`` (postcore), the bus inits (subsys). A PV dom0 allocates its store port
   with alloc_unbound (the next free port), a domU binds the port the toolstack allocated
   before it booted; either way the "xenbus" IRQ is the next free IRQ after step 1.
3. late IRQs, in link/initcall order. dom0: the legacy GSIs become PIRQ IRQs with their
   GSI numbers (pci_xen_initial_domain), VIRQ_PCPU_STATE "xen-pcpu", the ACPI SCI PIRQ 9
   "acpi" (a PIRQ's port is bound when request_irq starts it), VIRQ_MCA "mce"; then
   every kernel: the console (``xen_hvc_init``; dom0: VIRQ_CONSOLE; domU: the console
   port from start_info, lateeoi); then dom0's i8042 (PIRQ 12, then 1) and "rtc0" (PIRQ 8).
4. the built-in drivers: the xen_cpu/xen_memory buses, the balloon, shutdown and vcpu
   hotplug notifiers, the console/vkbd/vfb frontends, ``xenbus_probe_initcall``
   (device_initcall) and, in a domU, ``boot_wait_for_devices`` (late_initcall).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from xenlab.abi.start_info import SIF_INITDOMAIN
from xenlab.linux.kernel import BootStage, Kernel
from xenlab.linux.pvops import (
    blkback_xenbus,
    cpu_hotplug,
    enlighten,
    enlighten_hvm,
    enlighten_pv,
    events_2l,
    events_base,
    events_fifo,
    evtchn,
    grant_table,
    hvc_xen,
    irq_proc,
    legacy_irqs,
    manage,
    mce_core,
    mcelog,
    netback_xenbus,
    pci_xen,
    pcpu,
    smp_pv,
    time,
    xen_asm,
    xen_balloon,
    xen_blkfront,
    xen_fbfront,
    xen_kbdfront,
    xen_netfront,
    xenbus_comms,
    xenbus_dev_frontend,
    xenbus_probe,
    xenbus_probe_backend,
    xenbus_probe_frontend,
    xenbus_xs,
    xenfs_super,
)
from xenlab.linux.pvops.events_base import EventsState
from xenlab.linux.pvops.evtchn import per_user_data
from xenlab.linux.pvops.grant_table import GrantTable
from xenlab.linux.pvops.xenbus_comms import XbComms
from xenlab.linux.pvops.xenbus_probe import XenbusGlobals, xen_bus_type, xenbus_driver
from xenlab.linux.pvops.xenbus_xs import XsState
from xenlab.xen.memory import Page


def kstrtobool(s: str, default: bool) -> bool:
    """kstrtobool (lib/kstrtox.c) as a bool module_param parses it: y/Y/1/on, n/N/0/off; else *default*."""
    if s[:1] in ("y", "Y", "1") or s.lower() == "on":
        return True
    if s[:1] in ("n", "N", "0") or s.lower() == "off":
        return False
    return default


@dataclass
class PvopsKernel(Kernel):
    """A Linux 6.1 kernel as Debian 12 ships it, running as a Xen PV dom0 or domU."""

    flavour: ClassVar[str] = "modern"
    release: ClassVar[str] = "6.1.0"
    KOBJ_BIND_UEVENTS: ClassVar[bool] = True
    SCHED_SOURCE: ClassVar[str] = "kernel/sched/wait.c"
    MUTEX_SOURCE: ClassVar[str] = "kernel/locking/mutex.c"
    RWSEM_SOURCE: ClassVar[str] = "kernel/locking/rwsem.c"
    #: __PAGE_OFFSET_BASE_L4 of arch/x86/include/asm/page_64_types.h (4-level paging)
    PAGE_OFFSET: ClassVar[int] = 0xFFFF888000000000
    #: the faults this kernel checks (kernel.fault(name)), with what each does
    FAULTS: ClassVar[tuple[tuple[str, str], ...]] = xenbus_probe.FAULTS
    BOOT_PARAMS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("xen.fifo_events", "0: the 2-level event-channel ABI instead of FIFO (events_base.c)"),)

    #: events_base.c + the port ABI's state, made by xen_init_IRQ
    irq: EventsState | None = None
    #: xenbus_probe.c's globals (xen_store_evtchn, xen_store_interface, xenstored_ready, ...)
    xb: XenbusGlobals = field(default_factory=XenbusGlobals)
    #: xenbus_comms.c's statically initialised globals (xb_waitq, the lists, the "xenbus" thread)
    comms: XbComms = field(init=False)
    #: xenbus_xs.c's statically initialised globals (watches, xenwatch)
    xs: XsState = field(init=False)
    #: the static xen_bus_types of xenbus_probe_frontend.c and xenbus_probe_backend.c
    xenbus_frontend: xen_bus_type = field(init=False)
    xenbus_backend: xen_bus_type = field(init=False)
    #: grant-table.c's free list
    gnttab: GrantTable = field(default_factory=GrantTable)
    #: open /dev/xen/evtchn files
    evtchn_users: list[per_user_data] = field(default_factory=list)
    #: net devices xen-netfront made (eth0, ...)
    netdevs: list[str] = field(default_factory=list)
    #: the xenbus drivers the modules registered
    blkfront_driver: xenbus_driver | None = None
    netfront_driver: xenbus_driver | None = None
    blkback_driver: xenbus_driver | None = None
    netback_driver: xenbus_driver | None = None
    #: the bridges' ports (br_if.c): bridge -> {net device: port number}
    bridges: dict[str, dict[str, int]] = field(default_factory=dict)
    #: hvc_xen.c's console IRQ (xencons_info->irq), bound by xen_hvc_init, requested when hvc0 opens
    hvc_irq: int = -1
    #: the xen.fifo_events boot parameter (events_base.c's xen_fifo_events; default on: xen_init_IRQ
    #: tries FIFO and keeps 2-level only if its init fails; =0: 2-level, and a debug VIRQ per cpu)
    fifo_events: bool = True
    #: booted with dyndbg="file drivers/xen/xenbus/* +p" (as the reference machine was)
    xenbus_dyndbg: bool = True
    #: the reset_devices boot parameter (xb_init_comms leaves a non-quiescent ring alone)
    reset_devices: bool = False
    #: HVM (enlighten.c / events_base.c): events come on a vector (off: xen_no_vector_callback),
    #: per vCPU (HVMOP_set_evtchn_upcall_vector) when Xen offers it
    xen_have_vector_callback: bool = True
    xen_percpu_upcall: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        fifo = self.boot_param("xen.fifo_events")  # module_param_named(fifo_events, ...) in events_base.c
        if fifo is not None:
            self.fifo_events = kstrtobool(fifo, self.fifo_events)
        self.comms = xenbus_comms.new_comms(self)
        self.xs = xenbus_xs.new_xs_state(self)
        self.xenbus_frontend = xenbus_probe_frontend.new_xenbus_frontend(self)
        self.xenbus_backend = xenbus_probe_backend.new_xenbus_backend(self)

    # -- include/xen/xen.h, include/linux/cpumask.h ------------------------------------------
    def xen_initial_domain(self) -> bool:
        """xen_initial_domain(): the kernel runs in the initial domain (dom0)."""
        d = self.hv.domains[self.domid]
        return bool(d.start_info.flags & SIF_INITDOMAIN) or d.initdomain

    def num_possible_cpus(self) -> int:
        """num_possible_cpus(): the domain's vcpus."""
        return self.hv.domains[self.domid].max_vcpus

    def num_online_cpus(self) -> int:
        """num_online_cpus(): every vcpu is online once the kernel has booted."""
        return self.num_possible_cpus()

    def irq_flags_mismatch(self, irq: int, irqflags: int, devname: str, old_flags: int,
                           old_name: str) -> str:
        """__setup_irq's message (kernel/irq/manage.c, 6.1)."""
        return (f"genirq: Flags mismatch irq {irq}. {irqflags:08x} ({devname}) vs. "
                f"{old_flags:08x} ({old_name})")

    # -- the boot -------------------------------------------------------------------------------
    def _setup_cpu_irqs(self, cpu: int) -> int:
        """Everything one vcpu binds, in 6.1's order (see the module docstring)."""
        self.record("xen_setup_cpu_irqs", f"cpu{cpu}: timer VIRQ and IPIs", "arch/x86/xen/smp.c")
        mce_core.mcheck_cpu_init(self, cpu)
        if cpu == 0:
            rc = time.xen_setup_timer(self, 0)  # time_init -> xen_time_init
            return rc if rc < 0 else smp_pv.xen_pv_smp_prepare_cpus(self)
        # the cpuhp states in include/linux/cpuhotplug.h's order: CPUHP_XEN_PREPARE,
        # CPUHP_XEN_EVTCHN_PREPARE (xen_init_IRQ registered it), then the online state
        rc = enlighten_pv.xen_cpu_up_prepare_pv(self, cpu)
        rc = rc if rc < 0 else events_base.xen_evtchn_cpu_prepare(self, cpu)
        return rc if rc < 0 else enlighten.xen_cpu_up_online(self, cpu)

    def _xen_subsys_init(self) -> int:
        """The xen_cpu bus (pcpu.c, dom0 only) and the xen_memory bus (xen-balloon.c's register_balloon).

        The lab's boot runs this twice (before the notifiers and again with the console
        drivers); the second run finds the buses there (-EEXIST).
        """
        err = pcpu.xen_pcpu_subsys_register(self) if self.xen_initial_domain() else 0
        return err or xen_balloon.register_balloon(self)

    def boot_stages(self, *, initdomain: bool) -> list[BootStage]:
        """early IRQs, gnttab_init, xenbus_init + subsys inits, late IRQs, drivers + the late initcalls."""
        def early() -> None:
            if self.hv.domains[self.domid].hvm:
                enlighten_hvm.xen_hvm_guest_init(self)  # init_hypervisor_platform, long before init_IRQ
            else:
                enlighten_pv.xen_banner(self)  # xen_start_kernel, long before init_IRQ
            # xen_init_IRQ: FIFO if xen.fifo_events (falling back to 2-level if its init fails), else 2-level
            abi_init = (events_fifo.xen_evtchn_fifo_or_2l_init if self.fifo_events
                        else events_2l.xen_evtchn_2l_init)
            st = events_base.xen_init_IRQ(self, abi_init, fifo_events=self.fifo_events)
            if self.xen_initial_domain():
                pci_xen.pci_xen_initial_domain(self)  # xen_init_IRQ's tail (PV dom0), before timer0
            for cpu in range(st.nr_cpus):
                self._setup_cpu_irqs(cpu)
                xen_asm.xen_irq_enable_direct(self, cpu)
            irq_proc.register_proc_interrupts(self)

        def xenbus() -> None:
            # postcore_initcall(xenbus_init); then the subsys_initcalls in drivers/xen/Makefile's
            # link order: balloon.o and manage.o come before xenbus/, so their xenstore notifiers
            # are called first (memory/target, control/... before the backend/ and device/ probes).
            xenbus_probe.xenbus_init(self)
            self._xen_subsys_init()
            xen_balloon.xen_balloon_init(self)
            manage.xen_setup_shutdown_event(self)
            xenbus_probe_backend.xenbus_probe_backend_init(self)
            xenbus_probe_frontend.xenbus_probe_frontend_init(self)

        def late_irqs() -> None:
            if self.xen_initial_domain():
                pcpu.xen_pcpu_init(self)
                legacy_irqs.acpi_os_install_interrupt_handler(self)
                mcelog.bind_virq_for_mce(self)
            hvc_xen.xen_hvc_init(self)
            if self.xen_initial_domain():
                legacy_irqs.dom0_legacy_devices(self)

        def drivers() -> None:
            self._xen_subsys_init()
            hvc_xen.xencons_driver_register(self)
            xen_kbdfront.xenkbd_init(self)
            xen_fbfront.xenfb_init(self)
            xenbus_probe.xenbus_probe_initcall(self)
            # late_initcalls: cpu_hotplug.o links before xenbus/ (drivers/xen/Makefile)
            cpu_hotplug.setup_vcpu_hotplug_event(self)
            if not initdomain:
                xenbus_probe_frontend.boot_wait_for_devices(self)
            # kernel_init_freeable: console_on_rootfs opens /dev/console (hvc0) after the initcalls
            hvc_xen.notifier_add_irq(self)

        def grant_table_init() -> None:
            grant_table.gnttab_init(self)  # core_initcall_sync(__gnttab_init), before postcore

        return [("early IRQs", early), ("grant table", grant_table_init), ("xenbus init", xenbus),
                ("late IRQs", late_irqs), ("drivers", drivers)]

    def init_process(self, *, initdomain: bool) -> None:
        """dom0: mount xenfs on /proc/xen, modprobe xen-blkback, xen-netback; a domU: the frontends."""
        if initdomain:
            xenfs_super.xenfs_fill_super(self)
            evtchn.evtchn_init(self)  # modprobe xen-evtchn
            blkback_xenbus.xen_blkif_init(self)
            netback_xenbus.xenvif_xenbus_init(self)
        else:
            xen_blkfront.xlblk_init(self)
            xen_netfront.netif_init(self)

    def xenbus_dev_request(self, mtype: int, tx_id: int, payload: bytes) -> tuple[int, bytes]:
        """/dev/xen/xenbus (xenbus_dev_frontend.c): one request through the xenbus thread."""
        return xenbus_dev_frontend.xenbus_file_write(self, mtype, tx_id, payload)

    def xen_store_page(self) -> Page | None:
        """The page behind xen_store_interface (xenbus_probe.c), None until xenbus_init found it."""
        return self.xb.xen_store_page

    def evtchn_open(self, comm: str) -> per_user_data:
        """open("/dev/xen/evtchn") (drivers/xen/evtchn.c)."""
        return evtchn.evtchn_open(self, comm=comm)

    def show_interrupts(self) -> str:
        """/proc/interrupts as kernel/irq/proc.c + arch/x86/kernel/irq.c print it."""
        return irq_proc.show_interrupts(self)

    def exhaust_irqs(self) -> str:
        """irq_alloc_descs fails from now on (no IRQ descriptor left)."""
        self.faults.add("xen_allocate_irq")
        self.record("fault exhaust-irqs", "irq_alloc_descs fails from now on (no IRQ descriptor left)",
                    "xenlab/sim/faults.py")
        return "irq_alloc_descs fails"

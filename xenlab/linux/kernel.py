"""One guest kernel: its domain, printk/dmesg, /proc entries, fault switches, and its subsystems.

Theory of operation
-------------------
``Kernel`` holds what every Linux the lab models has: the domain it runs in, the log,
/proc, the fault switches, and the subsystems shared by both kernels (the driver model,
sysfs, the IRQ descriptors). Each modelled kernel is its own package whose modules mirror
that kernel's source files, and its own ``Kernel`` subclass that declares that kernel's
subsystems as typed fields (None until the subsystem's init ran):

* ``xenlab.linux.xenlinux.kernel.XenLinuxKernel`` -- XenLinux 2.6.18;
* ``xenlab.linux.pvops.kernel.PvopsKernel`` -- Linux 6.1.

The kernel is chosen once, when one is built (``xenlab.linux.kernels.new_kernel``); no
mirrored function asks which kernel it is in. What the machine (``xenlab.sim``) asks of
a kernel -- boot through its initcalls, run its /init, serve /dev/xen/xenbus, open
/dev/xen/evtchn -- are the methods below that each subclass implements, the way a
``struct file_operations`` is filled in by each driver.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from xenlab.base.sched import Scheduler, WaitQueue
from xenlab.base.trace import Change, Trace
from xenlab.linux.sysfs import Sysfs

if TYPE_CHECKING:  # only needed for annotations
    from xenlab.linux.driver_model import bus_type, device
    from xenlab.linux.genhd import BlockDevice
    from xenlab.linux.irq import IrqCore
    from xenlab.xen.hypervisor import Hypervisor
    from xenlab.xen.memory import Page

FLAVOURS = ("2.6.18", "modern")

KERN_EMERG, KERN_ALERT, KERN_CRIT, KERN_ERR = "<0>", "<1>", "<2>", "<3>"
KERN_WARNING, KERN_NOTICE, KERN_INFO, KERN_DEBUG = "<4>", "<5>", "<6>", "<7>"
LEVEL_NAMES = {KERN_EMERG: "emerg", KERN_ALERT: "alert", KERN_CRIT: "crit", KERN_ERR: "err",
               KERN_WARNING: "warn", KERN_NOTICE: "notice", KERN_INFO: "info", KERN_DEBUG: "debug"}

#: One change row as a kernel records it: (table, key, before, after), or a Change.
ChangeRow = tuple[str, Any, Any, Any] | Change
#: One boot stage: its name (shown as "<kernel name>: <stage>") and what runs in it.
BootStage = tuple[str, Callable[[], None]]


#: What a kernel table holds where nothing was written (the free slot of an array, a zero
#: count, a zeroed ring index). The kernel tells its trace (``Trace.set_initial``), so its
#: rows keep the kernel's own values (``-1 -> 24``) and replay leaves such entries out.
TABLE_INITIAL: dict[str, Any] = {
    "evtchn_to_irq": -1, "virq_to_irq": -1, "ipi_to_irq": -1,  # -1: no IRQ
    "irq_info": 0,  # 2.6.18 mk_irq_info(IRQT_UNBOUND, 0, 0)
    "irq_bindcount": 0, "kstat_irqs": 0, "ring": 0, "xenbus": 0,
    "locks": "free",  # a lock nobody holds (linux/locking.py)
    "work": "idle",  # a work item never queued (probe_work)
}


class KernelPanic(RuntimeError):
    """panic(): the simulated kernel stopped."""


@dataclass
class LogLine:
    """One printk record: virtual time, level and text."""

    time_ns: int
    level: str
    text: str

    def __str__(self) -> str:
        secs, ns = divmod(self.time_ns, 1_000_000_000)
        return f"[{secs:5d}.{ns // 1000:06d}] {self.text}"


@dataclass
class ProcEntry:
    """A /proc file: its mode bits and a function producing its text."""

    mode: int
    read: Callable[[], str]


class EvtchnFile(Protocol):
    """An open /dev/xen/evtchn (struct per_user_data): what its ioctls, read and write do."""

    waitq: WaitQueue  # evtq: a blocking read() sleeps here

    def bind_interdomain(self, remote_dom: int, remote_port: int) -> int:
        """IOCTL_EVTCHN_BIND_INTERDOMAIN: the new local port, or -errno."""
        ...

    def bind_virq(self, virq: int) -> int:
        """IOCTL_EVTCHN_BIND_VIRQ: the new local port, or -errno."""
        ...

    def notify(self, port: int) -> int:
        """IOCTL_EVTCHN_NOTIFY: 0 or -errno."""
        ...

    def unbind(self, port: int) -> int:
        """IOCTL_EVTCHN_UNBIND: 0 or -errno."""
        ...

    def has_pending(self) -> bool:
        """True if read() would return ports without sleeping."""
        ...

    def read_pending(self) -> list[int]:
        """read(): the ports that fired, oldest first."""
        ...

    def write_ports(self, ports: list[int]) -> int:
        """write(): re-enable (unmask) these ports; bytes written or -errno."""
        ...


@dataclass
class Kernel:
    """A simulated Linux kernel running in domain *domid* of *hv* (subclassed once per kernel)."""

    #: "2.6.18" or "modern": a label for printing and for choosing the class, never for branching
    flavour: ClassVar[str] = ""
    #: `uname -r` of the kernel this class models
    release: ClassVar[str] = ""
    #: driver_bound / device_release_driver send KOBJ_BIND / KOBJ_UNBIND uevents (Linux 4.14 on)
    KOBJ_BIND_UEVENTS: ClassVar[bool] = False
    #: the kernel faults this kernel checks, (name, what it does) (sim/faults.py offers them)
    FAULTS: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: the boot parameters this kernel reads from its command line, (name, what it does)
    BOOT_PARAMS: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: where this kernel's wait_event / wake_up live (the source of its "kthreads" steps)
    SCHED_SOURCE: ClassVar[str] = "kernel/sched.c"
    #: where this kernel's mutex_lock / mutex_unlock and down_read / up_read live
    MUTEX_SOURCE: ClassVar[str] = "kernel/mutex.c"
    RWSEM_SOURCE: ClassVar[str] = "kernel/rwsem.c"
    #: __PAGE_OFFSET: where the direct map of the guest's pseudo-physical memory begins (x86_64)
    PAGE_OFFSET: ClassVar[int] = 0

    hv: Hypervisor
    domid: int
    sched: Scheduler = field(default_factory=Scheduler)
    trace: Trace = field(default_factory=Trace)
    name: str = ""
    #: the kernel command line (what the builder put in start_info->cmd_line); boot_param reads it
    cmdline: str = ""
    faults: set[str] = field(default_factory=set)
    log: list[LogLine] = field(default_factory=list)
    # who reads the console as lines are printed (xl console; a debugger's user acting on what shows)
    console_readers: list[Callable[[LogLine], None]] = field(default_factory=list, repr=False)
    proc: dict[str, ProcEntry] = field(default_factory=dict)
    #: the irq_desc table (kernel/irq), made by the kernel's xen_init_IRQ
    irq_core: IrqCore | None = None
    #: block devices this kernel can open, by (major, minor) (block/genhd.c)
    block_devices: dict[tuple[int, int], BlockDevice] = field(default_factory=dict)
    #: the driver model's registered buses by name, in registration order (drivers/base/bus.c)
    buses: dict[str, bus_type] = field(default_factory=dict)
    #: devices registered on no bus (2.6.18's xenbus root devices "xen", "xen-backend")
    root_devices: list[device] = field(default_factory=list)
    #: /proc directories that exist while empty (proc_mkdir / mount points: /proc/xen)
    proc_dirs: set[str] = field(default_factory=set)
    #: pages free_page gave back, reused first by get_zeroed_page (mm/page_alloc.c)
    free_pages: list[Page] = field(default_factory=list)
    #: the read-only /sys view over buses and root_devices (linux/sysfs.py)
    sysfs: Sysfs = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name:
            self.name = "dom0" if self.domid == 0 else f"domU{self.domid}"
        self.sysfs = Sysfs(self)
        for table, value in TABLE_INITIAL.items():
            self.trace.set_initial(f"{self.name}/{table}", value)
        self.sched.trace_tasks(self.name, self.trace, self.SCHED_SOURCE)

    def boot_param(self, name: str) -> str | None:
        """The value of ``name=value`` on the command line (the last one wins, as parse_args), else None."""
        value = None
        for word in shlex.split(self.cmdline):  # next_arg: a "quoted value" is one word
            key, eq, val = word.partition("=")
            if key == name:
                value = val if eq else ""
        return value

    # -- messages ----------------------------------------------------------
    def printk(self, level: str, text: str) -> None:
        """printk: append a message to the kernel log (what dmesg shows)."""
        line = LogLine(self.sched.now_ns, level, text)
        self.log.append(line)
        for reader in list(self.console_readers):
            reader(line)

    def panic(self, text: str) -> None:
        """panic: log the message and stop this kernel."""
        self.printk(KERN_EMERG, f"Kernel panic - not syncing: {text}")
        raise KernelPanic(text)

    def dmesg(self) -> str:
        """The kernel log as `dmesg` prints it."""
        return "\n".join(str(line) for line in self.log)

    # -- faults and tracing ------------------------------------------------
    def fault(self, name: str) -> bool:
        """True if fault *name* was injected into this kernel (sim/faults.py lists the names)."""
        return name in self.faults

    def record(self, function: str, summary: str, source: str, changes: Iterable[ChangeRow] = (),
               printk: str | None = None) -> None:
        """Record one step of this kernel in the trace."""
        self.trace.record(function, summary, actor=self.name, source=source,
                          changes=changes, printk=printk)

    def table(self, name: str) -> str:
        """The trace table *name* of this kernel: "dom0/evtchn_to_irq"."""
        return f"{self.name}/{name}"

    # -- /proc -------------------------------------------------------------
    def proc_create(self, path: str, mode: int, read: Callable[[], str]) -> None:
        """create_proc_entry / proc_create: make /proc/<path> readable through *read*()."""
        self.proc[path] = ProcEntry(mode, read)

    # -- what the machine asks of a kernel (each kernel package implements these) -------------
    def boot_stages(self, *, initdomain: bool) -> list[BootStage]:
        """The kernel's boot up to user space, as named stages in its own initcall order."""
        raise NotImplementedError(f"{type(self).__name__} does not say how it boots")

    def init_process(self, *, initdomain: bool) -> None:
        """The lab's /init in user space: dom0 mounts xenfs and loads the backends, a domU the frontends."""
        raise NotImplementedError(f"{type(self).__name__} has no /init")

    def xenbus_dev_request(self, mtype: int, tx_id: int, payload: bytes) -> tuple[int, bytes]:
        """A user-space request through the kernel's store ring (/dev/xen/xenbus or /proc/xen/xenbus)."""
        raise NotImplementedError(f"{type(self).__name__} has no xenbus device")

    def xen_store_page(self) -> Page | None:
        """The page of this kernel's xenstore ring (xen_store_interface; in dom0 what an mmap of
        /proc/xen/xsd_kva maps), None until its xenbus found or allocated it."""
        raise NotImplementedError(f"{type(self).__name__} has no xenstore ring")

    def evtchn_open(self, comm: str) -> EvtchnFile:
        """open("/dev/xen/evtchn") by process *comm*: the per-user context of the evtchn device."""
        raise NotImplementedError(f"{type(self).__name__} has no evtchn device")

    def show_interrupts(self) -> str:
        """The text of /proc/interrupts, in this kernel's format."""
        raise NotImplementedError(f"{type(self).__name__} has no /proc/interrupts")

    def irq_ranges(self) -> dict[str, tuple[int, int]]:
        """The fixed IRQ windows of this kernel's build, name -> (first IRQ, count); {} when
        IRQ numbers are allocated dynamically (irq_alloc_desc), as in Linux 6.1."""
        return {}

    def irq_flags_mismatch(self, irq: int, irqflags: int, devname: str, old_flags: int,
                           old_name: str) -> str:
        """The message __setup_irq prints when a second handler is not IRQF_SHARED-compatible."""
        raise NotImplementedError(f"{type(self).__name__} has no request_irq")

    def exhaust_irqs(self) -> str:
        """Fault exhaust-irqs: take every free dynamic IRQ as other bindings would; says what it did."""
        raise NotImplementedError(f"{type(self).__name__} cannot exhaust its IRQs")

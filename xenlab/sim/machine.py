"""The Machine: Xen, dom0 with its kernel, xenstored and xenconsoled, the toolstack, and guests.

Theory of operation
-------------------
One Trace and one Scheduler serve everything. ``Machine(...)`` creates the hypervisor
and dom0, and boots dom0's kernel in its own initcall order (``Kernel.boot_stages``, run by
``xenlab.sim.boot``). dom0's xenbus then waits: nothing answers its store
ring until ``start_xenstored()`` starts the daemon as a task in dom0's user space. The
daemon's host (``xenlab.sim.host``) is built on the dom0 kernel's ``/dev/xen/evtchn``
and the store page from ``/proc/xen/xsd_kva`` + ``xsd_port``, so its ports and IRQs
appear where a real dom0 shows them. Then the machine does what Debian's init script
and xen-init-dom0 do, and starts xenconsoled. ``create_domU()`` is `xl create`
(``xenlab.sim.toolstack``): build the domain, write its xenstore nodes, INTRODUCE it,
add its devices, run the hotplug scripts, boot its kernel and wait for Connected;
``destroy_domU()`` is `xl destroy`. A fault that stops xenstored or hangs a guest's boot
is recorded in ``machine.errors`` (and the trace), so a learner can look at what is left.

Everything a learner can run inside a domain goes through ``machine.domain(d).run(cmd)``
(``xenlab.sim.commands``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xenlab.abi.xs_wire import xenstore_domain_interface
from xenlab.base.sched import Scheduler
from xenlab.base.trace import Trace
from xenlab.linux.kernel import Kernel
from xenlab.linux.kernels import KERNELS, new_kernel
from xenlab.sim import boot
from xenlab.sim.daemons import XENSTORED_PATHS
from xenlab.sim.faults import MACHINE_FAULTS, Fault, check_fault
from xenlab.sim.xsclient import XsClient
from xenlab.xen.hypervisor import Hypervisor

if TYPE_CHECKING:
    from xenlab.sim.daemons import Xenconsoled
    from xenlab.sim.host import EvtchnDevHost
    from xenlab.sim.toolstack import BuiltDomain, Toolstack
    from xenlab.xenstored.daemon import Daemon
    from xenlab.xenstored.ring import RingServer

XENSTORED_BINARIES = XENSTORED_PATHS


class MachineError(RuntimeError):
    """The machine could not do what was asked; the message says what and why."""


@dataclass
class Domain:
    """One domain as the machine sees it: its id, name, kernel, and how to run commands in it."""

    machine: Machine
    domid: int
    name: str
    kernel: Kernel
    memory_mb: int
    vcpus: int
    info: BuiltDomain | None = None  # what the toolstack built, for guests
    last_rc: int = 0

    def run(self, cmdline: str) -> str:
        """Run one command line in this domain; what it printed (``last_rc`` holds its status)."""
        from xenlab.sim.commands import run_command

        if not isinstance(cmdline, str):
            raise TypeError(f"run() takes one command line as a string, e.g. 'cat /proc/interrupts'; "
                            f"got {type(cmdline).__name__} {cmdline!r}")
        res = run_command(self.machine, self.domid, cmdline)
        self.last_rc = res.rc
        return res.text

    def __repr__(self) -> str:
        return f"Domain({self.domid}, {self.name!r}, {self.kernel.flavour})"


@dataclass
class Machine:
    """A simulated Xen host: hypervisor, dom0, its daemons, and guests, on one scheduler."""

    flavour: str = "modern"
    seed: int = 0
    dom0_vcpus: int = 1
    dom0_mem_mb: int = 1024
    faults: Iterable[str] = ()
    xenstored: str = "oxenstored"
    #: Linux 6.1's xen.fifo_events boot parameter for every kernel the machine boots: None (the
    #: default) or True: FIFO event channels, as Xen 4.17 and Debian 12 run; False: the kernels boot
    #: with ``xen.fifo_events=0`` and stay on the 2-level ABI. XenLinux 2.6.18 has only the 2-level
    #: ABI (drivers/xen/core/evtchn.c knows no FIFO): True is refused there, False changes nothing.
    fifo_events: bool | None = None
    trace: Trace = field(default_factory=Trace, repr=False)
    sched: Scheduler = field(default_factory=Scheduler, repr=False)

    # -- made by __post_init__ ---------------------------------------------------------
    hv: Hypervisor = field(init=False, repr=False)
    rng: random.Random = field(init=False, repr=False)  # the seed's draws: uuids, MACs
    fault_info: dict[str, Fault] = field(init=False, repr=False)
    domains: dict[int, Domain] = field(init=False, repr=False)
    errors: list[str] = field(init=False, repr=False)  # hangs and failures a fault caused
    # -- dom0's user space: set by xenlab.sim.daemons.start_xenstored / start_xenconsoled --------
    daemon: Daemon | None = field(init=False, repr=False)  # None: not started, or it exited
    xenstored_error: str = field(init=False, repr=False)  # why xenstored exited ("" if it did not)
    host: EvtchnDevHost | None = field(init=False, repr=False)  # xenstored's /dev/xen/evtchn
    ring_server: RingServer | None = field(init=False, repr=False)  # xenstored's ring side
    xenconsoled: Xenconsoled | None = field(init=False, repr=False)
    #: xenstored's poll() hears of socket input through this (None while no xenstored runs)
    xenstored_socket_readable: Callable[[], None] | None = field(init=False, repr=False)
    # SIGSTOP / SIGCONT to the xenstored process (fault xenstored-stopped): set by start_xenstored
    xenstored_signal: Callable[[str], None] | None = field(init=False, repr=False)
    # -- `xl`: made by the first create_domU (xenlab.sim.guest) ----------------------------------
    toolstack: Toolstack | None = field(init=False, repr=False)

    def __repr__(self) -> str:
        state = "running" if self.daemon is not None else "not started"
        return (f"Machine(flavour={self.flavour!r}, seed={self.seed}, domains={sorted(self.domains)}, "
                f"{self.xenstored} {state}, {len(self.trace)} trace steps)")

    def __post_init__(self) -> None:
        if self.xenstored not in XENSTORED_BINARIES:
            raise MachineError(f"unknown xenstored {self.xenstored!r}; choose one of "
                               f"{', '.join(XENSTORED_BINARIES)}")
        if self.fifo_events and self.flavour in KERNELS and not self._kernel_knows("xen.fifo_events"):
            raise MachineError(f"fifo_events: the {self.flavour} kernel has no FIFO event channels (XenLinux "
                               "2.6.18's drivers/xen/core/evtchn.c is 2-level only); leave fifo_events unset "
                               "or False")
        if self.dom0_mem_mb < 1:
            raise MachineError(f"dom0_mem_mb must be at least 1 (MiB), not {self.dom0_mem_mb}")
        self.faults = tuple(self.faults)
        self.fault_info = {name: check_fault(name) for name in self.faults}
        if self.has_fault("xenstored-stopped") and not self.has_fault("ring-not-quiescent"):
            raise MachineError("fault xenstored-stopped needs ring-not-quiescent: the debugger continues "
                               "xenstored when the guest's xb_init_comms complains about its store ring")
        self.rng = random.Random(self.seed)
        self.hv = Hypervisor(trace=self.trace, bits=64)
        self.domains = {}
        self.daemon = None
        self.xenstored_error = ""
        self.errors = []
        self.ring_server = None
        self.host = None
        self.xenconsoled = None
        self.xenstored_socket_readable = None
        self.xenstored_signal = None
        self.toolstack = None
        self._dom0_xs: XsClient | None = None
        self._guest_xs: dict[int, XsClient] = {}
        self._next_domid = 1
        self.boot_dom0()

    # -- dom0 ----------------------------------------------------------------------
    def kernel_faults(self, target: str) -> set[str]:
        """The injected faults that are switches in the kernel of *target* ('dom0' / 'domU')."""
        machine_only = {f.name for f in MACHINE_FAULTS}
        return {f.name for f in self.fault_info.values() if f.target == target and f.name not in machine_only}

    def has_fault(self, name: str, target: str | None = None) -> bool:
        """True if fault *name* was injected (into *target*'s kernel, if given)."""
        return any(f.name == name and target in (None, f.target) for f in self.fault_info.values())

    def boot_dom0(self) -> None:
        """Xen builds dom0 (privileged, initdomain) and its kernel boots up to the xenbus wait."""
        self.trace.begin_stage("xen: create dom0")
        # dom0_build.c masks every vcpu's upcalls; the kernel unmasks them in xen_irq_enable
        self.hv.domain_create(0, "Domain-0", vcpus=self.dom0_vcpus, privileged=True, initdomain=True,
                              upcalls_masked=True)
        # dom0_construct_pv (xen/arch/x86/pv/dom0_build.c) gives dom0 its memory in start_info
        self.hv.domains[0].start_info.nr_pages = self.dom0_mem_mb * 256
        kernel = new_kernel(self.hv, 0, self.flavour, sched=self.sched, trace=self.trace, name="dom0",
                            cmdline=self.kernel_cmdline())
        kernel.faults |= self.kernel_faults("dom0")
        self.domains[0] = Domain(self, 0, "Domain-0", kernel, self.dom0_mem_mb, self.dom0_vcpus)
        boot.boot_kernel(self, kernel, initdomain=True)
        self.settle()

    def kernel_cmdline(self, cmdline: str = "") -> str:
        """*cmdline* with the boot parameters the machine's options add (``xen.fifo_events=0``)."""
        if self.fifo_events is False and self._kernel_knows("xen.fifo_events"):
            cmdline = f"{cmdline} xen.fifo_events=0".lstrip()
        return cmdline

    def _kernel_knows(self, param: str) -> bool:
        kernel = KERNELS.get(self.flavour)
        return kernel is not None and any(name == param for name, _ in kernel.BOOT_PARAMS)

    @property
    def dom0(self) -> Domain:
        """Domain 0."""
        return self.domains[0]

    def domain(self, domid: int) -> Domain:
        """The domain with id *domid* (KeyError naming the existing ones)."""
        if domid not in self.domains:
            raise KeyError(f"no domain {domid}; domains: {', '.join(str(d) for d in sorted(self.domains))}")
        return self.domains[domid]

    def kernel(self, domid: int) -> Kernel:
        """The kernel of domain *domid*."""
        return self.domain(domid).kernel

    def settle(self) -> int:
        """Run every task (and let xenconsoled see its watch events) until the machine is idle."""
        switches = 0
        while True:
            switches += self.sched.run()
            if self.xenconsoled is None or not self.xenconsoled.handle_events():
                return switches

    # -- xenstored, xen-init-dom0, xenconsoled ---------------------------------------
    def start_xenstored(self, personality: str | None = None) -> None:
        """/etc/init.d/xen start: xenstored, then xen-init-dom0, then xenconsoled."""
        from xenlab.sim import daemons

        if self.daemon is not None:
            return
        personality = personality or self.xenstored
        if personality not in XENSTORED_BINARIES:
            raise MachineError(f"unknown xenstored {personality!r}; choose one of "
                               f"{', '.join(XENSTORED_BINARIES)}")
        self.xenstored = personality
        self.trace.begin_stage(f"{personality}: start")
        daemons.start_xenstored(self, personality)
        self.settle()
        if self.xenstored_error:
            self.daemon = None  # it exited: no socket, the tools would fall back to /dev/xen/xenbus
            self.xenstored_socket_readable = None
            return
        daemons.init_script_after_xenstored(self, personality)
        self.trace.begin_stage("xen-init-dom0")
        daemons.xen_init_dom0(self)
        self.settle()
        self.trace.begin_stage("xenconsoled: start")
        daemons.start_xenconsoled(self)
        self.settle()

    def xs_client(self, domid: int, *, via_kernel: bool = False) -> XsClient:
        """A xenstore client in domain *domid* (dom0: the daemon's socket; a guest, or dom0 with
        *via_kernel*: the kernel's /dev/xen/xenbus, i.e. the domain's store ring)."""
        if via_kernel or domid != 0:
            if domid not in self._guest_xs:
                self._guest_xs[domid] = boot.kernel_xs_client(self, self.kernel(domid))
            return self._guest_xs[domid]
        if self._dom0_xs is None:
            if self.daemon is None:
                why = f" ({self.xenstored_error})" if self.xenstored_error else " (scenario dom0-early)"
                raise MachineError(f"xenstored is not running in dom0{why}; a real client would block "
                                   "in /dev/xen/xenbus until one starts")
            from xenlab.sim.daemons import socket_client

            self._dom0_xs = socket_client(self, "xenstore-cli")
        return self._dom0_xs

    # -- guests -----------------------------------------------------------------------
    def alloc_domid(self) -> int:
        """The next domid for a new guest (libxl takes the lowest never used here: 1, 2, ...)."""
        domid = self._next_domid
        self._next_domid += 1
        return domid

    def add_domain(self, dom: Domain) -> None:
        """The domain exists from now on (xl list shows it)."""
        self.domains[dom.domid] = dom

    def remove_domain(self, domid: int) -> None:
        """The domain is gone: forget it and the xenstore client opened in it."""
        del self.domains[domid]
        self._guest_xs.pop(domid, None)

    def create_domU(self, name: str = "xenlab-domu", vcpus: int = 1, memory_mb: int = 256,
                    disks: int | list[str] = 1, vifs: int | list[int] = 1, guest_type: str = "pv",
                    **kw: Any) -> Domain:
        """`xl create` of a guest (see xenlab.sim.guest); returns the running, Connected domain.

        *guest_type* is the xl config's ``type``: "pv", or "hvm" for an HVM guest whose kernel
        runs the PV drivers (its store and console come from HVM params; xenlab.sim.hvm_build).
        """
        from xenlab.sim.guest import create_domU

        if self.daemon is None:
            why = f" ({self.xenstored_error})" if self.xenstored_error else ": call start_xenstored() first"
            raise MachineError(f"create_domU needs a running xenstored{why}")
        return create_domU(self, name=name, vcpus=vcpus, memory_mb=memory_mb, disks=disks, vifs=vifs,
                           type=guest_type, **kw)

    def destroy_domU(self, domid: int) -> None:
        """`xl destroy`: tear the guest down the way libxl does (see xenlab.sim.guest.destroy_domU)."""
        from xenlab.sim.guest import destroy_domU

        destroy_domU(self, domid)

    def load_frontends(self, domid: int) -> None:
        """In guest *domid* (created with frontends=False): insmod the frontends, wait for Connected."""
        from xenlab.sim.guest import load_frontends

        load_frontends(self, domid)

    # -- what commands read --------------------------------------------------------------
    def domain_name(self, domid: int) -> str:
        """The domain's name (xl list's first column)."""
        return self.domain(domid).name

    def memory_mb(self, domid: int) -> int:
        """The domain's memory in MiB."""
        return self.domain(domid).memory_mb

    def vcpus(self, domid: int) -> int:
        """The domain's number of vcpus."""
        return self.domain(domid).vcpus

    def cpu_time_ns(self, domid: int) -> int:
        """CPU time the domain used (the lab counts virtual time since it booted)."""
        return self.sched.now_ns

    def store_interface(self, domid: int) -> xenstore_domain_interface | None:
        """The xenstore_domain_interface of domain *domid*'s store page as its kernel maps it (or None)."""
        page = self.kernel(domid).xen_store_page()
        return None if page is None else xenstore_domain_interface.from_buffer(page.buf)

    def shutdown(self) -> None:
        """Stop every task (their threads end)."""
        self.sched.shutdown()

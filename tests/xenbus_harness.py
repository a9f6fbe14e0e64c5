"""Test rig: a small Xen host made of the lab's real parts, for the xenbus tests.

Tests live outside the walls, so they may join linux/ and xenstored/ by hand, the way
``xenlab.sim`` does (sim/daemons.py, sim/host.py), with less around them:

* the hypervisor is the real ``xenlab.xen.hypervisor.Hypervisor``;
* every kernel is made by ``xenlab.linux.kernels.new_kernel`` and boots through its own
  ``kernel.boot_stages(...)`` (``Rig.boot``, optionally stopping before a named stage so a
  test can call that stage's init function itself and check what it returns);
* xenstored is the real ``Daemon`` served over the real ring transport (``RingServer``)
  as a task in dom0's user space, on dom0's ``/dev/xen/evtchn`` (``EvtchnDevHost``);
* a guest is built the way libxl's domain builder builds one (store and console pages
  and ports, grant refs 0 and 1 seeded, INTRODUCE) but without the rest of ``xl create``,
  so a test writes exactly the xenstore nodes it is about;
* the toolstack's side is an ``XsClient`` on a socket connection of dom0 (``Rig.tools``;
  ``tool_write`` & co are its one-line forms). A socket request wakes xenstored's main
  loop, as a readable socket wakes the real daemon's poll, so watch events it caused go
  out on the rings.

Nothing here reaches into a kernel: what a test asserts about IRQs it reads from the
kernel's irq_desc table (``irq_names``) and the ``<kernel>/evtchn_to_irq`` trace table.
"""

from __future__ import annotations

from dataclasses import dataclass

from xenlab.abi.hvm import (
    HVM_PARAM_CONSOLE_EVTCHN,
    HVM_PARAM_CONSOLE_PFN,
    HVM_PARAM_STORE_EVTCHN,
    HVM_PARAM_STORE_PFN,
)
from xenlab.base.sched import Scheduler
from xenlab.base.trace import Trace
from xenlab.linux.genhd import BlockDevice, add_disk
from xenlab.linux.kernel import Kernel
from xenlab.linux.kernels import new_kernel
from xenlab.sim.daemons import SocketConnection
from xenlab.sim.host import EvtchnDevHost
from xenlab.sim.hvm_build import SPECIALPAGE_CONSOLE, SPECIALPAGE_XENSTORE, special_pfn
from xenlab.sim.toolstack import block_hotplug_writes, vif_hotplug_writes
from xenlab.sim.xsclient import XsClient, XsError, perms
from xenlab.xen.hypervisor import Hypervisor
from xenlab.xenstored.daemon import Daemon
from xenlab.xenstored.ring import RingServer
from xenlab.xenstored.serve import PERSONALITIES


@dataclass
class Guest:
    """What the domain builder made for a guest: its store and console page and port."""

    domid: int
    store_mfn: int
    store_port: int
    console_mfn: int
    console_port: int


class Rig:
    """Xen, a dom0 kernel, xenstored on it (once started), guests, one trace, one scheduler."""

    def __init__(self, flavour: str = "modern", *, vcpus: int = 1, dom0_faults: tuple[str, ...] = (),
                 personality: str = "oxenstored") -> None:
        self.flavour = flavour
        self.vcpus = vcpus
        self.trace = Trace()
        self.sched = Scheduler()
        self.hv = Hypervisor(trace=self.trace, bits=64)
        # dom0_build.c masks every vcpu's upcalls; the kernel unmasks them in xen_irq_enable
        self.hv.domain_create(0, "Domain-0", vcpus=vcpus, privileged=True, initdomain=True,
                              upcalls_masked=True)
        self.dom0 = self.new_kernel(0, dom0_faults)
        features, name = PERSONALITIES[personality]
        self.personality = personality
        self.daemon = Daemon(trace=self.trace, features=features, name=name)
        self.socket = SocketConnection(self.daemon, "tools")
        self.tools = XsClient(self._tool_talk, name="tools")
        self.host: EvtchnDevHost | None = None
        self.ring_server: RingServer | None = None
        self.socket_input = False
        self.guests: dict[int, Guest] = {}

    # -- kernels --------------------------------------------------------------------------
    def new_kernel(self, domid: int, faults: tuple[str, ...] = ()) -> Kernel:
        """new_kernel for domain *domid* on this rig's hypervisor, scheduler and trace."""
        k = new_kernel(self.hv, domid, self.flavour, sched=self.sched, trace=self.trace,
                       name="dom0" if domid == 0 else f"domU{domid}")
        k.faults |= set(faults)
        return k

    def boot(self, kernel: Kernel, *, until: str | None = None, after: str | None = None,
             userspace: bool = False) -> None:
        """Run *kernel*'s boot stages in order (starting after stage *after*, which the test ran
        itself; stopping before stage *until*), then, with *userspace*, its /init (dom0: xenfs
        and the backends; a domU: the frontends)."""
        initdomain = kernel.domid == 0
        stages = kernel.boot_stages(initdomain=initdomain)
        names = [name for name, _ in stages]
        for stage in (until, after):
            if stage is not None and stage not in names:
                raise ValueError(f"{kernel.name} has no boot stage {stage!r}; its stages: {names}")
        if after is not None:
            stages = stages[names.index(after) + 1:]
        for name, run in stages:
            if name == until:
                return
            self.trace.begin_stage(f"{kernel.name}: {name}")
            run()
        self.settle()
        if userspace:
            self.trace.begin_stage(f"{kernel.name}: user space")
            kernel.init_process(initdomain=initdomain)
            self.settle()

    def settle(self) -> None:
        """Run every task and timer until nothing is left to do."""
        self.sched.run(timers=True)

    # -- xenstored ------------------------------------------------------------------------------
    def start_xenstored(self) -> None:
        """xenstored as dom0's init script starts it: bind VIRQ_DOM_EXC, read /proc/xen/xsd_port,
        map /proc/xen/xsd_kva, serve dom0's ring (one kick), then serve rings until killed."""
        assert self.host is None, "xenstored is already running"
        host = self.host = EvtchnDevHost(self.dom0, comm=self.daemon.name)
        server = self.ring_server = RingServer(self.daemon, host, trace=self.trace,
                                               personality=self.personality, actor=self.daemon.name)

        def domain_gone(domid: int) -> bool:
            info = self.hv.getdomaininfo(domid)
            return isinstance(info, int) or info.dying

        def has_work() -> bool:
            return host.dev.has_pending() or self.socket_input

        started = [False]

        def xenstored_main() -> None:
            """One turn of the daemon's main loop; the first turn starts it up (as sim/daemons.py)."""
            if not started[0]:
                started[0] = True
                server.bind_dom_exc(domain_gone)
                port = int(self.dom0.proc["xen/xsd_port"].read())
                server.attach_local(port, host.map_local_store_page())
            self.socket_input = False
            server.service()

        self.sched.kthread_run(xenstored_main, self.daemon.name, owner="dom0",
                               wait=(host.dev.waitq, lambda: not started[0] or has_work()), nests=True)
        self.settle()

    def up(self) -> None:
        """dom0 booted with its backends loaded, and xenstored running (what a guest needs)."""
        if self.host is None:
            self.boot(self.dom0, userspace=True)
            self.start_xenstored()

    # -- the toolstack ----------------------------------------------------------------------------
    def _tool_talk(self, mtype: int, tx_id: int, payload: bytes) -> tuple[int, bytes]:
        """One request on the tools' socket; the daemon's poll wakes to flush what it caused."""
        reply = self.socket.talk(mtype, tx_id, payload)
        if self.host is not None:
            self.socket_input = True
            self.sched.wake_up(self.host.dev.waitq)
        return reply

    def tool_write(self, path: str, value: str) -> None:
        """xenstore-write from dom0's socket."""
        self.tools.write(path, value)

    def tool_set_perms(self, path: str, *specs: str) -> None:
        """xenstore-chmod from dom0's socket: perms like 'n0', 'r1'."""
        self.tools.set_perms(path, perms(*specs))

    def tool_read(self, path: str) -> str | None:
        """xenstore-read from dom0's socket (None if absent)."""
        try:
            return self.tools.read(path)
        except XsError:
            return None

    def tool_rm(self, path: str) -> None:
        """xenstore-rm from dom0's socket."""
        self.tools.rm(path)

    def tool_directory(self, path: str) -> list[str]:
        """xenstore-list from dom0's socket ([] if absent)."""
        try:
            return self.tools.directory(path)
        except XsError:
            return []

    # -- guests -------------------------------------------------------------------------------------
    def create_domU(self, domid: int = 1, *, vcpus: int | None = None, hvm: bool = False,
                    faults: tuple[str, ...] = ()) -> Kernel:
        """xc_domain_create + the domain builder + INTRODUCE; the guest's kernel, not booted yet.

        A PV guest finds its store in start_info; an HVM guest (PV drivers on HVM) in its
        HVM params STORE_PFN / STORE_EVTCHN.
        """
        self.up()
        hv = self.hv
        d = hv.domain_create(domid, f"domU{domid}", vcpus=vcpus or self.vcpus, hvm=hvm,
                             max_evtchn_port=1023, upcalls_masked=True)
        store_port = hv.evtchn_alloc_unbound(0, domid, 0)
        console_port = hv.evtchn_alloc_unbound(0, domid, 0)
        if hvm:  # the special pages and HVM params, set by dom0 (xg_dom_x86.c; frames named by gfn)
            store = hv.populate_physmap(domid, special_pfn(SPECIALPAGE_XENSTORE))
            console = hv.populate_physmap(domid, special_pfn(SPECIALPAGE_CONSOLE))
            store_frame, console_frame = d.mfn_to_pfn(store.mfn), d.mfn_to_pfn(console.mfn)
            for index, value in ((HVM_PARAM_STORE_PFN, store_frame), (HVM_PARAM_CONSOLE_PFN, console_frame),
                                 (HVM_PARAM_CONSOLE_EVTCHN, console_port),
                                 (HVM_PARAM_STORE_EVTCHN, store_port)):
                assert hv.hvm_set_param(0, domid, index, value) == 0
        else:
            store, console = hv.memory.alloc_page(domid), hv.memory.alloc_page(domid)
            store_frame, console_frame = store.mfn, console.mfn
            si = d.start_info
            si.store_mfn, si.store_evtchn = store.mfn, store_port
            si.console.domU.mfn, si.console.domU.evtchn = console.mfn, console_port
        hv.gnttab_seed(domid, console_frame, store_frame)  # xc_dom_gnttab_init: refs 0 and 1, for dom0
        self.guests[domid] = Guest(domid, store.mfn, store_port, console.mfn, console_port)
        kernel = self.new_kernel(domid, faults)
        self.tools.introduce_domain(domid, store_frame, store_port)
        self.settle()
        return kernel


# -- what tests read from a kernel ----------------------------------------------------------------
def irq_names(kernel: Kernel) -> list[str]:
    """The name of every irqaction, by IRQ number (what /proc/interrupts' last column lists)."""
    core = kernel.irq_core
    assert core is not None, f"{kernel.name} has no irq_desc table yet"
    return [a.name for irq in sorted(core.descs) for a in core.descs[irq].actions]


def port_irq_name(kernel: Kernel, port: int) -> str:
    """The irqaction name of the IRQ *kernel* bound event channel *port* to (its evtchn_to_irq)."""
    core = kernel.irq_core
    assert core is not None
    table = kernel.trace.state_at(len(kernel.trace) - 1).get(kernel.table("evtchn_to_irq"), {})
    irq = table.get(str(port), -1)  # trace keys are strings
    desc = core.descs.get(irq)
    assert desc is not None and desc.actions, f"{kernel.name}: port {port} has no IRQ with a handler"
    return ", ".join(a.name for a in desc.actions)


def tasks_of(kernel: Kernel) -> list[str]:
    """The names of the tasks *kernel* started (kernel threads, workqueues), in start order."""
    return [t.name for t in kernel.sched.tasks if t.owner == kernel.name]


# -- a dom0 with backends and a domU with frontends ----------------------------------------------------
FE = "/local/domain/1/device"
BE = "/local/domain/0/backend"


@dataclass
class Pair:
    """dom0 with backends and a domU with frontends, one store, one scheduler."""

    rig: Rig
    dom0: Kernel
    domU: Kernel

    @property
    def hv(self) -> Hypervisor:
        """The hypervisor."""
        return self.rig.hv

    @property
    def xs(self) -> Rig:
        """The toolstack's side of the store (tool_write & co)."""
        return self.rig

    @property
    def sched(self) -> Scheduler:
        """The one scheduler."""
        return self.rig.sched

    def settle(self) -> None:
        """Run everything until idle."""
        self.rig.settle()

    def read(self, path: str) -> str | None:
        """xenstore-read in dom0 (None if absent)."""
        return self.rig.tool_read(path)


def libxl_add_devices(xs: Rig) -> None:
    """What `xl create` writes for disk xvda (51712) and vif 0 (libxl_device.c), with its permissions."""
    def node(path: str, value: str = "") -> None:
        xs.tool_write(path, value)

    for path in ("/local/domain/1", f"{FE}", f"{FE}/vbd", f"{FE}/vif"):
        node(path)
        xs.tool_set_perms(path, "n0", "r1")
    vbd_be, vbd_fe = f"{BE}/vbd/1/51712", f"{FE}/vbd/51712"
    vif_be, vif_fe = f"{BE}/vif/1/0", f"{FE}/vif/0"
    for be, fe in ((vbd_be, vbd_fe), (vif_be, vif_fe)):
        node(be)
        xs.tool_set_perms(be, "n0", "r1")
        node(fe)
        xs.tool_set_perms(fe, "n1", "r0")
    for k, v in {"frontend": vbd_fe, "frontend-id": "1", "online": "1", "params": "/xenlab/disk.img",
                 "dev": "xvda", "type": "phy", "mode": "w", "device-type": "disk", "discard-enable": "1",
                 "script": "/etc/xen/scripts/block", "state": "1"}.items():
        node(f"{vbd_be}/{k}", v)
    for k, v in {"backend": vbd_be, "backend-id": "0", "virtual-device": "51712", "device-type": "disk",
                 "trusted": "1", "state": "1"}.items():
        node(f"{vbd_fe}/{k}", v)
    for k, v in {"frontend": vif_fe, "frontend-id": "1", "online": "1", "mac": "00:16:3e:00:00:01",
                 "bridge": "xenbr0", "handle": "0", "type": "vif", "script": "/etc/xen/scripts/vif-bridge",
                 "state": "1"}.items():
        node(f"{vif_be}/{k}", v)
    for k, v in {"backend": vif_be, "backend-id": "0", "handle": "0", "mac": "00:16:3e:00:00:01",
                 "mtu": "1500", "trusted": "1", "state": "1"}.items():
        node(f"{vif_fe}/{k}", v)


def make_pair(flavour: str = "modern", vcpus: int = 1) -> Pair:
    """dom0 booted (backends loaded, xenstored up), a domU booted without its frontends, vbd + vif added.

    The order is `xl create`'s: the domain and INTRODUCE, the devices (the backends go to
    InitWait), the hotplug scripts (losetup: /dev/loop0), then the guest boots.
    """
    rig = Rig(flavour, vcpus=vcpus)
    domU = rig.create_domU(1)
    pair = Pair(rig, rig.dom0, domU)
    libxl_add_devices(rig)
    pair.settle()
    add_disk(rig.dom0, 7, 0, BlockDevice("loop0", sectors=32768, discard_granularity=4096))
    for k, v in block_hotplug_writes(7, 0, "/dev/loop0"):  # libxl runs the scripts once InitWait
        rig.tool_write(f"{BE}/vbd/1/51712/{k}", v)
    for k, v in vif_hotplug_writes():
        rig.tool_write(f"{BE}/vif/1/0/{k}", v)
    pair.settle()
    rig.boot(domU)
    return pair


def load_frontends(pair: Pair) -> None:
    """The domU's /init: insmod xen-blkfront.ko; insmod xen-netfront.ko (each waits for its devices)."""
    pair.domU.init_process(initdomain=False)
    pair.settle()


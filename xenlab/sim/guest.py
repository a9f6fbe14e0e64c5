"""`xl create`: the order in which libxl brings up a PV guest, and the wait for Connected.

1. ``xc_domain_create`` in the hypervisor; ``libxl__domain_make`` (the xenstore skeleton);
2. the domain builder: store and console ports (alloc_unbound -> 1 and 2), pages, start_info;
3. ``libxl__build_post``: memory/domid/store/cpu keys, then INTRODUCE (xenstored binds the
   store port, fires @introduceDomain; xenconsoled binds the console port);
4. the devices: the vbds, then (once their hotplug scripts are done) the console, then the
   vifs; dom0's backend drivers see each through their "backend" watch and go to InitWait,
   and libxl's watch on the backend's state forks its hotplug script (toolstack.py);
5. the guest is unpaused: its kernel boots (PV: xenstored_ready = 1, probe at once) and
   its frontends shake hands with the backends up to Connected on both ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xenlab.sim import boot
from xenlab.sim.daemons import socket_client
from xenlab.sim.toolstack import (
    BuiltDomain,
    DiskConfig,
    DomainConfig,
    NicConfig,
    Toolstack,
    libxl_random_mac,
    libxl_uuid_generate,
    xvd_name,
)
from xenlab.sim.xsclient import XsClient, XsError

if TYPE_CHECKING:
    from xenlab.linux.kernel import Kernel, LogLine
    from xenlab.sim.machine import Domain, Machine
    from xenlab.xen.memory import Page

XenbusStateInitWait, XenbusStateConnected = 2, 4
MAX_ROUNDS = 50


def toolstack(m: Machine) -> Toolstack:
    """`xl`'s libxl context (the machine's ``toolstack``): made on first use, on its own socket."""
    if m.toolstack is None:
        m.toolstack = Toolstack(m, socket_client(m, "xl"))
    return m.toolstack


def _state(xs: XsClient, path: str) -> int:
    try:
        return int(xs.read(f"{path}/state") or 0)
    except (XsError, ValueError):
        return 0


def device_states(m: Machine, domid: int, b: BuiltDomain) -> dict[str, tuple[int, int]]:
    """'vbd/51712' -> (frontend state, backend state), read from xenstore."""
    xs = toolstack(m).xs
    out: dict[str, tuple[int, int]] = {}
    devs = [("vbd", d.devid) for d in b.config.disks] + [("vif", n.devid) for n in b.config.nics]
    for kind, devid in devs:
        fe = f"/local/domain/{domid}/device/{kind}/{devid}"
        be = f"/local/domain/0/backend/{kind}/{domid}/{devid}"
        out[f"{kind}/{devid}"] = (_state(xs, fe), _state(xs, be))
    return out


def _wait(m: Machine, done: Callable[[], bool]) -> bool:
    """Let the machine run until done() holds (or it cannot make progress)."""
    for _ in range(MAX_ROUNDS):
        if done():
            return True
        if m.settle() == 0 and not done():
            m.sched.run(timers=True, max_switches=1000)
            if done():
                return True
            if not m.sched.runqueue and not m.sched.timers:
                return done()
    return done()


def make_config(m: Machine, name: str, vcpus: int, memory_mb: int, disks: int | list[str],
                vifs: int | list[int], **kw: Any) -> DomainConfig:
    """The xl config of the guest: disks xvda, xvdb, ...; vifs 0, 1, ...; uuid and macs from the seed."""
    if not name:
        raise ValueError("a guest needs a name (xl: Domain name must be specified.)")
    for what, n in (("disks", disks), ("vifs", vifs)):
        if isinstance(n, int) and n < 0:
            raise ValueError(f"{what} must be 0 or more, not {n}")
    if memory_mb < 1:
        raise ValueError(f"memory_mb must be at least 1 (MiB), not {memory_mb}")
    vdevs = [xvd_name(i) for i in range(disks)] if isinstance(disks, int) else list(disks)
    nic_ids = list(range(vifs)) if isinstance(vifs, int) else list(vifs)
    macs = kw.pop("macs", None) or [libxl_random_mac(m.rng) for _ in nic_ids]
    cfg = DomainConfig(name=name, vcpus=vcpus, memory_mb=memory_mb,
                       disks=[DiskConfig(v) for v in vdevs],
                       nics=[NicConfig(i, mac) for i, mac in zip(nic_ids, macs, strict=True)], **kw)
    if not cfg.uuid:
        cfg.uuid = libxl_uuid_generate(m.rng)
    return cfg


def create_domU(m: Machine, *, name: str, vcpus: int, memory_mb: int, disks: int | list[str],
                vifs: int | list[int], frontends: bool = True, **kw: Any) -> Domain:
    """xl create: build, introduce, add devices, hotplug, boot, wait for Connected.

    *frontends* False stops the guest before its /init loads xen-blkfront and xen-netfront
    (the devices then wait in Initialising); ``load_frontends`` does that step later.
    """
    from xenlab.linux.kernels import new_kernel
    from xenlab.sim.machine import Domain

    domid = m.alloc_domid()
    cfg = make_config(m, name, vcpus, memory_mb, disks, vifs, **kw)
    cfg.cmdline = m.kernel_cmdline(cfg.cmdline)  # extra= in the xl config: xen.fifo_events=0
    ts = toolstack(m)

    m.trace.begin_stage(f"xl create d{domid}: domain")
    ts.xc_domain_create(domid, cfg)
    ts.libxl__domain_make(domid, cfg)
    b = BuiltDomain(domid, cfg)
    ts.xc_dom_build(domid, b)
    ts.built[domid] = b
    stop = m.has_fault("xenstored-stopped")
    if m.has_fault("ring-not-quiescent") and not stop:
        boot.dirty_store_page(m, b.store_page)
    kernel = new_kernel(m.hv, domid, m.flavour, sched=m.sched, trace=m.trace, name=f"domU{domid}",
                        cmdline=cfg.cmdline)
    kernel.faults |= m.kernel_faults("domU")
    dom = Domain(m, domid, name, kernel, memory_mb, vcpus, info=b)
    m.add_domain(dom)
    ts.libxl__build_post(domid, b)
    m.settle()

    m.trace.begin_stage(f"xl create d{domid}: devices")
    if ts.domcreate_devices(domid, b):
        msg = f"d{domid}: libxl could not add its devices (a backend never reached InitWait)"
        if not m.fault_info:
            from xenlab.sim.machine import MachineError
            raise MachineError(msg)
        m.errors.append(msg)  # libxl would destroy the domain; the lab keeps it to show what is left

    if stop:
        debugger_stops_xenstored(m, kernel, b.store_page, domid)
    boot.boot_kernel(m, kernel, initdomain=False, userspace=frontends)
    m.settle()
    if frontends:
        wait_connected(m, domid)
    return dom


def debugger_stops_xenstored(m: Machine, kernel: Kernel, page: Page, domid: int) -> None:
    """Fault xenstored-stopped: SIGSTOP xenstored before the guest runs, SIGCONT once xb_init_comms spoke.

    A debugger holds xenstored after the toolstack's last request (stopped any earlier, xl create
    and dom0's backends would wait for it); the stale bytes of ring-not-quiescent land after that,
    so no main-loop turn of xenstored reads the request ring before the guest's ``xb_init_comms``
    looks at it. The debugger's user continues xenstored when the guest's console shows the
    quiescence complaints (the last of them: the response ring's): "continue" is a task of its
    own, so it runs at the next scheduling point, after that ``xb_init_comms`` has returned.
    """
    assert m.xenstored_signal is not None, "xenstored runs before any guest is created"
    signal = m.xenstored_signal
    m.settle()  # what the toolstack's last request set going (watch events, backends) runs first
    signal("SIGSTOP")
    boot.dirty_store_page(m, page, domid)

    def reader(line: LogLine) -> None:
        if "response ring is not quiescent" in line.text:
            kernel.console_readers.remove(reader)
            m.sched.kthread_run(signal, "gdb", "SIGCONT", owner="dom0", kthread=False, nests=True)

    kernel.console_readers.append(reader)


def load_frontends(m: Machine, domid: int) -> None:
    """The guest's /init: insmod xen-blkfront.ko and xen-netfront.ko, then wait for Connected."""
    kernel = m.kernel(domid)
    m.trace.begin_stage(f"{kernel.name}: user space")
    kernel.init_process(initdomain=False)
    m.settle()
    wait_connected(m, domid)


def wait_connected(m: Machine, domid: int) -> None:
    """Let the handshakes run until every vbd and vif is Connected on both ends (or record why not)."""
    from xenlab.sim.machine import MachineError

    b = toolstack(m).built[domid]

    def connected() -> bool:
        both = (XenbusStateConnected, XenbusStateConnected)
        return all(s == both for s in device_states(m, domid, b).values())

    if not _wait(m, connected):
        states = ", ".join(f"{k} frontend={f} backend={bk}"
                           for k, (f, bk) in device_states(m, domid, b).items())
        msg = f"d{domid} devices did not reach state 4 (Connected): {states}"
        if not m.fault_info:
            raise MachineError(msg)
        m.errors.append(msg)  # with a fault injected this is the lesson, not a failure
        m.trace.record("xl create", msg, actor="toolstack", source="tools/libs/light/libxl_device.c")


def destroy_domU(m: Machine, domid: int) -> None:
    """xl destroy (libxl_domain.c): pause, remove every device's xenstore paths (force: no
    handshake) and run the hotplug scripts' remove, xc_domain_destroy (Xen raises
    VIRQ_DOM_EXC: xenstored fires @releaseDomain and lets the ring go, xenconsoled lets the
    console go), then remove /local/domain/<D>, /vm/<uuid> and /libxl/<D>."""
    from xenlab.sim.machine import MachineError

    if domid == 0 or domid not in m.domains:
        raise MachineError(f"xl destroy: no guest {domid}; guests: "
                           f"{', '.join(str(d) for d in sorted(m.domains) if d) or 'none'}")
    ts = toolstack(m)
    b = ts.built[domid]
    m.trace.begin_stage(f"xl destroy d{domid}")
    m.hv.domain_pause(domid)
    devices = [("console", 0, f"/local/domain/{domid}/console")]
    devices += [("vbd", d.devid, None) for d in b.config.disks]
    devices += [("vif", n.devid, None) for n in b.config.nics]
    for kind, devid, fe in devices:
        ts.libxl__device_destroy(domid, kind, devid, fe)
        m.settle()
        if kind == "vbd":
            ts.hotplug_block_remove(domid, devid)
    ts.xc_domain_destroy(domid)
    m.settle()
    ts.libxl__domain_destroy_paths(domid, b.config.uuid)
    m.settle()
    m.remove_domain(domid)

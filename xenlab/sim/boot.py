"""How a guest kernel boots in the machine: the order of the init steps the lab models.

A real kernel runs its initcalls in a fixed order, and every IRQ and port number a
learner sees follows from it (each is the lowest free one at the moment of binding).
For a PV kernel (``xenlab.linux.boot_irqs`` and ``xenlab.linux.xenbus.probe`` document
each step):

1. early IRQs: ``xen_init_IRQ``, then per vcpu the timer VIRQ and the IPIs;
2. xenbus: modern ``xenbus_init`` (postcore) + ``xenbus_probe_backend_init`` /
   ``xenbus_probe_frontend_init`` (subsys); 2.6.18 ``xenbus_probe_init``;
3. late IRQs: dom0's PIRQs and VIRQs, the console (``hvc_console_init``);
4. built-in drivers and the device initcall: ``console_init`` (xenconsole, vfb, vkbd),
   ``xenbus_probe_initcall`` (a domU probes now, dom0 starts "xenbus_probe", which waits
   for xenstored's first event), and in a domU ``boot_wait_for_devices`` (late);
5. user space: dom0's /init mounts xenfs and loads the backends (xen-blkback,
   xen-netback); a domU's /init loads the frontends (xen-blkfront, xen-netfront).

Each step is a named stage of the trace (``trace.begin_stage``), so a stepper can jump to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xenlab.sim.faults import exhaust_irqs
from xenlab.sim.xsclient import XsClient

if TYPE_CHECKING:
    from xenlab.sim.machine import Machine


def boot_kernel(m: Machine, kernel: Any, *, initdomain: bool, userspace: bool = True) -> None:
    """Boot *kernel* through the stages above (*userspace*: also its /init's module loading);
    a boot that hangs (a fault) is recorded, not raised."""
    from xenlab.base.sched import Deadlock

    try:
        _boot_stages(m, kernel, initdomain=initdomain, userspace=userspace)
    except Deadlock as e:
        # e.g. xs_init failed, then a driver asks xenstore something: the real kernel waits forever
        msg = f"{kernel.name}: boot hung in stage {m.trace._stage!r}: {e}"
        m.errors.append(msg)
        m.trace.record("boot hung", msg, actor=kernel.name, source="init/main.c")


def _boot_stages(m: Machine, kernel: Any, *, initdomain: bool, userspace: bool) -> None:
    """The stages, in order."""
    from xenlab.linux import boot_irqs, interrupts
    from xenlab.linux.drivers import console, control
    from xenlab.linux.xenbus import probe

    name = kernel.name
    m.trace.begin_stage(f"{name}: early IRQs")
    boot_irqs.boot_early_irqs(kernel)
    if "interrupts" not in kernel.proc:
        interrupts.register_proc_interrupts(kernel)
    if m.has_fault("exhaust-irqs", "dom0" if initdomain else "domU"):
        exhaust_irqs(kernel)
    m.trace.begin_stage(f"{name}: xenbus init")
    if kernel.flavour == "2.6.18":
        probe.xenbus_probe_init(kernel)
    else:
        probe.xenbus_init(kernel)
        probe.xenbus_probe_backend_init(kernel)
        probe.xenbus_probe_frontend_init(kernel)
    m.trace.begin_stage(f"{name}: late IRQs")
    boot_irqs.boot_late_irqs(kernel)
    m.trace.begin_stage(f"{name}: drivers")
    console.xen_subsys_init(kernel)
    control.xen_control_init(kernel)
    console.console_init(kernel)
    if kernel.flavour != "2.6.18":
        probe.xenbus_probe_initcall(kernel)
    if not initdomain:
        probe.boot_wait_for_devices(kernel)
    m.settle()
    if not userspace:
        return
    m.trace.begin_stage(f"{name}: user space")
    if initdomain:
        dom0_init(m, kernel)
    else:
        domu_init(m, kernel)
    m.settle()


def dom0_init(m: Machine, kernel: Any) -> None:
    """dom0's /init before xenstored: mount xenfs on /proc/xen, modprobe the backends."""
    from xenlab.linux.drivers.blkback import blkback_init
    from xenlab.linux.drivers.netback import netback_init
    from xenlab.linux.procfs_xen import xenfs_mount

    xenfs_mount(kernel)
    blkback_init(kernel)
    netback_init(kernel)


def domu_init(m: Machine, kernel: Any) -> None:
    """The guest's /init: insmod xen-blkfront.ko and xen-netfront.ko."""
    from xenlab.linux.drivers.blkfront import blkfront_init
    from xenlab.linux.drivers.netfront import netfront_init

    blkfront_init(kernel)
    netfront_init(kernel)


def kernel_xs_client(m: Machine, kernel: Any) -> XsClient:
    """xs_open() inside a guest: /dev/xen/xenbus, i.e. requests through the kernel's store ring."""
    from xenlab.linux.xenbus import xs

    def talk(mtype: int, tx_id: int, payload: bytes) -> tuple[int, bytes]:
        return xs.xenbus_dev_request(kernel, mtype, tx_id, payload)

    return XsClient(talk, name=f"{kernel.name}:/dev/xen/xenbus")


def dirty_store_page(m: Machine, page: Any) -> None:
    """Fault ring-not-quiescent: leave stale bytes and indices in a guest's store page."""
    from xenlab.abi.xs_wire import xenstore_domain_interface

    intf = xenstore_domain_interface.from_buffer(page.buf)
    intf.req_prod = intf.req_cons = 24
    intf.rsp_prod, intf.rsp_cons = 32, 16
    m.trace.record("fault ring-not-quiescent", "stale indices in the guest's store page: req 24/24, "
                   "16 unread response bytes (rsp_cons 16, rsp_prod 32)", actor="toolstack",
                   source="xenlab/sim/faults.py",
                   changes=[("toolstack/store_page", k, 0, v) for k, v in
                            (("req_prod", 24), ("req_cons", 24), ("rsp_prod", 32), ("rsp_cons", 16))])

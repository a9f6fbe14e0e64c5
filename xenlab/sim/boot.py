"""How a guest kernel boots in the machine: the order of the init steps the lab models.

A real kernel runs its initcalls in a fixed order, and every IRQ and port number a
learner sees follows from it (each is the lowest free one at the moment of binding).
Each kernel says its own order (``Kernel.boot_stages``: ``xenlab.linux.xenlinux.kernel``
and ``xenlab.linux.pvops.kernel``): first "early IRQs" (``xen_init_IRQ``, modern dom0 with
``pci_xen_initial_domain``, each vcpu's timer VIRQ and IPIs), then the kernel's initcalls
by level in link order (XenLinux 2.6.18: "xenbus init" at postcore, then arch, subsys,
device and late initcalls; Linux 6.1: "grant table", "xenbus init" with the subsys
initcalls, "late IRQs", "drivers" with the device and late initcalls and /dev/console's
open), then, after this module's ``boot_kernel`` has let the threads settle, "user space":
dom0's /init mounts xenfs and loads the backends, a domU's /init loads the frontends.

Each step is a named stage of the trace (``trace.begin_stage``), so a stepper can jump to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.linux.kernel import Kernel
from xenlab.sim.xsclient import XsClient

if TYPE_CHECKING:
    from xenlab.sim.machine import Machine
    from xenlab.xen.memory import Page


def boot_kernel(m: Machine, kernel: Kernel, *, initdomain: bool, userspace: bool = True) -> None:
    """Boot *kernel* through the stages above (*userspace*: also its /init's module loading);
    a boot that hangs (a fault) is recorded, not raised."""
    from xenlab.base.sched import Deadlock

    try:
        _boot_stages(m, kernel, initdomain=initdomain, userspace=userspace)
    except Deadlock as e:
        # e.g. xs_init failed, then a driver asks xenstore something: the real kernel waits forever
        msg = f"{kernel.name}: boot hung in stage {m.trace.stage!r}: {e}"
        m.errors.append(msg)
        m.trace.record("boot hung", msg, actor=kernel.name, source="init/main.c")


def _boot_stages(m: Machine, kernel: Kernel, *, initdomain: bool, userspace: bool) -> None:
    """The kernel's own stages, in order, then its /init."""
    for stage, run in kernel.boot_stages(initdomain=initdomain):
        m.trace.begin_stage(f"{kernel.name}: {stage}")
        run()
        if stage == "early IRQs" and m.has_fault("exhaust-irqs", "dom0" if initdomain else "domU"):
            kernel.exhaust_irqs()
    m.settle()
    if not userspace:
        return
    m.trace.begin_stage(f"{kernel.name}: user space")
    kernel.init_process(initdomain=initdomain)
    m.settle()


def kernel_xs_client(m: Machine, kernel: Kernel) -> XsClient:
    """xs_open() inside a guest: /dev/xen/xenbus, i.e. requests through the kernel's store ring."""
    return XsClient(kernel.xenbus_dev_request, name=f"{kernel.name}:/dev/xen/xenbus")


def dirty_store_page(m: Machine, page: Page, domid: int | None = None) -> None:
    """Fault ring-not-quiescent: leave a stale request and stale response bytes in a guest's store page.

    The request (DIRECTORY "device", req_id 0) is well-formed and unread: xenstored, the
    consumer of ``req``, answers it as soon as the domain is introduced, so the guest's
    ``xb_init_comms`` finds ``req`` drained and ``rsp`` holding the 16 stale bytes and that
    answer, which it skips. With xenstored-stopped the bytes land after the introduce
    (*domid*'s ring already mapped by xenstored: its view of the page changes too).
    """
    from xenlab.abi.xs_wire import XS_DIRECTORY, xenstore_domain_interface, xsd_sockmsg

    payload = b"device\0"
    stale = bytes(xsd_sockmsg(type=XS_DIRECTORY, req_id=0, tx_id=0, len=len(payload))) + payload
    intf = xenstore_domain_interface.from_buffer(page.buf)
    req_cons, req_prod = 24, 24 + len(stale)
    new = {"req_prod": req_prod, "req_cons": req_cons, "rsp_prod": 32, "rsp_cons": 16}
    old = {k: int(getattr(intf, k)) for k in new}
    at = xenstore_domain_interface.req.offset + req_cons
    page.buf[at:at + len(stale)] = stale
    intf.req_cons, intf.req_prod = req_cons, req_prod
    intf.rsp_prod, intf.rsp_cons = new["rsp_prod"], new["rsp_cons"]
    m.trace.set_initial("toolstack/store_page", 0)  # the fields of the page xc_dom_build cleared
    changes = [("toolstack/store_page", k, old[k], v) for k, v in new.items()]
    ring = m.ring_server.rings.get(domid) if m.ring_server is not None and domid is not None else None
    if ring is not None:  # the daemon's own fields of the page (its table: req_cons, rsp_prod)
        changes += [(ring.table, k, old[k], new[k]) for k in ("req_cons", "rsp_prod")]
    m.trace.record("fault ring-not-quiescent", f"stale store page: an unread DIRECTORY request in "
                   f"req[{req_cons}..{req_prod}) (req_cons {req_cons}, req_prod {req_prod}), 16 unread "
                   "response bytes (rsp_cons 16, rsp_prod 32)", actor="toolstack",
                   source="xenlab/sim/faults.py", changes=changes)

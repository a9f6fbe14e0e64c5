"""XenLinux 2.6.18 event channels bound to IRQs (drivers/xen/core/evtchn.c).

Theory of operation
-------------------
The 2.6.18 Xen kernel splits its IRQ space in two fixed windows (reference §4.1):
IRQs ``PIRQ_BASE .. PIRQ_BASE+NR_PIRQS-1`` are physical IRQs (1:1 with Xen PIRQs) and
``DYNIRQ_BASE .. DYNIRQ_BASE+NR_DYNIRQS-1`` are *dynamic* IRQs, handed out to event
channels. Four tables (file-scope arrays in evtchn.c) carry the binding:

* ``evtchn_to_irq[port]`` -- the IRQ a port raises, -1 if none (all -1 at boot);
* ``irq_info[irq]`` -- one packed u32: ``type<<24 | index<<16 | port`` (``mk_irq_info``);
* ``irq_bindcount[irq]`` -- how many bindings share the IRQ (dynirqs start at 0, PIRQs
  are nailed to 1 so ``find_unbound_irq`` never hands them out);
* per-cpu ``virq_to_irq[cpu][virq]`` and ``ipi_to_irq[cpu][ipi]`` (-1 when unbound).

``find_unbound_irq`` scans for the lowest dynamic IRQ whose bindcount is 0 -- linearly,
on every bind. A port the caller already owns (xenstore, console) is bound with
``bind_caller_port_to_irq`` (type ``IRQT_CALLER_PORT``: a rebind shares the IRQ and
bumps the count; unbinding never closes the port, it is not ours). Ports the kernel
allocates (``bind_listening_port_to_irqhandler``) or binds to a peer
(``bind_interdomain_evtchn_to_irqhandler``) are ``IRQT_LOCAL_PORT`` and are closed
when the last binding goes. ``evtchn_do_upcall`` (set as the domain's ``upcall``) scans
the shared_info selector and pending words and calls ``do_IRQ(evtchn_to_irq[port])``.

Variants (``Xen2618Irq.variant``): ``"L18"`` (the XenLinux tree of reference §0, the
default), ``"RH5-274"`` (RHEL 5.7 2.6.18-274: bigger NR_DYNIRQS, scans to NR_IRQS,
warns "increase NR_IRQS!"), ``"RH5-8.el5"`` (RHEL 5.0: types without CALLER/LOCAL
ports -- IRQT_EVTCHN = 4 --, ``panic`` when exhausted, every unbind closes the port).

Trace tables: ``<kernel>/evtchn_to_irq``, ``/irq_info`` (the packed u32), ``/irq_bindcount``,
``/virq_to_irq`` and ``/ipi_to_irq`` (key ``"<cpu>/<index>"``), ``/irq_action``,
``/kstat_irqs``; mask and pending bits are rows on Xen's ``xen/d<N>/evtchn_mask`` and
``/evtchn_pending`` (the shared_info page), in this kernel's steps.
"""

from __future__ import annotations

from typing import Any

from xenlab.abi.errno import ENOSPC
from xenlab.abi.event_channel import DOMID_SELF, NR_VIRQS
from xenlab.linux import irq as irqcore
from xenlab.linux.evtchn_tables import (  # noqa: F401  (part of this module's API)
    CALL_FUNCTION_VECTOR,
    IRQ_UNBOUND,
    IRQT_CALLER_PORT,
    IRQT_EVTCHN,
    IRQT_IPI,
    IRQT_LOCAL_PORT,
    IRQT_NAMES_L18,
    IRQT_NAMES_RH5_8,
    IRQT_PIRQ,
    IRQT_UNBOUND,
    IRQT_VIRQ,
    NR_IPIS,
    RESCHEDULE_VECTOR,
    SRC,
    VARIANTS,
    IrqSpace,
    Xen2618Irq,
    _domain,
    _rec,
    _state,
    _t,
    evtchn_from_irq_info,
    index_from_irq_info,
    irq_space,
    mk_irq_info,
    nr_vcpus,
    type_from_irq_info,
)
from xenlab.linux.irq import IrqCore, Row, SharedBits
from xenlab.linux.kernel import KERN_WARNING


# -- init -------------------------------------------------------------------------------
def xen_init_IRQ(kernel: Any, variant: str = "L18", arch: str = "x86_64") -> Xen2618Irq:
    """xen_init_IRQ: mask every port, all irq_info UNBOUND, dynirq counts 0, PIRQ counts nailed to 1."""
    hv_bits = getattr(kernel.hv, "bits", 64)
    space = irq_space(variant, arch)
    nr_cpus = nr_vcpus(kernel)
    nports = hv_bits * hv_bits
    st = Xen2618Irq(
        kernel, variant, arch, space, nr_cpus, nports, IrqCore(kernel, nr_cpus), SharedBits(kernel)
    )
    kernel.irq = st
    st.evtchn_to_irq = [-1] * nports
    st.irq_info = [IRQ_UNBOUND] * space.NR_IRQS
    st.irq_bindcount = [0] * space.NR_IRQS
    st.virq_to_irq = [[-1] * NR_VIRQS for _ in range(nr_cpus)]
    st.ipi_to_irq = [[-1] * NR_IPIS for _ in range(nr_cpus)]
    st.upcall_count = [0] * nr_cpus
    st.scan_state = [{} for _ in range(nr_cpus)]
    masks: list[Row] = []
    for port in range(nports):
        st.shared.set_mask(port, masks)
    dyn, phys = _dynirq_chip(kernel), _pirq_chip(kernel)
    for i in range(space.NR_DYNIRQS):
        desc = st.core.alloc_desc(space.DYNIRQ_BASE + i)
        desc.chip, desc.flow = dyn, "do_IRQ"
    rtc_irq = 8
    for i in range(space.NR_PIRQS):
        irq = space.PIRQ_BASE + i
        st.irq_bindcount[irq] = 1
        desc = st.core.alloc_desc(irq)
        if i == rtc_irq and not getattr(_domain(kernel), "initdomain", kernel.domid == 0):
            continue  # "If not domain 0, force our RTC driver to fail its probe."
        desc.chip, desc.flow = phys, "do_IRQ"
    _rec(
        kernel,
        "xen_init_IRQ",
        f"{variant}: all {nports} ports masked, evtchn_to_irq all -1, "
        f"IRQs {space.DYNIRQ_BASE}..{space.NR_IRQS - 1} 'Dynamic-irq' bindcount 0, "
        f"PIRQs {space.PIRQ_BASE}..{space.PIRQ_BASE + space.NR_PIRQS - 1} 'Phys-irq' bindcount nailed to 1 "
        "(tables record only entries that differ from these values)",
        masks,
    )
    _domain(kernel).upcall = lambda vcpu: evtchn_do_upcall(kernel, vcpu)
    return st


# -- find_unbound_irq and the binders ---------------------------------------------------
def find_unbound_irq(kernel: Any) -> int:
    """find_unbound_irq: the lowest dynamic IRQ with bindcount 0, else warn once and -ENOSPC."""
    st = _state(kernel)
    sp = st.space
    count = st.irq_bindcount
    if st.variant == "L18":
        first, last = sp.DYNIRQ_BASE, sp.DYNIRQ_BASE + sp.NR_DYNIRQS
        how = f"dynirq 0..{sp.NR_DYNIRQS - 1} (IRQ {first}..{last - 1})"
    else:
        first, last = sp.DYNIRQ_BASE, sp.NR_IRQS
        how = f"IRQ {first}..{last - 1}"
    scanned = 0
    for irq in range(first, last):  # linear by design: this is what the kernel does on every bind
        scanned += 1
        if count[irq] == 0:
            st.last_scan = scanned
            _rec(
                kernel,
                "find_unbound_irq",
                f"scanned {how}: {scanned - 1} in use before IRQ {irq}, which has bindcount 0 -> IRQ {irq}",
            )
            return irq
    st.last_scan = scanned
    if st.variant == "RH5-8.el5":
        msg = "No available IRQ to bind to: increase NR_IRQS!"
        _rec(kernel, "find_unbound_irq", f"scanned {how}: all {scanned} in use -> panic", printk=msg)
        kernel.panic(msg)
    msg = (
        "No available IRQ to bind to: increase NR_DYNIRQS."
        if st.variant == "L18"
        else "No available IRQ to bind to: increase NR_IRQS!"
    )
    if not st.warned:
        st.warned = True
        kernel.printk(KERN_WARNING, msg)
        _rec(
            kernel,
            "find_unbound_irq",
            f"scanned {how}: all {scanned} in use -> warn (once), -ENOSPC",
            printk=msg,
        )
    else:
        _rec(kernel, "find_unbound_irq", f"scanned {how}: all {scanned} in use -> -ENOSPC (already warned)")
    return -ENOSPC


def _bind_port(kernel: Any, fn: str, port: int, irq: int, type_: int, index: int = 0) -> None:
    st = _state(kernel)
    old_e, old_i = st.evtchn_to_irq[port], st.irq_info[irq]
    st.evtchn_to_irq[port] = irq
    st.irq_info[irq] = mk_irq_info(type_, index, port)
    _rec(
        kernel,
        fn,
        f"port {port} -> IRQ {irq}; irq_info[{irq}] = {st.irq_info[irq]:#010x} ({st.describe(irq)})",
        [
            (_t(kernel, "evtchn_to_irq"), port, old_e, irq),
            (_t(kernel, "irq_info"), irq, old_i, st.irq_info[irq]),
        ],
    )


def _bindcount_inc(kernel: Any, fn: str, irq: int, why: str) -> None:
    st = _state(kernel)
    old = st.irq_bindcount[irq]
    st.irq_bindcount[irq] += 1
    _rec(
        kernel,
        fn,
        f"irq_bindcount[{irq}] {old} -> {old + 1} ({why})",
        [(_t(kernel, "irq_bindcount"), irq, old, old + 1)],
    )


def bind_caller_port_to_irq(kernel: Any, caller_port: int) -> int:
    """bind_caller_port_to_irq: map a port we were given (xenstore, console); a rebind shares the IRQ."""
    st = _state(kernel)
    irq = st.evtchn_to_irq[caller_port]
    if irq == -1:
        irq = find_unbound_irq(kernel)
        if irq < 0:
            return irq
        _bind_port(
            kernel,
            "bind_caller_port_to_irq",
            caller_port,
            irq,
            IRQT_CALLER_PORT if st.has_caller_port else IRQT_EVTCHN,
        )
        why = "first binding"
    else:
        _rec(kernel, "bind_caller_port_to_irq", f"port {caller_port} already on IRQ {irq}: share it")
        why = "rebind shares the IRQ"
    _bindcount_inc(kernel, "bind_caller_port_to_irq", irq, why)
    return irq


def bind_local_port_to_irq(kernel: Any, local_port: int) -> int:
    """bind_local_port_to_irq: map a port we allocated; no free IRQ -> close the port, -ENOSPC."""
    st = _state(kernel)
    if st.evtchn_to_irq[local_port] != -1:
        kernel.panic(
            f"BUG() in bind_local_port_to_irq: port {local_port} already on IRQ "
            f"{st.evtchn_to_irq[local_port]}"
        )
    irq = find_unbound_irq(kernel)
    if irq < 0:
        rc = kernel.hv.evtchn_close(kernel.domid, local_port)
        _rec(kernel, "bind_local_port_to_irq", f"no IRQ for port {local_port}: EVTCHNOP_close -> {rc}")
        if rc:
            kernel.panic(f"BUG() in bind_local_port_to_irq: EVTCHNOP_close({local_port}) -> {rc}")
        return irq
    _bind_port(
        kernel,
        "bind_local_port_to_irq",
        local_port,
        irq,
        IRQT_LOCAL_PORT if st.has_caller_port else IRQT_EVTCHN,
    )
    _bindcount_inc(kernel, "bind_local_port_to_irq", irq, "first binding")
    return irq


def bind_listening_port_to_irq(kernel: Any, remote_domain: int) -> int:
    """bind_listening_port_to_irq: EVTCHNOP_alloc_unbound(DOMID_SELF, remote) then a LOCAL_PORT bind."""
    port = kernel.hv.evtchn_alloc_unbound(kernel.domid, DOMID_SELF, remote_domain)
    _rec(kernel, "bind_listening_port_to_irq", f"EVTCHNOP_alloc_unbound(remote {remote_domain}) -> {port}")
    return port if port < 0 else bind_local_port_to_irq(kernel, port)


def bind_interdomain_evtchn_to_irq(kernel: Any, remote_domain: int, remote_port: int) -> int:
    """bind_interdomain_evtchn_to_irq: EVTCHNOP_bind_interdomain then a LOCAL_PORT bind."""
    port = kernel.hv.evtchn_bind_interdomain(kernel.domid, remote_domain, remote_port)
    _rec(
        kernel,
        "bind_interdomain_evtchn_to_irq",
        f"EVTCHNOP_bind_interdomain(dom {remote_domain}, port {remote_port}) -> {port}",
    )
    return port if port < 0 else bind_local_port_to_irq(kernel, port)


def bind_virq_to_irq(kernel: Any, virq: int, cpu: int) -> int:
    """bind_virq_to_irq: reuse the per-cpu VIRQ mapping or take an IRQ + EVTCHNOP_bind_virq."""
    st = _state(kernel)
    irq = st.virq_to_irq[cpu][virq]
    if irq == -1:
        irq = find_unbound_irq(kernel)
        if irq < 0:
            return irq
        port = kernel.hv.evtchn_bind_virq(kernel.domid, virq, cpu)
        if port < 0:
            kernel.panic(f"BUG() in bind_virq_to_irq: EVTCHNOP_bind_virq({virq}, {cpu}) -> {port}")
        _rec(kernel, "bind_virq_to_irq", f"EVTCHNOP_bind_virq(VIRQ {virq}, vcpu {cpu}) -> port {port}")
        _bind_port(kernel, "bind_virq_to_irq", port, irq, IRQT_VIRQ, virq)
        st.virq_to_irq[cpu][virq] = irq
        _rec(
            kernel,
            "bind_virq_to_irq",
            f"virq_to_irq[cpu{cpu}][{virq}] = {irq}",
            [(_t(kernel, "virq_to_irq"), f"{cpu}/{virq}", -1, irq)],
        )
        bind_evtchn_to_cpu(kernel, port, cpu)
    _bindcount_inc(kernel, "bind_virq_to_irq", irq, f"VIRQ {virq} on cpu{cpu}")
    return irq


def bind_ipi_to_irq(kernel: Any, ipi: int, cpu: int) -> int:
    """bind_ipi_to_irq: reuse the per-cpu IPI mapping or take an IRQ + EVTCHNOP_bind_ipi."""
    st = _state(kernel)
    irq = st.ipi_to_irq[cpu][ipi]
    if irq == -1:
        irq = find_unbound_irq(kernel)
        if irq < 0:
            return irq
        port = kernel.hv.evtchn_bind_ipi(kernel.domid, cpu)
        if port < 0:
            kernel.panic(f"BUG() in bind_ipi_to_irq: EVTCHNOP_bind_ipi({cpu}) -> {port}")
        _rec(kernel, "bind_ipi_to_irq", f"EVTCHNOP_bind_ipi(vcpu {cpu}) -> port {port}")
        _bind_port(kernel, "bind_ipi_to_irq", port, irq, IRQT_IPI, ipi)
        st.ipi_to_irq[cpu][ipi] = irq
        _rec(
            kernel,
            "bind_ipi_to_irq",
            f"ipi_to_irq[cpu{cpu}][{ipi}] = {irq}",
            [(_t(kernel, "ipi_to_irq"), f"{cpu}/{ipi}", -1, irq)],
        )
        bind_evtchn_to_cpu(kernel, port, cpu)
    _bindcount_inc(kernel, "bind_ipi_to_irq", irq, f"IPI {ipi} on cpu{cpu}")
    return irq


def unbind_from_irq(kernel: Any, irq: int) -> None:
    """unbind_from_irq: drop one binding; at 0 close the port (not a CALLER_PORT) and clear the maps."""
    st = _state(kernel)
    info = st.irq_info[irq]
    port = evtchn_from_irq_info(info)
    old = st.irq_bindcount[irq]
    st.irq_bindcount[irq] -= 1
    changes: list[tuple[str, Any, Any, Any]] = [(_t(kernel, "irq_bindcount"), irq, old, old - 1)]
    if st.irq_bindcount[irq] != 0 or not port:
        _rec(kernel, "unbind_from_irq", f"IRQ {irq}: bindcount {old} -> {old - 1}, still bound", changes)
        return
    type_ = type_from_irq_info(info)
    closes = not (st.has_caller_port and type_ == IRQT_CALLER_PORT)
    note = ""
    if closes:
        rc = kernel.hv.evtchn_close(kernel.domid, port)
        if rc:
            kernel.panic(f"BUG() in unbind_from_irq: EVTCHNOP_close({port}) -> {rc}")
        note = f"EVTCHNOP_close port {port}"
    else:
        note = f"port {port} is the caller's: left open"
    cpu = st.cpu_evtchn.get(port, 0)
    if type_ == IRQT_VIRQ:
        st.virq_to_irq[cpu][index_from_irq_info(info)] = -1
        changes.append((_t(kernel, "virq_to_irq"), f"{cpu}/{index_from_irq_info(info)}", irq, -1))
    elif type_ == IRQT_IPI:
        st.ipi_to_irq[cpu][index_from_irq_info(info)] = -1
        changes.append((_t(kernel, "ipi_to_irq"), f"{cpu}/{index_from_irq_info(info)}", irq, -1))
    bind_evtchn_to_cpu(kernel, port, 0)
    st.evtchn_to_irq[port] = -1
    st.irq_info[irq] = IRQ_UNBOUND
    changes += [
        (_t(kernel, "evtchn_to_irq"), port, irq, -1),
        (_t(kernel, "irq_info"), irq, info, IRQ_UNBOUND),
    ]
    desc = st.core.descs[irq]
    for cpu_i in range(len(desc.kstat)):
        if desc.kstat[cpu_i]:
            changes.append((_t(kernel, "kstat_irqs"), f"{irq}/cpu{cpu_i}", desc.kstat[cpu_i], 0))
        desc.kstat[cpu_i] = 0
    _rec(
        kernel,
        "unbind_from_irq",
        f"IRQ {irq}: bindcount {old} -> 0: {note}; evtchn_to_irq[{port}] = -1, "
        "irq_info UNBOUND, stats zapped",
        changes,
    )


def _with_handler(kernel: Any, irq: int, handler: Any, irqflags: int, devname: str, dev_id: Any) -> int:
    if irq < 0:
        return irq
    rc = irqcore.request_irq(kernel, irq, handler, irqflags, devname, dev_id)
    if rc != 0:
        unbind_from_irq(kernel, irq)
        return rc
    return irq


def bind_caller_port_to_irqhandler(
    kernel: Any, caller_port: int, handler: Any, irqflags: int, devname: str, dev_id: Any
) -> int:
    """bind_caller_port_to_irqhandler: bind_caller_port_to_irq + request_irq (failure unbinds)."""
    return _with_handler(
        kernel, bind_caller_port_to_irq(kernel, caller_port), handler, irqflags, devname, dev_id
    )


#: RH5 -8.el5 (Xen 3.0.3) has no caller-port split: xenbus binds its port with this.
bind_evtchn_to_irqhandler = bind_caller_port_to_irqhandler


def bind_listening_port_to_irqhandler(
    kernel: Any, remote_domain: int, handler: Any, irqflags: int, devname: str, dev_id: Any
) -> int:
    """bind_listening_port_to_irqhandler: alloc_unbound(remote) + LOCAL_PORT bind + request_irq."""
    return _with_handler(
        kernel, bind_listening_port_to_irq(kernel, remote_domain), handler, irqflags, devname, dev_id
    )


def bind_interdomain_evtchn_to_irqhandler(
    kernel: Any, remote_domain: int, remote_port: int, handler: Any, irqflags: int, devname: str, dev_id: Any
) -> int:
    """bind_interdomain_evtchn_to_irqhandler: bind_interdomain + LOCAL_PORT bind + request_irq (backends)."""
    return _with_handler(
        kernel,
        bind_interdomain_evtchn_to_irq(kernel, remote_domain, remote_port),
        handler,
        irqflags,
        devname,
        dev_id,
    )


def bind_virq_to_irqhandler(
    kernel: Any, virq: int, cpu: int, handler: Any, irqflags: int, devname: str, dev_id: Any
) -> int:
    """bind_virq_to_irqhandler: bind_virq_to_irq + request_irq."""
    return _with_handler(kernel, bind_virq_to_irq(kernel, virq, cpu), handler, irqflags, devname, dev_id)


def bind_ipi_to_irqhandler(
    kernel: Any, ipi: int, cpu: int, handler: Any, irqflags: int, devname: str, dev_id: Any
) -> int:
    """bind_ipi_to_irqhandler: bind_ipi_to_irq + request_irq."""
    return _with_handler(kernel, bind_ipi_to_irq(kernel, ipi, cpu), handler, irqflags, devname, dev_id)


def unbind_from_irqhandler(kernel: Any, irq: int, dev_id: Any) -> None:
    """unbind_from_irqhandler: free_irq + unbind_from_irq."""
    irqcore.free_irq(kernel, irq, dev_id)
    unbind_from_irq(kernel, irq)


# The delivery half of evtchn.c lives in evtchn_delivery.py; its names are part of this API.
from xenlab.linux.evtchn_delivery import (  # noqa: E402, F401
    _dynirq_chip,
    _pirq_chip,
    bind_evtchn_to_cpu,
    clear_evtchn,
    evtchn_do_upcall,
    irq_to_evtchn_port,
    mask_evtchn,
    notify_remote_via_evtchn,
    notify_remote_via_irq,
    unmask_evtchn,
)

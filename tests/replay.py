"""The machine's LIVE state in the trace's own format, one function per owner.

Each function reads the objects themselves (the shared_info page, the kernel's arrays,
xenstored's tree) and returns ``{table: {key: value}}`` exactly as the recorders write
rows: string keys, plain values, an entry only where the value is not the table's
initial one (absent = -1 for an unbound port, 0 for a count or a zeroed ring index,
0 for a clear bit). ``tests/test_replay.py`` compares them with ``trace.state_at(last)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from xenlab.abi.domctl import SHUTDOWN_NAMES
from xenlab.abi.event_channel import EVTCHN_FIFO_LINK_MASK, EVTCHN_FIFO_LINKED, event_word_bits
from xenlab.abi.grant_table import GTF_type_mask
from xenlab.abi.xs_wire import xenstore_domain_interface
from xenlab.base.sched import task_key, task_row
from xenlab.linux.driver_model import _dev_key
from xenlab.linux.irq import IrqCore
from xenlab.linux.kernel import TABLE_INITIAL, Kernel
from xenlab.linux.pvops import netback_xenbus as pv_netback
from xenlab.linux.pvops import xen_blkfront as pv_blkfront
from xenlab.linux.pvops import xenbus_probe as pv_probe
from xenlab.linux.pvops import xenbus_xs as pv_xs
from xenlab.linux.pvops.kernel import PvopsKernel
from xenlab.linux.xenlinux import blkfront as l18_blkfront
from xenlab.linux.xenlinux import netback_xenbus as l18_netback
from xenlab.linux.xenlinux import xenbus_probe as l18_probe
from xenlab.linux.xenlinux import xenbus_xs as l18_xs
from xenlab.linux.xenlinux.kernel import XenLinuxKernel
from xenlab.xen.domain import Domain as XenDomain
from xenlab.xen.grant_table import nr_grant_entries, shared_entry_v1
from xenlab.xen.hypervisor import Hypervisor
from xenlab.xenstored.daemon import Daemon
from xenlab.xenstored.perms import XS_PERM_NONE, perms_text, perms_to_strings
from xenlab.xenstored.ring import RingServer
from xenlab.xenstored.store import value_text

State = dict[str, dict[str, Any]]

#: Every table family these functions read ("N" = a number, "K" = a kernel's name: dom0,
#: domU1, ...). A trace table outside this list has no live counterpart here yet.
FAMILIES = (
    "xen/domains", "xen/frames", "xen/global_virq_handlers",
    "xen/dN/evtchn", "xen/dN/evtchn_vcpu", "xen/dN/evtchn_pending", "xen/dN/evtchn_mask",
    "xen/dN/vcpuN", "xen/dN/vcpuN_virq", "xen/dN/pirq", "xen/dN/p2m", "xen/dN/start_info",
    "xen/dN/grant", "xen/dN/grant_frames", "xen/dN/maptrack", "xen/dN/state",
    "xen/dN/evtchn_port_ops", "xen/dN/fifo_control_block", "xen/dN/fifo_event_array", "xen/dN/event_word",
    "xen/dN/fifo_queue/vN", "xen/dN/fifo_tail/vN", "xen/dN/evtchn_priority", "xen/dN/fifo_lastq",
    "xen/dN/fifo_pending_saved",
    "xen/dN/hvm_params", "xen/dN/upcall_vector",
    "K/evtchn_to_irq", "K/irq_info", "K/irq_bindcount", "K/virq_to_irq", "K/ipi_to_irq",
    "K/irq_action", "K/kstat_irqs",
    "K/xenbus", "K/ring", "K/watches", "K/watch_events", "K/xenbus_state",
    "K/cpu_present_map", "K/cpu_online_map",
    "K/bus", "K/device", "K/driver", "K/device_driver", "K/block", "K/netdev", "K/proc", "K/grant_table",
    "K/locks", "K/kthreads", "K/work", "K/store_page", "K/xs_state",
    "xenstored/tree", "xenstored/perms", "xenstored/domains", "xenstored/transactions",
    "xenstored/watches", "xenstored/ring/dN", "xenstored/virq",
)


def family(table: str) -> str:
    """A table's family: a kernel's name becomes K, numbers N (``xen/d1/vcpu0`` -> ``xen/dN/vcpuN``,
    ``xen/d1/fifo_queue/v1`` -> ``xen/dN/fifo_queue/vN``)."""
    head, _, rest = table.partition("/")
    if head.startswith("dom"):
        return f"K/{rest}"
    return re.sub(r"(?<=/d)\d+|(?<=vcpu)\d+|(?<=/v)\d+", "N", table)


def _put(state: State, table: str, key: object, value: Any, initial: Any = None) -> None:
    if value is not None and not (type(value) is type(initial) and value == initial):
        state.setdefault(table, {})[str(key)] = value


# -- xen ---------------------------------------------------------------------------------------
def xen_state(hv: Hypervisor, fifo_heads: dict[int, dict[int, list[int]]] | None = None) -> State:
    """xen/domains, xen/frames, xen/global_virq_handlers and every domain's xen/dN/* tables.

    *fifo_heads*: per domid, its FIFO guest's own per-vcpu queue heads (events_fifo.c's
    ``cpu_queue``), where the guest reads on from after it consumed an event.
    """
    out: State = {}
    for domid, d in hv.domains.items():
        _put(out, "xen/domains", domid, d.name)
        out.update(xen_domain_state(d))
        if d.evtchn_fifo is not None:
            fifo_state(out, d, (fifo_heads or {}).get(domid, {}))
    for mfn, page in hv.memory.frames.items():
        _put(out, "xen/frames", f"{mfn:#x}", f"d{page.owner}")
    for virq, domid in hv.global_virq_handlers.items():
        _put(out, "xen/global_virq_handlers", virq, domid)
    return out


def xen_domain_state(d: XenDomain) -> State:
    """One domain's ports, shared_info bits, vcpus, p2m, start_info, grants and shutdown state."""
    out: State = {}
    t = f"xen/d{d.domid}"
    sh = d.shared_info
    for chn in d.chns:
        _put(out, f"{t}/evtchn", chn.port, chn.summary())
        _put(out, f"{t}/evtchn_vcpu", chn.port, chn.notify_vcpu_id, 0)
    for port in sh.evtchn_pending.set_ports():
        _put(out, f"{t}/evtchn_pending", port, 1)
    for port in sh.evtchn_mask.set_ports():
        _put(out, f"{t}/evtchn_mask", port, 1)
    for v in range(d.vcpus):
        vi = sh.vcpu_info[v]
        _put(out, f"{t}/vcpu{v}", "evtchn_upcall_pending", int(vi.evtchn_upcall_pending), 0)
        _put(out, f"{t}/vcpu{v}", "evtchn_pending_sel", int(vi.evtchn_pending_sel), 0)
        for virq, port in d.virq_to_evtchn[v].items():
            _put(out, f"{t}/vcpu{v}_virq", virq, port)
    for pirq, port in d.pirq_to_evtchn.items():
        _put(out, f"{t}/pirq", pirq, port)
    for pfn, mfn in d.p2m.items():
        _put(out, f"{t}/p2m", f"{pfn:#x}", mfn)
    # the start_info fields the toolstack fills in for a guest (xc_dom_build_image)
    if d.domid:
        _put(out, f"{t}/start_info", "store_evtchn", int(d.start_info.store_evtchn), 0)
        _put(out, f"{t}/start_info", "console.domU.evtchn", int(d.start_info.console.domU.evtchn), 0)
    for index, value in d.hvm_params.items():  # HVMOP_set_param (hvm.c)
        _put(out, f"{t}/hvm_params", index, value)
    for vcpu, vector in d.evtchn_upcall_vector.items():
        _put(out, f"{t}/upcall_vector", vcpu, vector)
    for n, page in enumerate(d.grant_frames):
        _put(out, f"{t}/grant_frames", n, page.mfn)
    for ref in range(nr_grant_entries(d) if d.grant_frames else 0):
        e = shared_entry_v1(d, ref)
        if e.flags & GTF_type_mask:
            _put(out, f"{t}/grant", ref, (int(e.flags), int(e.domid), int(e.frame)))
    for handle, mapping in d.maptrack.items():
        _put(out, f"{t}/maptrack", handle, mapping)
    if d.is_shut_down and d.shutdown_code is not None:
        _put(out, f"{t}/state", "shutdown", SHUTDOWN_NAMES[d.shutdown_code])
    return out


def fifo_state(out: State, d: XenDomain, heads: dict[int, list[int]]) -> None:
    """The FIFO ABI's tables: control blocks, array pages, event words, READY and head[], the queues.

    Each queue is read as the guest reads it: from its own head (*heads*: vcpu -> head per
    priority), or the control block's head[] when that is 0, LINK by LINK while LINKED.
    """
    fifo = d.evtchn_fifo
    assert fifo is not None
    t = f"xen/d{d.domid}"
    _put(out, f"{t}/evtchn_port_ops", "abi", d.evtchn_port_ops.name)
    for slot, gfn in enumerate(fifo.event_array_gfns):
        _put(out, f"{t}/fifo_event_array", slot, gfn)
    words = {}
    for slot, page in enumerate(fifo.event_array):
        for i, w in enumerate(page):
            if w:
                words[slot * len(page) + i] = int(w)
                _put(out, f"{t}/event_word", slot * len(page) + i, event_word_bits(int(w)))
    for efv in fifo.vcpu:
        v, cb = efv.vcpu_id, efv.control_block
        if cb is not None:
            _put(out, f"{t}/fifo_control_block", v, (efv.control_gfn, efv.control_offset))
            _put(out, f"{t}/vcpu{v}", "fifo_ready", int(cb.ready), 0)
        for q in efv.queue:
            _put(out, f"{t}/fifo_tail/v{v}", q.priority, q.tail, 0)
            if cb is None:
                continue
            _put(out, f"{t}/vcpu{v}", f"fifo_head[{q.priority}]", int(cb.head[q.priority]), 0)
            port, chain = heads.get(v, [0] * len(efv.queue))[q.priority] or int(cb.head[q.priority]), []
            while port and words.get(port, 0) & 1 << EVTCHN_FIFO_LINKED:
                chain.append(port)
                port = words[port] & EVTCHN_FIFO_LINK_MASK
            _put(out, f"{t}/fifo_queue/v{v}", q.priority, tuple(chain) or None)
    for chn in d.chns:
        _put(out, f"{t}/evtchn_priority", chn.port, chn.priority, 0)
        _put(out, f"{t}/fifo_lastq", chn.port, chn.fifo_lastq, (0, 0))
        _put(out, f"{t}/fifo_pending_saved", chn.port, 1 if chn.pending else None)


# -- a guest kernel ------------------------------------------------------------------------------
def kernel_state(kernel: Kernel) -> State:
    """The kernel's own tables: IRQ layer, xenbus, watches, driver model, drivers, /proc."""
    if isinstance(kernel, XenLinuxKernel):
        out = xenlinux_irq_state(kernel)
        out.update(xenlinux_xenbus_state(kernel))
    elif isinstance(kernel, PvopsKernel):
        out = pvops_irq_state(kernel)
        out.update(pvops_xenbus_state(kernel))
    else:
        raise TypeError(f"no live reader for {type(kernel).__name__}")
    out.update(driver_model_state(kernel))
    out.update(kthreads_state(kernel))
    return out


def kthreads_state(kernel: Kernel) -> State:
    """<kernel>/kthreads: each live kernel thread of the kernel as the scheduler has it (running, or
    sleeping on its wait queue)."""
    out: State = {}
    for task in kernel.sched.tasks:
        if task.owner == kernel.name and task.kthread:
            _put(out, f"{kernel.name}/kthreads", task_key(task), task_row(task))
    return out


def _initial(table: str) -> Any:
    return TABLE_INITIAL.get(table.rsplit("/", 1)[1])


def _putter(out: State, kernel: Kernel) -> Callable[[str, object, Any], None]:
    n = kernel.name

    def put(table: str, key: object, value: Any) -> None:
        _put(out, f"{n}/{table}", key, value, _initial(f"{n}/{table}"))

    return put


def _irq_core_state(put: Callable[[str, object, Any], None], core: IrqCore,
                    virq_to_irq: list[list[int]], ipi_to_irq: list[list[int]]) -> None:
    for cpu, virqs in enumerate(virq_to_irq):
        for virq, irq in enumerate(virqs):
            put("virq_to_irq", f"{cpu}/{virq}", irq)
    for cpu, ipis in enumerate(ipi_to_irq):
        for ipi, irq in enumerate(ipis):
            put("ipi_to_irq", f"{cpu}/{ipi}", irq)
    for irq, desc in core.descs.items():
        put("irq_action", irq, ", ".join(a.name for a in desc.actions) or None)
        for cpu, count in enumerate(desc.kstat):
            put("kstat_irqs", f"{irq}/cpu{cpu}", count)


def xenlinux_irq_state(kernel: XenLinuxKernel) -> State:
    """2.6.18's evtchn.c arrays: evtchn_to_irq, irq_info (packed), bindcount, virq/ipi_to_irq, irq_desc."""
    out: State = {}
    st = kernel.evtchn
    if st is None:
        return out
    put = _putter(out, kernel)
    for port, irq in enumerate(st.evtchn_to_irq):
        put("evtchn_to_irq", port, irq)
    for irq, info in enumerate(st.irq_info):
        put("irq_info", irq, info)
    for irq in range(st.space.DYNIRQ_BASE, st.space.DYNIRQ_BASE + st.space.NR_DYNIRQS):
        put("irq_bindcount", irq, st.irq_bindcount[irq])  # PIRQs are nailed to 1 and never recorded
    _irq_core_state(put, st.core, st.virq_to_irq, st.ipi_to_irq)
    return out


def pvops_irq_state(kernel: PvopsKernel) -> State:
    """6.1's events_base.c: the evtchn_to_irq rows, irq_info, virq/ipi_to_irq, irq_desc."""
    out: State = {}
    st = kernel.irq
    if st is None:
        return out
    put = _putter(out, kernel)
    for row, ports in st.evtchn_rows.items():
        for col, irq in enumerate(ports):
            put("evtchn_to_irq", row * len(ports) + col, irq)
    for irq, info in st.info.items():
        put("irq_info", irq, info.row())
    _irq_core_state(put, st.core, st.virq_to_irq, st.ipi_to_irq)
    return out


def _store_state(out: State, n: str, xenstored_ready: int, mfn: int, evtchn: int,
                 intf: xenstore_domain_interface | None) -> None:
    _put(out, f"{n}/xenbus", "xen_store_mfn", mfn, 0)
    _put(out, f"{n}/xenbus", "xen_store_evtchn", evtchn, 0)
    _put(out, f"{n}/xenbus", "xenstored_ready", xenstored_ready, 0)
    if intf is not None:
        _put(out, f"{n}/ring", "req_prod", int(intf.req_prod), 0)
        _put(out, f"{n}/ring", "rsp_cons", int(intf.rsp_cons), 0)


def xenlinux_xenbus_state(kernel: XenLinuxKernel) -> State:
    """2.6.18's xenbus globals, the ring indices the guest writes, watches and the watch queue."""
    out: State = {}
    n = kernel.name
    xb = kernel.xb
    _store_state(out, n, xb.xenstored_ready, xb.xen_store_mfn, xb.xen_store_evtchn, xb.xen_store_interface)
    _put(out, f"{n}/xenbus", "xenbus_irq", xb.xenbus_irq, 0)
    put = _putter(out, kernel)
    put("work", "probe_work", xb.probe_work_state)
    for key, value in xb.store_chain:
        put("store_page", key, value)
    xs = kernel.xs_state
    put("xs_state", "reply_list", xs.queued_replies())
    locks = list(xs.locks()) + ([kernel.evtchn.irq_mapping_update_lock] if kernel.evtchn else [])
    for lock in locks:
        if lock is not None:
            put("locks", lock.key, lock.row())
    for w in xs.watches:
        _put(out, f"{n}/watches", l18_xs.watch_token(kernel, w), w.node)
    _put(out, f"{n}/watch_events", "queue", xs.queued_events())
    for cpu in kernel.cpu_present_map:
        _put(out, f"{n}/cpu_present_map", str(cpu), 1)
    for cpu in kernel.cpu_online_map:
        _put(out, f"{n}/cpu_online_map", str(cpu), 1)
    for dev in _xenbus_devices(kernel):
        _put(out, f"{n}/xenbus_state", dev.nodename, dev.state)
    return out


def pvops_xenbus_state(kernel: PvopsKernel) -> State:
    """6.1's xenbus globals, the ring indices the guest writes, watches and the watch queue."""
    out: State = {}
    n = kernel.name
    xb = kernel.xb
    if xb.xen_store_domain_type != pv_probe.XS_UNKNOWN:
        kind = pv_probe.XS_DOMAIN_TYPE_NAMES[xb.xen_store_domain_type]
        _put(out, f"{n}/xenbus", "xen_store_domain_type", kind)
    _store_state(out, n, xb.xenstored_ready, xb.xen_store_mfn, xb.xen_store_evtchn, xb.xen_store_interface)
    _put(out, f"{n}/xenbus", "xenbus_irq", kernel.comms.xenbus_irq, 0)
    put = _putter(out, kernel)
    put("work", "xenbus_probe", xb.probe_state)
    for key, value in xb.store_chain:
        put("store_page", key, value)
    c = kernel.comms
    for which in ("xb_write_list", "xs_reply_list"):
        put("xs_state", which, c.queued(which))
    locks = [c.xb_write_mutex, c.xs_response_mutex, kernel.xs.xs_watch_rwsem, kernel.xs.xenwatch_mutex]
    if kernel.irq is not None and kernel.irq.irq_mapping_update_lock is not None:
        locks.append(kernel.irq.irq_mapping_update_lock)
    for lock in locks:
        put("locks", lock.key, lock.row())
    xs = kernel.xs
    for w in xs.watches:
        _put(out, f"{n}/watches", pv_xs.watch_token(kernel, w), w.node)
    _put(out, f"{n}/watch_events", "queue", xs.queued_events())
    for dev in _xenbus_devices(kernel):
        _put(out, f"{n}/xenbus_state", dev.nodename, dev.state)
    return out


def _xenbus_devices(kernel: XenLinuxKernel | PvopsKernel) -> list[Any]:
    kind = l18_probe.xenbus_device if isinstance(kernel, XenLinuxKernel) else pv_probe.xenbus_device
    return [dev for bus in kernel.buses.values() for dev in bus.devices if isinstance(dev, kind)]


def _put_driver_data(out: State, n: str, data: Any) -> None:
    """The rows a driver's private struct stands for: blkfront's gendisk, netback's net device."""
    if isinstance(data, (l18_blkfront.blkfront_info, pv_blkfront.blkfront_info)):
        if data.connected and data.disk_name:
            _put(out, f"{n}/block", data.disk_name, data.sectors)
    elif isinstance(data, l18_netback.backend_info):
        if data.netif is not None:  # netif_alloc .. free_netdev; carrier on while the rings are mapped
            _put(out, f"{n}/netdev", data.netif.name, "up" if data.netif.irq else "down")
    elif isinstance(data, pv_netback.backend_info):
        if data.vif:
            _put(out, f"{n}/netdev", data.vif, "up" if data.queues else "down")


def driver_model_state(kernel: XenLinuxKernel | PvopsKernel) -> State:
    """bus, device, driver, device_driver, block, netdev, proc, grant_table."""
    out: State = {}
    n = kernel.name
    for bus in kernel.buses.values():
        if bus.registered:
            _put(out, f"{n}/bus", bus.name, "registered")
        for drv in bus.drivers:
            if drv.registered:
                _put(out, f"{n}/driver", f"{bus.name}/{drv.name}", "registered")
    for dev in kernel.root_devices + [dev for bus in kernel.buses.values() for dev in bus.devices]:
        if dev.registered:
            _put(out, f"{n}/device", _dev_key(dev), "registered")
        if dev.driver is not None:
            _put(out, f"{n}/device_driver", _dev_key(dev), dev.driver.name)
    for bdev in kernel.block_devices.values():
        _put(out, f"{n}/block", bdev.name, bdev.sectors)
    for dev in _xenbus_devices(kernel):
        _put_driver_data(out, n, dev.drvdata)
    for path, entry in kernel.proc.items():
        if path.startswith("xen/"):
            _put(out, f"{n}/proc", path, f"{entry.mode:04o}")
    for ref, (domid, frame, readonly) in kernel.gnttab.entries.items():
        _put(out, f"{n}/grant_table", ref, f"d{domid} frame {frame:#x}" + (" ro" if readonly else ""))
    return out


# -- xenstored -----------------------------------------------------------------------------------
def xenstored_state(daemon: Daemon, rings: RingServer | None) -> State:
    """tree, perms, domains, transactions, watches; each ring's fields and the DOM_EXC port."""
    out: State = {}
    for path, node in daemon.store.nodes.items():
        _put(out, "xenstored/tree", path, value_text(node.value))
        _put(out, "xenstored/perms", path, perms_text(node.perms))
    initial = ",".join(perms_to_strings(((XS_PERM_NONE, 0),)))  # every special path's at setup
    for name, perms in daemon.special_perms.items():
        _put(out, "xenstored/perms", name, ",".join(perms_to_strings(perms)), initial)
    for domid, dom in daemon.domains.items():
        if domid:
            _put(out, "xenstored/domains", domid,
                 f"introduced mfn={dom.mfn} port={dom.port}" if dom.introduced else "known")
        if dom.conn is not None:
            _put(out, "xenstored/domains", f"{domid} target", dom.conn.target)
    for conn in daemon.connections:
        for tid in conn.transactions:
            _put(out, "xenstored/transactions", f"{conn.name} {tid}", "open")
        for w in conn.watches:
            _put(out, "xenstored/watches", daemon.watch_key(conn, w), "watch")
    if rings is not None:
        for rc in rings.rings.values():
            t = rc.table
            _put(out, t, "port", rc.port)
            for field in ("req_cons", "rsp_prod", "server_features", "error", "connection"):
                _put(out, t, field, int(getattr(rc.intf, field)), 0)
        _put(out, "xenstored/virq", "VIRQ_DOM_EXC", rings.virq_port)
    return out


# -- the machine -----------------------------------------------------------------------------------
def machine_state(m: Any) -> State:
    """Every owner's tables of a booted Machine."""
    heads = {dom.domid: dom.kernel.irq.events_fifo.head for dom in m.domains.values()
             if isinstance(dom.kernel, PvopsKernel) and dom.kernel.irq is not None
             and dom.kernel.irq.events_fifo is not None}
    out = xen_state(m.hv, heads)
    for dom in m.domains.values():
        out.update(kernel_state(dom.kernel))
    if m.daemon is not None:
        out.update(xenstored_state(m.daemon, m.ring_server))
    return out

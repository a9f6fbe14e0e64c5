"""The generated cases an implement-the-kernel task runs: rigs of real lab parts, observed step by step.

A case is ``case(rng) -> list[Obs]``: it builds a small host of the lab's real parts (a
Hypervisor, a guest kernel from ``xenlab.linux``, a real store page), calls the mirrored
functions through their module (``l18.bind_caller_port_to_irq(k, port)``, so a substituted
function is the one that runs), and after each call reads what a learner would look at:
the return value, the kernel's tables (``evtchn_to_irq``, ``irq_info``, ``irq_bindcount``),
the ring indices and bytes, the kicks Xen recorded (``evtchn_send``), the new printk lines.
The same seed gives the same calls; the checker runs a case once with the model's function
and once with the student's and compares the observations in order.
"""

from __future__ import annotations

import ctypes
import random
from typing import Any

from xenlab.abi.event_channel import VIRQ_DEBUG, VIRQ_TIMER
from xenlab.abi.xs_wire import XENSTORE_RING_SIZE, xenstore_domain_interface
from xenlab.base.trace import Trace
from xenlab.linux.kernel import Kernel
from xenlab.linux.kernels import new_kernel
from xenlab.linux.pvops import xenbus_comms as comms61
from xenlab.linux.xenlinux import evtchn as l18
from xenlab.linux.xenlinux import xenbus_comms as comms18
from xenlab.linux.xenlinux.kernel import XenLinuxKernel
from xenlab.xen.hypervisor import Hypervisor

U32 = 0xFFFFFFFF
#: one observation: what was done, and what the learner reads afterwards
Obs = tuple[str, dict[str, Any]]


def _hv() -> Hypervisor:
    hv = Hypervisor(trace=Trace(), bits=64)
    hv.domain_create(0, "Domain-0", vcpus=1, privileged=True, initdomain=True)
    hv.domain_create(1, "guest", vcpus=1)
    return hv


def _printk_since(k: Kernel, start: int) -> tuple[str, ...]:
    return tuple(line.text for line in k.log[start:])


def _kicks_since(k: Kernel, start: int) -> int:
    return sum(1 for s in k.trace.steps[start:] if s.actor == "xen" and s.function == "evtchn_send")


# -- event channels -> IRQs (XenLinux 2.6.18, drivers/xen/core/evtchn.c) -----------------------
def irq_tables(k: XenLinuxKernel) -> dict[str, Any]:
    """The guest's evtchn.c tables as rows: bound ports, the dynamic IRQs' info words and counts."""
    st = l18.evtchn_state(k)
    sp = st.space
    dyn = range(sp.DYNIRQ_BASE, sp.DYNIRQ_BASE + sp.NR_DYNIRQS)
    return {
        "evtchn_to_irq": {p: irq for p, irq in enumerate(st.evtchn_to_irq) if irq != -1},
        "irq_info": {irq: f"{st.irq_info[irq]:#010x}" for irq in dyn if st.irq_info[irq] != l18.IRQ_UNBOUND},
        "irq_bindcount": {irq: st.irq_bindcount[irq] for irq in dyn if st.irq_bindcount[irq]},
    }


def evtchn_case(rng: random.Random) -> list[Obs]:
    """Binds (a caller port twice: sharing), listening ports, VIRQs, unbinds, and sometimes exhaustion
    (then two binds of new ports: both find no IRQ, the kernel warns only the first time)."""
    hv = _hv()
    k = XenLinuxKernel(hv, 1, trace=hv.trace)
    l18.xen_init_IRQ(k)
    callers = [hv.evtchn_alloc_unbound(0, 1, 0) for _ in range(2)]  # given by the toolstack
    exhaust_at = rng.randint(3, 7) if rng.random() < 0.35 else -1
    bound: list[int] = []
    out: list[Obs] = []
    scans_after_exhaust = 0  # new-port binds forced after the fault: the second must not warn again
    ops = rng.randint(6, 10)
    for i in range(max(ops, exhaust_at + 3)):
        log0 = len(k.log)
        if i == exhaust_at:
            k.exhaust_irqs()
            out.append(("fault exhaust-irqs: every free dynamic IRQ taken", irq_tables(k)))
            scans_after_exhaust = 2
            continue
        roll = rng.random()
        if scans_after_exhaust:
            scans_after_exhaust -= 1
            roll = 0.5  # bind_listening_port_to_irq: a new port, so find_unbound_irq scans
        if roll < 0.4:
            port = rng.choice(callers)
            what, rc = f"bind_caller_port_to_irq(port {port})", l18.bind_caller_port_to_irq(k, port)
        elif roll < 0.6:
            what, rc = "bind_listening_port_to_irq(remote_domain 0)", l18.bind_listening_port_to_irq(k, 0)
        elif roll < 0.75:
            virq = rng.choice([VIRQ_TIMER, VIRQ_DEBUG])
            name = "VIRQ_TIMER" if virq == VIRQ_TIMER else "VIRQ_DEBUG"
            what, rc = f"bind_virq_to_irq({name}, cpu 0)", l18.bind_virq_to_irq(k, virq, 0)
        elif bound:
            irq = rng.choice(bound)
            l18.unbind_from_irq(k, irq)
            what, rc = f"unbind_from_irq({irq})", None
            if irq not in irq_tables(k)["irq_bindcount"]:
                bound.remove(irq)
        else:
            what, rc = "find_unbound_irq()", l18.find_unbound_irq(k)
        if isinstance(rc, int) and rc >= 0 and "bind" in what and rc not in bound:
            bound.append(rc)
        out.append((what, {"return": rc, **irq_tables(k), "printk": _printk_since(k, log0)}))
    return out


# -- the store ring (xenbus_comms.c) ----------------------------------------------------------------
def _ring_kernel(flavour: str) -> tuple[Kernel, xenstore_domain_interface]:
    hv = _hv()
    k = new_kernel(hv, 1, flavour=flavour, trace=hv.trace)
    page = hv.memory.alloc_page(1)
    intf = xenstore_domain_interface.from_buffer(page.buf)
    k.xb.xen_store_interface = intf  # type: ignore[attr-defined]  # both kernels have xb
    k.xb.xen_store_evtchn = hv.evtchn_alloc_unbound(0, 1, 0)  # type: ignore[attr-defined]
    return k, intf


def _start_index(rng: random.Random) -> int:
    """A free-running index: some laps in (or just before 2^32), close to the end of the ring."""
    lap = rng.choice([1, rng.randint(2, 9), (U32 + 1) // XENSTORE_RING_SIZE - 1])
    return (lap * XENSTORE_RING_SIZE + XENSTORE_RING_SIZE - rng.randint(1, 80)) & U32


def ring_put(intf: xenstore_domain_interface, ring: str, off: int, data: bytes) -> None:
    """Copy *data* into req[] or rsp[] at *off* (memcpy into the page; off + len <= XENSTORE_RING_SIZE)."""
    if off < 0 or off + len(data) > XENSTORE_RING_SIZE:
        raise IndexError(f"{ring}[{off}..{off + len(data)}) is outside {ring}[0..{XENSTORE_RING_SIZE})")
    field = getattr(xenstore_domain_interface, ring)
    ctypes.memmove(ctypes.addressof(intf) + field.offset + off, bytes(data), len(data))


def ring_get(intf: xenstore_domain_interface, ring: str, off: int, n: int) -> bytes:
    """*n* bytes of req[] or rsp[] from *off* (memcpy out of the page; off + n <= XENSTORE_RING_SIZE)."""
    if off < 0 or n < 0 or off + n > XENSTORE_RING_SIZE:
        raise IndexError(f"{ring}[{off}..{off + n}) is outside {ring}[0..{XENSTORE_RING_SIZE})")
    field = getattr(xenstore_domain_interface, ring)
    return ctypes.string_at(ctypes.addressof(intf) + field.offset + off, n)


def ring_state(intf: xenstore_domain_interface) -> dict[str, Any]:
    """The four indices and both rings' bytes."""
    return {"req_cons": intf.req_cons, "req_prod": intf.req_prod, "rsp_cons": intf.rsp_cons,
            "rsp_prod": intf.rsp_prod, "req": ring_get(intf, "req", 0, XENSTORE_RING_SIZE),
            "rsp": ring_get(intf, "rsp", 0, XENSTORE_RING_SIZE)}


def write_case(flavour: str, rng: random.Random) -> list[Obs]:
    """xb_write calls with xenstored consuming between them; the first one crosses the ring's end."""
    k, intf = _ring_kernel(flavour)
    mod = comms18 if flavour == "2.6.18" else comms61
    prod = _start_index(rng)
    cons = (prod - rng.randint(0, 200)) & U32
    intf.req_cons, intf.req_prod = cons, prod
    out: list[Obs] = []
    for i in range(rng.randint(3, 5)):
        if i and rng.random() < 0.6:  # xenstored reads some of it
            intf.req_cons = (intf.req_cons + rng.randint(0, (intf.req_prod - intf.req_cons) & U32)) & U32
        if i == 3 and rng.random() < 0.3:  # a corrupted index: check_indexes must catch it
            intf.req_cons = (intf.req_prod - XENSTORE_RING_SIZE - rng.randint(1, 50)) & U32
        free = XENSTORE_RING_SIZE - ((intf.req_prod - intf.req_cons) & U32)
        most = free if flavour == "2.6.18" else free + 40  # 2.6.18 would sleep on a full ring
        n = max(1, min(most, 100 + rng.randint(0, 200))) if i == 0 else rng.randint(1, max(1, min(most, 300)))
        if flavour == "2.6.18" and 0 < free < n:
            n = free
        data = bytes(rng.randrange(256) for _ in range(n))
        t0 = len(k.trace)
        before = f"req_cons={intf.req_cons} req_prod={intf.req_prod}"
        rc = mod.xb_write(k, data)
        out.append((f"xb_write({n} bytes) with {before}",
                    {"return": rc, **ring_state(intf), "kicks": _kicks_since(k, t0)}))
    return out


def read_case(rng: random.Random) -> list[Obs]:
    """XenLinux 2.6.18 xb_read of bytes xenstored put in rsp[], across the ring's end."""
    k, intf = _ring_kernel("2.6.18")
    cons = _start_index(rng)
    intf.rsp_cons = intf.rsp_prod = cons
    out: list[Obs] = []
    for _ in range(rng.randint(2, 4)):
        avail = (intf.rsp_prod - intf.rsp_cons) & U32
        for _ in range(rng.randint(1, XENSTORE_RING_SIZE - avail) if avail < XENSTORE_RING_SIZE else 0):
            ring_put(intf, "rsp", intf.rsp_prod % XENSTORE_RING_SIZE, bytes([rng.randrange(256)]))
            intf.rsp_prod = (intf.rsp_prod + 1) & U32
        avail = (intf.rsp_prod - intf.rsp_cons) & U32
        n = rng.randint(1, avail)
        t0 = len(k.trace)
        before = f"rsp_cons={intf.rsp_cons} rsp_prod={intf.rsp_prod}"
        rc = comms18.xb_read(k, n)
        out.append((f"xb_read({n}) with {before}",
                    {"return": rc, **ring_state(intf), "kicks": _kicks_since(k, t0)}))
    return out


def check_indexes_case(rng: random.Random) -> list[Obs]:
    """check_indexes on index pairs: in flight 0..SIZE (fine), more, and across 2^32."""
    out: list[Obs] = []
    for _ in range(12):
        cons = rng.choice([rng.randrange(1 << 32), (U32 - rng.randint(0, 600)), rng.randrange(4096)])
        inflight = rng.choice([0, XENSTORE_RING_SIZE, XENSTORE_RING_SIZE + 1, rng.randint(1, 1023),
                               rng.randint(1025, 5000), (-rng.randint(1, 100)) & U32])
        prod = (cons + inflight) & U32
        rc = comms18.check_indexes(cons, prod)
        out.append((f"check_indexes(cons={cons}, prod={prod})", {"return": rc}))
    return out


# -- xb_init_comms's quiescence check and wake_waiting (2.6.18) -------------------------------------------
def _comms_kernel() -> tuple[XenLinuxKernel, xenstore_domain_interface]:
    k, intf = _ring_kernel("2.6.18")
    assert isinstance(k, XenLinuxKernel)
    l18.xen_init_IRQ(k)
    return k, intf


def init_comms_case(rng: random.Random) -> list[Obs]:
    """xb_init_comms on a store page left with unread requests and/or stale response bytes."""
    k, intf = _comms_kernel()
    req, rsp = rng.choice([(True, False), (False, True), (True, True), (False, False)])
    intf.req_cons = _start_index(rng)
    intf.req_prod = (intf.req_cons + (rng.randint(1, 60) if req else 0)) & U32
    intf.rsp_cons = _start_index(rng)
    intf.rsp_prod = (intf.rsp_cons + (rng.randint(1, 60) if rsp else 0)) & U32
    port = k.xb.xen_store_evtchn
    log0 = len(k.log)
    rc = comms18.xb_init_comms(k)
    st = ring_state(intf)
    got = {"return": rc, **{key: st[key] for key in ("req_cons", "req_prod", "rsp_cons", "rsp_prod")},
           "printk": _printk_since(k, log0), "xenbus_irq": k.xb.xenbus_irq,
           "evtchn_to_irq[store port]": l18.evtchn_state(k).evtchn_to_irq[port]}
    what = "xb_init_comms() on a page with " + ", ".join(
        [f"{n} ring {'busy' if b else 'quiescent'}" for n, b in (("request", req), ("response", rsp))])
    return [(what, got)]


def wake_waiting_case(rng: random.Random) -> list[Obs]:
    """The store interrupt's handler, fired a few times: xenstored_ready, probe_work, woken readers."""
    k, _ = _comms_kernel()
    probes: list[int] = []
    k.xb.probe_work = lambda: probes.append(1)
    k.sched.kthread_run(lambda: None, "xenbus-reader", wait=(k.xb.xb_waitq, lambda: False), owner=k.name)
    out: list[Obs] = []
    for i in range(rng.randint(2, 4)):
        k.sched.run()  # the reader goes to sleep on xb_waitq
        irq = 0x110 + rng.randint(0, 8)
        rc = comms18.wake_waiting(k, irq, None)
        out.append((f"interrupt {i + 1}: wake_waiting(irq {irq})",
                    {"return": rc, "xenstored_ready": k.xb.xenstored_ready, "probe_work runs": len(probes),
                     "readers still asleep on xb_waitq": len(k.xb.xb_waitq.sleepers)}))
    return out

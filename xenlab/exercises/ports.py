"""Event-channel and 2.6.18 IRQ exercises, answered by the lab's hypervisor and IRQ layer.

``gen_evtchn`` runs a sequence of EVTCHNOP_alloc_unbound / bind_interdomain / close
between dom0 and a guest on a fresh xenlab.xen Hypervisor and asks what each returned
and which ports end up in which state. ``gen_irq`` binds and unbinds on a XenLinux
2.6.18 guest (xenlab.linux.xenlinux.evtchn) and asks what find_unbound_irq hands out and what the
packed irq_info word of an IRQ holds.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from xenlab.abi.event_channel import VIRQ_DEBUG, VIRQ_TIMER
from xenlab.base.trace import Trace
from xenlab.exercises.common import NO_KNOBS, KnobError, Question
from xenlab.linux.xenlinux import evtchn as l18
from xenlab.linux.xenlinux.kernel import XenLinuxKernel
from xenlab.xen.hypervisor import Hypervisor


def two_domains(guest: int) -> Hypervisor:
    """A hypervisor with dom0 (privileged) and a guest *guest*, no ports in use yet."""
    hv = Hypervisor(trace=Trace(), bits=64)
    hv.domain_create(0, "Domain-0", vcpus=1, privileged=True, initdomain=True)
    hv.domain_create(guest, "guest", vcpus=1)
    return hv


def port_states(hv: Hypervisor, domid: int) -> str:
    """Every port of *domid* in use, as Xen's Channel.summary() says: '1:unbound(0) 2:interdomain(0,3)'."""
    out = []
    for chn in hv.domains[domid].chns[1:]:
        s = chn.summary()
        if s is not None:
            out.append(f"{chn.port}:{s[0]}({','.join(str(x) for x in s[1:])})")
    return " ".join(out) or "none"


def gen_evtchn(rng: random.Random, knobs: Mapping[str, Any] = NO_KNOBS) -> Question:
    """alloc_unbound / bind_interdomain / close between dom0 and a guest: returns and final states."""
    g = rng.randint(1, 4)
    hv = two_domains(g)
    ops: list[tuple[str, Any]] = []
    lines = []
    calls: list[tuple[Any, ...]] = []
    for _ in range(rng.randint(4, 6)):
        roll = rng.random()
        guest_ports = [c.port for c in hv.domains[g].chns[1:] if c.summary() is not None]
        dom0_ports = [c.port for c in hv.domains[0].chns[1:] if c.summary() is not None]
        if roll < 0.35 or not guest_ports:
            who = rng.choice([0, g])
            text = (f"dom0: EVTCHNOP_alloc_unbound(dom={g}, remote_dom=0)" if who == 0
                    else f"d{g}: EVTCHNOP_alloc_unbound(dom=DOMID_SELF, remote_dom=0)")
            rc = hv.evtchn_alloc_unbound(who, g, 0)
            calls.append(("alloc_unbound", who))
        elif roll < 0.75:
            port = rng.choice(guest_ports + [max(guest_ports) + rng.randint(0, 1)])
            text = f"dom0: EVTCHNOP_bind_interdomain(remote_dom={g}, remote_port={port})"
            rc = hv.evtchn_bind_interdomain(0, g, port)
            calls.append(("bind_interdomain", port))
        else:
            who = rng.choice([0, g]) if dom0_ports else g
            port = rng.choice(dom0_ports if who == 0 else guest_ports)
            text = f"{'dom0' if who == 0 else f'd{g}'}: EVTCHNOP_close(port={port})"
            rc = hv.evtchn_close(who, port)
            calls.append(("close", who, port))
        lines.append(text)
        ops.append((text, rc))
    q = Question("evtchn", (
        f"Fresh dom0 and d{g} (no ports in use; port 0 is reserved). These hypercalls run in order:\n"
        + "\n".join(f"  op{i}. {t}" for i, t in enumerate(lines, 1))))
    q.setup = {"guest": g, "calls": calls}
    for i, (_, rc) in enumerate(ops, 1):
        q.expect(f"op{i}", rc, "the port it returned, 0, or -errno as a number (-22 = -EINVAL)")
    q.expect("dom0.ports", port_states(hv, 0), "PORT:STATE(args) for each port in use, e.g. 1:unbound(2)")
    q.expect(f"d{g}.ports", port_states(hv, g), "same form, or none")
    w = ["get_free_port hands out the lowest free port (port 0 is reserved); evtchn_alloc_unbound makes it "
         "UNBOUND for remote_dom; evtchn_bind_interdomain needs the remote port UNBOUND *for the caller* "
         "(else -EINVAL) and joins a new local port to it; evtchn_close frees a port and puts an "
         "interdomain peer back to UNBOUND for the closer."]
    steps = [s for s in hv.trace.steps if s.actor == "xen" and s.function.startswith("evtchn_")]
    w += [f"  {s.function}: {s.summary}" for s in steps]
    q.worked = w
    return q


def guest_2618(guest: int = 1) -> XenLinuxKernel:
    """A 2.6.18 domU whose IRQ layer is initialised (xen_init_IRQ), beside dom0."""
    hv = two_domains(guest)
    k = XenLinuxKernel(hv, guest, trace=hv.trace)
    l18.xen_init_IRQ(k)
    return k


def gen_irq(rng: random.Random, knobs: Mapping[str, Any] = NO_KNOBS) -> Question:
    """Binds and unbinds on XenLinux 2.6.18: IRQs returned, the next find_unbound_irq, an irq_info word."""
    k = guest_2618()
    ports = int(knobs.get("ports", 0))
    if not 0 <= ports <= 200:
        raise KnobError(f"--ports must be 0..200 (got {ports})")
    for _ in range(ports):  # event channels the guest already uses for something else
        k.hv.evtchn_alloc_unbound(k.domid, k.domid, 0)
    st = l18.evtchn_state(k)
    store = k.hv.evtchn_alloc_unbound(0, k.domid, 0)  # the toolstack's store port, given to the guest
    lines: list[str] = []
    results: list[int] = []
    bound: list[int] = []
    calls: list[tuple[Any, ...]] = []
    for _ in range(rng.randint(5, 7)):
        roll = rng.random()
        if len(bound) >= 2 and rng.random() < 0.35:
            roll = 1.0  # unbind one
        if roll < 0.2:
            lines.append(f"bind_caller_port_to_irq(port {store})  [the xenstore port]")
            irq = l18.bind_caller_port_to_irq(k, store)
            calls.append(("caller", store))
        elif roll < 0.45:
            lines.append("bind_listening_port_to_irq(remote_domain 0)")
            irq = l18.bind_listening_port_to_irq(k, 0)
            calls.append(("listening",))
        elif roll < 0.6:
            virq = rng.choice([VIRQ_TIMER, VIRQ_DEBUG])
            lines.append(f"bind_virq_to_irq({'VIRQ_TIMER' if virq == VIRQ_TIMER else 'VIRQ_DEBUG'}, cpu 0)")
            irq = l18.bind_virq_to_irq(k, virq, 0)
            calls.append(("virq", virq))
        elif roll < 0.75:
            ipi = rng.randint(0, 1)
            lines.append(f"bind_ipi_to_irq(ipi {ipi}, cpu 0)")
            irq = l18.bind_ipi_to_irq(k, ipi, 0)
            calls.append(("ipi", ipi))
        elif bound:
            victim = rng.choice(bound)
            lines.append(f"unbind_from_irq(IRQ {victim})")
            l18.unbind_from_irq(k, victim)
            calls.append(("unbind", victim))
            if st.irq_bindcount[victim] == 0:
                bound = [b for b in bound if b != victim]
            results.append(0)
            continue
        else:
            lines.append("bind_listening_port_to_irq(remote_domain 0)")
            irq = l18.bind_listening_port_to_irq(k, 0)
            calls.append(("listening",))
        results.append(irq)
        if irq > 0:
            bound.append(irq)
    nxt = l18.find_unbound_irq(k)
    ask = rng.choice(sorted(set(bound))) if bound else nxt
    q = Question("irq", (
        f"A XenLinux 2.6.18 domU (L18: DYNIRQ_BASE {st.space.DYNIRQ_BASE}, {st.space.NR_DYNIRQS} dynamic "
        f"IRQs) has just run xen_init_IRQ. "
        + (f"{ports} of its event channels are already in use (unbound, for other purposes). "
           if ports else "")
        + f"dom0 made port {store} for xenstored. The guest then calls:\n"
        + "\n".join(f"  b{i}. {t}" for i, t in enumerate(lines, 1))))
    q.setup = {"calls": calls, "asked": ask, "ports": ports}
    for i, (text, irq) in enumerate(zip(lines, results, strict=True), 1):
        if not text.startswith("unbind"):
            q.expect(f"b{i}", irq, "the IRQ it returned")
    q.expect("next_irq", nxt, "what find_unbound_irq returns now")
    q.expect(f"irq_info[{ask}]", f"{st.irq_info[ask]:#010x}", "type<<24 | index<<16 | port", points=2,
             base="hex")
    q.expect(f"bindcount[{ask}]", st.irq_bindcount[ask], "irq_bindcount of that IRQ")
    w = ["find_unbound_irq scans DYNIRQ_BASE upward for the first IRQ with irq_bindcount 0. A VIRQ/IPI "
         "already bound on that cpu, or a caller port already mapped, shares its IRQ (bindcount + 1); "
         "unbind_from_irq drops the count and at 0 frees the IRQ (closing the port unless it is a "
         "CALLER_PORT). irq_info = mk_irq_info(type, index, port) = type<<24 | index<<16 | port, with "
         + ", ".join(f"{st.type_name(t)}={t}" for t in (l18.IRQT_VIRQ, l18.IRQT_IPI, l18.IRQT_LOCAL_PORT,
                                                         l18.IRQT_CALLER_PORT)) + "."]
    w += [f"  {s.function}: {s.summary}" for s in k.trace.steps
          if s.actor == k.name and s.function != "xen_init_IRQ"]
    w.append(f"irq_info[{ask}] = {st.irq_info[ask]:#010x} = {st.describe(ask)}")
    q.worked = w
    return q

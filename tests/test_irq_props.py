"""Any sequence of binds and unbinds keeps the IRQ tables consistent, in both flavours.

Invariants checked after every operation: each mapped port's IRQ points back at the
port; nothing is half-bound; a new IRQ is always the lowest free one (2.6.18: lowest
dynamic IRQ with bindcount 0; modern: lowest free descriptor at or above gsi_top); the
hypervisor's port table agrees (a mapped port is open). ``XENLAB_FUZZ_EXAMPLES`` raises
the number of examples (``make fuzz``).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xenlab.abi.event_channel import EVTCHNSTAT_closed
from xenlab.base.trace import Trace
from xenlab.linux.irq import IRQF_SHARED
from xenlab.linux.kernel import Kernel
from xenlab.linux.kernels import new_kernel
from xenlab.linux.pvops import events_2l
from xenlab.linux.pvops import events_base as ev
from xenlab.linux.xenlinux import evtchn as l18
from xenlab.xen.hypervisor import Hypervisor

EXAMPLES = int(os.environ.get("XENLAB_FUZZ_EXAMPLES", "40"))

# ("new", shared) binds a fresh caller port; ("again", i, shared) rebinds the i-th bound one;
# ("unbind", i) unbinds the i-th binding made.
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("new"), st.booleans()),
        st.tuples(st.just("again"), st.integers(0, 40), st.booleans()),
        st.tuples(st.just("unbind"), st.integers(0, 40)),
    ),
    max_size=60,
)


def kernel(flavour: str) -> Kernel:
    trace = Trace(enabled=False)
    hv = Hypervisor(trace=trace, bits=64)
    hv.domain_create(0, "Domain-0", vcpus=1, privileged=True, initdomain=True)
    hv.domain_create(1, "guest", vcpus=1, max_evtchn_port=63)
    k = new_kernel(hv, 1, flavour=flavour, trace=trace)
    if flavour == "2.6.18":
        l18.xen_init_IRQ(k)
        st_ = l18.evtchn_state(k)
        st_.space = l18.IrqSpace(0, 256, 256, 16)  # a small DYNIRQ window, so it fills up
        st_.irq_bindcount = st_.irq_bindcount[: st_.space.NR_IRQS]
        st_.irq_info = st_.irq_info[: st_.space.NR_IRQS]
    else:
        ev.xen_init_IRQ(k, events_2l.xen_evtchn_2l_init)
    return k


def lowest_free(k: Kernel) -> int:
    if k.flavour == "2.6.18":
        sp = l18.evtchn_state(k).space
        window = range(sp.DYNIRQ_BASE, sp.DYNIRQ_BASE + sp.NR_DYNIRQS)
        free = [i for i in window if l18.evtchn_state(k).irq_bindcount[i] == 0]
        return free[0] if free else -28
    used = set(k.irq.core.descs)
    irq = k.irq.gsi_top
    while irq in used:
        irq += 1
    return irq


def check(k: Kernel, bindings: list[tuple[int, int, object]]) -> None:
    hv = k.hv
    if k.flavour == "2.6.18":
        st_ = l18.evtchn_state(k)
        for port, irq in enumerate(st_.evtchn_to_irq):
            if irq == -1:
                continue
            assert l18.evtchn_from_irq_info(st_.irq_info[irq]) == port
            assert st_.irq_bindcount[irq] >= 1
        counts: dict[int, int] = {}
        for _port, irq, _dev in bindings:
            counts[irq] = counts.get(irq, 0) + 1
        sp = st_.space
        for irq in range(sp.DYNIRQ_BASE, sp.NR_IRQS):
            assert st_.irq_bindcount[irq] == counts.get(irq, 0)
            if not counts.get(irq):
                assert st_.irq_info[irq] == l18.IRQ_UNBOUND
    else:
        for irq, info in k.irq.info.items():
            if info.evtchn:
                assert ev.irq_from_evtchn(k, info.evtchn) == irq
        bound = {irq for _p, irq, _d in bindings}
        assert {i for i in k.irq.core.descs if i >= k.irq.gsi_top} == bound
    for port, _irq, _dev in bindings:
        assert hv.evtchn_status(0, 1, port).status != EVTCHNSTAT_closed


def run(flavour: str, ops: list[tuple]) -> None:
    k = kernel(flavour)
    bind = l18.bind_caller_port_to_irqhandler if flavour == "2.6.18" else ev.bind_evtchn_to_irqhandler
    unbind = l18.unbind_from_irqhandler if flavour == "2.6.18" else ev.unbind_from_irqhandler
    bindings: list[tuple[int, int, object]] = []
    n = 0
    for op in ops:
        n += 1
        dev = f"dev{n}"
        if op[0] == "new":
            port = k.hv.evtchn_alloc_unbound(0, 1, 0)
            if port < 0:
                continue
            expect = lowest_free(k)
            irq = bind(k, port, lambda i, d: 1, IRQF_SHARED if op[1] else 0, dev, dev)
            assert irq == expect
            if irq >= 0:
                bindings.append((port, irq, dev))
        elif op[0] == "again" and bindings:
            port, irq0, _ = bindings[op[1] % len(bindings)]
            irq = bind(k, port, lambda i, d: 1, IRQF_SHARED if op[2] else 0, dev, dev)
            if irq >= 0:
                assert irq == irq0
                bindings.append((port, irq, dev))
            elif flavour == "2.6.18":
                assert irq == -16  # -EBUSY: someone on the IRQ was not IRQF_SHARED; nothing changed
            else:
                # 6.1 unbinds the IRQ it handed back when request_irq fails: with refcnt -1 that
                # closes the port under the first user too (events_base.c, fixed upstream in 2024).
                assert irq == -16
                assert k.hv.evtchn_status(0, 1, port).status == EVTCHNSTAT_closed
                bindings = [b for b in bindings if b[1] != irq0]
        elif op[0] == "unbind" and bindings:
            port, irq, dev0 = bindings.pop(op[1] % len(bindings))
            refcounted = flavour == "2.6.18" or k.irq.info[irq].refcnt >= 0
            unbind(k, irq, dev0)
            if not refcounted:  # modern, refcnt -1: the first unbind closes the port for every sharer
                bindings = [b for b in bindings if b[1] != irq]
                assert k.hv.evtchn_status(0, 1, port).status == EVTCHNSTAT_closed
        check(k, bindings)


@pytest.mark.parametrize("flavour", ["2.6.18", "modern"])
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_tables_stay_consistent(flavour: str, ops: list[tuple]) -> None:
    run(flavour, ops)

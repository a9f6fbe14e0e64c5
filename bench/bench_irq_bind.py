"""The cost of binding N event channels to IRQs, 2.6.18 vs modern (trace muted). Prints figures only.

2.6.18's ``find_unbound_irq`` scans the DYNIRQ window from the bottom on every bind, so
the k-th bind looks at k IRQs: linear per bind, quadratic in total -- by design, that is
what the kernel does. The 2.6.18 run uses the RHEL5 -274 x86_64 layout (NR_DYNIRQS 3840),
the only one with room for thousands of ports; past NR_DYNIRQS it reports -ENOSPC. The
modern allocator takes the lowest free descriptor number from a heap: constant-ish per
bind. dom0 has ports 1..4095 (port 0 is reserved), so "4096" binds every port there is.
"""

from __future__ import annotations

import time

from xenlab.abi.event_channel import DOMID_SELF
from xenlab.base.trace import Trace
from xenlab.linux.kernels import new_kernel
from xenlab.linux.pvops import events_2l
from xenlab.linux.pvops import events_base as ev
from xenlab.linux.xenlinux import evtchn as l18
from xenlab.xen.hypervisor import Hypervisor

SIZES = (256, 1024, 4096)


def _handler(irq: int, dev_id: object) -> int:
    return 1


def run(flavour: str, n: int) -> tuple[int, int, float, int]:
    """Bind up to *n* fresh ports: (bound, first error, seconds, IRQs scanned in total)."""
    trace = Trace()
    hv = Hypervisor(trace=trace, bits=64)
    hv.domain_create(0, "Domain-0", vcpus=1, privileged=True, initdomain=True)
    k = new_kernel(hv, 0, flavour, trace=trace)
    with trace.muted():
        if flavour == "2.6.18":
            l18.xen_init_IRQ(k, variant="RH5-274", arch="x86_64")
        else:
            ev.xen_init_IRQ(k, events_2l.xen_evtchn_2l_init)  # type: ignore[arg-type]
        ports = []
        while len(ports) < n and (p := hv.evtchn_alloc_unbound(0, DOMID_SELF, 0)) > 0:
            ports.append(p)
        bound, err, scanned = 0, 0, 0
        t0 = time.perf_counter()
        for p in ports:
            if flavour == "2.6.18":
                irq = l18.bind_caller_port_to_irqhandler(k, p, _handler, 0, "b", p)
                scanned += l18.evtchn_state(k).last_scan
            else:
                irq = ev.bind_evtchn_to_irqhandler(k, p, _handler, 0, "b", p)
                scanned += 1
            if irq < 0:
                err = irq
                break
            bound += 1
        dt = time.perf_counter() - t0
    return bound, err, dt, scanned


def main() -> None:
    print("binding N ports to IRQs (trace muted)")
    print(f"{'flavour':8} {'N':>5} {'bound':>6} {'error':>7} {'ms':>9} {'us/bind':>8} {'IRQs scanned':>13}")
    for flavour in ("2.6.18", "modern"):
        for n in SIZES:
            bound, err, dt, scanned = run(flavour, n)
            per = dt / bound * 1e6 if bound else 0.0
            print(f"{flavour:8} {n:5d} {bound:6d} {err or '':>7} {dt * 1e3:9.1f} {per:8.1f} {scanned:13d}")


if __name__ == "__main__":
    main()

"""The cost of booting a machine (dom0 + xenstored + one guest), per kernel. Prints figures only.

This is the benchmark that exercises the scheduler: every xenstore request a kernel makes
wakes the "xenbus" thread and xenstored, and the watch callbacks run on "xenwatch". The
figures: wall time per boot (best of N), scheduler task runs, trace steps, OS threads alive.
"""

from __future__ import annotations

import os
import threading
import time

from xenlab.sim.scenarios import build

ROUNDS = int(os.environ.get("XENLAB_BENCH_BOOTS", "5"))


def main() -> None:
    print(f"scenario domU (dom0 + oxenstored + 1 PV guest, 1 vbd, 1 vif), best of {ROUNDS}")
    print("flavour      ms/boot  task runs  trace steps  OS threads")
    for flavour in ("2.6.18", "modern"):
        build("domU", flavour=flavour).shutdown()  # imports and first-use costs out of the way
        best, runs, steps, threads = float("inf"), 0, 0, 0
        for _ in range(ROUNDS):
            start = time.perf_counter()
            m = build("domU", flavour=flavour)
            best = min(best, time.perf_counter() - start)
            runs, steps, threads = m.sched.switches, len(m.trace), threading.active_count()
            m.shutdown()
        print(f"{flavour:10s} {best * 1000:9.0f} {runs:10d} {steps:12d} {threads:11d}")


if __name__ == "__main__":
    main()

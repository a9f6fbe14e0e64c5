"""`xenlab trace`: boot a scenario and print its trace, step by step (Trace.dump)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from xenlab.sim.faults import check_fault
from xenlab.sim.scenarios import build, check_scenario
from xenlab.sim.toolstack import GUEST_TYPES


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `xenlab trace`."""
    p = subparsers.add_parser("trace", help="print the boot trace of a scenario",
                              description=__doc__.splitlines()[0])
    p.add_argument("--flavour", default="modern", choices=("modern", "2.6.18"))
    p.add_argument("--scenario", default="dom0")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fault", action="append", default=[], metavar="NAME")
    p.add_argument("--guest-type", default="pv", choices=GUEST_TYPES, help="the guest's xl type: pv or hvm")
    p.add_argument("--changes", action="store_true", help="also print the state each step changed")
    p.add_argument("--stage", default=None, help="print only this stage")
    p.add_argument("--stages", action="store_true", help="list the stages and where they begin")
    return p


def run(args: argparse.Namespace) -> int:
    """Print the trace (or its stages)."""
    try:
        check_scenario(args.scenario)
        for f in args.fault:
            check_fault(f)
    except ValueError as e:
        print(f"xenlab trace: {e}", file=sys.stderr)
        return 2
    m = build(args.scenario, flavour=args.flavour, seed=args.seed, faults=args.fault,
              guest_type=args.guest_type)
    try:
        tr = m.trace
        if args.stages:
            for name, index in tr.stages:
                print(f"{index:6d} {name}")
            return 0
        start, stop = 0, None
        if args.stage is not None:
            names = [n for n, _ in tr.stages]
            if args.stage not in names:
                print(f"xenlab trace: no stage {args.stage!r}; stages: {', '.join(tr.stage_names())}",
                      file=sys.stderr)
                return 2
            i = names.index(args.stage)
            start = tr.stages[i][1]
            stop = tr.stages[i + 1][1] if i + 1 < len(tr.stages) else None
        try:
            print(tr.dump(start, stop, changes=args.changes))
            sys.stdout.flush()
        except BrokenPipeError:  # `xenlab trace ... | head`
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stdout must stay open until exit
        return 0
    finally:
        m.shutdown()

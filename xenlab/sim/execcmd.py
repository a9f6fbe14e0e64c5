"""`xenlab exec`: boot a scenario once and run commands in one of its domains, as a transcript.

    xenlab exec --flavour modern --scenario domU --domain 1 -- 'cat /proc/interrupts' 'xenstore-ls -f'

prints, for each command, a line ``$ COMMAND`` and then what the command printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from xenlab.sim.commands import COMMANDS, EXAMPLES, command_name, run_command, unknown_command_message
from xenlab.sim.faults import all_faults, check_fault
from xenlab.sim.machine import MachineError
from xenlab.sim.scenarios import SCENARIOS, build, check_scenario
from xenlab.sim.toolstack import GUEST_TYPES


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `xenlab exec`."""
    p = subparsers.add_parser("exec", help="boot a scenario and run commands inside a domain",
                              description=__doc__.splitlines()[0])
    p.add_argument("--flavour", default="modern", choices=("modern", "2.6.18"))
    p.add_argument("--scenario", default="dom0")
    p.add_argument("--domain", type=int, default=0, help="domid to run the commands in (default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fault", action="append", default=[], metavar="NAME", help="inject a fault (repeatable)")
    p.add_argument("--dom0-vcpus", type=int, default=1)
    p.add_argument("--guest-vcpus", type=int, default=1)
    p.add_argument("--disks", type=int, default=1, help="number of guest disks (xvda, xvdb, ...)")
    p.add_argument("--vifs", type=int, default=1, help="number of guest vifs")
    p.add_argument("--guest-type", default="pv", choices=GUEST_TYPES,
                   help="the guest's xl type: pv, or hvm (an HVM guest running the PV drivers)")
    p.add_argument("--xenstored", default="oxenstored", choices=("oxenstored", "cxenstored"))
    p.add_argument("--fifo-events", type=int, choices=(0, 1), default=None, metavar="0|1",
                   help="Linux 6.1's xen.fifo_events: 1 FIFO event channels (the default), 0 the "
                        "2-level ABI; XenLinux 2.6.18 has only 2-level (1 is refused)")
    p.add_argument("--list", action="store_true", help="list scenarios, faults and commands")
    p.add_argument("commands", nargs="*", metavar="COMMAND")
    return p


def listing() -> str:
    """What --list prints."""
    out = ["scenarios:"]
    out += [f"  {s.name:<12} {s.what}" for s in SCENARIOS.values()]
    out.append("faults:")
    out += [f"  {f.name:<22} ({f.target}) {f.what}" for f in all_faults().values()]
    out.append("commands:")
    out += [f"  {name}" for name in sorted(COMMANDS)]
    out.append("examples:")
    out += [f"  {e}" for e in EXAMPLES]
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    """Boot once, run every command, print the transcript; 2 on a usage error."""
    if args.list:
        print(listing())
        return 0
    try:
        check_scenario(args.scenario)
        for f in args.fault:
            check_fault(f)
    except ValueError as e:
        print(f"xenlab exec: {e}", file=sys.stderr)
        return 2
    for cmd in args.commands:
        name = command_name(cmd)
        if name and name not in COMMANDS:
            print(f"xenlab exec: {unknown_command_message(name).removeprefix('xenlab: ')}", file=sys.stderr)
            return 2
    try:
        m = build(args.scenario, flavour=args.flavour, seed=args.seed, dom0_vcpus=args.dom0_vcpus,
                  guest_vcpus=args.guest_vcpus, disks=args.disks, vifs=args.vifs, faults=args.fault,
                  xenstored=args.xenstored, guest_type=args.guest_type,
                  fifo_events=None if args.fifo_events is None else bool(args.fifo_events))
    except (MachineError, ValueError) as e:
        print(f"xenlab exec: {e}", file=sys.stderr)
        return 1
    try:
        if args.domain not in m.hv.domains:
            print(f"xenlab exec: no domain {args.domain} in scenario {args.scenario}; "
                  f"domains: {', '.join(str(d) for d in sorted(m.hv.domains))}", file=sys.stderr)
            return 2
        rc = 0
        for err in m.errors + ([m.xenstored_error] if m.xenstored_error else []):
            print(f"xenlab exec: note: {err}", file=sys.stderr)
        try:
            for cmd in args.commands:
                res = run_command(m, args.domain, cmd)
                print(f"$ {cmd}")
                if res.text:
                    print(res.text)
                rc = rc or res.rc
            sys.stdout.flush()
        except BrokenPipeError:  # `xenlab exec ... | head`
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stdout must stay open until exit
        return rc
    finally:
        m.shutdown()

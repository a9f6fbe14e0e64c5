"""The xenlab command line: `xenlab lab`, `xenlab serve`, `xenlab exec`, `xenlab trace`, `xenlab quiz`.

Each subcommand lives in its own module and registers itself through `add_parser`;
this file only collects them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand name -> module providing add_parser(subparsers) and run(args) -> int
SUBCOMMANDS: dict[str, str] = {
    "lab": "xenlab.labcmd",
    "serve": "xenlab.xenstored.serve",
    "exec": "xenlab.sim.execcmd",
    "trace": "xenlab.sim.tracecmd",
    "quiz": "xenlab.exercises.quiz",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand that is installed."""
    parser = argparse.ArgumentParser(prog="xenlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for modname in SUBCOMMANDS.values():
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name != modname:
                raise
            continue
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `xenlab` and `python -m xenlab`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

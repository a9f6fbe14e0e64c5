"""The xenlab command line: `xenlab lab`, `serve`, `exec`, `trace`, `quiz`, `grade`, `export-nbgrader`.

Each subcommand lives in its own module providing ``add_parser(subparsers)`` and
``run(args) -> int``; only the chosen one is imported, so one subcommand's import error
never breaks another.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

#: subcommand name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "lab": ("xenlab.labcmd", "copy the notebooks to a working folder and open JupyterLab there"),
    "serve": ("xenlab.xenstored.serve", "serve the lab xenstore on a Unix socket for real tools"),
    "exec": ("xenlab.sim.execcmd", "boot a simulated machine and run commands in one of its domains"),
    "trace": ("xenlab.sim.tracecmd", "print the boot trace of a scenario"),
    "quiz": ("xenlab.exercises.quiz", "generate exercises from a seed; -c shows the worked answers"),
    "grade": ("xenlab.exercises.grade", "mark answer files (one, or a class): points, Score: N/M, CSV/JSON"),
    "export-nbgrader": ("xenlab.exercises.nbexport", "write the exercise notebooks as an nbgrader course"),
}


def _usage() -> str:
    lines = ["usage: xenlab COMMAND [ARGS...]", "", "commands:"]
    width = max(len(name) for name in SUBCOMMANDS)
    lines += [f"  {name:{width}s} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "`xenlab COMMAND --help` describes one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `xenlab` and `python -m xenlab`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name = argv[0]
    if name not in SUBCOMMANDS:
        print(f"xenlab: unknown command {name!r}; valid: {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    parser = argparse.ArgumentParser(prog="xenlab")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    module.add_parser(sub).set_defaults(_run=module.run)
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a lab bug: one line for the learner, the traceback with XENLAB_DEBUG=1
        if os.environ.get("XENLAB_DEBUG"):
            raise
        print(f"xenlab {name}: internal error: {type(e).__name__}: {e} (XENLAB_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 70  # EX_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())

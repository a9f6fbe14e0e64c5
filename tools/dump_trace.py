"""Write the whole trace of a few scenarios to files, every field of every step and change.

Used to prove that a change to how the trace is recorded changes no byte of it: dump before,
dump after, compare the files (``cmp``). tests/test_trace_identity.py compares the same text
(``xenlab.base.trace.full_text``) between independently built machines.

    PYTHONPATH=. python tools/dump_trace.py OUTDIR   (PYTHONPATH: this tree's xenlab, not the venv's)
"""

from __future__ import annotations

import sys
from pathlib import Path

from xenlab.base.trace import full_text
from xenlab.sim.scenarios import build

# (file name, build arguments): dom0/domU x both kernels x 1/2 vCPUs, and an HVM guest
SCENARIOS: list[tuple[str, dict[str, object]]] = [
    (f"{name}-{flavour}-{vcpus}vcpu",
     {"name": name, "flavour": flavour, "dom0_vcpus": vcpus, "guest_vcpus": vcpus})
    for name in ("dom0", "domU") for flavour in ("2.6.18", "modern") for vcpus in (1, 2)
] + [(f"domU-{flavour}-hvm", {"name": "domU", "flavour": flavour, "guest_type": "hvm"})
     for flavour in ("2.6.18", "modern")]


def main(argv: list[str]) -> None:
    outdir = Path(argv[1])
    outdir.mkdir(parents=True, exist_ok=True)
    for fname, args in SCENARIOS:
        args = dict(args)
        m = build(str(args.pop("name")), **args)  # type: ignore[arg-type]
        (outdir / f"{fname}.trace").write_text(full_text(m.trace))
        m.shutdown()
        print(fname, len(m.trace))


if __name__ == "__main__":
    main(sys.argv)

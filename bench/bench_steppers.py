"""What one move of each lesson stepper costs in the kernel. Prints figures only.

Runs every lesson notebook's code cells (as Run All does, without a browser), keeps each
Stepper the lessons build, then moves every stepper through all its steps in a shuffled
order (a learner dragging the slider) with the trace's replay checkpoints dropped first,
timing what a slider move runs in the kernel: the step change and the redraw of the
widget's body (``Stepper.html``). Also prints the body's size, which is what the browser
has to lay out. The browser's side (click to redraw) is printed by the browser test
(tests/test_e2e_browser.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import time
from pathlib import Path
from typing import Any

from xenlab.views import stepper as stepper_module

ROOT = Path(__file__).resolve().parent.parent
MOVES = 60  # per stepper, at most


def lesson_steppers(notebook: Path) -> list[stepper_module.Stepper]:
    """Run the notebook's code cells in one namespace; return every Stepper they built, in order."""
    made: list[stepper_module.Stepper] = []
    original = stepper_module.Stepper.__init__

    def init(self: stepper_module.Stepper, *args: Any, **kw: Any) -> None:
        original(self, *args, **kw)
        made.append(self)

    stepper_module.Stepper.__init__ = init  # type: ignore[method-assign]
    try:
        namespace: dict[str, Any] = {}
        for cell in json.loads(notebook.read_text())["cells"]:
            if cell["cell_type"] == "code":
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(compile("".join(cell["source"]), notebook.name, "exec"), namespace)
    finally:
        stepper_module.Stepper.__init__ = original  # type: ignore[method-assign]
    return made


def main() -> None:
    print(f"per move: step change + body redraw, shuffled order, cold replay; {MOVES} moves at most")
    print(f"{'lesson':14} {'stepper':52} {'steps':>6} {'worst ms':>9} {'mean ms':>8} {'body KB':>8}")
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for s in lesson_steppers(notebook):
            s.trace._checkpoints.clear()
            order = list(range(len(s.shown)))
            random.Random(0).shuffle(order)
            times, size = [], 0
            for pos in order[:MOVES]:
                start = time.perf_counter()
                s._go_pos(pos)
                body = s.html(style=False)
                times.append(time.perf_counter() - start)
                size = max(size, len(body))
            if times:
                print(f"{notebook.stem[:14]:14} {s.title[:52]:52} {len(s.shown):6d} {max(times) * 1000:9.1f} "
                      f"{sum(times) / len(times) * 1000:8.1f} {size / 1024:8.1f}")


if __name__ == "__main__":
    main()

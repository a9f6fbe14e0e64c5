"""The stored lesson outputs are clean: no errors, no views that could not draw, nothing machine-specific.

(`tools/run_notebooks.py --check`, run by `make test`, checks they are what re-execution
produces; this checks what they contain.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
FORBIDDEN = {
    "a Python object address": re.compile(r" at 0x[0-9a-f]{6,}"),
    "a machine path": re.compile(r"(/work/|/home/|/tmp/|/root/|site-packages)"),
    "a view that could not draw": re.compile(r"cannot draw step"),
    "a traceback": re.compile(r"Traceback \(most recent call last\)"),
    "a timing": re.compile(r"\d+(\.\d+)? ?(ms|s) elapsed|Wall time"),
}


def outputs(nb: Path) -> list[tuple[int, dict]]:
    cells = json.loads(nb.read_text())["cells"]
    return [(i, o) for i, c in enumerate(cells) if c["cell_type"] == "code" for o in c.get("outputs", [])]


def test_there_are_three_lessons() -> None:
    assert [n.name for n in NOTEBOOKS] == ["01_bus_registration.ipynb", "02_store_ring.ipynb",
                                           "03_evtchn_irq.ipynb"]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_every_code_cell_ran_and_printed_nothing_it_should_not(nb: Path) -> None:
    cells = json.loads(nb.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(c["execution_count"] for c in code), "a code cell has no stored execution"
    for i, out in outputs(nb):
        assert out["output_type"] != "error", f"cell {i} stored an error"
        data = {k: v for k, v in out.get("data", {}).items() if k.startswith("text/")}
        text = out.get("text") or "".join(v if isinstance(v, str) else "".join(v) for v in data.values())
        for what, pattern in FORBIDDEN.items():
            assert not pattern.search(text), f"cell {i} shows {what}: {pattern.search(text).group(0)!r}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_each_lesson_has_a_stepper_with_a_stable_text_form(nb: Path) -> None:
    steppers = [o for _, o in outputs(nb)
                if re.search(r"^step \d+ \(this stepper: \d+ steps?, \d+\.\.\d+\)", o.get("data", {}).get(
                    "text/plain", ""), re.M)]
    assert steppers, "no stepper output stored"
    assert all("application/vnd.jupyter.widget-view+json" not in o["data"] for o in steppers)

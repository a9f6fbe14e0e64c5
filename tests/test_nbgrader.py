"""`xenlab export-nbgrader`: the exercises as an nbgrader course, graded by nbgrader itself.

The export's cell metadata passes nbgrader's own validator and its JSON schema; then the README's
commands run as written (export, generate_assignment, autograde, generate_feedback, export) on
two submissions of the release notebook: ada's with the tasks answered by
xenlab/exercises/solutions.py and the model's predictions (full marks), bob's with a typical
wrong find_unbound_irq from xenlab/exercises/mistakes.py and one wrong prediction (partial
marks, the wrong parts named with their hints in his feedback). nbgrader is a test dependency
only (the `test` extra); the writer imports nothing of it.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from xenlab.exercises import kernel_tasks as kt
from xenlab.exercises import nbexport
from xenlab.exercises.notebook import problem

nbgrader = pytest.importorskip("nbgrader", reason="nbgrader is in the test extra: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "03_evtchn_irq"
NOTEBOOK = "03_evtchn_irq_ex.ipynb"


def readme_commands() -> list[list[str]]:
    """The `$ ` lines of the README's nbgrader block, as argv lists (comments dropped)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Grade the notebooks with nbgrader", 1)[1]
    block = section.split("```console", 1)[1].split("```", 1)[0]
    return [shlex.split(line[2:], comments=True) for line in block.splitlines() if line.startswith("$ ")]


def env() -> dict[str, str]:
    """This interpreter's bin first (nbgrader runs `alembic`), the worktree's xenlab in every kernel."""
    e = dict(os.environ)
    e["PATH"] = str(Path(sys.executable).parent) + os.pathsep + e.get("PATH", "")
    e["PYTHONPATH"] = str(ROOT) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e["PYTHONHASHSEED"] = "0"
    return e


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    tool = {"xenlab": [sys.executable, "-m", "xenlab"], "nbgrader": [sys.executable, "-m", "nbgrader"]}
    cmd = tool[argv[0]] + argv[1:]
    p = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"{' '.join(argv)} failed:\n{p.stdout}\n{p.stderr}"
    return p


def cells(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text())["cells"])


def grade_id(cell: dict[str, Any]) -> str:
    return str(cell["metadata"].get("nbgrader", {}).get("grade_id", ""))


def submission(release: Path, answers: dict[str, str]) -> dict[str, Any]:
    """The release notebook with the solution cells named in *answers* replaced, as a student would."""
    nb = json.loads(release.read_text())
    for cell in nb["cells"]:
        if grade_id(cell) in answers:
            cell["source"] = answers.pop(grade_id(cell))
    assert not answers, f"no such solution cells: {sorted(answers)}"
    return nb


def predict_seed(release: Path, kind: str) -> int:
    for cell in cells(release):
        found = re.search(rf'problem\("{kind}", seed=(\d+)\)', "".join(cell["source"]))
        if found:
            return int(found.group(1))
    raise AssertionError(f"no problem({kind!r}) cell")


def hand_in(course: Path) -> None:
    """ada's and bob's notebooks in submitted/STUDENT/03_evtchn_irq/, as the README says."""
    release = course / "release" / ASSIGNMENT / NOTEBOOK
    expected = dict(problem("predict_irqs", predict_seed(release, "predict_irqs")).expected)
    wrong = dict(expected)
    wrong["op1"] = str(int(wrong["op1"]) + 1)  # one prediction off by one
    ada = submission(release, {
        "answer-predict_irqs": f"answer = {expected!r}",
        "answer-find_unbound_irq": "from xenlab.exercises.solutions import find_unbound_irq",
        "answer-bind_caller_port_to_irq": "from xenlab.exercises.solutions import bind_caller_port_to_irq",
    })
    bob = submission(release, {
        "answer-predict_irqs": f"answer = {wrong!r}",
        "answer-find_unbound_irq":
            "from xenlab.exercises.mistakes import warns_every_time as find_unbound_irq",
        "answer-bind_caller_port_to_irq": "from xenlab.exercises.solutions import bind_caller_port_to_irq",
    })
    for student, nb in (("ada", ada), ("bob", bob)):
        target = course / "submitted" / student / ASSIGNMENT / NOTEBOOK
        target.parent.mkdir(parents=True)
        target.write_text(json.dumps(nb))


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's commands, run as written in a fresh folder (submissions handed in before autograde)."""
    cwd = tmp_path_factory.mktemp("nbgrader")
    top = cwd
    for argv in readme_commands():
        if argv[0] == "cd":
            cwd = cwd / argv[1]
            continue
        if argv[:2] == ["nbgrader", "autograde"]:
            hand_in(cwd)
        run(argv, cwd)
    assert cwd != top, "the README's commands never cd into the course"
    return cwd


# -- the export alone ----------------------------------------------------------------------------------
def test_the_readme_runs_the_three_nbgrader_steps() -> None:
    argvs = readme_commands()
    assert argvs[0][:2] == ["xenlab", "export-nbgrader"]
    steps = [a[1] for a in argvs if a[0] == "nbgrader"]
    assert steps[:3] == ["generate_assignment", "autograde", "generate_feedback"]
    assert all(a[2:] == [ASSIGNMENT] for a in argvs if a[0] == "nbgrader" and a[1] != "export")


def test_the_export_passes_nbgraders_validator_and_schema(tmp_path: Path) -> None:
    import jsonschema
    import nbformat
    from nbgrader.nbgraderformat import MetadataValidator

    schema = json.loads((Path(nbgrader.__file__).parent / "nbgraderformat" / "v3.json").read_text())
    done = nbexport.export(tmp_path)
    assert [d.assignment for d in done] == ["01_bus_registration", "02_store_ring", "03_evtchn_irq"]
    for d in done:
        nb = nbformat.read(str(d.path), as_version=4)
        nbformat.validate(nb)
        MetadataValidator().validate_nb(nb)
        for cell in nb.cells:
            jsonschema.validate(cell.metadata["nbgrader"], schema)
    config = (tmp_path / "nbgrader_config.py").read_text()
    assert "c.CourseDirectory.course_id = 'xenlab'" in config
    assert "ASSIGNMENTS = ['01_bus_registration', '02_store_ring', '03_evtchn_irq']" in config


def test_each_check_is_a_tests_cell_worth_the_checkers_points_after_its_solution_cell(tmp_path: Path) -> None:
    done = nbexport.export(tmp_path)
    tasks_seen: set[str] = set()
    for d in done:
        nb = cells(d.path)
        for i, cell in enumerate(nb):
            meta = cell["metadata"]["nbgrader"]
            if not meta["grade"]:
                assert meta["locked"] or meta["solution"], cell["source"]
                continue
            answer = nb[i - 1]["metadata"]["nbgrader"]
            assert answer["solution"] and not answer["grade"] and not answer["locked"]
            assert "### BEGIN SOLUTION" in nb[i - 1]["source"]
            m = re.match(r'v = check\("([^"]+)"', cell["source"])
            if m:  # a kernel task: its points, and hidden cases beyond the visible check's
                tasks_seen.add(m.group(1))
                assert meta["points"] == kt.TASKS[m.group(1)].points
                assert "### BEGIN HIDDEN TESTS" in cell["source"] and "seeds=range(3, 12)" in cell["source"]
            assert cell["source"].endswith("v.earned  # the points nbgrader gives this cell")
        assert sum(d.points.values()) == d.total > 0
    assert tasks_seen == set(kt.TASKS)


def test_the_exporter_needs_no_nbgrader() -> None:
    src = (ROOT / "xenlab" / "exercises" / "nbexport.py").read_text()
    assert not re.search(r"^\s*(import|from)\s+nbgrader", src, re.M)


# -- nbgrader on the export ----------------------------------------------------------------------------
def test_the_release_has_the_stubs_and_neither_solutions_nor_hidden_tests(course: Path) -> None:
    release = course / "release" / ASSIGNMENT / NOTEBOOK
    text = release.read_text()
    for absent in ("BEGIN SOLUTION", "HIDDEN TESTS", "seeds=range(3, 12)", "st.warned = True"):
        assert absent not in text
    sources = {grade_id(c): "".join(c["source"]) for c in cells(release)}
    assert sources["answer-find_unbound_irq"].endswith(
        "def find_unbound_irq(kernel):\n    # YOUR CODE HERE\n    raise NotImplementedError()")
    assert sources["check-find_unbound_irq"] == ('v = check("find_unbound_irq", find_unbound_irq)\n'
                                                 'print(v)\nv.earned  # the points nbgrader gives this cell')


def scores(course: Path, student: str) -> dict[str, tuple[float, float]]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        sub = gb.find_submission(ASSIGNMENT, student)
        return {g.name: (g.score, g.max_score) for nb in sub.notebooks for g in nb.grades}


def outputs(course: Path, student: str) -> dict[str, str]:
    """grade_id -> the text a tests cell printed in the autograded notebook."""
    nb = cells(course / "autograded" / student / ASSIGNMENT / NOTEBOOK)
    return {grade_id(c): "".join("".join(o.get("text", "")) for o in c.get("outputs", [])) for c in nb}


def test_the_reference_solutions_get_full_marks_hidden_cases_included(course: Path) -> None:
    got = scores(course, "ada")
    assert got == {"check-predict_irqs": (8.0, 8.0), "check-find_unbound_irq": (4.0, 4.0),
                   "check-bind_caller_port_to_irq": (4.0, 4.0)}
    printed = outputs(course, "ada")
    assert "find_unbound_irq, case 11: " in printed["check-find_unbound_irq"]  # the hidden cases ran
    assert printed["check-find_unbound_irq"].rstrip().endswith("find_unbound_irq: correct\nScore: 4/4")
    assert printed["check-predict_irqs"].rstrip().endswith("Score: 8/8")


def test_a_wrong_submission_gets_partial_marks_and_feedback_naming_the_wrong_parts(course: Path) -> None:
    got = scores(course, "bob")
    assert got == {"check-predict_irqs": (7.0, 8.0), "check-find_unbound_irq": (0.0, 4.0),
                   "check-bind_caller_port_to_irq": (4.0, 4.0)}
    printed = outputs(course, "bob")
    assert "op1: expected " in printed["check-predict_irqs"] and "Score: 7/8" in printed["check-predict_irqs"]
    assert "find_unbound_irq, case 0: diverged at step" in printed["check-find_unbound_irq"]
    assert f"hint: {kt.WARN_ONCE}" in printed["check-find_unbound_irq"]
    feedback = (course / "feedback" / "bob" / ASSIGNMENT / NOTEBOOK.replace(".ipynb", ".html")).read_text()
    assert "printed once per boot" in feedback and "Score: 0/4" in feedback
    with open(course / "grades.csv", newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f) if r["assignment"] == ASSIGNMENT}
    assert (float(rows["ada"]["raw_score"]), float(rows["bob"]["raw_score"])) == (16.0, 11.0)
    assert float(rows["bob"]["max_score"]) == 16.0


@pytest.mark.slow
def test_every_assignments_source_notebook_scores_full_marks(tmp_path: Path) -> None:
    """The exported solution regions are working code: each source notebook, handed in as is and
    autograded by nbgrader (hidden cases included), gets every point of its tests cells."""
    from nbgrader.api import Gradebook

    done = nbexport.export(tmp_path)
    for d in done:
        target = tmp_path / "submitted" / "instructor" / d.assignment / d.path.name
        target.parent.mkdir(parents=True)
        target.write_bytes(d.path.read_bytes())
    run(["nbgrader", "generate_assignment", "*"], tmp_path)
    run(["nbgrader", "autograde", "*"], tmp_path)
    with Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}") as gb:
        for d in done:
            sub = gb.find_submission(d.assignment, "instructor")
            got = {g.name: g.score for nb in sub.notebooks for g in nb.grades}
            assert got == {k: float(v) for k, v in d.points.items()}, d.assignment

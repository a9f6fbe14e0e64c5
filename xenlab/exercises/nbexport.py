"""`xenlab export-nbgrader DIR`: the student notebooks as an nbgrader course's source notebooks.

Each ``notebooks/exercises/NN_x_ex.ipynb`` becomes ``DIR/source/NN_x/NN_x_ex.ipynb`` with nbgrader's
cell metadata (schema version 3), and ``DIR/nbgrader_config.py`` names the course and the
assignments. Every cell is classified by what it calls:

- a ``check(...)`` cell becomes an autograded *tests* cell worth what the checker's Verdict is
  worth (``KernelTask.points``, ``Problem.max_points``, ``HANDSHAKE_POINTS``). It prints the
  checker's message and ends with ``v.earned``, the number nbgrader takes as the cell's partial
  credit. A kernel task's cell also runs the check on more generated cases in a
  ``### BEGIN HIDDEN TESTS`` region.
- the code cell before it (the student's task) becomes a *solution* cell: a kernel function's
  ``raise NotImplementedError`` is replaced by the reference solution (``solutions.REFERENCE``)
  inside ``### BEGIN SOLUTION`` / ``### END SOLUTION``, so ``nbgrader generate_assignment``
  puts the stub back; a predict answer gets the model's answer for that seed; the handshake
  gets ``solutions.drive_handshake``'s writes.
- every other cell (the lesson text, the imports, the ``problem(...)`` cells) is locked read-only.

This module imports nothing of nbgrader: the notebooks are written with ``json``.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import importlib
import inspect
import json
import re
import sys
import sysconfig
import textwrap
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xenlab.exercises import notebook, solutions
from xenlab.exercises.handshake import HANDSHAKE_POINTS
from xenlab.exercises.kernel_tasks import TASKS

COURSE_ID = "xenlab"
#: the cases a kernel task's hidden tests add to the visible check's (seeds 0-2)
HIDDEN_SEEDS = range(3, 12)
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
SCHEMA_VERSION = 3
#: nbgrader runs each cell with this timeout (seconds): a kernel check boots dom0 + a domU twice
EXECUTE_TIMEOUT = 300


class ExportError(ValueError):
    """A student notebook the exporter cannot map onto nbgrader cells; the message says which cell."""


@dataclass
class Exported:
    """One written source notebook: its assignment, its path, and the points of its tests cells."""

    assignment: str
    path: Path
    #: grade_id -> points, in notebook order
    points: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.points.values())


def exercises_folder() -> Path:
    """The student notebooks: the source checkout's notebooks/exercises, or the wheel's data files
    (<prefix>/share/xenlab/notebooks/exercises), as `xenlab lab` finds the lessons."""
    candidates = [Path(__file__).resolve().parents[2] / "notebooks" / "exercises"]
    for prefix in dict.fromkeys([sysconfig.get_path("data"), sys.prefix, sys.base_prefix]):
        candidates.append(Path(prefix) / "share" / "xenlab" / "notebooks" / "exercises")
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("*_ex.ipynb")):
            return folder
    raise FileNotFoundError("no exercise notebooks (*_ex.ipynb) in " + ", ".join(str(c) for c in candidates))


def assignment_name(path: Path) -> str:
    """`03_evtchn_irq_ex.ipynb` -> `03_evtchn_irq`."""
    return path.stem.removesuffix("_ex")


def _source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _meta(grade_id: str, *, grade: bool = False, solution: bool = False, locked: bool = False,
          points: int | None = None) -> dict[str, Any]:
    """A cell's `nbgrader` metadata (schema version 3)."""
    m: dict[str, Any] = {"grade": grade, "grade_id": grade_id, "locked": locked,
                         "schema_version": SCHEMA_VERSION, "solution": solution, "task": False}
    if grade:
        m["points"] = points
    return m


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


# -- what a cell calls ---------------------------------------------------------------------------
@dataclass
class Check:
    """A `check(...)` cell: what it checks."""

    kind: str  # "kernel", "predict" or "handshake"
    what: str  # the task name, the problem's variable or the handshake's variable
    fn: str = ""  # a kernel task's function name


def parse_check(src: str) -> Check | None:
    """The check a cell makes, or None if it is not one `check(...)` call."""
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
        return None
    call = tree.body[0].value
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "check"):
        return None
    args = call.args
    if len(args) == 2 and isinstance(args[0], ast.Constant) and isinstance(args[1], ast.Name):
        return Check("kernel", str(args[0].value), args[1].id)
    if len(args) == 2 and isinstance(args[0], ast.Name):
        return Check("predict", args[0].id)
    if len(args) == 1 and isinstance(args[0], ast.Name):
        return Check("handshake", args[0].id)
    raise ExportError(f"a check(...) cell the exporter does not know: {src!r}")


def parse_problem(src: str, var: str) -> tuple[str, int] | None:
    """(kind, seed) if the cell assigns `var = problem("kind", seed=N)`."""
    for node in ast.parse(src).body:
        if (isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [var]
                and isinstance(node.value, ast.Call) and getattr(node.value.func, "id", "") == "problem"):
            call = node.value
            values = [ast.literal_eval(a) for a in call.args]
            values += [ast.literal_eval(k.value) for k in call.keywords if k.arg == "seed"]
            return str(values[0]), int(values[1]) if len(values) > 1 else 0
    return None


# -- the notebook's names, and the names a solution needs ------------------------------------------
def notebook_names(sources: list[str]) -> dict[str, object]:
    """The top-level names the code cells bind by import (name -> object), and those they define
    otherwise (name -> None)."""
    out: dict[str, object] = {}
    for src in sources:
        for node in ast.parse(src).body:
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                mod = importlib.import_module(node.module)
                for a in node.names:
                    obj = getattr(mod, a.name, None)
                    if obj is None:
                        obj = importlib.import_module(f"{node.module}.{a.name}")
                    out[a.asname or a.name] = obj
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        out[a.asname] = importlib.import_module(a.name)
                    else:
                        top = a.name.split(".")[0]
                        out[top] = importlib.import_module(top)
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                out[node.name] = None
            elif isinstance(node, ast.Assign):
                for t in node.targets:
                    for n in ast.walk(t):
                        if isinstance(n, ast.Name):
                            out[n.id] = None
    return out


def module_bindings(module: types.ModuleType) -> dict[str, str]:
    """How *module*'s own source binds its top-level names: name -> the import, or the constant's line."""
    out: dict[str, str] = {}
    src = inspect.getsource(module)
    for node in ast.parse(src).body:
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module == "__future__":
                continue
            for a in node.names:
                alias = f" as {a.asname}" if a.asname else ""
                out[a.asname or a.name] = f"from {node.module} import {a.name}{alias}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                alias = f" as {a.asname}" if a.asname else ""
                out[a.asname or a.name.split(".")[0]] = f"import {a.name}{alias}"
        elif (isinstance(node, ast.Assign) and len(node.targets) == 1
              and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Constant)):
            out[node.targets[0].id] = ast.get_source_segment(src, node) or ""
    return out


def _import_line(name: str, obj: object, source: dict[str, str]) -> str:
    """The line that binds *name* to *obj*: as the solution's module does, else by the object's module."""
    if source.get(name):
        return source[name]
    if isinstance(obj, types.ModuleType):
        pkg, _, leaf = obj.__name__.rpartition(".")
        if not pkg:
            return f"import {leaf}" + (f" as {name}" if name != leaf else "")
        return f"from {pkg} import {leaf}" + (f" as {name}" if name != leaf else "")
    if isinstance(obj, bool) or not isinstance(obj, int):
        module, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if not module or not qual or "." in qual:
            raise ExportError(f"the reference solution uses {name!r}, which cannot be imported by name")
        return f"from {module} import {qual}" + (f" as {name}" if name != qual else "")
    return f"{name} = {obj:#x}" if obj > 0xFFFF else f"{name} = {obj}"


@dataclass
class Solution:
    """A reference solution's parameters, body (dedented source) and the lines it needs first."""

    params: list[str]
    body: str
    needs: list[str]


def solution_of(fn: Callable[..., Any], have: dict[str, object]) -> Solution:
    """*fn*'s body as source, and the imports it needs that the notebook (*have*) lacks."""
    src = textwrap.dedent(inspect.getsource(fn))
    node = ast.parse(src).body[0]
    if not isinstance(node, ast.FunctionDef):
        raise ExportError(f"{fn.__name__} is not a plain function")
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]  # the docstring
    lines = src.splitlines()
    text = textwrap.dedent("\n".join(lines[body[0].lineno - 1:body[-1].end_lineno]))
    params = [a.arg for a in node.args.args]
    local = set(params)
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            local.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.Lambda)) and n is not node:
            if isinstance(n, ast.FunctionDef):
                local.add(n.name)
            local.update(a.arg for a in n.args.args)
    needs: dict[str, str] = {}
    source = module_bindings(sys.modules[fn.__module__])
    for n in ast.walk(ast.Module(body=body, type_ignores=[])):
        if not (isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)):
            continue
        name = n.id
        if name in local or name in needs or hasattr(builtins, name):
            continue
        obj = fn.__globals__[name]
        if name in have and have[name] is obj:
            continue
        needs[name] = _import_line(name, obj, source)
    return Solution(params, text, sorted(needs.values()))


def _region(lines: list[str], indent: str) -> list[str]:
    return [f"{indent}{BEGIN}", *[f"{indent}{line}" if line else "" for line in lines], f"{indent}{END}"]


def kernel_solution_cell(src: str, fn_name: str, task: str, have: dict[str, object]) -> str:
    """The task cell with its function's body replaced by the reference solution in a solution region."""
    tree = ast.parse(src)
    fdef = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == fn_name), None)
    if fdef is None:
        raise ExportError(f"the cell before check({task!r}, {fn_name}) does not define {fn_name}")
    sol = solution_of(solutions.REFERENCE[task], have)
    params = [a.arg for a in fdef.args.args]
    if params != sol.params:
        raise ExportError(f"{fn_name}({', '.join(params)}) in the notebook, but the reference solution of "
                          f"{task} takes ({', '.join(sol.params)})")
    lines = src.splitlines()
    first, last = fdef.body[0].lineno - 1, fdef.body[-1].end_lineno or fdef.body[-1].lineno
    indent = " " * fdef.body[0].col_offset
    region = _region([*sol.needs, *sol.body.splitlines()], indent)
    return "\n".join([*lines[:first], *region, *lines[last:]])


def statement_solution_cell(src: str, fn: Callable[..., Any], have: dict[str, object]) -> str:
    """The task cell (a template or a comment, kept) followed by *fn*'s body as top-level statements
    (its parameters are the notebook's variables of the same names)."""
    sol = solution_of(fn, have)
    missing = [p for p in sol.params if p not in have]
    if missing:
        raise ExportError(f"the notebook has no {', '.join(missing)} for {fn.__name__}")
    return "\n".join([src.rstrip("\n"), *_region([*sol.needs, *sol.body.splitlines()], "")])


def predict_solution_cell(src: str, kind: str, seed: int, var: str = "answer") -> str:
    """The template, then the model's answer for (kind, seed) in a solution region."""
    expected = notebook.problem(kind, seed).expected
    parts = [f"    {json.dumps(part)}: {json.dumps(value)}," for part, value in expected.items()]
    body = [f"{var} = {{", *parts, "}"]
    return "\n".join([src.rstrip("\n"), *_region(body, "")])


def tests_cell(check: Check, call: str) -> str:
    """The autograded cell: the visible check (and a kernel task's hidden cases), its message, its points."""
    lines = [f"v = {call}"]
    if check.kind == "kernel":
        seeds = f"range({HIDDEN_SEEDS.start}, {HIDDEN_SEEDS.stop})"
        lines += [BEGIN_HIDDEN,
                  "if v.ok:  # the same check on more generated cases",
                  f"    v = check({json.dumps(check.what)}, {check.fn}, seeds={seeds})",
                  END_HIDDEN]
    lines += ["print(v)", "v.earned  # the points nbgrader gives this cell"]
    return "\n".join(lines)


# -- one notebook -----------------------------------------------------------------------------------
def convert(nb: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
    """A student notebook (as json) -> (the nbgrader source notebook, grade_id -> points)."""
    cells = nb["cells"]
    roles: dict[int, tuple[str, Check]] = {}
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        chk = parse_check(_source(cell))
        if chk is None:
            continue
        prev = i - 1
        if prev < 0 or cells[prev]["cell_type"] != "code" or parse_check(_source(cells[prev])):
            raise ExportError(f"cell {i} ({_source(cell)!r}) has no task cell before it")
        roles[i] = ("tests", chk)
        roles[prev] = ("solution", chk)
    if not roles:
        raise ExportError("no check(...) cells")
    out_cells: list[dict[str, Any]] = []
    points: dict[str, int] = {}
    used: set[str] = set()
    code_before: list[str] = []
    problems: dict[str, tuple[str, int]] = {}

    def gid(base: str) -> str:
        name, n = _slug(base), 2
        while name in used:
            name, n = f"{_slug(base)}-{n}", n + 1
        used.add(name)
        return name

    for i, cell in enumerate(cells):
        src = _source(cell)
        new: dict[str, Any] = {"cell_type": cell["cell_type"], "metadata": dict(cell.get("metadata", {}))}
        if "id" in cell:
            new["id"] = cell["id"]
        role = roles.get(i)
        if role is None:
            kind = "text" if cell["cell_type"] == "markdown" else "setup"
            new["metadata"]["nbgrader"] = _meta(gid(f"{kind}-{i:02d}"), locked=True)
        elif role[0] == "solution":
            chk = role[1]
            have = notebook_names([*code_before, src])
            if chk.kind == "kernel":
                if chk.what not in TASKS:
                    raise ExportError(f"cell {i + 1}: no kernel task {chk.what!r}")
                src = kernel_solution_cell(src, chk.fn, chk.what, have)
                label = chk.what
            elif chk.kind == "predict":
                if chk.what not in problems:
                    raise ExportError(f"cell {i + 1}: {chk.what} is not a problem(...) of an earlier cell")
                kind_, seed = problems[chk.what]
                src = predict_solution_cell(src, kind_, seed)
                label = kind_
            else:
                src = statement_solution_cell(src, solutions.drive_handshake, have)
                label = "handshake"
            new["metadata"]["nbgrader"] = _meta(gid(f"answer-{label}"), solution=True)
        else:
            chk = role[1]
            if chk.kind == "kernel":
                pts, label = TASKS[chk.what].points, chk.what
            elif chk.kind == "predict":
                kind_, seed = problems[chk.what]
                pts, label = notebook.problem(kind_, seed).max_points, kind_
            else:
                pts, label = HANDSHAKE_POINTS, "handshake"
            grade_id = gid(f"check-{label}")
            points[grade_id] = pts
            src = tests_cell(chk, src.strip())
            new["metadata"]["nbgrader"] = _meta(grade_id, grade=True, locked=True, points=pts)
        if cell["cell_type"] == "code":
            new["execution_count"] = None
            new["outputs"] = []
            original = _source(cell)
            code_before.append(original)
            for var in notebook_names([original]):
                found = parse_problem(original, var)
                if found:
                    problems[var] = found
        new["source"] = src
        out_cells.append(new)
    out = {"cells": out_cells, "metadata": nb.get("metadata", {}),
           "nbformat": nb.get("nbformat", 4), "nbformat_minor": nb.get("nbformat_minor", 5)}
    return out, points


def config_text(assignments: list[str], course_id: str = COURSE_ID) -> str:
    """The course's nbgrader_config.py."""
    names = ", ".join(repr(a) for a in assignments)
    return "\n".join([
        "# nbgrader's configuration of xenlab's exercises (written by `xenlab export-nbgrader`).",
        "# The source notebooks are in source/<assignment>/; for each assignment:",
        "#   nbgrader generate_assignment ASSIGNMENT      (release/: the stubs, no hidden tests)",
        "#   nbgrader autograde ASSIGNMENT                (submitted/<student>/ASSIGNMENT/ -> autograded/)",
        "#   nbgrader generate_feedback ASSIGNMENT        (feedback/: each check's message and points)",
        "c = get_config()  # noqa: F821  (defined by traitlets when nbgrader loads this file)",
        "",
        f"c.CourseDirectory.course_id = {course_id!r}",
        "# a check runs the student's function on generated cases and boots dom0 + a domU: allow minutes",
        f"c.Execute.timeout = {EXECUTE_TIMEOUT}",
        "",
        "#: the assignments this export wrote",
        f"ASSIGNMENTS = [{names}]",
        "",
    ])


def export(outdir: Path, sources: list[Path] | None = None, course_id: str = COURSE_ID) -> list[Exported]:
    """Write DIR/source/<assignment>/<notebook> for each student notebook, and DIR/nbgrader_config.py."""
    paths = sources if sources is not None else sorted(exercises_folder().glob("*_ex.ipynb"))
    done: list[Exported] = []
    for path in paths:
        nb = json.loads(Path(path).read_text())
        try:
            out, points = convert(nb)
        except ExportError as e:
            raise ExportError(f"{Path(path).name}: {e}") from None
        name = assignment_name(Path(path))
        target = outdir / "source" / name / Path(path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
        done.append(Exported(name, target, points))
    (outdir / "nbgrader_config.py").write_text(config_text([d.assignment for d in done], course_id))
    return done


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """`xenlab export-nbgrader` and its options."""
    p = subparsers.add_parser(
        "export-nbgrader", help="write the exercises as an nbgrader course (source notebooks, config)",
        description="Write the student notebooks (notebooks/exercises) as nbgrader source notebooks: "
                    "the tasks as solution cells (the reference solutions inside BEGIN/END SOLUTION), "
                    "the checks as autograded tests cells with points and hidden tests, the rest "
                    "read-only; and DIR/nbgrader_config.py. Then, in DIR: nbgrader generate_assignment "
                    "NAME, nbgrader autograde NAME, nbgrader generate_feedback NAME.")
    p.add_argument("dir", metavar="DIR", help="the course folder (created if missing)")
    p.add_argument("--course-id", default=COURSE_ID, help=f"nbgrader's course id (default: {COURSE_ID})")
    return p


def run(args: argparse.Namespace) -> int:
    """Export, then say what was written."""
    outdir = Path(args.dir)
    try:
        done = export(outdir, course_id=args.course_id)
    except (ExportError, FileNotFoundError) as e:
        print(f"xenlab export-nbgrader: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"xenlab export-nbgrader: cannot write {outdir}: {e.strerror or e}", file=sys.stderr)
        return 2
    for d in done:
        print(f"{d.path}: {len(d.points)} autograded checks, {d.total} points")
    print(f"{outdir / 'nbgrader_config.py'}: course {args.course_id!r}, "
          f"assignments {', '.join(d.assignment for d in done)}")
    return 0

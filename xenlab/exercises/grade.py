"""`xenlab grade`: mark answer files, one or a class of them, with points per part.

Each answers file names its quiz in its ``@`` header (the blank sheet ``xenlab quiz
--answer-sheet`` or ``--class`` wrote: @assignment, @student, @seed, @topic, @count,
@knobs); the grader regenerates that quiz from the model and marks every part. One file
prints each check and ``Score: N/M``; a class (folders, a list file, several files)
prints one line per student, and ``--csv`` / ``--json`` write one row / record per
student. Expected values stay hidden unless ``--reveal``.

Exit status: 0 when every sheet has full marks, 1 when one does not, 2 when an answers
file could not be marked (its row then says why) or the command line is wrong.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xenlab.exercises.quiz import (
    Given,
    QuizError,
    Report,
    add_quiz_options,
    given_of,
    mark,
    parse_sheet,
    read_text,
    resolve,
)


@dataclass
class Graded:
    """One answers file: who, which file, and its report (or why it could not be marked)."""

    student: str
    path: str
    report: Report | None
    error: str = ""

    @property
    def full(self) -> bool:
        return self.report is not None and self.report.all_right

    def as_dict(self, reveal: bool = False) -> dict[str, Any]:
        """JSON-ready: the report's data, or the error."""
        if self.report is None:
            return {"student": self.student, "file": self.path, "error": self.error}
        d = self.report.as_dict(reveal)
        d["student"] = d["student"] or self.student
        return {"file": self.path, **d, "error": ""}


def grade_text(text: str, path: str, given: Given | None = None, student: str | None = None) -> Graded:
    """Mark one answers file's *text*; a bad file becomes a Graded with its error."""
    where = f"answers file {path}"
    who = student or Path(path).name.removesuffix(".txt").removesuffix(".answers")
    try:
        header, answers = parse_sheet(text, where)
        sheet = resolve(header, Given(**vars(given)) if given else Given(), student, where)
        report = mark(sheet.questions(), answers, sheet)
    except QuizError as e:
        return Graded(header_student(text) or who, path, None, str(e))
    return Graded(sheet.student or who, path, report)


def header_student(text: str) -> str | None:
    """The @student of an answers file, if it has one (for naming a file that could not be marked)."""
    for line in text.splitlines():
        if line.strip().lower().startswith("@student:"):
            return line.split(":", 1)[1].strip() or None
    return None


def collect(paths: list[str], roster: str | None) -> list[str]:
    """The answers files named: files as given, folders' *.txt files sorted, a roster file's lines."""
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(str(f) for f in path.iterdir() if f.is_file() and f.suffix == ".txt"
                           and not f.name.endswith(".quiz.txt"))
            if not found:
                raise QuizError(f"folder {p} holds no answers files (*.txt)")
            out += found
        else:
            out.append(p)
    if roster is not None:
        base = Path(roster).parent
        for line in read_text(roster, "roster").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                out.append(str(base / line) if not Path(line).is_absolute() else line)
    if not out:
        raise QuizError("no answers files: give files, folders or --roster LIST")
    return out


def question_points(report: Report) -> dict[str, int]:
    """Points got per question, 'Q1' -> 5 (the parts of one question summed)."""
    out: dict[str, int] = {}
    for r in report.rows:
        if r.expected is not None:
            q = r.key.split(".", 1)[0]
            out[q] = out.get(q, 0) + r.got
    return out


def csv_text(graded: list[Graded]) -> str:
    """One row per student: who, which quiz, score, max, error, then the points of each question
    (Q1, Q2, ...: a question's parts differ between students, its number does not)."""
    n = max((g.report.count for g in graded if g.report), default=0)
    keys = [f"Q{i}" for i in range(1, n + 1)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student", "file", "assignment", "seed", "topic", "count", "score", "max", "error", *keys])
    for g in graded:
        if g.report is None:
            w.writerow([g.student, g.path, "", "", "", "", "", "", g.error, *([""] * len(keys))])
            continue
        rep, sheet = g.report, g.report.sheet
        got = question_points(rep)
        w.writerow([g.student, g.path, "" if sheet is None or sheet.assignment is None else sheet.assignment,
                    rep.seed, rep.topic, rep.count, rep.score, rep.max_score, "",
                    *(got.get(k, "") for k in keys)])
    return buf.getvalue()


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """`xenlab grade` and its options."""
    p = subparsers.add_parser(
        "grade", help="mark answer files (one, or a class): points per part, Score: N/M, CSV/JSON",
        description="Mark answers files against the quizzes their @ headers name (as `xenlab quiz "
                    "--answer-sheet` or `--class` wrote them); the expected answers are what the lab's "
                    "model does. Exit 0 when every file has full marks, 1 when one does not, 2 when a "
                    "file could not be marked.")
    p.add_argument("answers", nargs="*", metavar="FILE_OR_DIR",
                   help="answers files, or folders of them (*.txt; - for stdin)")
    p.add_argument("--roster", metavar="LIST", help="a file listing answers files, one a line")
    add_quiz_options(p)
    p.add_argument("--reveal", action="store_true", help="also show (and export) the expected values")
    p.add_argument("--json", action="store_true", help="print JSON: one record per answers file")
    p.add_argument("--csv", metavar="FILE", help="write a CSV, one row per student ('-': stdout)")
    p.add_argument("-v", "--verbose", action="store_true", help="for a class, print every check too")
    return p


def run(args: argparse.Namespace) -> int:
    """Grade, print, export; the exit status says whether everyone has full marks."""
    try:
        given = given_of(args)
        files = collect(args.answers or (["-"] if args.roster is None else []), args.roster)
        if args.student is not None and len(files) != 1:
            raise QuizError("--student names the student of one answers file")
        graded = [grade_text(read_text(f), "stdin" if f == "-" else f, given, args.student) for f in files]
        if args.csv:
            text = csv_text(graded)
            if args.csv == "-":
                sys.stdout.write(text)
            else:
                try:
                    Path(args.csv).write_text(text)
                except OSError as e:
                    raise QuizError(f"cannot write {args.csv}: {e.strerror}") from None
    except QuizError as e:
        print(f"xenlab grade: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([g.as_dict(args.reveal) for g in graded], indent=1))
    elif args.csv != "-":
        single = len(graded) == 1
        for g in graded:
            if g.report is None:
                print(f"{g.student}: cannot mark {g.path}: {g.error}" if not single
                      else f"xenlab grade: {g.error}", file=sys.stdout if not single else sys.stderr)
                continue
            if single or args.verbose:
                sys.stdout.write(g.report.text(reveal=args.reveal))
            if not single:
                print(f"{g.student}: Score: {g.report.score}/{g.report.max_score}  ({g.path})")
        if not single:
            full = sum(1 for g in graded if g.full)
            bad = sum(1 for g in graded if g.report is None)
            print(f"{len(graded)} answers files: {full} with full marks"
                  + (f", {bad} could not be marked" if bad else ""))
    if any(g.report is None for g in graded):
        return 2
    return 0 if all(g.full for g in graded) else 1

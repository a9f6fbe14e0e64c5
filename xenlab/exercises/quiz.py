"""`xenlab quiz`: exercises from a seed, their worked answers (-c), and a checker (--check).

Every question comes from ``(seed, topic, number)`` alone, so the same command prints the
same text byte for byte, and a student's answers can be checked later against the same
seed. The answers are what the lab's model does when the question's setup is run (see
the generators in xenlab.exercises.*).

An answers file has one ``KEY: VALUE`` per line (``#`` starts a comment), the keys as the
questions list them, e.g. ``Q1.chunks: 1016+8, 0+24``. Case, spacing and number base
(``0x10`` = ``16``) do not matter.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xenlab.exercises.common import (
    NO_KNOBS,
    KnobError,
    Question,
    question_rng,
    same_answer,
    student_seed,
)
from xenlab.exercises.machine import gen_numbering, gen_xenbus
from xenlab.exercises.perms import gen_perms
from xenlab.exercises.ports import gen_evtchn, gen_irq
from xenlab.exercises.ring import gen_framing, gen_ring
from xenlab.exercises.xenlinux import gen_irqinfo, gen_procxen, gen_quiesce, gen_ready, gen_ring2618


@dataclass(frozen=True)
class TopicInfo:
    """What a topic is about, which kernel it asks about, and the knobs it takes."""

    kernel: str  # "2.6.18", "6.1", "both" or "xen"/"xenstored" (no guest kernel)
    about: str
    knobs: tuple[str, ...] = ()


#: topic -> generator, in the order "all" cycles through them: XenLinux 2.6.18 and the others in turn
TOPICS: dict[str, Callable[..., Question]] = {
    "ring2618": gen_ring2618,
    "ring": gen_ring,
    "quiesce": gen_quiesce,
    "numbering": gen_numbering,
    "ready": gen_ready,
    "framing": gen_framing,
    "irq": gen_irq,
    "evtchn": gen_evtchn,
    "procxen": gen_procxen,
    "perms": gen_perms,
    "irqinfo": gen_irqinfo,
    "xenbus": gen_xenbus,
}
TOPIC_INFO: dict[str, TopicInfo] = {
    "ring2618": TopicInfo("2.6.18", "xb_write's chunks and its kick after every chunk",
                          ("cons", "prod", "len")),
    "ring": TopicInfo("6.1", "xb_write's chunks and its kick rule", ("cons", "prod", "len")),
    "quiesce": TopicInfo("2.6.18", "xb_init_comms on a used store page; the ring-not-quiescent fault",
                         ("cons", "prod", "rsp_cons", "rsp_prod")),
    "numbering": TopicInfo("6.1", "IRQ and port numbers of a booted dom0", ("vcpus",)),
    "ready": TopicInfo("2.6.18", "wake_waiting and xenstored_ready in dom0 and a domU", ("role",)),
    "framing": TopicInfo("xenstored", "xsd_sockmsg frames in req[]"),
    "irq": TopicInfo("2.6.18", "find_unbound_irq, sharing, unbinding", ("ports",)),
    "evtchn": TopicInfo("xen", "alloc_unbound, bind_interdomain, close"),
    "procxen": TopicInfo("both", "/proc/xen entries and modes: dom0 vs domU, 2.6.18 vs 6.1 xenfs",
                         ("flavour", "role")),
    "perms": TopicInfo("xenstored", "who may read or write a node"),
    "irqinfo": TopicInfo("2.6.18", "irq_info = type<<24 | index<<16 | port, encode and decode", ("ports",)),
    "xenbus": TopicInfo("both", "the devices and states of a created guest", ("flavour", "vifs")),
}
CHOICES = (*TOPICS, "all")
DEFAULT_COUNT = 3
MAX_COUNT = 100
#: knob -> (how to read it, what it sets), printed first like ostep-homework's ARG lines
KNOBS: dict[str, tuple[str, str]] = {
    "cons": ("int", "req_cons (uint32; decimal or 0x)"),
    "prod": ("int", "req_prod (uint32; decimal or 0x)"),
    "len": ("int", "the message length xb_write is given"),
    "rsp_cons": ("int", "rsp_cons (uint32; decimal or 0x)"),
    "rsp_prod": ("int", "rsp_prod (uint32; decimal or 0x)"),
    "ports": ("int", "event channels the guest already uses before the binds"),
    "vcpus": ("int", "dom0's vcpus"),
    "vifs": ("int", "the guest's vifs"),
    "flavour": ("str", "2.6.18 or modern"),
    "role": ("str", "dom0 or domU"),
}


class QuizError(ValueError):
    """A bad topic, count, knob or answers file; the message is the one line a learner sees."""


def _validate(topic: str, count: int, knobs: Mapping[str, Any] = NO_KNOBS) -> None:
    if topic not in CHOICES:
        raise QuizError(f"unknown topic {topic!r}; valid: {', '.join(CHOICES)}")
    if not 1 <= count <= MAX_COUNT:
        raise QuizError(f"count must be 1..{MAX_COUNT} (got {count})")
    for name in knobs:
        if name not in KNOBS:
            raise QuizError(f"unknown knob {name!r}; valid: {', '.join(KNOBS)}")
        users = [t for t, info in TOPIC_INFO.items() if name in info.knobs]
        if topic not in users:
            raise QuizError(f"--{name.replace('_', '-')} is a knob of {', '.join(users)}, not of topic "
                            f"{topic}: give one of those with --topic")


def generate(seed: int, topic: str = "all", count: int = DEFAULT_COUNT,
             knobs: Mapping[str, Any] = NO_KNOBS) -> list[Question]:
    """The questions of (seed, topic, count); "all" takes the topics in turn; *knobs* fix settings."""
    _validate(topic, count, knobs)
    out = []
    for i in range(count):
        t = topic if topic != "all" else list(TOPICS)[i % len(TOPICS)]
        try:
            out.append(TOPICS[t](question_rng(seed, t, i), knobs))
        except KnobError as e:
            raise QuizError(str(e)) from None
    return out


def expected_answers(questions: list[Question]) -> dict[str, str]:
    """Answer key -> expected text, keys ``Q<n>.<part>``."""
    return {f"Q{i}.{name}": value for i, q in enumerate(questions, 1) for name, value, _ in q.parts}


def part_table(questions: list[Question]) -> dict[str, tuple[str, int, str]]:
    """Answer key -> (expected text, points, base)."""
    return {f"Q{i}.{name}": (value, q.worth(name), q.base(name))
            for i, q in enumerate(questions, 1) for name, value, _ in q.parts}


def knob_text(knobs: Mapping[str, Any]) -> str:
    """Knobs as 'cons=0x3f0 prod=1024' (ints in hex when they were read as uint32 indices)."""
    out = []
    for name, value in knobs.items():
        shown = f"{value:#x}" if name in ("cons", "prod", "rsp_cons", "rsp_prod") else str(value)
        out.append(f"{name}={shown}")
    return " ".join(out)


def parse_knobs(text: str) -> dict[str, Any]:
    """'cons=0x3f0 prod=1024' back to a dict (the answer sheet's @knobs line)."""
    out: dict[str, Any] = {}
    for item in text.split():
        name, eq, value = item.partition("=")
        if not eq or name not in KNOBS:
            raise QuizError(f"@knobs: cannot read {item!r}; expected NAME=VALUE with NAME one of "
                            f"{', '.join(KNOBS)}")
        out[name] = _int(value, f"@knobs {name}") if KNOBS[name][0] == "int" else value
    return out


@dataclass
class Sheet:
    """Who a quiz is for and what it is: the header of an answer sheet, the settings of a quiz."""

    seed: int
    topic: str = "all"
    count: int = DEFAULT_COUNT
    knobs: dict[str, Any] = field(default_factory=dict)
    student: str | None = None
    assignment: int | None = None

    def settings(self) -> list[str]:
        """The ARG lines a quiz or a report starts with."""
        lines = [f"ARG seed {self.seed}", f"ARG topic {self.topic}", f"ARG count {self.count}"]
        if self.student is not None:
            lines += [f"ARG student {self.student}", f"ARG assignment {self.assignment}"]
        lines += [f"ARG {item.replace('=', ' ', 1)}" for item in knob_text(self.knobs).split()]
        return lines

    def questions(self) -> list[Question]:
        """The quiz this sheet is for."""
        return generate(self.seed, self.topic, self.count, self.knobs)


def for_student(assignment: int, student: str, topic: str = "all", count: int = DEFAULT_COUNT,
                knobs: Mapping[str, Any] = NO_KNOBS) -> Sheet:
    """The quiz of *student* in assignment *assignment*: their own seed (common.student_seed)."""
    if not student.strip() or any(c in student for c in "\n\r:"):
        raise QuizError(f"student id must be one line without ':' (got {student!r})")
    return Sheet(student_seed(assignment, student), topic, count, dict(knobs), student.strip(), assignment)


def render(seed: int, topic: str = "all", count: int = DEFAULT_COUNT, show_answers: bool = False,
           knobs: Mapping[str, Any] = NO_KNOBS, sheet: Sheet | None = None) -> str:
    """The quiz as text: its settings first, then each question (with *show_answers*, worked)."""
    sheet = sheet or Sheet(seed, topic, count, dict(knobs))
    questions = sheet.questions()
    lines = [*sheet.settings(), f"ARG show answers {'yes' if show_answers else 'no'}", ""]
    for i, q in enumerate(questions, 1):
        total = sum(q.worth(name) for name, _, _ in q.parts)
        lines.append(f"Q{i} [{q.topic}] ({total} points) {q.text}")
        lines.append("  Answer:")
        for name, value, form in q.parts:
            shown = value if show_answers else "?"
            pts = q.worth(name)
            lines.append(f"    Q{i}.{name}: {shown}" + ("" if show_answers else
                                                          f"    ({form}; {pts} point{'s' * (pts != 1)})"))
        if show_answers:
            lines.append("  How:")
            lines += [f"    {w}" for w in q.worked]
        lines.append("")
    if not show_answers:
        how = (f"--seed {sheet.assignment} --student {sheet.student}" if sheet.student is not None
               else f"--seed {sheet.seed}")
        lines.append("Compute the answers, put them in a file as 'Q1.part: value' lines (or fill in the "
                     f"sheet --answer-sheet FILE writes) and run `xenlab quiz {how} --topic {sheet.topic} "
                     f"-n {sheet.count} --check FILE`; -c shows the worked answers.")
    return "\n".join(lines).rstrip("\n") + "\n"


SHEET_MAGIC = "@xenlab-quiz: 1"


def answer_sheet(sheet: Sheet) -> str:
    """The blank answer sheet of a quiz: a header naming its seed, topic, count, knobs and student,
    then one empty ``Qn.part:`` line per part."""
    lines = ["# xenlab answer sheet: write each answer after its colon; '#' lines are comments.",
             "# Keep the @ lines: they say which quiz these answers are for.", SHEET_MAGIC]
    if sheet.student is not None:
        lines += [f"@assignment: {sheet.assignment}", f"@student: {sheet.student}"]
    lines += [f"@seed: {sheet.seed}", f"@topic: {sheet.topic}", f"@count: {sheet.count}"]
    if sheet.knobs:
        lines.append(f"@knobs: {knob_text(sheet.knobs)}")
    for i, q in enumerate(sheet.questions(), 1):
        lines.append(f"# Q{i} [{q.topic}]")
        lines += [f"Q{i}.{name}: " for name, _, _ in q.parts]
    return "\n".join(lines) + "\n"


HEADER_KEYS = ("assignment", "student", "seed", "topic", "count", "knobs")


def parse_sheet(text: str, where: str = "answers") -> tuple[dict[str, str], dict[str, str]]:
    """An answers file -> (its @header, its answers). Blank answers count as not given."""
    header: dict[str, str] = {}
    out: dict[str, str] = {}
    seen: dict[str, int] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            key, colon, value = line[1:].partition(":")
            key = key.strip().lower()
            if key == "xenlab-quiz":
                continue
            if not colon or key not in HEADER_KEYS:
                raise QuizError(f"{where} line {n}: unknown header {line!r}; valid: "
                                + ", ".join(f"@{k}" for k in HEADER_KEYS))
            header[key] = value.strip()
            continue
        m = re.match(r"([^:=\s]+)\s*[:=]\s?(.*)$", line)
        if not m:
            raise QuizError(f"{where} line {n}: expected 'KEY: VALUE', got {raw.strip()!r}")
        key = m.group(1)
        if key.lower() in seen:
            raise QuizError(f"{where} line {n}: {key} is answered twice (first on line {seen[key.lower()]})")
        seen[key.lower()] = n
        if m.group(2).strip():
            out[key] = m.group(2).strip()
    return header, out


def parse_answers(text: str) -> dict[str, str]:
    """``KEY: VALUE`` (or ``KEY = VALUE``) lines to a dict; blank lines, ``#`` comments, ``@`` headers
    and empty answers skipped."""
    return parse_sheet(text)[1]


@dataclass
class Given:
    """What a command line says about a quiz; None: not said (the answers file's header decides)."""

    seed: int | None = None
    topic: str | None = None
    count: int | None = None
    knobs: dict[str, Any] = field(default_factory=dict)


def sheet_from(header: Mapping[str, str], given: Given | None = None, where: str = "answers file",
               *, assignment: int | None = None) -> Sheet:
    """The quiz an answers file is for: its header, checked against what the command line says.

    *given* holds the command line's --seed/--topic/-n/knobs (None fields: not given); a header
    value that disagrees is an error naming both. With *assignment* (the grader's --seed) and an
    @student header, the seed is that student's own."""
    def num(key: str) -> int | None:
        return _int(header[key], f"{where}: @{key}") if key in header else None

    student = header.get("student")
    h_assign = num("assignment")
    if assignment is not None and h_assign is not None and h_assign != assignment:
        raise QuizError(f"{where}: @assignment {h_assign} but this is assignment {assignment} (--seed)")
    assign = assignment if assignment is not None else h_assign
    seed = num("seed")
    if student is not None and assign is not None:
        own = student_seed(assign, student)
        if seed is not None and seed != own:
            raise QuizError(f"{where}: @seed {seed} is not student {student}'s seed for assignment {assign} "
                            f"({own}): the header was edited or the sheet is someone else's")
        seed = own
    if given is not None and given.seed is not None and seed is not None and given.seed != seed:
        raise QuizError(f"{where}: @seed {seed} but --seed {given.seed}: these answers are for another quiz")
    if seed is None:
        seed = given.seed if given is not None else None
    if seed is None:
        raise QuizError(f"{where} has no @seed header (and no @student with --seed): give --seed")
    topic = header.get("topic")
    count = num("count")
    knobs = parse_knobs(header["knobs"]) if "knobs" in header else None
    if given is not None:
        for name, mine, theirs in (("topic", topic, given.topic), ("count", count, given.count),
                                   ("knobs", knobs, given.knobs or None)):
            if mine is not None and theirs is not None and mine != theirs:
                raise QuizError(f"{where}: @{name} {mine} but the command line says {theirs}")
        topic = topic if topic is not None else given.topic
        count = count if count is not None else given.count
        knobs = knobs if knobs is not None else given.knobs
    sheet = Sheet(seed, topic or "all", DEFAULT_COUNT if count is None else count, dict(knobs or {}),
                  student, assign)
    try:
        _validate(sheet.topic, sheet.count, sheet.knobs)
    except QuizError as e:
        raise QuizError(f"{where}: {e}") from None
    return sheet


@dataclass
class Row:
    """One checked part: the key, what the student said (None: not answered), the expected text
    (None: not a part of this quiz), the points it is worth and got, and a hint on the form."""

    key: str
    given: str | None
    expected: str | None
    points: int
    got: int
    hint: str = ""

    @property
    def status(self) -> str:
        if self.expected is None:
            return "unknown"
        if self.given is None:
            return "missing"
        return "right" if self.got == self.points else "wrong"


@dataclass
class Report:
    """What the checker found: one row per answer key, with its points."""

    seed: int
    topic: str
    count: int
    rows: list[Row] = field(default_factory=list)
    sheet: Sheet | None = None

    @property
    def score(self) -> int:
        return sum(r.got for r in self.rows)

    @property
    def max_score(self) -> int:
        return sum(r.points for r in self.rows if r.expected is not None)

    @property
    def right(self) -> int:
        return sum(1 for r in self.rows if r.status == "right")

    @property
    def total(self) -> int:
        return sum(1 for r in self.rows if r.expected is not None)

    @property
    def all_right(self) -> bool:
        return self.score == self.max_score and all(r.expected is not None for r in self.rows)

    def wrong(self) -> list[str]:
        """The keys answered wrongly or not at all."""
        return [r.key for r in self.rows if r.status in ("wrong", "missing")]

    def text(self, reveal: bool = False) -> str:
        """The report as a student reads it: right/wrong per part, the expected value only if *reveal*."""
        sheet = self.sheet or Sheet(self.seed, self.topic, self.count)
        lines = [*sheet.settings(), ""]
        for r in self.rows:
            exp = f"; expected {r.expected}" if reveal else ""
            if r.status == "unknown":
                lines.append(f"  {r.key}: not a part of this quiz (check --seed, --topic, -n)")
            elif r.status == "missing":
                lines.append(f"  {r.key}: missing (0/{r.points}){exp}")
            elif r.status == "right":
                lines.append(f"  {r.key}: right ({r.got}/{r.points})")
            else:
                lines.append(f"  {r.key}: WRONG (0/{r.points}): you said {r.given}{exp}{r.hint}")
        lines.append(f"Score: {self.score}/{self.max_score}")
        if not reveal and not self.all_right:
            lines.append("(expected values are not shown; --reveal shows them)")
        return "\n".join(lines) + "\n"

    def as_dict(self, reveal: bool = False) -> dict[str, Any]:
        """The report as JSON-ready data (expected values only if *reveal*)."""
        sheet = self.sheet or Sheet(self.seed, self.topic, self.count)
        parts = []
        for r in self.rows:
            d: dict[str, Any] = {"key": r.key, "status": r.status, "points": r.got, "max": r.points,
                                 "given": r.given}
            if reveal:
                d["expected"] = r.expected
            parts.append(d)
        return {"student": sheet.student, "assignment": sheet.assignment, "seed": self.seed,
                "topic": self.topic, "count": self.count, "knobs": knob_text(sheet.knobs),
                "score": self.score, "max": self.max_score, "parts": parts}


_BARE_HEX = re.compile(r"(?<![0-9a-zA-Z_])(?!0[xX])[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*(?![0-9a-zA-Z_])")


def _form_hint(given: str, expected: str, base: str) -> str:
    """A hint about how a number was written (never about its value)."""
    if base == "dec" and re.fullmatch(r"[+-]?(0[xX][0-9a-fA-F]+|[0-9]+)", expected.strip()) \
            and _BARE_HEX.search(given) and any(ch.isdigit() for ch in given):
        return " (this part reads bare digits as decimal: write hex with 0x)"
    return ""


def mark(questions: list[Question], answers: Mapping[str, str], sheet: Sheet | None = None) -> Report:
    """Mark *answers* against *questions*: a part's points if right, 0 if wrong or missing."""
    table = part_table(questions)
    by_lower = {k.lower(): v for k, v in answers.items()}
    s = sheet or Sheet(0)
    report = Report(s.seed, s.topic, s.count, sheet=sheet)
    for key, (exp, pts, base) in table.items():
        g = by_lower.get(key.lower())
        ok = g is not None and same_answer(g, exp, base)
        hint = _form_hint(g, exp, base) if g is not None and not ok else ""
        report.rows.append(Row(key, g, exp, pts, pts if ok else 0, hint))
    known = {k.lower() for k in table}
    for key in answers:
        if key.lower() not in known:
            report.rows.append(Row(key, answers[key], None, 0, 0))
    return report


def check(seed: int, topic: str, answers: Mapping[str, str] | str, count: int = DEFAULT_COUNT,
          knobs: Mapping[str, Any] = NO_KNOBS) -> Report:
    """Mark *answers* (a dict or the text of an answers file) against the quiz of (seed, topic, count)."""
    given = parse_answers(answers) if isinstance(answers, str) else dict(answers)
    sheet = Sheet(seed, topic, count, dict(knobs))
    return mark(sheet.questions(), given, sheet)


def check_sheet(text: str, given: Given | None = None, where: str = "answers file",
                assignment: int | None = None) -> Report:
    """Mark the text of an answers file against the quiz its header (and *given*) name."""
    header, answers = parse_sheet(text, where)
    sheet = sheet_from(header, given, where, assignment=assignment)
    return mark(sheet.questions(), answers, sheet)


# -- the command line ----------------------------------------------------------------------------
def add_quiz_options(p: argparse.ArgumentParser, defaults: bool = True) -> None:
    """--seed, --student, --topic, -n and the knobs (shared by `xenlab quiz` and `xenlab grade`)."""
    p.add_argument("--seed", default=None,
                   help="the quiz's seed; with --student, the assignment's seed (an integer; default 0)")
    p.add_argument("--student", metavar="ID",
                   help="a student id: their own seed, a stable hash of the id and --seed")
    p.add_argument("--topic", default=None,
                   help=f"one of {', '.join(CHOICES)} (default all: XenLinux 2.6.18 and the others in turn)")
    p.add_argument("-n", "--count", default=None, help=f"how many questions (default {DEFAULT_COUNT})")
    g = p.add_argument_group("knobs", "fix a setting of a custom problem (one --topic; the rest comes "
                                      "from the seed); printed first as ARG lines")
    for name, (_, what) in KNOBS.items():
        users = ", ".join(t for t, i in TOPIC_INFO.items() if name in i.knobs)
        g.add_argument(f"--{name.replace('_', '-')}", dest=f"knob_{name}",
                       metavar="N" if KNOBS[name][0] == "int" else "X", help=f"{what} ({users})")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """`xenlab quiz` and its options."""
    p = subparsers.add_parser(
        "quiz", help="generate exercises from a seed; -c shows the worked answers",
        description="Exercises on the xenstore ring (XenLinux 2.6.18 and Linux 6.1), quiescence, "
                    "xenstored_ready, /proc/xen, framing, event channels, IRQs and irq_info, xenbus and "
                    "permissions, each from a seed; every answer is what the lab's model does.",
        epilog="Topics: " + "; ".join(f"{t} ({i.kernel}): {i.about}" for t, i in TOPIC_INFO.items()))
    add_quiz_options(p)
    p.add_argument("-c", "--compute", action="store_true", help="show the worked answers")
    p.add_argument("--check", metavar="ANSWERS_FILE",
                   help="mark the answers in this file ('Q1.part: value' lines; - for stdin): right or "
                        "wrong per part, points, Score: N/M")
    p.add_argument("--reveal", action="store_true", help="with --check: also show the expected values")
    p.add_argument("--answer-sheet", metavar="FILE",
                   help="also write the blank answer sheet (its header names seed, topic, student) to FILE")
    p.add_argument("--class", dest="klass", metavar="STUDENTS_FILE",
                   help="a class set: for each student id in this file (one a line) write "
                        "OUT/ID.quiz.txt and OUT/ID.answers.txt (needs --seed and --out)")
    p.add_argument("--out", metavar="DIR", help="where --class writes")
    return p


def _int(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise QuizError(f"{what} must be an integer (got {text!r})") from None


def knobs_of(args: argparse.Namespace) -> dict[str, Any]:
    """The knobs given on the command line."""
    out: dict[str, Any] = {}
    for name, (kind, _) in KNOBS.items():
        value = getattr(args, f"knob_{name}", None)
        if value is not None:
            out[name] = _int(value, f"--{name.replace('_', '-')}") if kind == "int" else value
    return out


def given_of(args: argparse.Namespace) -> Given:
    """--seed/--topic/-n/knobs as the command line gave them (None where it did not)."""
    return Given(None if args.seed is None else _int(args.seed, "--seed"), args.topic,
                 None if args.count is None else _int(args.count, "-n/--count"), knobs_of(args))


def sheet_of(args: argparse.Namespace) -> Sheet:
    """The quiz the command line names (defaults filled in; --student makes the seed the student's)."""
    g = given_of(args)
    topic, count = g.topic or "all", DEFAULT_COUNT if g.count is None else g.count
    _validate(topic, count, g.knobs)
    seed = 0 if g.seed is None else g.seed
    if args.student is not None:
        return for_student(seed, args.student, topic, count, g.knobs)
    return Sheet(seed, topic, count, g.knobs)


def read_text(path: str, what: str = "answers file") -> str:
    """A file's text ('-': stdin), or a QuizError naming the file."""
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not a text file"
        raise QuizError(f"cannot read {what} {path}: {reason}") from None


def write_text(path: Path, text: str) -> None:
    """Write a file, or a QuizError naming it."""
    try:
        path.write_text(text)
    except OSError as e:
        raise QuizError(f"cannot write {path}: {e.strerror}") from None


def class_set(args: argparse.Namespace) -> int:
    """--class: a quiz and a blank answer sheet per student."""
    if args.seed is None or args.out is None:
        raise QuizError("--class needs --seed (the assignment's seed) and --out DIR")
    ids = [ln.strip() for ln in read_text(args.klass, "students file").splitlines()
           if ln.strip() and not ln.strip().startswith("#")]
    if not ids:
        raise QuizError(f"students file {args.klass} lists no student ids")
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})[0]
        raise QuizError(f"students file {args.klass} lists {twice} twice")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise QuizError(f"cannot make {out}: {e.strerror}") from None
    g = given_of(args)
    for sid in ids:
        if "/" in sid or sid.startswith("."):
            raise QuizError(f"student id {sid!r} cannot be a file name")
        sheet = for_student(g.seed or 0, sid, g.topic or "all", DEFAULT_COUNT if g.count is None else g.count,
                            g.knobs)
        write_text(out / f"{sid}.quiz.txt", render(0, sheet=sheet))
        write_text(out / f"{sid}.answers.txt", answer_sheet(sheet))
    print(f"wrote {len(ids)} quizzes and blank answer sheets to {out}/ (ID.quiz.txt, ID.answers.txt)")
    return 0


def resolve(header: dict[str, str], given: Given, student: str | None, where: str) -> Sheet:
    """The quiz an answers file is for, from its header and the command line (--student ID: --seed is
    the assignment's seed; otherwise --seed is the quiz's own, 0 if neither says)."""
    if student is not None:
        if "student" in header and header["student"] != student.strip():
            raise QuizError(f"{where}: @student {header['student']} but --student {student}")
        header = {**header, "student": student.strip()}
    if "student" in header:
        assignment, given.seed = given.seed, None
        return sheet_from(header, given, where, assignment=assignment)
    if given.seed is None and "seed" not in header:
        given.seed = 0
    return sheet_from(header, given, where)


def run(args: argparse.Namespace) -> int:
    """Print the quiz, its worked answers, or the checker's report."""
    try:
        if args.klass is not None:
            return class_set(args)
        if args.check is None:
            sheet = sheet_of(args)
            text = render(sheet.seed, show_answers=args.compute, sheet=sheet)
            if args.answer_sheet:
                write_text(Path(args.answer_sheet), answer_sheet(sheet))
            sys.stdout.write(text)
            return 0
        text = read_text(args.check)
        given = given_of(args)
        where = "answers from stdin" if args.check == "-" else f"answers file {args.check}"
        header, answers = parse_sheet(text, where)
        sheet = resolve(header, given, args.student, where)
        report = mark(sheet.questions(), answers, sheet)
    except QuizError as e:
        print(f"xenlab quiz: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(report.text(reveal=args.reveal))
    return 0 if report.all_right else 1

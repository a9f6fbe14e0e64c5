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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from xenlab.exercises.common import Question, question_rng, same_answer
from xenlab.exercises.machine import gen_numbering, gen_xenbus
from xenlab.exercises.perms import gen_perms
from xenlab.exercises.ports import gen_evtchn, gen_irq
from xenlab.exercises.ring import gen_framing, gen_ring

#: topic -> generator, in the order "all" cycles through them
TOPICS: dict[str, Callable[..., Question]] = {
    "ring": gen_ring,
    "framing": gen_framing,
    "evtchn": gen_evtchn,
    "irq": gen_irq,
    "numbering": gen_numbering,
    "xenbus": gen_xenbus,
    "perms": gen_perms,
}
CHOICES = (*TOPICS, "all")
DEFAULT_COUNT = 3
MAX_COUNT = 100


class QuizError(ValueError):
    """A bad topic, count or answers file; the message is the one line a learner sees."""


def _validate(topic: str, count: int) -> None:
    if topic not in CHOICES:
        raise QuizError(f"unknown topic {topic!r}; valid: {', '.join(CHOICES)}")
    if not 1 <= count <= MAX_COUNT:
        raise QuizError(f"count must be 1..{MAX_COUNT} (got {count})")


def generate(seed: int, topic: str = "all", count: int = DEFAULT_COUNT) -> list[Question]:
    """The questions of (seed, topic, count); "all" takes the topics in turn."""
    _validate(topic, count)
    out = []
    for i in range(count):
        t = topic if topic != "all" else list(TOPICS)[i % len(TOPICS)]
        out.append(TOPICS[t](question_rng(seed, t, i)))
    return out


def expected_answers(questions: list[Question]) -> dict[str, str]:
    """Answer key -> expected text, keys ``Q<n>.<part>``."""
    return {f"Q{i}.{name}": value for i, q in enumerate(questions, 1) for name, value, _ in q.parts}


def render(seed: int, topic: str = "all", count: int = DEFAULT_COUNT, show_answers: bool = False) -> str:
    """The quiz as text: its settings first, then each question (with *show_answers*, worked)."""
    questions = generate(seed, topic, count)
    lines = [f"ARG seed {seed}", f"ARG topic {topic}", f"ARG count {count}",
             f"ARG show answers {'yes' if show_answers else 'no'}", ""]
    for i, q in enumerate(questions, 1):
        lines.append(f"Q{i} [{q.topic}] {q.text}")
        lines.append("  Answer:")
        for name, value, form in q.parts:
            shown = value if show_answers else "?"
            lines.append(f"    Q{i}.{name}: {shown}" + ("" if show_answers else f"    ({form})"))
        if show_answers:
            lines.append("  How:")
            lines += [f"    {w}" for w in q.worked]
        lines.append("")
    if not show_answers:
        lines.append(f"Compute the answers, put them in a file as 'Q1.part: value' lines and run "
                     f"`xenlab quiz --seed {seed} --topic {topic} -n {count} --check FILE`; "
                     "-c shows the worked answers.")
    return "\n".join(lines).rstrip("\n") + "\n"


def parse_answers(text: str) -> dict[str, str]:
    """``KEY: VALUE`` (or ``KEY = VALUE``) lines to a dict; blank lines and ``#`` comments skipped."""
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([^:=\s]+)\s*[:=]\s?(.*)$", line)
        if not m:
            raise QuizError(f"answers line {n}: expected 'KEY: VALUE', got {raw.strip()!r}")
        out[m.group(1)] = m.group(2).strip()
    return out


@dataclass
class Report:
    """What the checker found: one row per answer key, right or not, with the expected value."""

    seed: int
    topic: str
    count: int
    #: (key, given or None, expected or None, right)
    rows: list[tuple[str, str | None, str | None, bool]] = field(default_factory=list)

    @property
    def right(self) -> int:
        return sum(1 for r in self.rows if r[3])

    @property
    def total(self) -> int:
        return sum(1 for r in self.rows if r[2] is not None)

    @property
    def all_right(self) -> bool:
        return self.right == self.total and all(r[2] is not None for r in self.rows)

    def wrong(self) -> list[str]:
        """The keys answered wrongly or not at all."""
        return [k for k, given, exp, ok in self.rows if exp is not None and not ok]

    def text(self) -> str:
        """The report as a student reads it."""
        lines = [f"ARG seed {self.seed}", f"ARG topic {self.topic}", f"ARG count {self.count}", ""]
        for key, given, exp, ok in self.rows:
            if exp is None:
                lines.append(f"  {key}: not a part of this quiz (check --seed, --topic, -n)")
            elif given is None:
                lines.append(f"  {key}: missing; expected {exp}")
            elif ok:
                lines.append(f"  {key}: right")
            else:
                lines.append(f"  {key}: WRONG: you said {given}; expected {exp}")
        lines.append(f"score: {self.right}/{self.total} right")
        return "\n".join(lines) + "\n"


def check(seed: int, topic: str, answers: dict[str, str] | str, count: int = DEFAULT_COUNT) -> Report:
    """Mark *answers* (a dict or the text of an answers file) against the quiz of (seed, topic, count)."""
    given = parse_answers(answers) if isinstance(answers, str) else dict(answers)
    expected = expected_answers(generate(seed, topic, count))
    by_lower = {k.lower(): v for k, v in given.items()}
    report = Report(seed, topic, count)
    for key, exp in expected.items():
        g = by_lower.get(key.lower())
        report.rows.append((key, g, exp, g is not None and same_answer(g, exp)))
    known = {k.lower() for k in expected}
    for key in given:
        if key.lower() not in known:
            report.rows.append((key, given[key], None, False))
    return report


# -- the command line ----------------------------------------------------------------------------
def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """`xenlab quiz` and its options."""
    p = subparsers.add_parser(
        "quiz", help="generate exercises from a seed; -c shows the worked answers",
        description="Exercises on the xenstore ring, framing, event channels, IRQs, xenbus and "
                    "permissions, each from a seed; every answer is what the lab's model does.")
    p.add_argument("--seed", default="0", help="the quiz's seed (an integer; default 0)")
    p.add_argument("--topic", default="all", help=f"one of {', '.join(CHOICES)} (default all)")
    p.add_argument("-n", "--count", default=str(DEFAULT_COUNT),
                   help=f"how many questions (default {DEFAULT_COUNT})")
    p.add_argument("-c", "--compute", action="store_true", help="show the worked answers")
    p.add_argument("--check", metavar="ANSWERS_FILE",
                   help="mark the answers in this file ('Q1.part: value' lines; - for stdin)")
    return p


def _int(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise QuizError(f"{what} must be an integer (got {text!r})") from None


def run(args: argparse.Namespace) -> int:
    """Print the quiz, its worked answers, or the checker's report."""
    try:
        seed = _int(args.seed, "--seed")
        count = _int(args.count, "-n/--count")
        _validate(args.topic, count)
        if args.check is None:
            sys.stdout.write(render(seed, args.topic, count, args.compute))
            return 0
        if args.check == "-":
            text = sys.stdin.read()
        else:
            try:
                text = Path(args.check).read_text()
            except OSError as e:
                raise QuizError(f"cannot read answers file {args.check}: {e.strerror}") from None
        report = check(seed, args.topic, text, count)
    except QuizError as e:
        print(f"xenlab quiz: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(report.text())
    return 0 if report.all_right else 1

"""What every exercise generator shares: the Question, the seeded RNG, answer normalising.

A generator is ``gen(rng) -> Question``. It sets up a piece of the lab's model (a page
with the real ring layout, a Hypervisor, a 2.6.18 IRQ layer, a booted Machine, a
xenstored), does the thing the question describes, and reads the answers out of the
model afterwards: nothing here recomputes an answer by a second formula.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Question:
    """One problem: its text, the parts a student answers, and the worked answer."""

    topic: str
    text: str
    #: (part name, expected answer as text, how to write it)
    parts: list[tuple[str, str, str]] = field(default_factory=list)
    worked: list[str] = field(default_factory=list)
    #: the generator's inputs, so a test can redo the setup directly and compare
    setup: dict[str, Any] = field(default_factory=dict)

    def expect(self, name: str, value: object, form: str) -> None:
        """Add one answer part computed from the model."""
        self.parts.append((name, str(value), form))


def question_rng(seed: int, topic: str, number: int) -> random.Random:
    """The RNG of question *number*: a function of (seed, topic, number) only, stable across runs."""
    return random.Random(f"xenlab-quiz:{seed}:{topic}:{number}")


_INT = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|[0-9]+)")


def normalise(text: str) -> str:
    """An answer in canonical form: lower case, single spaces, numbers (decimal or 0x) as decimal."""
    t = " ".join(str(text).strip().lower().split())
    t = re.sub(r"\s*([,:;()=]|->|\+)\s*", r"\1", t)
    return _INT.sub(_decimal, t)


def _decimal(m: re.Match[str]) -> str:
    digits = m.group(0)
    body = digits.lstrip("+-")
    value = int(body[2:], 16) if body[:2] in ("0x", "0X") else int(body, 10)
    return str(-value if digits.startswith("-") else value)


def same_answer(given: str, expected: str) -> bool:
    """True if *given* says what *expected* says (case, spacing and number base ignored)."""
    return normalise(given) == normalise(expected)


def yes_no(flag: bool) -> str:
    """'yes' or 'no'."""
    return "yes" if flag else "no"

"""What every exercise generator shares: the Question, the seeded RNG, answer normalising.

A generator is ``gen(rng) -> Question``. It sets up a piece of the lab's model (a page
with the real ring layout, a Hypervisor, a 2.6.18 IRQ layer, a booted Machine, a
xenstored), does the thing the question describes, and reads the answers out of the
model afterwards: nothing here recomputes an answer by a second formula.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: how a part reads a number: "dec" = decimal, or hex with 0x; "hex" = hex, 0x optional (bare digits
#: such as 83c or 2108 are hex); "text" = words, numbers in them as in "dec"
BASES = ("dec", "hex", "text")
BASE_NOTE = {"dec": "decimal, or hex with 0x", "hex": "hex: 0x optional, bare digits are read as hex",
             "text": ""}


#: the knobs of a generator that was given none (every knob then comes from the seed)
NO_KNOBS: Mapping[str, Any] = {}


class KnobError(ValueError):
    """A knob (--cons, --prod, --len, ...) a generator cannot use; the message names it and what is valid."""


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
    #: part name -> points it is worth (1 unless the generator says more)
    points: dict[str, int] = field(default_factory=dict)
    #: part name -> how it reads numbers (one of BASES)
    bases: dict[str, str] = field(default_factory=dict)

    def expect(self, name: str, value: object, form: str, points: int = 1, base: str = "dec") -> None:
        """Add one answer part computed from the model, worth *points*, numbers read as *base* says."""
        if base not in BASES:
            raise ValueError(f"base must be one of {BASES} (got {base!r})")
        note = BASE_NOTE[base] if _NUMBER.fullmatch(str(value).strip()) else ""
        if note and note not in form:
            form = f"{form} [{note}]"
        self.parts.append((name, str(value), form))
        self.points[name] = points
        self.bases[name] = base

    def worth(self, name: str) -> int:
        """The points of part *name*."""
        return self.points.get(name, 1)

    def base(self, name: str) -> str:
        """How part *name* reads numbers."""
        return self.bases.get(name, "dec")


def question_rng(seed: int, topic: str, number: int) -> random.Random:
    """The RNG of question *number*: a function of (seed, topic, number) only, stable across runs."""
    return random.Random(f"xenlab-quiz:{seed}:{topic}:{number}")


def student_seed(assignment: int, student: str) -> int:
    """A student's own seed: a stable hash of (assignment seed, student id), 0..999999.

    The same student always gets the same number, neighbours different ones; the id is
    taken as written apart from surrounding spaces and case."""
    key = f"xenlab-student:{assignment}:{student.strip().lower()}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % 1_000_000


_INT = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|[0-9]+)")
_HEX = re.compile(r"(?<![0-9a-z_])[+-]?(0x)?[0-9a-f]+(?![0-9a-z_])")
_NUMBER = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|[0-9]+)")


def normalise(text: str, base: str = "dec") -> str:
    """An answer in canonical form: lower case, single spaces, numbers as decimal.

    *base* "dec" (and "text") reads bare digits as decimal and 0x... as hex; "hex" reads
    every number as hex, with or without 0x."""
    t = " ".join(str(text).strip().lower().split())
    t = re.sub(r"\s*([,:;()=]|->|\+)\s*", r"\1", t)
    if base == "hex":
        return _HEX.sub(_from_hex, t)
    return _INT.sub(_decimal, t)


def _from_hex(m: re.Match[str]) -> str:
    digits = m.group(0)
    body = digits.lstrip("+-")
    value = int(body[2:] if body.startswith("0x") else body, 16)
    return str(-value if digits.startswith("-") else value)


def _decimal(m: re.Match[str]) -> str:
    digits = m.group(0)
    body = digits.lstrip("+-")
    value = int(body[2:], 16) if body[:2] in ("0x", "0X") else int(body, 10)
    return str(-value if digits.startswith("-") else value)


def same_answer(given: str, expected: str, base: str = "dec") -> bool:
    """True if *given* says what *expected* says (case and spacing ignored, numbers read as *base* says;
    *expected* is always written so that "dec" reads it: decimal or 0x)."""
    return normalise(given, base) == normalise(expected, "dec")


def yes_no(flag: bool) -> str:
    """'yes' or 'no'."""
    return "yes" if flag else "no"

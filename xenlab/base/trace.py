"""The trace: every step the simulated machine takes, with the state it changed.

Theory of operation
-------------------
Each layer (hypervisor, guest kernels, xenstored, toolstack) calls ``Trace.record``
once per meaningful step: which function ran (named as in Xen/Linux), one line of
what it did, the source file it mirrors, and a list of ``Change`` rows
``(table, key, before, after)`` for the state it touched. Tables are flat
string-keyed maps named ``"<owner>/<table>"`` (``"dom0/evtchn_to_irq"``,
``"xen/d1/port"``, ``"xenstored/tree"``). Values are plain data (int, str, tuple,
None) so a step can be printed, compared and replayed. ``None`` as *after* means the
key is gone.

Because every change is recorded, ``state_at(i)`` rebuilds every table as it was
after step *i* by replaying changes (with checkpoints), so a view can step backwards
as cheaply as forwards without re-running the machine.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

Value = Any
_CHECKPOINT_EVERY = 256


@dataclass(frozen=True)
class Change:
    """One key of one table changed from *before* to *after* (None = absent)."""

    table: str
    key: str
    before: Value
    after: Value

    def __str__(self) -> str:
        return f"{self.table}[{self.key}]: {self.before!r} -> {self.after!r}"


@dataclass(frozen=True)
class Step:
    """One recorded step of the machine."""

    index: int
    actor: str
    function: str
    summary: str
    source: str
    stage: str
    changes: tuple[Change, ...] = ()
    printk: str | None = None

    def line(self) -> str:
        """The step as one stable line of text."""
        return f"#{self.index} [{self.actor}] {self.function}: {self.summary} ({self.source})"


@dataclass
class Trace:
    """An append-only list of steps with named stages and replayable state."""

    steps: list[Step] = field(default_factory=list)
    stages: list[tuple[str, int]] = field(default_factory=list)
    enabled: bool = True
    _stage: str = ""
    _checkpoints: dict[int, dict[str, dict[str, Value]]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __getitem__(self, index: int) -> Step:
        return self.steps[index]

    def record(
        self,
        function: str,
        summary: str,
        *,
        actor: str,
        source: str,
        changes: Iterable[tuple[str, Any, Value, Value] | Change] = (),
        printk: str | None = None,
    ) -> Step | None:
        """Append one step; *changes* are ``(table, key, before, after)`` tuples or ``Change``."""
        if not self.enabled:
            return None
        rows = tuple(
            c if isinstance(c, Change) else Change(c[0], str(c[1]), c[2], c[3]) for c in changes
        )
        step = Step(len(self.steps), actor, function, summary, source, self._stage, rows, printk)
        self.steps.append(step)
        return step

    @property
    def stage(self) -> str:
        """The name of the stage steps are recorded into now ("" before the first)."""
        return self._stage

    def begin_stage(self, name: str) -> None:
        """Start a named stage; steps recorded from now on belong to it."""
        self._stage = name
        self.stages.append((name, len(self.steps)))

    def stage_start(self, name: str) -> int:
        """Index of the first step of the first stage called *name* (KeyError if none)."""
        for stage, index in self.stages:
            if stage == name:
                return index
        raise KeyError(f"no stage named {name!r}; stages: {', '.join(self.stage_names())}")

    def stage_names(self) -> list[str]:
        """Names of the stages in the order they began (duplicates removed)."""
        return list(dict.fromkeys(name for name, _ in self.stages))

    @contextmanager
    def muted(self) -> Iterator[None]:
        """Record nothing inside the block (bulk set-up, benchmarks)."""
        old, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = old

    def state_at(self, index: int) -> dict[str, dict[str, Value]]:
        """Every table as it was after step *index* (``-1``: before the first step)."""
        if not -1 <= index < len(self.steps):
            raise IndexError(f"step {index} out of range: the trace has steps 0..{len(self.steps) - 1}")
        base = (index + 1) // _CHECKPOINT_EVERY * _CHECKPOINT_EVERY
        while base and base not in self._checkpoints:
            base -= _CHECKPOINT_EVERY
        state = {t: dict(rows) for t, rows in self._checkpoints.get(base, {}).items()}
        for i in range(base, index + 1):
            for c in self.steps[i].changes:
                table = state.setdefault(c.table, {})
                if c.after is None:
                    table.pop(c.key, None)
                else:
                    table[c.key] = c.after
            if (i + 1) % _CHECKPOINT_EVERY == 0 and (i + 1) not in self._checkpoints:
                self._checkpoints[i + 1] = {t: dict(rows) for t, rows in state.items()}
        return state

    def dump(self, start: int = 0, stop: int | None = None, *, changes: bool = False) -> str:
        """Stable text of steps [start, stop), optionally with their changes."""
        out: list[str] = []
        for step in self.steps[start:stop]:
            out.append(step.line())
            if step.printk:
                out.append(f"    printk: {step.printk}")
            if changes:
                out.extend(f"    {c}" for c in step.changes)
        return "\n".join(out)

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

The contract that makes replay true: whoever changes a table records the change, and
each row's *before* is what the table held at that moment (absent = ``None``). A
table whose slots start at another value (an unbound port's ``evtchn_to_irq`` -1, a
count of 0) says so once with ``set_initial``; its rows then carry the owner's own
values (``-1 -> 24``), and the replayed table holds only the entries that differ from
the initial value (a key set back to it disappears). A queue is one key whose value
is a tuple, oldest first, so order and duplicates survive. ``mismatches()`` replays
the whole trace once and lists every row whose *before* disagrees;
``Trace(checked=True)`` raises ``ReplayMismatch`` at the recording call itself, which
is where a missing record is found fastest.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

Value = Any
_CHECKPOINT_EVERY = 256
_MUTABLE = frozenset({list, dict, set, bytearray})  # a replayed state shares values with the steps


@dataclass(frozen=True, slots=True, init=False)
class Change:
    """One key of one table changed from *before* to *after* (None = absent)."""

    table: str
    key: str
    before: Value
    after: Value

    def __init__(self, table: str, key: str, before: Value, after: Value) -> None:
        # frozen, but filled in one go through the slots: a boot records tens of thousands of rows
        _set_table(self, table)
        _set_key(self, key)
        _set_before(self, before)
        _set_after(self, after)

    def __str__(self) -> str:
        return f"{self.table}[{self.key}]: {self.before!r} -> {self.after!r}"


@dataclass(frozen=True, slots=True, init=False)
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

    def __init__(self, index: int, actor: str, function: str, summary: str, source: str, stage: str,
                 changes: tuple[Change, ...] = (), printk: str | None = None) -> None:
        # frozen, but filled in one go through the slots: a boot records some 20,000 steps
        _set_index(self, index)
        _set_actor(self, actor)
        _set_function(self, function)
        _set_summary(self, summary)
        _set_source(self, source)
        _set_stage(self, stage)
        _set_changes(self, changes)
        _set_printk(self, printk)

    def line(self) -> str:
        """The step as one stable line of text."""
        return f"#{self.index} [{self.actor}] {self.function}: {self.summary} ({self.source})"


# The slots' own setters: a frozen class's __setattr__ refuses, these do not (and are the fastest way in).
_set_table, _set_key, _set_before, _set_after = (
    Change.__dict__[name].__set__ for name in ("table", "key", "before", "after"))
(_set_index, _set_actor, _set_function, _set_summary, _set_source, _set_stage, _set_changes,
 _set_printk) = (Step.__dict__[name].__set__ for name in (
    "index", "actor", "function", "summary", "source", "stage", "changes", "printk"))


@dataclass(frozen=True)
class Mismatch:
    """A change row whose *before* is not what replaying the steps before it gives."""

    index: int
    function: str
    change: Change
    replayed: Value

    def __str__(self) -> str:
        c = self.change
        return (f"step #{self.index} {self.function}: {c.table}[{c.key}] recorded before={c.before!r}, "
                f"replay has {self.replayed!r}")


class ReplayMismatch(AssertionError):
    """Raised by a checked Trace when a recorded *before* disagrees with the replayed state."""


State = dict[str, dict[str, Value]]


_NONE = object()  # a table with no initial value: only None means absent


def _apply(state: State, change: Change, initial: Value = _NONE) -> None:
    table = state.setdefault(change.table, {})
    after = change.after
    if after is None or (type(after) is type(initial) and after == initial):
        table.pop(change.key, None)
    else:
        table[change.key] = after


def _same(replayed: Value, before: Value, initial: Value) -> bool:
    """Does a row's *before* agree with the *replayed* value (absent), given the table's initial value?"""
    if replayed is None:
        return before is None or (type(before) is type(initial) and before == initial)
    return replayed == before


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold off Python's cyclic garbage collector for the block, then put it back as it was.

    A machine's bring-up appends tens of thousands of steps and rows that live as long as the
    trace, and makes next to no cyclic garbage; every automatic collection during it re-scans
    all of them (the full ones the whole heap) and frees nothing: it was ~40% of a boot. Scoped:
    the collector is enabled again on the way out only if it was enabled on the way in (nests),
    thresholds are untouched, and it never changes what is recorded (nothing in xenlab has a
    finalizer or a weak reference).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class Trace:
    """An append-only list of steps with named stages and replayable state.

    ``checked=True`` keeps the replayed state as steps are recorded and raises
    ``ReplayMismatch`` when a row's *before* disagrees with it (tests, tooling).
    """

    steps: list[Step] = field(default_factory=list)
    stages: list[tuple[str, int]] = field(default_factory=list)
    enabled: bool = True
    checked: bool = False
    initial: dict[str, Value] = field(default_factory=dict)  # table -> what an absent key means
    _stage: str = ""
    _checkpoints: dict[int, State] = field(default_factory=dict, repr=False)
    _live: State = field(default_factory=dict, repr=False)

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
        built: list[Change] = []
        for c in changes:  # one pass: build each row and check it
            if not isinstance(c, Change):
                key = c[1]
                c = Change(c[0], key if type(key) is str else str(key), c[2], c[3])
            if type(c.before) in _MUTABLE or type(c.after) in _MUTABLE:
                raise TypeError(f"{function}: {c.table}[{c.key}] records a mutable value; "
                                "record a tuple (a queue is a tuple, oldest first)")
            built.append(c)
        rows = tuple(built)
        step = Step(len(self.steps), actor, function, summary, source, self._stage, rows, printk)
        if self.checked:
            initial = self.initial
            for n, c in enumerate(rows):
                now = self._live.get(c.table, {}).get(c.key)
                if not _same(now, c.before, initial.get(c.table, _NONE)):
                    for done in reversed(rows[:n]):  # leave the trace as it was
                        _apply(self._live, Change(done.table, done.key, done.after, done.before),
                               initial.get(done.table, _NONE))
                    raise ReplayMismatch(str(Mismatch(step.index, function, c, now)))
                _apply(self._live, c, initial.get(c.table, _NONE))
        self.steps.append(step)
        return step

    @property
    def stage(self) -> str:
        """The name of the stage steps are recorded into now ("" before the first)."""
        return self._stage

    def mismatches(self, start: int = 0) -> list[Mismatch]:
        """Every row from step *start* on whose *before* is not the replayed value ([]: all true)."""
        state = self.state_at(start - 1)
        initial = self.initial
        out: list[Mismatch] = []
        for step in self.steps[start:]:
            for c in step.changes:
                now = state.get(c.table, {}).get(c.key)
                init = initial.get(c.table, _NONE)
                if not _same(now, c.before, init):
                    out.append(Mismatch(step.index, step.function, c, now))
                _apply(state, c, init)
        return out

    def set_initial(self, table: str, value: Value) -> None:
        """Say what every key of *table* holds until written (-1, 0): rows may name it, replay omits it."""
        self.initial[table] = value

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

    def state_at(self, index: int) -> State:
        """Every table as it was after step *index* (``-1``: before the first step); a fresh copy."""
        if not -1 <= index < len(self.steps):
            have = f"steps 0..{len(self.steps) - 1}" if self.steps else "no steps (only -1 is valid)"
            raise IndexError(f"step {index} out of range: the trace has {have}")
        base = (index + 1) // _CHECKPOINT_EVERY * _CHECKPOINT_EVERY
        while base and base not in self._checkpoints:
            base -= _CHECKPOINT_EVERY
        state = {t: dict(rows) for t, rows in self._checkpoints.get(base, {}).items()}
        initial = self.initial
        for i in range(base, index + 1):
            for c in self.steps[i].changes:
                _apply(state, c, initial.get(c.table, _NONE))
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


def full_text(trace: Trace) -> str:
    """The whole trace as text that differs if any byte of it does: every field of every step and
    row (repr, with the values' types), the stages and the tables' initial values."""
    out = [f"initial {sorted(trace.initial.items())!r}", f"stages {trace.stages!r}"]
    for s in trace.steps:
        out.append(f"{s.index!r} {s.actor!r} {s.function!r} {s.summary!r} {s.source!r} {s.stage!r} "
                   f"{s.printk!r} {len(s.changes)!r}")
        out.extend(f"  {c.table!r} {c.key!r} {type(c.before).__name__} {c.before!r} "
                   f"{type(c.after).__name__} {c.after!r}" for c in s.changes)
    return "\n".join(out) + "\n"

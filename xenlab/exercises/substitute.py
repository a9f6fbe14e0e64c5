"""Running a student's function in place of the model's, the way a test fixture would.

``substitute(module, name, fn)`` swaps ``module.name`` for *fn* for the duration of a
``with`` block, and restores it afterwards (also when the block raises), exactly as
pytest's ``monkeypatch.setattr`` does. The mirrored kernel modules import each other's
functions by name (``from xenlab.linux.xenlinux.xenbus_comms import xb_write``), so the
swap is made in every loaded ``xenlab.linux`` module that holds the same function object
under that name; production code has no hook for it.

``Guard`` wraps the student's function before it goes in: it counts calls, bounds each
call by a budget of executed lines (``sys.settrace``, only in the student's own frames:
a loop that never ends is stopped, not waited for), checks the kind of value returned,
and keeps the first thing that went wrong (``Guard.fault``) so that the checker can say
it plainly even when the lab's code around the call swallowed the exception.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType, ModuleType
from typing import Any

from xenlab.linux.kernel import Kernel

#: lines the student's function may execute per call before it is stopped
LINE_BUDGET = 200_000


class StudentFault(Exception):
    """The student's function raised, ran out of its line budget, or returned the wrong kind of value."""


class _OutOfBudget(Exception):
    pass


@contextmanager
def substitute(module: ModuleType, name: str, fn: Callable[..., Any]) -> Iterator[None]:
    """Swap *module*.*name* (and every xenlab.linux module's import of it) for *fn*; restore on exit."""
    original = getattr(module, name)
    holders = [m for key, m in sorted(sys.modules.items())
               if m is not None and (m is module or key.startswith("xenlab.linux."))
               and getattr(m, name, None) is original]
    for m in holders:
        setattr(m, name, fn)
    try:
        yield
    finally:
        for m in holders:
            setattr(m, name, original)


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Guard:
    """The student's function with its calls counted, bounded and checked."""

    def __init__(self, fn: Callable[..., Any], name: str, returns: tuple[type, ...],
                 budget: int = LINE_BUDGET) -> None:
        self.fn, self.name, self.returns, self.budget = fn, name, returns, budget
        self.calls = 0
        self.fault: str | None = None
        code = getattr(fn, "__code__", None)
        self._file = code.co_filename if code is not None else None

    def _fail(self, text: str) -> StudentFault:
        if self.fault is None:
            self.fault = text
        return StudentFault(text)

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        shown = ", ".join("kernel" if isinstance(a, Kernel) else _short(a) for a in args)
        where = f"call {self.calls}: {self.name}({shown})"
        left = [self.budget]

        def local(frame: FrameType, event: str, arg: object) -> Any:
            if event == "line":
                left[0] -= 1
                if left[0] < 0:
                    raise _OutOfBudget
            return local

        def tracer(frame: FrameType, event: str, arg: object) -> Any:
            return local if frame.f_code.co_filename == self._file else None

        previous = sys.gettrace()
        sys.settrace(tracer if self._file else previous)
        try:
            result = self.fn(*args)
        except _OutOfBudget:
            raise self._fail(f"{where} ran more than {self.budget} lines without returning: "
                             "a loop that never ends? (check what makes your loop stop)") from None
        except StudentFault:
            raise
        except Exception as e:  # the student's bug, reported by name
            raise self._fail(f"{where} raised {type(e).__name__}: {e}") from e
        finally:
            sys.settrace(previous)
        if not isinstance(result, self.returns) or (bool not in self.returns and isinstance(result, bool)):
            kinds = " or ".join(t.__name__ for t in self.returns)
            raise self._fail(f"{where} returned {_short(result)} ({type(result).__name__}); "
                             f"the kernel's {self.name} returns {kinds}")
        return result

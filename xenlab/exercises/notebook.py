"""What the student notebooks (notebooks/exercises/) call: ``problem(kind, seed)`` and ``check(...)``.

``handshake()`` a domU whose disk waits for the hotplug script's keys;
``check("find_unbound_irq", my_function)`` runs an implement-the-kernel task (seeds 0-2 and
the boot, ``kernel_tasks.check_kernel``); ``check(problem, {"part": answer, ...})`` checks a
predict-or-decode answer (``predict.check_answer``); ``check(hs)`` the handshake you drove.
All return a ``Verdict`` whose text is the checker's message (the cell's output), never the whole
answer, ending with its score (``Score: N/M``; ``.earned`` of ``.points``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xenlab.exercises import predict
from xenlab.exercises.handshake import Handshake, check_handshake
from xenlab.exercises.kernel_tasks import TASKS, Verdict, check_kernel

PROBLEMS: dict[str, Callable[[int], predict.Problem]] = {
    "decode_ring": predict.problem_decode_ring,
    "predict_irqs": predict.problem_predict_irqs,
    "probe_order": predict.problem_probe_order,
    "fault_printk": predict.problem_fault_printk,
}


def problem(kind: str, seed: int = 0) -> predict.Problem:
    """The predict-or-decode problem *kind* for *seed* (its repr is the question)."""
    if kind not in PROBLEMS:
        raise ValueError(f"no problem {kind!r}; problems: {', '.join(PROBLEMS)}")
    return PROBLEMS[kind](seed)


def handshake(flavour: str = "2.6.18") -> Handshake:
    """A domU whose disk waits for the block hotplug script's xenstore writes: yours."""
    return Handshake(flavour)


def check(what: str | predict.Problem | Handshake,
          answer: Callable[..., Any] | dict[str, object] | None = None, *,
          seeds: range | list[int] | None = None) -> Verdict:
    """Check a kernel function (task name, function; on the cases of *seeds*, 0-2 unless given), a
    problem's answer (Problem, dict of parts) or a handshake you drove (Handshake). The Verdict's
    text ends with `Score: N/M`; `.earned` / `.points` are the numbers."""
    if isinstance(what, Handshake):
        return check_handshake(what)
    if isinstance(what, predict.Problem):
        if not isinstance(answer, dict):
            raise TypeError("a problem's answer is a dict: {part: value}")
        return predict.check_answer(what, answer)
    if what not in TASKS:
        raise ValueError(f"no task {what!r}; tasks: {', '.join(TASKS)}")
    if not callable(answer):
        raise TypeError(f"check({what!r}, f): f is your function, not its result")
    return check_kernel(what, answer) if seeds is None else check_kernel(what, answer, seeds=seeds)

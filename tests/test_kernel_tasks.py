"""Implement the kernel: a student's function runs in the lab in place of the model's.

The reference solutions (written as a student would, recording nothing) match the kernel on
seeds 0-49 and boot the machine to Connected; each typical mistake of the catalogue fails
with its own hint; a function that raises, loops or returns garbage is named as such, and
the lab's own function is back in place afterwards.
"""

from __future__ import annotations

import pytest

from xenlab.exercises import kernel_tasks as kt
from xenlab.exercises import mistakes, solutions
from xenlab.exercises.substitute import substitute
from xenlab.linux.xenlinux import evtchn as l18
from xenlab.linux.xenlinux import xenbus_comms as comms18
from xenlab.linux.xenlinux import xenbus_xs

REFERENCE = {
    "find_unbound_irq": solutions.find_unbound_irq,
    "bind_caller_port_to_irq": solutions.bind_caller_port_to_irq,
    "check_indexes": solutions.check_indexes,
    "xb_write_2.6.18": solutions.xb_write_2618,
    "xb_write_6.1": solutions.xb_write_61,
    "xb_read": solutions.xb_read,
    "xb_init_comms": solutions.xb_init_comms,
    "wake_waiting": solutions.wake_waiting,
}


def test_every_task_has_a_reference_solution() -> None:
    assert sorted(REFERENCE) == sorted(kt.TASKS)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_solution_scores_full_marks_for_seeds_0_to_49(name: str) -> None:
    v = kt.check_kernel(name, REFERENCE[name], seeds=range(50))
    assert v.ok, v.text
    assert v.lines[-1] == f"{name}: correct"
    if kt.TASKS[name].boot is not None:
        assert "the disk's frontend is Connected" in v.text


@pytest.mark.parametrize("mistake", mistakes.CATALOGUE, ids=lambda m: m.name)
def test_each_typical_mistake_gets_its_hint(mistake: mistakes.Mistake) -> None:
    v = kt.check_kernel(mistake.task, mistake.fn, seeds=range(10))
    assert not v.ok
    assert f"hint: {mistake.hint}" in v.text
    others = {m.hint for m in mistakes.CATALOGUE} - {mistake.hint}
    assert not any(h in v.text for h in others), v.text


def test_a_mismatch_shows_the_step_and_the_differing_rows_only() -> None:
    v = kt.check_kernel("bind_caller_port_to_irq", mistakes.forgets_bindcount, seeds=[0])
    assert v.lines[0] == ("bind_caller_port_to_irq, case 0: diverged at step 1 of 9: "
                          "bind_caller_port_to_irq(port 2)")
    assert "  irq_bindcount[256]: expected 1, got none" in v.lines
    assert not any(line.strip().startswith("evtchn_to_irq") for line in v.lines)  # those rows agreed


def test_a_function_that_raises_is_named_with_its_call() -> None:
    def broken(kernel: object, caller_port: int) -> int:
        raise KeyError("oops")

    v = kt.check_kernel("bind_caller_port_to_irq", broken, seeds=[0])
    assert not v.ok
    assert "call 1: bind_caller_port_to_irq(kernel, 2) raised KeyError: 'oops'" in v.text


def test_a_function_that_never_returns_is_stopped() -> None:
    def spins(cons: int, prod: int) -> bool:
        while True:
            cons += 1

    v = kt.check_kernel("check_indexes", spins, seeds=[0], boot=False)
    assert not v.ok
    assert "without returning: a loop that never ends?" in v.text


@pytest.mark.parametrize("garbage", [None, "256", 3.0])
def test_a_function_that_returns_garbage_is_told_what_the_kernel_returns(garbage: object) -> None:
    v = kt.check_kernel("find_unbound_irq", lambda kernel: garbage, seeds=[0])
    assert not v.ok
    kind = type(garbage).__name__
    assert f"returned {garbage!r} ({kind}); the kernel's find_unbound_irq returns int" in v.text


def test_the_lab_is_itself_again_after_a_broken_function() -> None:
    model = (comms18.xb_write, xenbus_xs.xb_write, l18.find_unbound_irq)
    kt.check_kernel("xb_write_2.6.18", lambda kernel, data: 1 / 0, seeds=[0])
    with pytest.raises(ZeroDivisionError), substitute(l18, "find_unbound_irq", lambda k: 1 / 0):
        assert l18.find_unbound_irq is not model[2]
        l18.find_unbound_irq(None)
    assert (comms18.xb_write, xenbus_xs.xb_write, l18.find_unbound_irq) == model
    assert kt.check_kernel("xb_write_2.6.18", solutions.xb_write_2618, seeds=[0]).ok


def test_substitute_reaches_the_modules_that_imported_the_function_by_name() -> None:
    def mine(kernel: object, data: bytes) -> int:
        return 0

    with substitute(comms18, "xb_write", mine):
        assert xenbus_xs.xb_write is mine and comms18.xb_write is mine
    assert xenbus_xs.xb_write is comms18.xb_write is not mine

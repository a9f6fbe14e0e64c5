"""The trace's recording machinery (slotted rows, the collector held off during a build) changes no byte.

tools/dump_trace.py writes the same full text to files, to compare a tree before and after a
change; here two machines built independently must give the same text, field for field.
"""

from __future__ import annotations

import dataclasses
import gc

import pytest

from xenlab.base.trace import Change, Step, Trace, full_text, gc_paused
from xenlab.sim.scenarios import build


@pytest.mark.parametrize("args", [
    {"name": "dom0", "flavour": "2.6.18", "dom0_vcpus": 2},
    {"name": "domU", "flavour": "modern", "guest_vcpus": 2, "dom0_vcpus": 2},
    {"name": "domU", "flavour": "2.6.18", "guest_type": "hvm"},
], ids=["dom0-2.6.18-2vcpu", "domU-modern-2vcpu", "domU-2.6.18-hvm"])
def test_two_machines_record_the_same_trace(args: dict[str, object]) -> None:
    args = dict(args)
    name = str(args.pop("name"))
    first = build(name, **args)  # type: ignore[arg-type]
    second = build(name, **args)  # type: ignore[arg-type]  # built while the first is alive
    a, b = full_text(first.trace), full_text(second.trace)
    assert len(first.trace) > 1000
    assert a == b
    first.shutdown()
    second.shutdown()


def test_full_text_sees_every_field() -> None:
    def one(**over: object) -> str:
        t = Trace()
        t.begin_stage("boot")
        row = {"table": "dom0/x", "key": "k", "before": None, "after": 1} | {
            k: v for k, v in over.items() if k in ("table", "key", "before", "after")}
        t.record(str(over.get("function", "f")), "s", actor="dom0", source="a.c",
                 changes=[(row["table"], row["key"], row["before"], row["after"])],
                 printk=over.get("printk"))  # type: ignore[arg-type]
        return full_text(t)

    base = one()
    for over in ({"function": "g"}, {"printk": "hello"}, {"after": True}, {"after": "1"}, {"before": 0},
                 {"key": "j"}, {"table": "dom0/y"}):
        assert one(**over) != base, over


def test_rows_and_steps_stay_frozen_values() -> None:
    c = Change("dom0/x", "k", None, 1)
    assert c == Change("dom0/x", "k", None, 1) and hash(c) == hash(Change("dom0/x", "k", None, 1))
    assert (c.table, c.key, c.before, c.after) == ("dom0/x", "k", None, 1)
    assert str(c) == "dom0/x[k]: None -> 1"
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.after = 2  # type: ignore[misc]
    s = Step(0, "dom0", "f", "s", "a.c", "boot", (c,))
    assert s.printk is None and s.changes == (c,)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.summary = "t"  # type: ignore[misc]
    assert not hasattr(c, "__dict__") and not hasattr(s, "__dict__")


def test_record_keys_are_text_and_mutable_values_refused() -> None:
    t = Trace()
    step = t.record("f", "s", actor="dom0", source="a.c", changes=[("dom0/x", 5, None, 1)])
    assert step is not None and step.changes[0].key == "5"
    with pytest.raises(TypeError, match="mutable"):
        t.record("f", "s", actor="dom0", source="a.c", changes=[("dom0/x", "k", None, [1])])
    assert len(t) == 1


def test_gc_paused_restores_the_collector() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block found it off: it stays off
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # off on the way in: left off
    finally:
        gc.enable()


def test_build_leaves_the_collector_as_it_found_it() -> None:
    thresholds = gc.get_threshold()
    build("dom0", flavour="modern").shutdown()
    assert gc.isenabled() and gc.get_threshold() == thresholds

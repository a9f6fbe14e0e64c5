"""The trace on its own: replay from checkpoints, stages, muting, the text dump, the checks.

``state_at(i)`` must give exactly the tables as they were after step *i*, whatever was
asked before and whatever the caller did with an earlier answer: a view jumps around
the trace and a notebook may keep (and change) what it got back.
"""

from __future__ import annotations

import pytest

from xenlab.base.trace import Change, ReplayMismatch, Trace

N = 700  # spans checkpoints at 256 and 512


def counting_trace(n: int = N) -> Trace:
    """Step i sets t/counter to i, adds t/k<i>, drops t/k<i-3>: values overwritten, keys come and go."""
    trace = Trace()
    for i in range(n):
        rows = [("t", "counter", i - 1 if i else None, i), ("t", f"k{i}", None, f"v{i}")]
        if i >= 3:
            rows.append(("t", f"k{i - 3}", f"v{i - 3}", None))
        if i % 100 == 0:
            rows.append((f"other{i}", "x", None, i))
        trace.record("step", f"step {i}", actor="test", source="test.c", changes=rows)
    return trace


def replay_from_scratch(trace: Trace, index: int) -> dict[str, dict[str, object]]:
    """The oracle: every change up to *index*, applied in order, no checkpoints."""
    state: dict[str, dict[str, object]] = {}
    for step in trace.steps[: index + 1]:
        for c in step.changes:
            table = state.setdefault(c.table, {})
            if c.after is None:
                table.pop(c.key, None)
            else:
                table[c.key] = c.after
    return state


def test_state_at_asked_out_of_order_across_checkpoints_is_always_exact() -> None:
    trace = counting_trace()
    for index in (650, 300, 650, 257, 300, 511, 512, 256, 255, 0, -1, 699, 650, 300):
        assert trace.state_at(index) == replay_from_scratch(trace, index), f"state_at({index})"


def test_changing_a_returned_state_does_not_change_the_trace() -> None:
    trace = counting_trace()
    for index in (511, 512, 300):  # 511 replays nothing past checkpoint 512; 300 replays from 256
        got = trace.state_at(index)
        got["t"]["counter"] = "scribbled"
        got["t"]["new"] = "key"
        got["other0"].clear()
        del got["t"][f"k{index}"]
    for index in (511, 512, 300, 600, 256):
        assert trace.state_at(index) == replay_from_scratch(trace, index), f"state_at({index})"


def test_state_at_names_the_valid_range() -> None:
    trace = counting_trace(3)
    with pytest.raises(IndexError, match=r"step 3 out of range: the trace has steps 0\.\.2"):
        trace.state_at(3)
    with pytest.raises(IndexError, match=r"step -2 out of range"):
        trace.state_at(-2)
    assert trace.state_at(-1) == {}
    with pytest.raises(IndexError, match=r"step 0 out of range: the trace has no steps"):
        Trace().state_at(0)


def test_stages_name_where_steps_begin_and_repeat_names_are_listed_once() -> None:
    trace = Trace()
    trace.begin_stage("boot")
    for fn in ("xen_init_IRQ", "xenbus_init"):
        trace.record(fn, "", actor="dom0", source="x.c")
    trace.begin_stage("probe")
    trace.record("xenbus_probe", "", actor="dom0", source="x.c")
    trace.begin_stage("boot")
    trace.record("xen_init_IRQ", "again", actor="domU1", source="x.c")
    assert trace.stage_names() == ["boot", "probe"]
    assert trace.stages == [("boot", 0), ("probe", 2), ("boot", 3)]
    assert trace.stage_start("boot") == 0  # the first stage of that name
    assert trace.stage_start("probe") == 2
    assert [s.stage for s in trace] == ["boot", "boot", "probe", "boot"]
    with pytest.raises(KeyError, match="no stage named 'connect'; stages: boot, probe"):
        trace.stage_start("connect")


def test_muted_records_nothing_and_restores_recording_even_after_an_error() -> None:
    trace = Trace()
    with trace.muted():
        assert trace.record("f", "", actor="a", source="s", changes=[("t", "k", None, 1)]) is None
        with trace.muted():
            pass
        assert not trace.enabled
    assert trace.enabled and len(trace) == 0
    with pytest.raises(RuntimeError), trace.muted():
        raise RuntimeError("boom")
    assert trace.enabled
    step = trace.record("f", "one", actor="a", source="s")
    assert step is not None and step.index == 0


def test_dump_is_stable_text_with_printk_and_changes() -> None:
    trace = Trace()
    trace.record("bind_virq_to_irq", "VIRQ 0 -> IRQ 24", actor="dom0", source="events_base.c",
                 changes=[("dom0/virq_to_irq", "0/0", None, 24)])
    trace.record("xenbus_probe", "ready", actor="dom0", source="xenbus_probe.c", printk="XENBUS: ok")
    assert trace.dump() == ("#0 [dom0] bind_virq_to_irq: VIRQ 0 -> IRQ 24 (events_base.c)\n"
                            "#1 [dom0] xenbus_probe: ready (xenbus_probe.c)\n"
                            "    printk: XENBUS: ok")
    assert trace.dump(0, 1, changes=True) == ("#0 [dom0] bind_virq_to_irq: VIRQ 0 -> IRQ 24 (events_base.c)\n"
                                              "    dom0/virq_to_irq[0/0]: None -> 24")


def test_keys_are_strings_and_values_must_be_immutable() -> None:
    trace = Trace()
    step = trace.record("f", "", actor="a", source="s", changes=[("t", 5, None, (1, 2))])
    assert step is not None and step.changes == (Change("t", "5", None, (1, 2)),)
    with pytest.raises(TypeError, match=r"t\[q\] records a mutable value"):
        trace.record("g", "", actor="a", source="s", changes=[("t", "q", None, [1, 2])])
    assert len(trace) == 1


def test_mismatches_name_the_step_function_table_key_and_both_values() -> None:
    trace = Trace()
    trace.record("evtchn_2l_set_pending", "", actor="xen", source="s",
                 changes=[("xen/d0/vcpu0", "evtchn_upcall_pending", None, 1)])
    # the guest cleared the flag without recording it; Xen's next set says "before None"
    trace.record("evtchn_2l_set_pending", "", actor="xen", source="s",
                 changes=[("xen/d0/vcpu0", "evtchn_upcall_pending", None, 1)])
    [bad] = trace.mismatches()
    assert (bad.index, bad.function, bad.change.key, bad.replayed) == (1, "evtchn_2l_set_pending",
                                                                       "evtchn_upcall_pending", 1)
    assert str(bad) == ("step #1 evtchn_2l_set_pending: xen/d0/vcpu0[evtchn_upcall_pending] "
                        "recorded before=None, replay has 1")
    assert trace.mismatches(start=2) == []
    assert counting_trace().mismatches() == []


def test_a_checked_trace_refuses_a_row_whose_before_is_wrong_and_stays_as_it_was() -> None:
    trace = Trace(checked=True)
    trace.record("set", "", actor="a", source="s", changes=[("t", "a", None, 1)])
    with pytest.raises(ReplayMismatch, match=r"step #1 clear: t\[b\] recorded before=2, replay has None"):
        trace.record("clear", "", actor="a", source="s", changes=[("t", "a", 1, None), ("t", "b", 2, None)])
    assert len(trace) == 1
    trace.record("clear", "", actor="a", source="s", changes=[("t", "a", 1, None)])  # t[a] is still 1
    assert trace.state_at(1) == {"t": {}}


def test_a_table_with_an_initial_value_records_the_owners_values_and_replays_without_them() -> None:
    trace = Trace(checked=True)
    trace.set_initial("dom0/evtchn_to_irq", -1)  # an unbound port
    trace.record("bind", "", actor="dom0", source="s", changes=[("dom0/evtchn_to_irq", 3, -1, 24)])
    trace.record("bind", "", actor="dom0", source="s", changes=[("dom0/evtchn_to_irq", 4, None, 25)])
    assert trace.state_at(1) == {"dom0/evtchn_to_irq": {"3": 24, "4": 25}}
    trace.record("unbind", "", actor="dom0", source="s", changes=[("dom0/evtchn_to_irq", 3, 24, -1)])
    assert trace.state_at(2) == {"dom0/evtchn_to_irq": {"4": 25}}  # back to -1: absent
    assert str(trace[0].changes[0]) == "dom0/evtchn_to_irq[3]: -1 -> 24"  # what a learner reads
    with pytest.raises(ReplayMismatch, match=r"evtchn_to_irq\[4\] recorded before=-1, replay has 25"):
        trace.record("bind", "", actor="dom0", source="s", changes=[("dom0/evtchn_to_irq", 4, -1, 26)])
    assert trace.mismatches() == []

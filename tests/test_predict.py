"""Predict and decode: problems computed by the model, checkers that explain without giving the key away."""

from __future__ import annotations

import pytest

from xenlab.exercises import predict as pr

PROBLEMS = [pr.problem_decode_ring, pr.problem_predict_irqs, pr.problem_probe_order, pr.problem_fault_printk]


@pytest.mark.parametrize("make", PROBLEMS, ids=lambda f: f.__name__)
def test_the_models_own_answer_scores_every_part(make: object) -> None:
    for seed in range(4):
        p = make(seed)  # type: ignore[operator]
        v = pr.check_answer(p, dict(p.expected))
        assert v.ok, v.text
        assert v.lines[-1] == f"{p.kind}: {len(p.expected)}/{len(p.expected)} parts right"


@pytest.mark.parametrize("make", PROBLEMS, ids=lambda f: f.__name__)
def test_an_empty_answer_names_the_parts_and_reveals_none(make: object) -> None:
    p = make(1)  # type: ignore[operator]
    v = pr.check_answer(p, {})
    assert not v.ok
    assert [line for line in v.lines[:-1]] == [f"{part}: missing" for part in p.expected]
    assert not any(value in v.text for value in p.expected.values() if len(value) > 3)


def test_a_wrong_ring_index_shows_expected_got_the_table_and_the_hint() -> None:
    p = pr.problem_decode_ring(3)
    masked = int(p.expected["req_prod"]) % 1024
    v = pr.check_answer(p, {**p.expected, "req_prod": hex(masked)})
    assert f"req_prod: expected {p.expected['req_prod']}, got {hex(masked)}" in v.lines
    assert any(line.startswith("  req_cons ") for line in v.lines)  # the state table
    assert "  hint: the indices are little-endian uint32 and free-running: do not mask them" in v.lines
    assert v.lines[-1] == "decode_ring: 4/5 parts right"


def test_numbers_in_any_base_and_the_probe_order_as_a_list() -> None:
    p = pr.problem_predict_irqs(3)
    assert pr.check_answer(p, {k: hex(int(v)) for k, v in p.expected.items()}).ok
    q = pr.problem_probe_order(0)
    assert q.expected["dom0"].split(", ")[1] == "get_zeroed_page"  # dom0 makes the store page itself
    assert "get_zeroed_page" not in q.expected["domU1"] and q.expected["domU1"].endswith("xenbus_probe")
    assert pr.check_answer(q, {k: v.replace(", ", ",") for k, v in q.expected.items()}).ok


def test_predict_irqs_never_prints_an_answer_in_its_text() -> None:
    for seed in range(10):
        p = pr.problem_predict_irqs(seed)
        assert "unbind_from_irq(2" not in p.text


def test_the_student_plays_the_block_hotplug_script_to_connected() -> None:
    from xenlab.exercises.handshake import Handshake, check_handshake

    hs = Handshake("2.6.18")
    v = check_handshake(hs)
    assert not v.ok
    assert v.lines[:2] == [f"frontend {hs.frontend}: Initialised", f"backend {hs.backend}: InitWait"]
    assert "watches physical-device, written as major:minor of the block device in HEX" in v.text
    hs.write(f"{hs.backend}/physical-device", "7:0")  # /dev/loop0, as the block script writes it
    assert check_handshake(hs).ok


def test_a_wrong_physical_device_fails_the_device_and_says_why() -> None:
    from xenlab.exercises.handshake import Handshake, check_handshake

    hs = Handshake("modern")
    hs.write(f"{hs.backend}/physical-device", "7:1")
    v = check_handshake(hs)
    assert v.lines[1] == f"backend {hs.backend}: Closed"
    assert "physical-device '7:1' is not the block device holding the image" in v.text

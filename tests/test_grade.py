"""`xenlab grade` and the classroom side of `xenlab quiz`: points, student seeds, answer sheets,
--check without the key, number bases, roster CSV/JSON, exit codes, bad input; and the XenLinux
2.6.18 topics (ring2618, quiesce, ready, procxen, irqinfo) checked against the model directly.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from xenlab.cli import main
from xenlab.exercises import quiz
from xenlab.exercises.common import question_rng, same_answer, student_seed
from xenlab.exercises.xenlinux import (
    gen_irqinfo,
    gen_procxen,
    gen_quiesce,
    gen_ready,
    gen_ring2618,
    guest_2618_with_store_page,
)
from xenlab.linux.xenlinux import evtchn as l18
from xenlab.linux.xenlinux import xenbus_comms as comms18
from xenlab.sim.machine import Machine


def answers(q: quiz.Question) -> dict[str, str]:
    return {name: value for name, value, _ in q.parts}


def filled(sheet_text: str, values: dict[str, str]) -> str:
    """A blank answer sheet with *values* written after their keys."""
    out = []
    for line in sheet_text.splitlines():
        key = line.split(":", 1)[0]
        out.append(f"{key}: {values[key]}" if key in values and line.endswith(": ") else line)
    return "\n".join(out) + "\n"


# -- reference answers: full marks, every topic, seeds 0-49 -----------------------------------------
@pytest.mark.parametrize("topic", list(quiz.TOPICS))
def test_reference_answers_score_full_marks_for_seeds_0_to_49(topic: str) -> None:
    for seed in range(50):
        questions = quiz.generate(seed, topic, 1)
        report = quiz.mark(questions, quiz.expected_answers(questions))
        assert report.all_right and report.score == report.max_score > 0, (topic, seed, report.wrong())


def test_a_filled_in_answer_sheet_round_trips_through_the_cli(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    sheet = tmp_path / "a.txt"
    assert main(["quiz", "--seed", "4", "--student", "ada", "-n", "12", "--answer-sheet", str(sheet)]) == 0
    capsys.readouterr()
    key = quiz.expected_answers(quiz.for_student(4, "ada", "all", 12).questions())
    sheet.write_text(filled(sheet.read_text(), key))
    assert main(["grade", str(sheet)]) == 0
    out = capsys.readouterr().out
    total = quiz.mark(quiz.for_student(4, "ada", "all", 12).questions(), key).max_score
    assert out.rstrip().endswith(f"Score: {total}/{total}") and "WRONG" not in out


def test_all_weights_the_2618_topics_as_much_as_the_others() -> None:
    topics = [q.topic for q in quiz.generate(0, "all", 12)]
    # every other question is a XenLinux 2.6.18 one (procxen asks 2.6.18 twice as often as 6.1)
    assert topics[0::2] == ["ring2618", "quiesce", "ready", "irq", "procxen", "irqinfo"]
    assert [quiz.TOPIC_INFO[t].kernel for t in topics[0::2]].count("2.6.18") == 5
    assert "2.6.18" not in [quiz.TOPIC_INFO[t].kernel for t in topics[1::2]]
    flavours = [quiz.generate(s, "procxen", 1)[0].setup["flavour"] for s in range(30)]
    assert flavours.count("2.6.18") > flavours.count("modern") > 0


# -- points: a wrong part loses exactly its points --------------------------------------------------
def _wrong(value: str) -> str:
    return str(int(value, 0) + 1) if re.fullmatch(r"-?(0x[0-9a-f]+|\d+)", value) else value + "-nope"


@pytest.mark.parametrize("topic", list(quiz.TOPICS))
def test_each_wrong_part_loses_its_own_points(topic: str) -> None:
    questions = quiz.generate(3, topic, 1)
    key = quiz.expected_answers(questions)
    full = quiz.mark(questions, key).max_score
    worth = {f"Q1.{n}": questions[0].worth(n) for n, _, _ in questions[0].parts}
    for part in key:
        report = quiz.mark(questions, {**key, part: _wrong(key[part])})
        assert report.score == full - worth[part], part
        assert report.wrong() == [part]
        assert quiz.mark(questions, {k: v for k, v in key.items() if k != part}).score == full - worth[part]


# -- --check never shows the key unless --reveal ----------------------------------------------------
def test_an_empty_answers_file_does_not_return_the_key(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["quiz", "--seed", "5", "-n", "12", "--check", str(empty)]) == 1
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln.startswith("  Q")]
    assert len(rows) == len(quiz.expected_answers(quiz.generate(5, "all", 12)))
    assert all(re.fullmatch(r"  Q\d+\.\S+: missing \(0/\d\)", ln) for ln in rows), rows
    assert "Score: 0/" in out
    assert main(["quiz", "--seed", "5", "-n", "12", "--check", str(empty), "--reveal"]) == 1
    shown = capsys.readouterr().out
    for key, value in quiz.expected_answers(quiz.generate(5, "all", 12)).items():
        assert f"  {key}: missing (0/" in shown and f"; expected {value}" in shown


def test_wrong_answers_are_marked_without_their_expected_values(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    key = quiz.expected_answers(quiz.generate(8, "ring2618", 2))
    wrong = {k: _wrong(v) for k, v in key.items()}
    f = tmp_path / "w.txt"
    f.write_text("".join(f"{k}: {v}\n" for k, v in wrong.items()))
    assert main(["quiz", "--seed", "8", "--topic", "ring2618", "-n", "2", "--check", str(f)]) == 1
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  Q")]
    for row, (k, v) in zip(rows, wrong.items(), strict=True):
        assert re.fullmatch(rf"  {re.escape(k)}: WRONG \(0/\d\): you said {re.escape(v)}", row), row


# -- number bases -----------------------------------------------------------------------------------
def test_a_hex_part_reads_bare_digits_as_hex_and_a_decimal_part_as_decimal() -> None:
    assert same_answer("83c", "0x0000083c", "hex") and same_answer("0x83C", "0x83c", "hex")
    assert same_answer("2108", "0x00002108", "hex") and not same_answer("2108", "0x0000083c", "hex")
    assert same_answer("FFFFFFCA", "0xffffffca", "hex") and same_answer("0xFFFFFFCA", "0xffffffca", "hex")
    assert same_answer("2108", "2108", "dec") and same_answer("0x83c", "2108", "dec")
    assert not same_answer("83c", "2108", "dec")


def test_the_question_says_how_each_number_is_read_and_the_checker_follows_it() -> None:
    q = next(q for s in range(20) for q in quiz.generate(s, "irq", 1)
             if any(n.startswith("irq_info[") for n, _, _ in q.parts))
    name, value, form = next(p for p in q.parts if p[0].startswith("irq_info["))
    assert q.base(name) == "hex" and "bare digits are read as hex" in form
    bare = f"{int(value, 16):x}"
    report = quiz.mark([q], {**{f"Q1.{n}": v for n, v, _ in q.parts}, f"Q1.{name}": bare})
    assert report.all_right
    dec_name, dec_value, dec_form = next(p for p in q.parts if p[0].startswith("bindcount["))
    assert q.base(dec_name) == "dec" and "decimal, or hex with 0x" in dec_form
    hexed = quiz.mark([q], {f"Q1.{dec_name}": hex(int(dec_value))})
    assert hexed.rows[[r.key for r in hexed.rows].index(f"Q1.{dec_name}")].status == "right"
    # bare hex in a decimal part is wrong, and the hint says how to write hex (not what the value is)
    r = quiz.mark([q], {f"Q1.{dec_name}": f"{int(dec_value) + 0x1a:x}"})
    row = next(x for x in r.rows if x.key == f"Q1.{dec_name}")
    assert row.status == "wrong" and "write hex with 0x" in row.hint and dec_value not in row.hint


# -- student seeds and answer sheets ----------------------------------------------------------------
def test_a_students_seed_is_stable_and_neighbours_differ() -> None:
    ids = [f"s{n:03d}" for n in range(40)]
    seeds = [student_seed(2026, i) for i in ids]
    assert len(set(seeds)) == len(ids)
    assert seeds == [student_seed(2026, i) for i in ids]
    assert student_seed(2026, " S001 ") == student_seed(2026, "s001") != student_seed(2027, "s001")
    a, b = (quiz.render(0, sheet=quiz.for_student(2026, i, "ring", 2)) for i in ("s000", "s001"))
    assert a != b and "ARG student s000" in a and f"ARG seed {seeds[0]}" in a


def test_a_class_set_writes_a_quiz_and_a_sheet_per_student_and_grades_to_csv_and_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ids.txt").write_text("ada\nbob\ncy\n")
    out = tmp_path / "class"
    assert main(["quiz", "--seed", "11", "--topic", "all", "-n", "4", "--class", str(tmp_path / "ids.txt"),
                 "--out", str(out)]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{s}.{k}.txt" for s in ("ada", "bob", "cy") for k in ("quiz", "answers"))
    keys = {s: quiz.expected_answers(quiz.for_student(11, s, "all", 4).questions()) for s in ("ada", "bob")}
    (out / "ada.answers.txt").write_text(filled((out / "ada.answers.txt").read_text(), keys["ada"]))
    part = dict(list(keys["bob"].items())[:3])
    (out / "bob.answers.txt").write_text(filled((out / "bob.answers.txt").read_text(), part))
    assert main(["grade", str(out), "--csv", str(tmp_path / "marks.csv")]) == 1  # bob, cy not full
    text = capsys.readouterr().out
    assert "ada: Score: " in text and "3 answers files: 1 with full marks" in text
    rows = list(csv.DictReader(io.StringIO((tmp_path / "marks.csv").read_text())))
    by = {r["student"]: r for r in rows}
    assert list(by) == ["ada", "bob", "cy"]
    assert by["ada"]["score"] == by["ada"]["max"] and by["cy"]["score"] == "0"
    bob = quiz.for_student(11, "bob", "all", 4)
    assert int(by["bob"]["score"]) == quiz.mark(bob.questions(), part).score > 0
    assert by["bob"]["seed"] == str(student_seed(11, "bob")) and by["bob"]["assignment"] == "11"
    assert sum(int(by["bob"][f"Q{i}"]) for i in range(1, 5)) == int(by["bob"]["score"])
    assert main(["grade", "--json", str(out / "ada.answers.txt"), str(out / "cy.answers.txt")]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [d["student"] for d in data] == ["ada", "cy"]
    assert data[0]["score"] == data[0]["max"] and all("expected" not in p for d in data for p in d["parts"])
    # a roster list names the files (relative to the list)
    (out / "list.txt").write_text("ada.answers.txt\n# bob is away\n")
    assert main(["grade", "--roster", str(out / "list.txt")]) == 0
    assert "Score: " in capsys.readouterr().out


# -- knobs ------------------------------------------------------------------------------------------
def test_knobs_set_a_custom_problem_and_are_printed_first(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quiz", "--topic", "ring2618", "-n", "1", "--cons", "0x3f0", "--prod", "0x3f0",
                 "--len", "40", "-c"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:6] == ["ARG seed 0", "ARG topic ring2618", "ARG count 1", "ARG cons 0x3f0",
                                   "ARG prod 0x3f0", "ARG len 40"]
    q = quiz.generate(0, "ring2618", 1, {"cons": 0x3F0, "prod": 0x3F0, "len": 40})[0]
    assert q.setup == {"cons": 0x3F0, "prod": 0x3F0, "n": 40}
    k = guest_2618_with_store_page()
    intf = k.xb.xen_store_interface
    assert intf is not None
    intf.req_cons = intf.req_prod = 0x3F0
    assert comms18.xb_write(k, bytes(40)) == 0
    assert answers(q)["req_prod"] == f"{intf.req_prod:#010x}" and answers(q)["kicks"] == "2"
    for argv, needle in ((["--topic", "perms", "--cons", "1"], "--cons is a knob of ring2618, ring, quiesce"),
                         (["--topic", "ring2618", "--cons", "0", "--prod", "0", "--len", "2000"],
                          "--len 2000 is more than the 1024 free bytes"),
                         (["--topic", "procxen", "--flavour", "3.0"], "--flavour must be 2.6.18 or modern"),
                         (["--topic", "irq", "--ports", "x"], "--ports must be an integer")):
        assert main(["quiz", *argv]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err


# -- exit codes and bad input -----------------------------------------------------------------------
def test_grade_exit_codes_full_partial_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sheet = quiz.Sheet(3, "irqinfo", 1)
    key = quiz.expected_answers(sheet.questions())
    good, part, bad = tmp_path / "good.txt", tmp_path / "part.txt", tmp_path / "bad.txt"
    good.write_text(filled(quiz.answer_sheet(sheet), key))
    part.write_text(filled(quiz.answer_sheet(sheet), dict(list(key.items())[:1])))
    bad.write_text(quiz.answer_sheet(sheet) + "this is not an answer\n")
    assert main(["grade", str(good)]) == 0
    assert main(["grade", str(part)]) == 1
    capsys.readouterr()
    assert main(["grade", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"answers file {bad} line " in err and "expected 'KEY: VALUE'" in err
    assert main(["grade", str(good), str(bad)]) == 2  # the class is graded, the bad file named
    out = capsys.readouterr().out
    assert "good: Score: " in out and f"cannot mark {bad}" in out


@pytest.mark.parametrize("header,needle", [
    ("@topic: rings\n", "unknown topic 'rings'; valid: ring2618"),
    ("@seed: 4\n", "@seed 4 but --seed 3: these answers are for another quiz"),
    ("@colour: red\n", "unknown header '@colour: red'"),
    ("@count: many\n", "@count must be an integer (got 'many')"),
    ("Q1.kicks: 1\nQ1.kicks: 2\n", "Q1.kicks is answered twice (first on line 1)"),
])
def test_a_bad_answers_file_gets_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                header: str, needle: str) -> None:
    f = tmp_path / "ans.txt"
    f.write_text(header)
    assert main(["quiz", "--seed", "3", "--check", str(f)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and needle in err and str(f) in err, err


def test_a_sheet_with_someone_elses_seed_is_refused(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    text = quiz.answer_sheet(quiz.for_student(9, "ada", "ring", 1))
    f = tmp_path / "ada.txt"
    f.write_text(text.replace(f"@seed: {student_seed(9, 'ada')}", f"@seed: {student_seed(9, 'bob')}"))
    assert main(["grade", str(f)]) == 2
    assert f"is not student ada's seed for assignment 9 ({student_seed(9, 'ada')})" in capsys.readouterr().err
    f.write_text(text)
    assert main(["grade", "--seed", "10", str(f)]) == 2
    assert "@assignment 9 but this is assignment 10" in capsys.readouterr().err
    assert main(["grade", "--student", "bob", str(f)]) == 2
    assert "@student ada but --student bob" in capsys.readouterr().err
    assert main(["grade", str(tmp_path / "missing.txt")]) == 2
    assert "cannot read answers file" in capsys.readouterr().err


# -- the 2.6.18 topics against the model ------------------------------------------------------------
@pytest.mark.parametrize("number", range(10))
def test_ring2618_kicks_after_every_chunk_as_xb_write_does(number: int) -> None:
    q = gen_ring2618(question_rng(6, "ring2618", number))
    a, s = answers(q), q.setup
    k = guest_2618_with_store_page()
    intf = k.xb.xen_store_interface
    assert intf is not None
    intf.req_cons, intf.req_prod = s["cons"], s["prod"]
    start = len(k.trace)
    rc = comms18.xb_write(k, bytes(s["n"]))
    sends = [st for st in k.trace.steps[start:] if st.function == "evtchn_send"]
    assert int(a["return"]) == rc and int(a["kicks"]) == len(sends)
    assert int(a["req_prod"], 16) == intf.req_prod
    chunks = [] if a["chunks"] == "none" else a["chunks"].split(", ")
    assert len(sends) == len(chunks)  # 2.6.18: one kick per chunk
    assert sum(int(c.split("+")[1]) for c in chunks) == (s["n"] if rc == 0 else 0)


def test_ring2618_questions_include_split_copies_and_bad_indices() -> None:
    seen = [answers(gen_ring2618(question_rng(6, "ring2618", i))) for i in range(40)]
    assert any(a["kicks"] == "2" for a in seen) and any(a["return"] == "-5" for a in seen)


@pytest.mark.parametrize("number", range(10))
def test_quiesce_answers_are_what_xb_init_comms_does(number: int) -> None:
    q = gen_quiesce(question_rng(2, "quiesce", number))
    a = answers(q)
    if q.setup.get("fault"):
        m = Machine(flavour=q.setup["flavour"], seed=0, faults=["ring-not-quiescent"])
        m.start_xenstored()
        dom = m.create_domU(disks=["xvda"], vifs=0)
        for line in a["printk"].split(" | "):
            assert line in m.domain(dom.domid).run("dmesg")
        return
    k = guest_2618_with_store_page()
    intf = k.xb.xen_store_interface
    assert intf is not None
    (intf.req_cons, intf.req_prod), (intf.rsp_cons, intf.rsp_prod) = q.setup["req"], q.setup["rsp"]
    assert comms18.xb_init_comms(k) == int(a["return"])
    assert a["printk"] == (" | ".join(line.text for line in k.log) or "none")
    assert (int(a["req_cons"], 16), int(a["req_prod"], 16)) == q.setup["req"]  # only complained about
    assert int(a["rsp_cons"], 16) == intf.rsp_cons == q.setup["rsp"][1]  # fixed up


def test_quiesce_questions_cover_req_rsp_both_neither_and_the_fault() -> None:
    qs = [gen_quiesce(question_rng(2, "quiesce", i)) for i in range(40)]
    printed = [answers(q)["printk"] for q in qs]
    assert any(p == "none" for p in printed)
    assert any("request" in p and "response" in p for p in printed)
    assert any("request" in p and "response" not in p for p in printed)
    assert any(q.setup.get("fault") and q.setup["flavour"] == "modern" for q in qs)
    assert any(q.setup.get("fault") and q.setup["flavour"] == "2.6.18" for q in qs)


def test_ready_answers_are_what_the_booted_kernels_hold() -> None:
    seen = set()
    for i in range(16):
        q = gen_ready(question_rng(1, "ready", i))
        a, s = answers(q), q.setup
        seen.add(a["set_by"])
        m = Machine(flavour="2.6.18", seed=0)
        if s["started"]:
            m.start_xenstored()
        k = m.create_domU(disks=["xvda"], vifs=0).kernel if s["role"] == "domU" else m.dom0.kernel
        assert int(a["xenstored_ready"]) == k.xb.xenstored_ready
        assert int(a["xenbus_irq"]) == k.xb.xenbus_irq
    assert seen == {"none", "wake_waiting", "xenbus_probe_init"}


def test_procxen_answers_are_ls_of_proc_xen() -> None:
    seen = set()
    for i in range(20):
        q = gen_procxen(question_rng(4, "procxen", i))
        a, s = answers(q), q.setup
        seen.add((s["flavour"], s["role"]))
        m = Machine(flavour=s["flavour"], seed=0)
        where = m.dom0
        if s["role"] == "domU":
            m.start_xenstored()
            where = m.domain(m.create_domU(disks=["xvda"], vifs=0).domid)
        listing = where.run("ls -l /proc/xen")
        assert a["entries"].split() == (sorted(ln.split()[-1] for ln in listing.splitlines()[1:]) or ["none"])
        for key, mode in a.items():
            if key.startswith("mode["):
                assert f"{mode} " in next(ln for ln in listing.splitlines() if ln.endswith(" " + key[5:-1]))
    assert len(seen) == 4


@pytest.mark.parametrize("number", range(8))
def test_irqinfo_words_are_the_2618_irq_info_table(number: int) -> None:
    q = gen_irqinfo(question_rng(7, "irqinfo", number))
    a = answers(q)
    (enc_key,) = [k for k in a if k.startswith("irq_info[")]
    word = int(re.search(r"has irq_info (0x[0-9a-f]+)", q.text).group(1), 16)  # type: ignore[union-attr]
    t = l18.IRQT_NAMES_L18.index(a["decode.type"])
    assert l18.mk_irq_info(t, int(a["decode.index"]), int(a["decode.port"])) == word
    # redo the binds: the asked IRQ's word is the kernel's irq_info
    k = guest_2618_with_store_page(q.setup["ports"])
    store = k.xb.xen_store_evtchn
    for text in q.setup["binds"]:
        if text.startswith("bind_caller"):
            l18.bind_caller_port_to_irq(k, store)
        elif text.startswith("bind_virq"):
            l18.bind_virq_to_irq(k, int(re.search(r"= (\d+)", text).group(1)), 0)  # type: ignore[union-attr]
        elif text.startswith("bind_ipi"):
            l18.bind_ipi_to_irq(k, int(re.search(r"ipi (\d+)", text).group(1)), 0)  # type: ignore[union-attr]
        else:
            l18.bind_listening_port_to_irq(k, 0)
    st = l18.evtchn_state(k)
    assert int(a[enc_key], 16) == st.irq_info[q.setup["encode"]]
    assert st.irq_info[q.setup["decode"]] == word

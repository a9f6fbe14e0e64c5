"""`xenlab quiz`: questions from a seed whose answers are what the lab's model does.

Each topic test takes the generator's setup, does the same thing directly on the lab's
model (a page, a Hypervisor, a 2.6.18 IRQ layer, a booted Machine, a xenstored) and checks
the quiz's answers against what it shows there: a generator that drifted from the model,
or parsed its own trace wrongly, fails here.
"""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

import pytest
from real_captures import capture_set

from xenlab.abi.event_channel import EVTCHNSTAT_closed, EVTCHNSTAT_interdomain, EVTCHNSTAT_unbound
from xenlab.abi.xs_wire import XENSTORE_RING_SIZE
from xenlab.abi.xs_wire import xsd_sockmsg_type as T
from xenlab.cli import main
from xenlab.exercises import quiz
from xenlab.exercises.common import normalise, question_rng, same_answer
from xenlab.exercises.machine import gen_numbering, gen_xenbus
from xenlab.exercises.perms import NODE, gen_perms
from xenlab.exercises.ports import gen_evtchn, gen_irq, guest_2618, two_domains
from xenlab.exercises.ring import gen_framing, gen_ring, guest_with_store_page
from xenlab.linux.pvops import xenbus_comms as comms
from xenlab.linux.xenlinux import evtchn as l18
from xenlab.sim.machine import Machine
from xenlab.xenstored import wire
from xenlab.xenstored.daemon import Daemon
from xenlab.xenstored.wire import Message


def answers(q: quiz.Question) -> dict[str, str]:
    return {name: value for name, value, _ in q.parts}


def req_bytes(intf: object) -> bytes:
    return ctypes.string_at(ctypes.addressof(intf) + type(intf).req.offset, XENSTORE_RING_SIZE)  # type: ignore[attr-defined]


# -- determinism and settings ----------------------------------------------------------------
def test_same_seed_same_bytes_and_another_seed_other_questions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quiz", "--seed", "7", "--topic", "ring", "-n", "4", "-c"]) == 0
    first = capsys.readouterr().out
    assert main(["quiz", "--seed", "7", "--topic", "ring", "-n", "4", "-c"]) == 0
    assert capsys.readouterr().out == first
    assert main(["quiz", "--seed", "8", "--topic", "ring", "-n", "4", "-c"]) == 0
    assert capsys.readouterr().out != first


def test_the_output_states_its_settings_first_and_hides_answers_without_c() -> None:
    text = quiz.render(3, "perms", 2)
    assert text.splitlines()[:4] == ["ARG seed 3", "ARG topic perms", "ARG count 2", "ARG show answers no"]
    assert "Q2.d" in text and "    Q1." in text
    assert "EACCES\n" not in text and ": OK" not in text  # the answers stay hidden
    shown = quiz.render(3, "perms", 2, show_answers=True)
    for key, value in quiz.expected_answers(quiz.generate(3, "perms", 2)).items():
        assert f"    {key}: {value}\n" in shown


def test_all_takes_every_topic_in_turn() -> None:
    qs = quiz.generate(0, "all", len(quiz.TOPICS))
    assert [q.topic for q in qs] == list(quiz.TOPICS)


def test_a_question_depends_on_seed_topic_and_number_only() -> None:
    # question 2 of seed 5 is the same whether 3 or 5 questions are asked
    assert quiz.generate(5, "evtchn", 3)[2].text == quiz.generate(5, "evtchn", 5)[2].text
    assert question_rng(5, "ring", 0).random() == question_rng(5, "ring", 0).random()


# -- each topic, checked against the model directly ------------------------------------------------
@pytest.mark.parametrize("number", range(12))
def test_ring_answers_are_what_xb_write_does_on_a_page(number: int) -> None:
    q = gen_ring(question_rng(11, "ring", number))
    a, s = answers(q), q.setup
    k, intf = guest_with_store_page()
    intf.req_cons, intf.req_prod = s["cons"], s["prod"]
    data = bytes((i * 7 + 3) & 0xFF for i in range(s["n"]))
    rc = comms.xb_write(k, data)
    assert a["check_indexes"] == ("yes" if comms.check_indexes(s["cons"], s["prod"]) else "no")
    assert int(a["return"]) == rc
    assert int(a["req_prod"], 16) == intf.req_prod
    sends = [st for st in k.trace.steps if st.function == "evtchn_send"]
    assert int(a["kicks"]) == len(sends)
    # the chunks answer says where the bytes went: they are there, in order, on the page
    page, done = req_bytes(intf), 0
    if a["chunks"] != "none":
        for piece in a["chunks"].split(", "):
            off, ln = (int(x) for x in piece.split("+"))
            assert page[off:off + ln] == data[done:done + ln]
            done += ln
    assert done == max(rc, 0)


def test_ring_questions_cover_the_wrap_the_short_write_and_the_bad_indices() -> None:
    seen = [answers(gen_ring(question_rng(11, "ring", i))) for i in range(40)]
    assert any(", " in a["chunks"] for a in seen)  # split at the end of req[]
    assert any(a["check_indexes"] == "no" and a["return"] == "-5" for a in seen)
    assert any(int(a["req_prod"], 16) < 0x400 and a["check_indexes"] == "yes" and "+" in a["chunks"]
               for a in seen)


def _hexdump_bytes(text: str) -> bytes:
    out = b""
    for line in text.splitlines():
        m = re.match(r"  ([0-9a-f]{4})  ((?:[0-9a-f]{2} ?)+)", line)
        if m:
            out += bytes.fromhex(m.group(2).replace(" ", ""))
    return out


@pytest.mark.parametrize("number", range(6))
def test_framing_answers_decode_the_dump_the_student_sees(number: int) -> None:
    q = gen_framing(question_rng(4, "framing", number))
    msgs = wire.decode_all(_hexdump_bytes(q.text))
    a = answers(q)
    assert int(a["count"]) == len(msgs)
    for i, m in enumerate(msgs, 1):
        assert a[f"m{i}.type"] == T(m.type).name
        assert (int(a[f"m{i}.req_id"]), int(a[f"m{i}.tx_id"])) == (m.req_id, m.tx_id)
        assert a[f"m{i}.payload"].replace("\\0", "\0").encode() == m.payload


@pytest.mark.parametrize("number", range(8))
def test_evtchn_answers_match_evtchn_status(number: int) -> None:
    q = gen_evtchn(question_rng(2, "evtchn", number))
    a, g = answers(q), q.setup["guest"]
    hv = two_domains(g)
    for i, call in enumerate(q.setup["calls"], 1):
        if call[0] == "alloc_unbound":
            rc = hv.evtchn_alloc_unbound(call[1], g, 0)
        elif call[0] == "bind_interdomain":
            rc = hv.evtchn_bind_interdomain(0, g, call[1])
        else:
            rc = hv.evtchn_close(call[1], call[2])
        assert int(a[f"op{i}"]) == rc
    for dom, key in ((0, "dom0.ports"), (g, f"d{g}.ports")):
        listed = {} if a[key] == "none" else dict(p.split(":") for p in a[key].split())
        for port in range(1, 9):
            st = hv.evtchn_status(0, dom, port)
            if isinstance(st, int) or st.status == EVTCHNSTAT_closed:
                assert str(port) not in listed
            elif st.status == EVTCHNSTAT_unbound:
                assert listed[str(port)] == f"unbound({st.u.unbound.dom})"
            else:
                assert st.status == EVTCHNSTAT_interdomain
                assert listed[str(port)] == f"interdomain({st.u.interdomain.dom},{st.u.interdomain.port})"


@pytest.mark.parametrize("number", range(8))
def test_irq_answers_match_the_2618_tables(number: int) -> None:
    q = gen_irq(question_rng(9, "irq", number))
    a = answers(q)
    k = guest_2618()
    store = k.hv.evtchn_alloc_unbound(0, k.domid, 0)
    for i, call in enumerate(q.setup["calls"], 1):
        if call[0] == "unbind":
            l18.unbind_from_irq(k, call[1])
            continue
        if call[0] == "caller":
            irq = l18.bind_caller_port_to_irq(k, store)
        elif call[0] == "listening":
            irq = l18.bind_listening_port_to_irq(k, 0)
        elif call[0] == "virq":
            irq = l18.bind_virq_to_irq(k, call[1], 0)
        else:
            irq = l18.bind_ipi_to_irq(k, call[1], 0)
        assert int(a[f"b{i}"]) == irq
    asked = q.setup["asked"]
    st = l18.evtchn_state(k)
    assert int(a["next_irq"]) == min(i for i in range(st.space.DYNIRQ_BASE, st.space.NR_IRQS)
                                     if st.irq_bindcount[i] == 0)
    assert int(a[f"irq_info[{asked}]"], 16) == st.irq_info[asked]
    assert int(a[f"bindcount[{asked}]"]) == st.irq_bindcount[asked]


def test_irq_questions_include_unbinds_that_free_an_irq_for_reuse() -> None:
    setups = [gen_irq(question_rng(9, "irq", i)).setup["calls"] for i in range(20)]
    assert any(c[0] == "unbind" for calls in setups for c in calls)


def test_numbering_answers_are_what_the_booted_dom0_shows() -> None:
    for number in range(2):
        q = gen_numbering(question_rng(1, "numbering", number))
        a, v = answers(q), q.setup["vcpus"]
        m = Machine(flavour="modern", seed=0, dom0_vcpus=v)
        port = int(m.dom0.run("cat /proc/xen/xsd_port"))
        assert int(a["xsd_port"]) == port
        # the xenbus IRQ is the one bound to the store port (events_base's evtchn_to_irq)
        line = next(ln for ln in m.dom0.run("cat /proc/interrupts").splitlines() if ln.endswith(" xenbus"))
        assert int(a["xenbus_irq"]) == int(line.split(":")[0])
        assert f"timer{v - 1}_irq" in a


CAPTURES = capture_set("oxenstored")


def test_a_one_vcpu_dom0_question_has_the_real_machines_answers() -> None:
    # the captured dom0 has one vcpu: the quiz's answers for such a dom0 are what that machine printed
    q = next(q for q in (gen_numbering(question_rng(s, "numbering", 0)) for s in range(50))
             if q.setup["vcpus"] == 1)
    port_text = (CAPTURES / "09-proc-xen-capabilities-xsd_port.txt").read_text()
    irq_text = (CAPTURES / "02-proc-interrupts-before-xenstored.txt").read_text()
    real_port = re.search(r"xsd_port: (\d+)", port_text)
    real_irq = next(ln for ln in irq_text.splitlines() if ln.endswith(" xenbus"))
    assert real_port is not None
    assert answers(q)["xsd_port"] == real_port.group(1)
    assert answers(q)["xenbus_irq"] == real_irq.split(":")[0].strip()


def test_xenbus_answers_are_the_devices_and_states_of_a_created_guest() -> None:
    q = gen_xenbus(question_rng(3, "xenbus", 0))
    a, s = answers(q), q.setup
    m = Machine(flavour=s["flavour"], seed=0)
    m.start_xenstored()
    dom = m.create_domU(disks=s["disks"], vifs=s["vifs"])
    assert a["frontends"].split() == m.domain(dom.domid).run("ls /sys/bus/xen/devices").split()
    assert a["backends"].split() == m.dom0.run("ls /sys/bus/xen-backend/devices").split()
    assert len([x for x in a["frontends"].split() if x.startswith("vbd-")]) == len(s["disks"])
    for key, value in a.items():
        if key.endswith(".states"):
            dev = key.removesuffix(".states")
            where = m.domain(dom.domid) if dev.count("-") == 1 else m.dom0
            bus = "xen" if dev.count("-") == 1 else "xen-backend"
            final = where.run(f"cat /sys/bus/{bus}/devices/{dev}/state").strip()
            assert value.split(" -> ")[-1] == final  # the sequence ends where sysfs says the device is
            assert value.split(" -> ")[0] == "Initialising"


@pytest.mark.parametrize("number", range(6))
def test_perms_answers_are_xenstored_replies(number: int) -> None:
    q = gen_perms(question_rng(5, "perms", number))
    a, s = answers(q), q.setup
    for domid, op in s["queries"]:
        daemon = Daemon()
        conns = {d: daemon.new_connection(d, f"domU{d}") for d in (1, 2, 3) if d != s["late"]}
        daemon.write(NODE, "v")
        daemon.set_perms(NODE, *s["perms"])
        if s["late"] is not None:
            conns[s["late"]] = daemon.new_connection(s["late"], f"domU{s['late']}")
        conn = daemon.new_connection(0, "socket-t") if domid == 0 else conns[domid]
        payload = NODE.encode() + b"\0" + (b"w" if op == "write" else b"")
        daemon.handle(conn, Message(int(T.XS_WRITE if op == "write" else T.XS_READ), 1, 0, payload))
        [reply] = conn.take_output()
        got = reply.payload.rstrip(b"\0").decode() if reply.type == T.XS_ERROR else "OK"
        assert a[f"d{domid}.{op}"] == got


def test_perms_questions_include_refusals() -> None:
    results = [v for i in range(10) for v in answers(gen_perms(question_rng(5, "perms", i))).values()]
    assert "EACCES" in results and "OK" in results


# -- the checker -------------------------------------------------------------------------------
def test_the_checker_marks_right_wrong_and_missing_and_shows_expected_values_only_with_reveal() -> None:
    questions = quiz.generate(1, "ring", 2)
    expected = quiz.expected_answers(questions)
    assert quiz.check(1, "ring", expected, 2).all_right
    given = dict(expected)
    given["Q1.kicks"] = str(int(expected["Q1.kicks"]) + 1)
    del given["Q2.chunks"]
    given["Q9.nothing"] = "1"
    report = quiz.check(1, "ring", given, 2)
    assert not report.all_right
    assert report.wrong() == ["Q1.kicks", "Q2.chunks"]
    # kicks and chunks are worth 2 points each in a ring question
    assert (report.score, report.max_score) == (report.max_score - 4, sum(q.worth(n) for q in questions
                                                                           for n, _, _ in q.parts))
    text = report.text()
    assert f"Q1.kicks: WRONG (0/2): you said {given['Q1.kicks']}\n" in text
    assert "Q2.chunks: missing (0/2)\n" in text
    assert "Q9.nothing: not a part of this quiz" in text
    assert f"Score: {report.max_score - 4}/{report.max_score}" in text
    assert "expected" not in text.replace("(expected values are not shown; --reveal shows them)", "")
    shown = report.text(reveal=True)
    assert f"Q1.kicks: WRONG (0/2): you said {given['Q1.kicks']}; expected {expected['Q1.kicks']}" in shown
    assert f"Q2.chunks: missing (0/2); expected {expected['Q2.chunks']}" in shown


def test_the_checker_ignores_case_spacing_and_number_base() -> None:
    assert same_answer("0x10", "16") and same_answer(" XS_READ ", "xs_read")
    assert same_answer("979 + 45,0+23", "979+45, 0+23")
    assert same_answer("0x0000fffe", "0xfffe") and not same_answer("17", "0x10")
    assert normalise("007") == "7"


def test_check_from_an_answers_file_on_the_command_line(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    expected = quiz.expected_answers(quiz.generate(2, "framing", 1))
    good = tmp_path / "good.txt"
    good.write_text("# my answers\n" + "".join(f"{k.lower()} = {v}\n" for k, v in expected.items()))
    assert main(["quiz", "--seed", "2", "--topic", "framing", "-n", "1", "--check", str(good)]) == 0
    assert "WRONG" not in capsys.readouterr().out
    bad = tmp_path / "bad.txt"
    bad.write_text("Q1.count: 99\n")
    assert main(["quiz", "--seed", "2", "--topic", "framing", "-n", "1", "--check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "Q1.count: WRONG (0/1): you said 99\n" in out and f"expected {expected['Q1.count']}" not in out
    argv = ["quiz", "--seed", "2", "--topic", "framing", "-n", "1", "--check", str(bad), "--reveal"]
    assert main(argv) == 1
    assert f"Q1.count: WRONG (0/1): you said 99; expected {expected['Q1.count']}" in capsys.readouterr().out


# -- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("argv,needle", [
    (["--topic", "rings"],
     "unknown topic 'rings'; valid: ring2618, ring, quiesce, numbering, ready, framing, irq, evtchn, "
     "procxen, perms, irqinfo, xenbus, all"),
    (["-n", "-2"], "count must be 1..100 (got -2)"),
    (["-n", "0"], "count must be 1..100 (got 0)"),
    (["--seed", "abc"], "--seed must be an integer (got 'abc')"),
    (["--check", "/nonexistent/answers.txt"], "cannot read answers file /nonexistent/answers.txt"),
])
def test_bad_input_is_one_line_naming_what_is_valid(argv: list[str], needle: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quiz", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and needle in err and err.startswith("xenlab quiz: ")


def test_a_garbled_answers_line_is_refused_by_number() -> None:
    with pytest.raises(quiz.QuizError, match="answers line 2"):
        quiz.parse_answers("Q1.count: 1\njust words\n")
    with pytest.raises(quiz.QuizError, match="unknown topic"):
        quiz.generate(0, "nope", 1)


def test_exercises_import_only_the_stdlib_and_the_layers_below_views() -> None:
    import ast
    import sys

    allowed = ("xenlab.base", "xenlab.abi", "xenlab.xen", "xenlab.xenstored", "xenlab.linux", "xenlab.sim",
               "xenlab.exercises")
    for path in sorted(Path(quiz.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                top = name.split(".")[0]
                assert name.startswith(allowed) or top in sys.stdlib_module_names or top == "__future__", \
                    f"{path.name} imports {name}"

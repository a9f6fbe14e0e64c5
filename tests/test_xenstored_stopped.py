"""xb_init_comms' request-ring path: xenstored stopped (SIGSTOP) until the guest's check has run.

With ring-not-quiescent alone, xenstored drains the stale request when the domain is
introduced, so the guest sees only the response ring. With xenstored-stopped too, a debugger
holds xenstored from the toolstack's last request until the guest's console shows the
quiescence lines: the request ring is still unread at ``xb_init_comms`` (complaint, indices
left), the response ring is fixed up, and after SIGCONT xenstored answers the stale request
(req_id 0) -- a reply the guest never asked for, which each kernel treats as its source does.
"""

from __future__ import annotations

import pytest
from replay import family, machine_state

from xenlab.sim.boot import kernel_xs_client
from xenlab.sim.machine import Machine, MachineError
from xenlab.sim.scenarios import build

FAULTS = ["ring-not-quiescent", "xenstored-stopped"]
COMPLAINT = {"2.6.18": "XENBUS request ring is not quiescent (00000018:0000002f)!",
             "modern": "xenbus: request ring is not quiescent (00000018:0000002f)!"}


@pytest.fixture(scope="module", params=["2.6.18", "modern"])
def stopped(request: pytest.FixtureRequest) -> Machine:
    m = build("domU", flavour=request.param, faults=FAULTS)
    yield m
    m.shutdown()


def _step(m: Machine, function: str, actor: str | None = None, after: int = -1):
    return next(s for s in m.trace.steps if s.index > after and s.function == function
                and (actor is None or s.actor == actor))


def test_the_stop_needs_the_stale_ring() -> None:
    with pytest.raises(MachineError, match="needs ring-not-quiescent"):
        Machine(flavour="modern", seed=0, faults=["xenstored-stopped"])


def test_xenstored_is_stopped_from_before_the_stale_bytes_until_after_xb_init_comms(stopped: Machine) -> None:
    t = stopped.trace
    stop, dirty = _step(stopped, "SIGSTOP"), _step(stopped, "fault ring-not-quiescent")
    checks = [s for s in t.steps if s.actor == "domU1" and s.function == "xb_init_comms"]
    cont = _step(stopped, "SIGCONT")
    assert stop.index < dirty.index < checks[0].index < checks[-1].index < cont.index
    # no main-loop turn of xenstored touched d1's ring while it was stopped
    assert not [s for s in t.steps[stop.index:cont.index]
                if s.actor.endswith("xenstored") and s.summary.startswith("d1:")]


def test_the_request_ring_is_only_reported_and_the_response_ring_fixed_up(stopped: Machine) -> None:
    t = stopped.trace
    dmesg = stopped.domain(1).run("dmesg")
    flavour = stopped.flavour
    assert COMPLAINT[flavour] in dmesg
    assert "response ring is not quiescent (00000010:00000020): fixing up" in dmesg
    req, rsp = [s for s in t.steps if s.actor == "domU1" and s.function == "xb_init_comms"][:2]
    assert req.printk == COMPLAINT[flavour] and not req.changes  # req_cons / req_prod left alone
    fixed = [(c.key, c.before, c.after) for c in rsp.changes if c.key.startswith("rsp")]
    assert fixed == [("rsp_cons", 16, 32)]
    state = t.state_at(rsp.index)["toolstack/store_page"]
    assert (state["req_cons"], state["req_prod"]) == (24, 47)


def test_xenstored_answers_the_stale_request_after_sigcont(stopped: Machine) -> None:
    t = stopped.trace
    cont = _step(stopped, "SIGCONT")
    served = [s for s in t.steps[cont.index:]
              if s.actor.endswith("xenstored") and s.summary.startswith("d1:")]
    assert served, "xenstored never served d1 after SIGCONT"
    reads = [s for s in served if s.function == "ml_interface_read"]
    assert [(c.key, c.before) for c in reads[0].changes] == [("req_cons", 24)]  # the stale request first
    write = next(s for s in served if s.function == "ml_interface_write")
    assert write.index < next(s for s in reads if s.changes[0].before == 47).index  # answered before the next


def test_2618_takes_the_stale_reply_as_its_first_requests_reply() -> None:
    """process_msg puts any reply on reply_list; read_reply takes the first: every reply is one late."""
    m = build("domU", flavour="2.6.18", faults=FAULTS)
    try:
        t = m.trace
        cont = _step(m, "SIGCONT")
        talks = [s for s in t.steps[cont.index:] if s.actor == "domU1" and s.function == "xs_talkv"]
        queued = [s for s in t.steps[cont.index:talks[0].index] if s.actor == "domU1"
                  and s.function == "process_msg"]
        assert [s.summary for s in queued][:2] == ["DIRECTORY reply (16 bytes) on reply_list"] * 2
        children = kernel_xs_client(m, m.dom0.kernel).directory("/local/domain/1/device")
        listed = " ".join(children)
        # the stale DIRECTORY "device" is answered first; the guest's first request takes that answer,
        # its second request the first one's answer
        assert talks[0].summary.endswith(f"-> DIRECTORY '{listed}'")
        assert talks[1].summary.endswith(f"-> DIRECTORY '{listed}'")
        assert not talks[1].summary.startswith("DIRECTORY device ->")
        assert "XENBUS unexpected type [" in m.domain(1).run("dmesg")
    finally:
        m.shutdown()


def test_modern_matches_replies_by_req_id_and_drops_the_one_nobody_waits_for() -> None:
    """xs_request_id starts at 0 like the stale request's: it matches the guest's request 0; the real
    reply to that finds no request (-ENOENT, "error -2 while reading message")."""
    m = build("domU", flavour="modern", faults=FAULTS)
    try:
        t = m.trace
        cont = _step(m, "SIGCONT")
        first = _step(m, "xb_write", "domU1", cont.index)
        assert "notify: no" in first.summary  # xenstored has unread (stale) bytes: the guest does not kick
        msgs = [s.summary for s in t.steps[cont.index:] if s.actor == "domU1" and s.function == "process_msg"]
        assert msgs[0] == "DIRECTORY reply req_id 0 (16 bytes) matched"
        assert msgs[1] == "WATCH reply req_id 0: no such request"
        assert "xenbus: error -2 while reading message" in m.domain(1).run("dmesg")
    finally:
        m.shutdown()


def test_the_trace_replays_exactly(stopped: Machine) -> None:
    """Every row's before is the replayed value; at the end the replay is the live state, except
    what the stale page puts on tables that are records of a moment, not live state:
    ``toolstack/store_page`` (the fault's write) and the guest's ``ring`` rows for the fields it
    does not own (req_cons, rsp_prod: as ``xen_store_interface`` found them; xenstored's table
    follows them on)."""
    trace = stopped.trace
    assert not trace.mismatches()
    replayed = {tb: rows for tb, rows in trace.state_at(len(trace) - 1).items()
                if rows and family(tb) != "K/xs_requests" and tb != "toolstack/store_page"}
    replayed["domU1/ring"] = {k: v for k, v in replayed["domU1/ring"].items()
                             if k not in ("req_cons", "rsp_prod")}
    live = {tb: rows for tb, rows in machine_state(stopped).items() if rows}
    assert replayed == live


@pytest.mark.parametrize("flavour", ["2.6.18", "modern"])
def test_same_seed_same_trace(flavour: str) -> None:
    runs = []
    for _ in range(2):
        m = build("domU", flavour=flavour, faults=FAULTS)
        runs.append([(s.function, s.actor, s.summary) for s in m.trace.steps])
        m.shutdown()
    assert runs[0] == runs[1]


def test_the_daemon_serves_dom0_after_sigcont(stopped: Machine) -> None:
    xs = kernel_xs_client(stopped, stopped.dom0.kernel)  # through dom0's ring: xenstored's main loop
    assert xs.read("/local/domain/1/name")
    assert stopped.xenstored_signal is not None and stopped.xenstored_signal("?") == "S"

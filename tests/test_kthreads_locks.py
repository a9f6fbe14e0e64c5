"""Every step of the seed, live: threads and their wait queues, locks, probe_work, the store page.

The kernel's kernel threads (``<kernel>/kthreads``), sleeping locks and spinlocks
(``<kernel>/locks``), probe_work (``<kernel>/work``), xs_state's lists (``<kernel>/xs_state``)
and the store page's chain (``<kernel>/store_page``) are trace tables: replayed to a step
they say what the kernel held there, forwards and backwards. ``tests/test_replay.py`` checks
their end state against the live objects in all 16 scenarios; these tests check them at the
steps a lesson stops at, and that recording them changes nothing of what runs when.
"""

from __future__ import annotations

import re

import pytest

from xenlab.base.sched import Scheduler, WaitQueue, task_key, task_row
from xenlab.base.trace import Trace
from xenlab.linux.locking import FREE, Mutex, RwSem, SpinLock
from xenlab.sim.machine import Machine
from xenlab.views.kthreads import KthreadView, StorePageView


@pytest.fixture(scope="module", params=["2.6.18", "modern"])
def booted(request: pytest.FixtureRequest) -> Machine:
    m = Machine(flavour=request.param, seed=0)
    m.start_xenstored()
    m.create_domU()
    return m


def first(m: Machine, function: str, actor: str = "dom0", start: int = 0, text: str = "") -> int:
    return next(s.index for s in m.trace.steps[start:]
                if s.function == function and s.actor == actor and text in s.summary)


# -- the scheduler's table ---------------------------------------------------------------------
def run_log(traced: bool) -> tuple[list[str], Trace]:
    s, t, log = Scheduler(), Trace(checked=True), []
    if traced:
        s.trace_tasks("dom0", t, "kernel/sched.c")
    wq = WaitQueue("dom0:xb_waitq")
    work: list[str] = []
    s.kthread_run(lambda: log.append(f"xenbus {work.pop(0)}"), "xenbus", owner="dom0",
                  wait=(wq, lambda: bool(work)))
    s.kthread_run(lambda: log.append("events/0"), "events/0", owner="dom0")
    s.run()
    work.extend(["a", "b"])
    s.wake_up(wq)
    s.run()
    return log, t


def test_recording_the_threads_changes_nothing_of_the_order() -> None:
    assert run_log(True)[0] == run_log(False)[0] == ["events/0", "xenbus a", "xenbus b"]


def test_the_kthreads_table_follows_every_sleep_wake_and_exit() -> None:
    _, t = run_log(True)
    assert [(s.function, s.summary) for s in t] == [
        ("kthread_run", "xenbus (pid 1): created, runnable"),
        ("kthread_run", "events/0 (pid 2): created, runnable"),
        ("wait_event", "xenbus (pid 1) sleeps on xb_waitq"),
        ("do_exit", "events/0 (pid 2) returned"),
        ("wake_up", "xb_waitq: wakes xenbus (pid 1)"),
        ("wait_event", "xenbus (pid 1) sleeps on xb_waitq"),
    ]
    assert t.state_at(3)["dom0/kthreads"] == {"xenbus (pid 1)": "sleeping on xb_waitq"}  # events/0 gone
    assert t.state_at(4)["dom0/kthreads"] == {"xenbus (pid 1)": "running"}
    assert not t.mismatches()


def test_a_user_process_run_as_a_task_is_not_a_kthread() -> None:
    s, t = Scheduler(), Trace()
    s.trace_tasks("dom0", t, "kernel/sched.c")
    task = s.kthread_run(lambda: None, "oxenstored", owner="dom0", kthread=False)
    s.run()
    assert len(t) == 0 and task_row(task) is None and task_key(task) == "oxenstored (pid 1)"


# -- the locks ---------------------------------------------------------------------------------
def test_each_lock_records_who_holds_it_and_how_many_read() -> None:
    s, t = Scheduler(), Trace(checked=True)
    t.set_initial("dom0/locks", FREE)
    kw = {"trace": t, "table": "dom0/locks"}
    m, r, sp = Mutex(s, "dom0:request_mutex", **kw), RwSem(s, "dom0:watch_mutex", **kw), \
        SpinLock(s, "dom0:irq_mapping_update_lock", **kw)
    t.record("xs_init", "mutex_init", actor="dom0", source="x.c", changes=[m.init_row(), r.init_row()])
    seen = []
    s.kthread_run(lambda: (m.lock(), r.down_read(), r.down_read(), seen.append(t.state_at(len(t) - 1)),
                           r.up_read(), r.up_read(), m.unlock()), "xenbus", owner="dom0")
    s.run()
    sp.lock()
    assert seen[0]["dom0/locks"] == {"request_mutex": "held by xenbus (pid 1)", "watch_mutex": "2 readers"}
    held = t.state_at(len(t) - 1)["dom0/locks"]
    assert held == {"irq_mapping_update_lock": "held by the caller (no kthread)"}
    sp.unlock()
    assert t.state_at(len(t) - 1)["dom0/locks"] == {}  # all free: replay leaves the initial value out
    assert [s.function for s in t][1:] == ["mutex_lock", "down_read", "down_read", "up_read", "up_read",
                                          "mutex_unlock", "spin_lock", "spin_unlock"]
    assert not t.mismatches()


def test_xs_talkv_holds_request_mutex_while_its_caller_sleeps_for_the_reply(booted: Machine) -> None:
    t = booted.trace
    if booted.flavour == "2.6.18":
        i = first(booted, "wait_event", text="sleeps on reply_waitq")
        state = t.state_at(i)
        assert state["dom0/locks"]["request_mutex"] == "held by events/0 (pid 4)"
        assert state["dom0/kthreads"]["events/0 (pid 4)"] == "sleeping on reply_waitq"
        assert state["dom0/work"]["probe_work"] == "running"
    else:  # 6.1: the caller queues the request and sleeps on its own xb_req; "xenbus" writes it
        i = first(booted, "wait_event", text="xenbus_probe (pid 3) sleeps on xb_req")
        state = t.state_at(i)
        assert state["dom0/xs_state"]["xb_write_list"] == ("WATCH req_id 0",)
        assert state["dom0/work"]["xenbus_probe"] == "running"
        assert "xb_write_mutex" not in state.get("dom0/locks", {})  # xs_send let it go again


UNDER_LOCK = {"find_unbound_irq", "bind_caller_port_to_irq", "bind_local_port_to_irq", "bind_virq_to_irq",
              "bind_ipi_to_irq", "unbind_from_irq", "bind_evtchn_to_irq_chip", "xen_irq_init"}


def test_irq_mapping_update_lock_is_held_exactly_around_each_binding(booted: Machine) -> None:
    t = booted.trace
    lock_fn = "spin_lock" if booted.flavour == "2.6.18" else "mutex_lock"
    held, checked = False, 0
    for s in t.steps:
        if s.actor != "dom0":
            continue
        for c in s.changes:
            if c.table == "dom0/locks" and c.key == "irq_mapping_update_lock":
                held = c.after != FREE
        # the steps each bind_* / unbind_from_irq records once it has the lock (the hypercall of
        # bind_interdomain_* / bind_listening_* comes before; startup_pirq, an irq_chip callback, takes none)
        if s.function in UNDER_LOCK:
            checked += 1
            assert held, f"#{s.index} {s.function} maps a port without irq_mapping_update_lock"
    assert not held and checked >= 10
    assert any(s.function == lock_fn and s.summary.startswith("irq_mapping_update_lock") for s in t)


# -- probe_work and the wait queue -------------------------------------------------------------
def test_probe_work_goes_queued_running_done_and_back_again_on_prev() -> None:
    m = Machine(flavour="2.6.18", seed=0)
    n0 = len(m.trace)
    m.start_xenstored()
    t = m.trace
    states = [(s.index, c.after) for s in t.steps[n0:] for c in s.changes
              if c.table == "dom0/work" and c.key == "probe_work"]
    assert [v for _, v in states] == ["queued", "running", "done"]
    wake = first(m, "wake_waiting", start=n0)
    assert states[0][0] > wake  # wake_waiting schedules it
    view = KthreadView("dom0")
    before, queued = view.text_at(t, states[0][0] - 1), view.text_at(t, states[0][0])
    assert "probe_work  idle" in before and "* work  probe_work  queued" in queued
    assert view.text_at(t, states[0][0] - 1) == before  # back again: the same text


def test_xb_waitq_has_the_xenbus_thread_asleep_until_the_first_interrupt(booted: Machine) -> None:
    t = booted.trace
    wake = first(booted, "wake_up", text="xb_waitq: wakes")
    sleepers = [k for k, v in t.state_at(wake - 1)["dom0/kthreads"].items() if v == "sleeping on xb_waitq"]
    assert any(k.startswith("xenbus (pid") for k in sleepers)
    assert t.state_at(wake)["dom0/kthreads"][sleepers[0]] == "running"


# -- the store page ------------------------------------------------------------------------------
def test_the_store_page_chain_agrees_with_xen_p2m_in_dom0_and_the_domu(booted: Machine) -> None:
    state = booted.trace.state_at(len(booted.trace) - 1)
    for kernel, domid in (("dom0", 0), ("domU1", 1)):
        chain = state[f"{kernel}/store_page"]
        k = booted.domains[domid].kernel
        assert chain["virt"] == k.PAGE_OFFSET + chain["phys"]
        assert chain["pfn"] == chain["phys"] >> 12
        assert state[f"xen/d{domid}/p2m"][f"{chain['pfn']:#x}"] == chain["mfn"] == k.xb.xen_store_mfn
        assert state["xen/frames"][f"{chain['mfn']:#x}"] == f"d{domid}"


def test_the_store_page_view_at_the_step_that_sets_xen_store_interface() -> None:
    m = Machine(flavour="2.6.18", seed=0)
    i = first(m, "xen_store_interface")
    view = StorePageView("dom0")
    assert view.text_at(m.trace, i) == "\n".join([
        "[dom0] xen_store_interface:",
        "  link                 value               what it is",
        "* virt                 0xffff880000001000  kernel virtual: the direct map (PAGE_OFFSET + phys)",
        "* phys                 0x1000              pseudo-physical address (__pa)",
        "* pfn                  0x1                 phys >> PAGE_SHIFT",
        "* mfn                  0x10002             machine frame (pfn_to_mfn, the p2m)",
        "  xen/d0/p2m[0x1]      0x10002             Xen's p2m: the same mfn",
        "  xen/frames[0x10002]  d0                  its owner (m2p goes back)",
    ])
    assert "virt (not yet)" in view.text_at(m.trace, i - 1).replace("  ", " ").replace("  ", " ")
    assert m.dom0.kernel.proc["xen/xsd_kva"].read() == "0xffff880000001000"  # what /proc/xen/xsd_kva says


def test_xs_init_shows_its_locks_free_and_its_list_empty_in_the_view() -> None:
    m = Machine(flavour="2.6.18", seed=0)
    i = first(m, "xs_init")
    text = KthreadView("dom0").text_at(m.trace, i)
    for lock in ("request_mutex", "response_mutex", "transaction_mutex", "watch_mutex"):
        assert re.search(rf"^\* {lock} +free +new$", text, re.M), text
    assert "kernel threads: (none)" in text  # xenwatch and xenbus come a few steps later
    later = KthreadView("dom0").text_at(m.trace, first(m, "kthread_run", text="xenbus"))
    assert "* 2    xenbus    running" in later

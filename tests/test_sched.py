"""The scheduler: kernel threads on one OS thread, in a fixed order.

Each test builds a few tasks the way kernel code does (a loop thread with its wait, a one-shot
work item, a process-context wait deep in a body) and checks who ran when, from a log the
tasks write themselves.
"""

from __future__ import annotations

import threading

import pytest

from xenlab.base.sched import Deadlock, Scheduler, TaskFailed, WaitQueue
from xenlab.linux.locking import Mutex


def test_a_one_shot_task_runs_once_when_picked_then_is_done() -> None:
    s, log = Scheduler(), []
    t = s.kthread_run(lambda who: log.append((who, s.current.name)), "events/0", "work")
    assert (t.state, log) == ("runnable", [])  # kthread_run only queues it
    assert s.run() == 1
    assert log == [("work", "events/0")] and t.state == "done" and s.current is None
    assert s.run() == 0


def test_a_loop_task_runs_turns_while_its_condition_holds_then_sleeps_on_its_queue() -> None:
    s, wq, events, log = Scheduler(), WaitQueue("watch_events_waitq"), ["a", "b"], []
    t = s.kthread_run(lambda: log.append(events.pop(0)), "xenwatch", wait=(wq, lambda: bool(events)))
    s.run()
    assert log == ["a", "b"]  # both turns at once: the condition was still true after the first
    assert (t.state, t.wchan, wq.sleepers) == ("sleeping", "watch_events_waitq", [t])
    events.append("c")
    assert s.run() == 0  # nobody woke it: it sleeps on, as the threaded loop would
    assert s.wake_up(wq) == 1 and t.state == "runnable"
    s.run()
    assert log == ["a", "b", "c"] and t.state == "sleeping"


def test_wake_up_makes_tasks_runnable_in_fifo_order() -> None:
    s, wq, go, log = Scheduler(), WaitQueue("wq"), [False], []
    for name in ("first", "second", "third"):
        s.kthread_run(log.append, name, name, wait=(wq, lambda n=name: go[0] and n not in log))
    s.run()
    assert log == []
    go[0] = True
    s.wake_up(wq)
    s.run()
    assert log == ["first", "second", "third"]


class XenbusRig:
    """A "xenbus" thread (nests=True) that answers each request put on the ring and wakes reply_waitq."""

    def __init__(self, s: Scheduler) -> None:
        self.s, self.ring, self.replies = s, [], []
        self.ring_wq, self.reply_wq = WaitQueue("xb_waitq"), WaitQueue("reply_waitq")
        s.kthread_run(self._turn, "xenbus", wait=(self.ring_wq, lambda: bool(self.ring)), nests=True)
        s.run()

    def _turn(self) -> None:
        self.replies.append(f"reply to {self.ring.pop(0)}")
        self.s.wake_up(self.reply_wq)

    def request(self, what: str) -> None:
        self.ring.append(what)
        self.s.wake_up(self.ring_wq)

    def wait_reply(self) -> str:
        self.s.wait_event(self.reply_wq, lambda: bool(self.replies))
        return self.replies.pop(0)


def test_a_wait_deep_in_a_task_runs_other_tasks_on_the_same_stack() -> None:
    s = Scheduler()
    rig, seen = XenbusRig(s), []

    def xs_talkv() -> None:
        rig.request("READ")
        seen.append(("asleep", s.current.name))
        reply = rig.wait_reply()
        seen.append(("got", reply, s.current.name))

    s.kthread_run(xs_talkv, "probe")
    s.run()
    assert seen == [("asleep", "probe"), ("got", "reply to READ", "probe")]
    assert threading.active_count() == 1


def test_a_wait_outside_any_task_drives_the_scheduler_itself() -> None:
    rig = XenbusRig(Scheduler())
    rig.request("WRITE")
    assert rig.wait_reply() == "reply to WRITE" and rig.s.current is None


def test_a_woken_task_below_resumes_in_its_turn_not_before_the_task_above_returns() -> None:
    s, wq_a, log = Scheduler(), WaitQueue("a_wq"), []
    flags = {"a": False}

    def task_a() -> None:
        log.append("A waits")
        s.wait_event(wq_a, lambda: flags["a"])
        log.append("A resumes")

    def task_b() -> None:
        log.append("B runs")
        flags["a"] = True
        s.wake_up(wq_a)  # A is below B on the stack: it keeps its place in the queue
        log.append("B goes on")

    s.kthread_run(task_a, "A")
    s.kthread_run(task_b, "B")
    s.run()
    assert log == ["A waits", "B runs", "B goes on", "A resumes"]


def test_a_contended_lock_holds_back_process_tasks_so_no_false_deadlock() -> None:
    """2.6.18: xs_talkv holds request_mutex while it waits; xenwatch (which needs it) must wait."""
    s = Scheduler()
    rig, request_mutex, log = XenbusRig(s), Mutex(s, "dom0:request_mutex"), []

    def xs_talkv(who: str) -> None:
        request_mutex.lock()
        rig.request(who)
        log.append(f"{who} waits holding the mutex")
        log.append(f"{who}: {rig.wait_reply()}")
        request_mutex.unlock()

    s.kthread_run(xs_talkv, "events/0", "probe")
    s.kthread_run(xs_talkv, "xenwatch", "watch")  # runnable while the probe waits: held back
    s.run()
    assert log == ["probe waits holding the mutex", "probe: reply to probe",
                   "watch waits holding the mutex", "watch: reply to watch"]


def test_a_nesting_task_may_run_inside_a_wait_that_holds_a_lock() -> None:
    s = Scheduler()
    rig, m = XenbusRig(s), Mutex(s, "dom0:request_mutex")
    m.lock()  # the caller outside holds it, as boot code's xs_talkv does
    rig.request("READ")
    assert rig.wait_reply() == "reply to READ"  # "xenbus" (nests=True) still ran
    m.unlock()


def test_deadlock_names_the_waiter_the_sleepers_and_what_is_held_back() -> None:
    s, wq = Scheduler(), WaitQueue("reply_waitq")
    m = Mutex(s, "dom0:request_mutex")
    s.kthread_run(lambda: None, "xenwatch")
    m.lock()
    with pytest.raises(Deadlock) as e:
        s.wait_event(wq, lambda: False)
    assert str(e.value) == ("waiting on reply_waitq but nothing can run (sleeping: none); held back: "
                            "xenwatch (needs no dom0:request_mutex held below it)")


def test_a_deadlock_inside_a_task_leaves_the_task_hung_in_its_wait() -> None:
    s, wq = Scheduler(), WaitQueue("reply_waitq")
    t = s.kthread_run(lambda: s.wait_event(wq, lambda: False), "xenwatch")
    with pytest.raises(Deadlock, match=r"^xenwatch \(pid 1\) waiting on reply_waitq .*sleeping: xenwatch on "
                                       r"reply_waitq"):
        s.run()
    assert s.ps() == ["    1 hung      xenwatch"] and t.wchan == "reply_waitq"
    s.wake_up(wq)
    assert s.run() == 0  # a hung task never runs again


def test_a_task_that_raises_ends_and_the_driver_names_it() -> None:
    s = Scheduler()

    def broken() -> None:
        raise ValueError("bad ring")

    t = s.kthread_run(broken, "xenbus")
    with pytest.raises(TaskFailed, match=r"task xenbus \(pid 1\) failed: ValueError\('bad ring'\)"):
        s.run()
    assert t.state == "done"


def test_msleep_in_a_task_lets_others_run_and_virtual_time_pass() -> None:
    s, log = Scheduler(), []

    def sleeper() -> None:
        s.msleep(100)
        log.append(("woke", s.now_ns))

    s.kthread_run(sleeper, "wait_for_devices")
    s.kthread_run(lambda: log.append(("ran", s.now_ns)), "other")
    s.run()
    assert log == [("ran", 0), ("woke", 100_000_000)]


def test_msleep_outside_a_task_advances_the_clock() -> None:
    s = Scheduler()
    s.msleep(5)
    assert s.now_ns == 5_000_000


def test_schedule_lets_the_other_runnable_tasks_go_first() -> None:
    s, log = Scheduler(), []

    def polite() -> None:
        log.append("polite 1")
        s.schedule()
        log.append("polite 2")

    s.kthread_run(polite, "polite")
    s.kthread_run(lambda: log.append("other"), "other")
    s.run()
    assert log == ["polite 1", "other", "polite 2"]


def test_kthread_stop_ends_a_sleeping_loop_thread_and_exit_ends_one_from_inside() -> None:
    s, wq, work = Scheduler(), WaitQueue("blkif_wq"), [0]
    ring = s.kthread_run(lambda: work.pop(), "1.51712-0", wait=(wq, lambda: bool(work)))
    s.run()
    assert ring.state == "sleeping"
    s.kthread_stop(ring)
    assert ring.state == "done" and wq.sleepers == []
    work.append(1)
    s.wake_up(wq)
    assert s.run() == 0 and work == [1]

    turns = []

    def once() -> None:
        turns.append(1)
        s.kthread_exit()

    t = s.kthread_run(once, "xenbus_probe", wait=(wq, lambda: True))
    s.run()
    assert turns == [1] and t.state == "done"


def test_kthread_should_stop_is_seen_by_the_running_task() -> None:
    s, seen = Scheduler(), []

    def body() -> None:
        s.kthread_stop(s.current)
        seen.append(s.kthread_should_stop())

    t = s.kthread_run(body, "loop", wait=(WaitQueue("wq"), lambda: True))
    s.run()
    assert seen == [True] and t.state == "done" and not s.kthread_should_stop()


def test_shutdown_stops_everything_without_threads_to_join() -> None:
    s = Scheduler()
    s.kthread_run(lambda: None, "xenwatch", wait=(WaitQueue("wq"), lambda: False))
    s.kthread_run(lambda: None, "queued")
    s.run(max_switches=1)
    s.shutdown()
    assert s.ps() == ["    1 done      xenwatch", "    2 done      queued"]
    s.kthread_run(lambda: None, "late")
    assert s.run() == 0 and s.ps()[-1] == "    3 done      late"


def test_run_refuses_to_be_called_from_inside_a_task() -> None:
    s = Scheduler()
    s.kthread_run(lambda: s.run(), "bad")
    with pytest.raises(TaskFailed, match="use schedule"):
        s.run()


def test_same_calls_give_the_same_interleaving() -> None:
    def trace_of_a_run() -> list[str]:
        s, log = Scheduler(), []
        rig = XenbusRig(s)

        def client(who: str) -> None:
            for i in range(3):
                rig.request(f"{who}{i}")
                log.append(f"{who} <- {rig.wait_reply()}")

        for who in ("a", "b", "c"):
            s.kthread_run(client, who, who)
        s.run()
        return log

    first = trace_of_a_run()
    assert len(first) == 9 and first == trace_of_a_run()


@pytest.mark.parametrize("flavour", ["2.6.18", "modern"])
def test_a_machine_boots_dom0_and_a_guest_on_one_os_thread(flavour: str) -> None:
    """The whole machine runs with threading.Thread unusable (the autouse fixture), as in Pyodide."""
    from xenlab.sim.machine import Machine

    with pytest.raises(RuntimeError, match="can't start new thread"):
        threading.Thread(target=lambda: None).start()
    before = threading.active_count()
    m = Machine(flavour=flavour)
    m.start_xenstored()
    guest = m.create_domU("guest", disks=1, vifs=1)
    names = {t.name for t in m.sched.tasks}
    assert {"xenwatch", "xenbus", "oxenstored"} <= names
    assert guest.domid == 1 and not m.errors
    assert threading.active_count() == before
    m.shutdown()
    assert all(t.state == "done" for t in m.sched.tasks)

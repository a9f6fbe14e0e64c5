"""A deterministic scheduler for kernel threads and daemons, on one OS thread.

Theory of operation
-------------------
Kernel code in xenlab is written the way the kernel writes it: a thread calls
``wait_event(wq, condition)`` and sleeps; an interrupt handler calls ``wake_up(wq)``.
Everything runs on the caller's OS thread (no ``threading``: the lab runs in Pyodide too),
one task at a time, in FIFO order, so the same seed and the same calls give the same
interleaving, every run. Two shapes of task make that possible without threads:

* **Loop kthreads run as handlers.** Most kernel threads are ``for (;;) { wait_event(wq,
  cond); body }``. Such a thread is created with its wait:
  ``kthread_run(xenwatch_thread, "xenwatch", kernel, wait=(wq, cond))``, and *fn* is one
  turn of the loop body. When the task is picked from the runqueue it runs
  ``while cond() and not kthread_should_stop(): fn(*args)``, then goes to sleep on *wq*;
  ``wake_up(wq)`` makes it runnable again. A thread whose condition is still true loops
  without yielding, as the threaded code would. A turn ends the thread early with
  ``kthread_exit()``; another task ends it with ``kthread_stop(task)``. Without ``wait=``
  the task is one-shot: *fn* runs once when picked (a work item), then the task is done.
  A loop whose body comes first (``for (;;) { body; wait }``) is written with a condition
  that is true until the first turn has run.

* **A blocking call deep in a body drives the scheduler (nested).** ``wait_event`` called
  inside a running task, whose condition is false, puts the task to sleep on *wq* and runs
  other runnable tasks on the same Python stack until the task is woken and its condition
  holds. A woken task that is waiting nested is queued like any woken task (as a marker of
  its place) and resumes when that place comes up, in FIFO order (see "Order"). ``msleep``
  and ``schedule`` do the same with a timer and with the task's own place in the queue.
  Called from outside any task (a test, a notebook, the boot code), ``wait_event`` drives
  the scheduler too, re-checking the condition after every task that ran. If nothing can
  run while the condition is false, the wait raises ``Deadlock`` naming the sleepers.

Order. With threads, a woken task ran when its turn in the FIFO came. On one stack a task
already on it (running, or waiting nested) is never re-entered: when its place in the queue
comes up while frames above it still run, it is skipped and keeps that place. To stay close
to the threaded order, while a frame below is woken (a task's place was skipped, or the
caller outside finds its condition true) a drive starts no new non-nesting task if it has
anything else to do, and a loop task that resumed ahead of such a frame yields between two
turns (it goes back to the runqueue instead of starting its next turn).

The nesting hazard and the rule that avoids it
----------------------------------------------
With threads, a task waiting for a sleeping lock just sleeps until the holder (another
thread) releases it. On one stack, if task A holds a lock (2.6.18's ``xs_talkv`` holds
``request_mutex`` while it waits for its reply; xenwatch holds ``xenwatch_mutex`` while a
callback runs) and A's nested wait runs task B that needs the same lock, B's wait can never
succeed: A is below B on the stack. So:

* A task created with ``nests=True`` ("softirq-like") may run inside any wait. Use it for
  tasks whose body never waits for another process-context task: the xenbus ring thread,
  blkback's ring thread, the simulated xenstored. They wait only for what interrupts and
  other nesting tasks provide, and take no lock a process-context task holds while waiting.
* Any other task runs only from a wait where no frame on the stack (the caller outside any
  task included) holds a sleeping lock; until then it keeps its place in the runqueue. The
  rule is global, not per kernel: letting dom0's xenwatch run inside domU's locked wait is
  safe, but it let whole callbacks of one kernel jump ahead of the other's and changed what
  a frontend saw of its backend. Sleeping locks tell the scheduler what the current frame
  holds with ``lock_acquired(lock)`` / ``lock_released(lock)`` (``linux/locking.py`` does it
  for mutexes and for rw_semaphores taken for writing; readers never block readers).

What the stack cannot do: a task waiting nested cannot be set aside. If its condition
can never hold while it is on the stack (it waits for something only a frame below it
would do next), the wait raises ``Deadlock``, and every task the exception unwinds is left
"hung" (``ps`` shows it; the real thread would be in state D). A task whose body raises
any other exception ends; the driver reports it as ``TaskFailed`` ("task ... failed").

Time is virtual: ``msleep`` puts the task on the timer list, and when nothing can run the
clock jumps to the earliest timer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:  # the trace is a sibling in base/; only the annotations need it
    from xenlab.base.trace import Trace


class Deadlock(RuntimeError):
    """A wait found nothing runnable while its condition was false."""


class TaskFailed(RuntimeError):
    """A task's body raised; the driver that ran it reports the task and the cause."""


class _KthreadExit(BaseException):
    """kthread_exit() inside a task: unwinds its body, the scheduler ends the task."""


@dataclass(eq=False)
class WaitQueue:
    """wait_queue_head_t: tasks sleeping until someone calls wake_up on it."""

    name: str
    sleepers: list[Task] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"WaitQueue({self.name!r}, {len(self.sleepers)} sleeping)"


@dataclass(eq=False)
class Task:
    """A kernel thread or daemon task (task_struct, as far as the lab needs one)."""

    name: str
    pid: int
    owner: str = ""
    state: str = "runnable"  # runnable | running | sleeping | done | hung
    wchan: str = ""
    fn: Callable[..., Any] | None = field(default=None, repr=False)
    args: tuple[Any, ...] = field(default=(), repr=False)
    wait: tuple[WaitQueue, Callable[[], bool]] | None = field(default=None, repr=False)
    nests: bool = False
    #: a kernel thread (False: a user process the lab runs as a task, e.g. xenstored in dom0)
    kthread: bool = True
    should_stop: bool = False
    on_stack: bool = field(default=False, repr=False)
    overtook: bool = field(default=False, repr=False)  # resumed ahead of a woken task below it
    held_locks: list[object] = field(default_factory=list, repr=False)
    key: str = field(default="", repr=False)  # "xenbus (pid 5)", made once by kthread_run


    def __repr__(self) -> str:
        return f"Task({self.name!r}, pid={self.pid}, {self.state}{' on ' + self.wchan if self.wchan else ''})"


def task_key(task: Task) -> str:
    """A task's key in its owner's "kthreads" table: "xenbus (pid 5)"."""
    return task.key or f"{task.name} (pid {task.pid})"


def task_row(task: Task) -> str | None:
    """What the "kthreads" table holds for a task: TASK_RUNNING (runnable or on a CPU) is "running",
    a sleep names its wait queue without the kernel's prefix ("sleeping on xb_waitq"); None once done."""
    state = task.state
    if state == "sleeping":
        return f"sleeping on {task.wchan.rpartition(':')[2]}"
    if state == "hung":
        return f"hung on {task.wchan.rpartition(':')[2]}"
    return None if state == "done" else "running"


class Scheduler:
    """Runs tasks one at a time in a fixed order, on the caller's thread; virtual time in ns.

    ``trace_tasks(owner, trace, source)`` makes every state change of *owner*'s tasks a step of
    *trace* on the table "<owner>/kthreads" (``task_key`` -> ``task_row``): created, asleep on a
    wait queue, woken, ended. Recording never changes what runs when.
    """

    def __init__(self, *, first_pid: int = 1) -> None:
        self.tasks: list[Task] = []
        self.runqueue: deque[Task] = deque()
        self.timers: list[tuple[int, int, Task]] = []  # (deadline_ns, seq, task)
        self.now_ns = 0
        self.switches = 0
        self._seq = 0
        self._next_pid = first_pid
        self._stack: list[Task] = []  # tasks running or waiting nested, bottom first
        self._outside_locks: list[object] = []  # held by code outside any task
        self._outside_done: Callable[[], bool] | None = None  # what the caller outside is waiting for
        self._shutdown = False
        self._traced: dict[str, tuple[Trace, str]] = {}  # owner -> (trace, source of its scheduler)

    # -- the "kthreads" tables ---------------------------------------------
    def trace_tasks(self, owner: str, trace: Trace, source: str) -> None:
        """Record the tasks of *owner* (a kernel's name) on *trace*'s "<owner>/kthreads" table."""
        self._traced[owner] = (trace, source)

    def _record(self, function: str, summary: str, rows: list[tuple[Task, str | None]],
                source: str = "") -> None:
        """One step per owner: each (task, row before) whose row changed."""
        by_owner: dict[str, list[tuple[str, str, str | None, str | None]]] = {}
        for task, before in rows:
            after = task_row(task)
            if after != before and (task.kthread and task.owner in self._traced):
                by_owner.setdefault(task.owner, []).append(
                    (f"{task.owner}/kthreads", task_key(task), before, after))
        for owner, changes in by_owner.items():
            trace, src = self._traced[owner]
            trace.record(function, summary, actor=owner, source=source or src, changes=changes)

    # -- tasks -------------------------------------------------------------
    @property
    def current(self) -> Task | None:
        """The task running this code (the top of the stack), or None outside any task."""
        return self._stack[-1] if self._stack else None

    def kthread_run(self, fn: Callable[..., Any], name: str, *args: Any, owner: str = "",
                    wait: tuple[WaitQueue, Callable[[], bool]] | None = None, nests: bool = False,
                    kthread: bool = True) -> Task:
        """kthread_run: a runnable task; fn(*args) runs once, or (wait=(wq, cond)) is one loop turn.

        *nests*: the body never waits for another process-context task, so the task may run
        inside any wait (see "The nesting hazard" in the module docstring). *kthread* False: a
        user process run as a task (a daemon); its owner's "kthreads" table leaves it out.
        """
        task = Task(name=name, pid=self._next_pid, owner=owner, fn=fn, args=args, wait=wait, nests=nests,
                    kthread=kthread, key=f"{name} (pid {self._next_pid})")
        self._next_pid += 1
        self.tasks.append(task)
        if self._shutdown:
            task.state = "done"
        else:
            self.runqueue.append(task)
            if kthread and owner in self._traced:
                self._record("kthread_run", f"{task_key(task)}: created, runnable", [(task, None)],
                             "kernel/kthread.c")
        return task

    def kthread_should_stop(self) -> bool:
        """kthread_should_stop: true once someone called kthread_stop on the current task."""
        task = self.current
        return task is not None and task.should_stop

    def kthread_stop(self, task: Task) -> None:
        """kthread_stop: the task ends before its next turn (at once, if it is not on the stack)."""
        if task.state in ("done", "hung"):
            return
        task.should_stop = True
        if not task.on_stack:  # asleep or not yet run: its loop would only see should_stop
            before = task_row(task)
            self._forget(task)
            task.state, task.wchan = "done", ""
            self._record("kthread_stop", f"{task_key(task)} stopped", [(task, before)], "kernel/kthread.c")

    def kthread_exit(self) -> NoReturn:
        """kthread_exit: end the current task now (its thread function returns)."""
        if self.current is None:
            raise RuntimeError("kthread_exit() outside a task")
        raise _KthreadExit

    def _forget(self, task: Task) -> None:
        if task in self.runqueue:
            self.runqueue.remove(task)
        self.timers = [t for t in self.timers if t[2] is not task]
        if task.wait is not None and task in task.wait[0].sleepers:
            task.wait[0].sleepers.remove(task)

    # -- locks (for linux/locking.py) --------------------------------------
    def lock_acquired(self, lock: object) -> None:
        """A sleeping lock is now held by the current frame (a task, or the caller outside any task)."""
        task = self.current
        (task.held_locks if task is not None else self._outside_locks).append(lock)

    def lock_released(self, lock: object) -> None:
        """The sleeping lock is free again (whichever frame held it)."""
        for held in [self._outside_locks, *(t.held_locks for t in self.tasks)]:
            for i, other in enumerate(held):
                if other is lock:
                    del held[i]
                    return

    def _held_back_by(self, task: Task) -> object | None:
        """The lock on the stack that keeps *task* from running nested now (None: it may run)."""
        if task.nests:
            return None
        for held in [self._outside_locks, *(t.held_locks for t in self._stack)]:
            if held:
                return held[0]
        return None

    # -- sleeping and waking -----------------------------------------------
    def wait_event(self, wq: WaitQueue, condition: Callable[[], bool]) -> None:
        """wait_event: sleep on wq until condition() is true (re-checked after every wake-up)."""
        task = self.current
        if task is None:
            self._drive(condition, None, wq.name)
            return
        if condition():
            return
        self._sleep(task, wq)

        def woken_and_true() -> bool:
            if condition():
                return True
            self._sleep(task, wq)
            return False

        self._drive(woken_and_true, task, wq.name)

    def _sleep(self, task: Task, wq: WaitQueue) -> None:
        traced = task.kthread and task.owner in self._traced
        before = task_row(task) if traced else None
        task.state, task.wchan = "sleeping", wq.name
        wq.sleepers.append(task)
        if traced:
            self._record("wait_event", f"{task_key(task)} sleeps on {wq.name.rpartition(':')[2]}",
                         [(task, before)])

    def wake_up(self, wq: WaitQueue) -> int:
        """wake_up: make every task sleeping on wq runnable; returns how many woke."""
        woken = 0
        rows: list[tuple[Task, str | None]] = []
        while wq.sleepers:
            task = wq.sleepers.pop(0)
            if task.state == "sleeping":
                if task.kthread and task.owner in self._traced:
                    rows.append((task, task_row(task)))
                task.state, task.wchan = "runnable", ""
                self.runqueue.append(task)
                woken += 1
        if rows:
            self._record("wake_up", f"{wq.name.rpartition(':')[2]}: wakes "
                         + ", ".join(task_key(t) for t, _ in rows), rows)
        return woken

    def schedule(self) -> None:
        """schedule: let the other runnable tasks run first (outside a task: run until idle)."""
        task = self.current
        if task is None:
            self.run()
            return
        task.state = "runnable"
        self.runqueue.append(task)
        self._drive(lambda: True, task, "schedule")

    def msleep(self, ms: int) -> None:
        """msleep: sleep for ms milliseconds of virtual time."""
        deadline = self.now_ns + ms * 1_000_000
        task = self.current
        if task is None:
            self._drive(lambda: self.now_ns >= deadline, None, "a timer", advance_to=deadline)
            return
        self._seq += 1
        self.timers.append((deadline, self._seq, task))
        self.timers.sort(key=lambda t: (t[0], t[1]))
        before = task_row(task)
        task.state, task.wchan = "sleeping", "msleep"
        self._record("msleep", f"{task_key(task)} sleeps {ms} ms", [(task, before)])
        self._drive(lambda: True, task, "a timer")

    # -- running -----------------------------------------------------------
    def _next(self, me: Task | None) -> Task | None:
        """Take the first entry of the runqueue this frame may act on: a task to run, or *me*."""
        below_woken = me is not None and self._outside_woken()
        deferred: Task | None = None
        for task in list(self.runqueue):
            if task.state in ("done", "hung"):
                self.runqueue.remove(task)
            elif task is me:
                self.runqueue.remove(task)
                task.overtook = task.overtook or below_woken
                return task
            elif task.on_stack:
                below_woken = True  # woken, but below us: keeps its place until we return
            elif self._held_back_by(task) is not None:
                continue
            elif below_woken and not task.nests:
                deferred = deferred or task  # let the woken frame below go first, if we can
            else:
                self.runqueue.remove(task)
                return task
        if deferred is not None:
            self.runqueue.remove(deferred)
        return deferred

    def _outside_woken(self) -> bool:
        """The caller outside any task waits, and its condition holds (with threads it would run next)."""
        return self._outside_done is not None and self._outside_done()

    def _below_woken(self, task: Task) -> bool:
        """A frame below *task* on the stack was woken (it would run before *task*'s next turn)."""
        below = self._stack[:self._stack.index(task)]
        return any(t.state == "runnable" for t in below) or self._outside_woken()

    def _run_task(self, task: Task) -> None:
        """Run one task picked from the runqueue: its one shot, or its loop turns until it sleeps."""
        self.switches += 1
        task.state, task.wchan = "running", ""
        task.on_stack = True
        self._stack.append(task)
        try:
            assert task.fn is not None
            if task.wait is None:
                task.fn(*task.args)
            else:
                wq, cond = task.wait
                while not task.should_stop and cond():
                    task.state = "running"
                    task.fn(*task.args)
                    if task.overtook and self._below_woken(task):
                        # it resumed ahead of a woken task below it: let that one go first now
                        task.overtook = False
                        task.state = "runnable"
                        self.runqueue.append(task)
                        return
                    task.overtook = False
                if not task.should_stop:
                    self._sleep(task, wq)
                    return
            task.state = "done"
            self._record("do_exit", f"{task_key(task)} returned", [(task, "running")])
        except _KthreadExit:
            before = task_row(task)
            task.state, task.wchan = "done", ""
            self._record("do_exit", f"{task_key(task)}: kthread_exit", [(task, before)])
        except (Deadlock, TaskFailed):
            before = task_row(task)
            task.state = "hung"  # unwound by a wait that could not finish; keeps its wchan
            self._record("hung", f"{task_key(task)} can never be woken", [(task, before)])
            raise
        except BaseException as exc:
            before = task_row(task)
            task.state, task.wchan = "done", ""
            self._record("do_exit", f"{task_key(task)} failed", [(task, before)])
            raise TaskFailed(f"task {task.name} (pid {task.pid}) failed: {exc!r}") from exc
        finally:
            self._stack.pop()
            task.on_stack = False

    def _fire_timers(self, up_to: int | None = None) -> bool:
        """Let virtual time pass to the earliest timer (not beyond *up_to*) and wake its tasks."""
        if not self.timers:
            return False
        deadline = self.timers[0][0]
        if up_to is not None and deadline > up_to:
            return False
        self.now_ns = max(self.now_ns, deadline)
        while self.timers and self.timers[0][0] <= self.now_ns:
            _, _, task = self.timers.pop(0)
            if task.state == "sleeping":
                before = task_row(task)
                task.state, task.wchan = "runnable", ""
                self.runqueue.append(task)
                self._record("wake_up_process", f"{task_key(task)}: its timer fired", [(task, before)])
        return True

    def _drive(self, done: Callable[[], bool], me: Task | None, what: str,
               advance_to: int | None = None) -> None:
        """Run other tasks on this stack until done() holds.

        Outside a task (*me* None) done() is checked after every task that ran; inside one,
        when *me*'s own place comes up in the runqueue (it was woken, or its timer fired).
        """
        if me is None:
            self._outside_done = done
        try:
            self._drive_loop(done, me, what, advance_to)
        finally:
            if me is None:
                self._outside_done = None

    def _drive_loop(self, done: Callable[[], bool], me: Task | None, what: str,
                    advance_to: int | None) -> None:
        while True:
            if me is None and done():
                return
            task = self._next(me)
            if task is not None and task is me:
                if done():
                    task.state = "running"
                    return
                continue
            if task is not None:
                self._run_task(task)
                continue
            if self._fire_timers(advance_to):
                continue
            if advance_to is not None and self.now_ns < advance_to:
                self.now_ns = advance_to
                continue
            raise Deadlock(self._deadlock_message(me, what))

    def _deadlock_message(self, me: Task | None, what: str) -> str:
        who = f"{me.name} (pid {me.pid}) " if me is not None else ""
        sleeping = ", ".join(f"{t.name} on {t.wchan}" for t in self.tasks if t.state == "sleeping")
        text = f"{who}waiting on {what} but nothing can run (sleeping: {sleeping or 'none'})"
        held = []
        for task in self.runqueue:
            lock = self._held_back_by(task) if task.state == "runnable" and not task.on_stack else None
            if lock is not None:
                held.append(f"{task.name} (needs no {getattr(lock, 'name', lock)} held below it)")
        return text + (f"; held back: {', '.join(held)}" if held else "")

    def run(self, max_switches: int = 1_000_000, *, timers: bool = False) -> int:
        """Run runnable tasks until none is runnable; with timers=True also let virtual time pass."""
        if self.current is not None:
            raise RuntimeError("Scheduler.run() called from inside a task; use schedule()")
        ran = 0
        while ran < max_switches:
            task = self._next(None)
            if task is None:
                if timers and self._fire_timers():
                    continue
                break
            self._run_task(task)
            ran += 1
        return ran

    def shutdown(self) -> None:
        """Stop every task: nothing runs any more (there are no threads to end)."""
        self._shutdown = True
        for task in self.tasks:
            if not task.on_stack and task.state not in ("done", "hung"):
                before = task_row(task)
                self._forget(task)
                task.state, task.wchan = "done", ""
                self._record("kthread_stop", f"{task_key(task)} stopped (shutdown)", [(task, before)],
                             "kernel/kthread.c")
        self.runqueue.clear()
        self.timers.clear()

    def ps(self) -> list[str]:
        """One line per task: pid, state, name (what `ps` would show, minus real pids)."""
        return [f"{t.pid:5d} {t.state:9s} {t.name}" for t in self.tasks]

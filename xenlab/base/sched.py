"""A deterministic cooperative scheduler for kernel threads and daemons.

Theory of operation
-------------------
Kernel code in xenlab is written the way the kernel writes it: a thread calls
``wait_event(wq, condition)`` and sleeps; an interrupt handler calls ``wake_up(wq)``.
To keep that style *and* be deterministic, each task runs on its own Python thread but
exactly one thread runs at any moment: the scheduler hands a baton to one runnable task
at a time, in FIFO order, and the task hands it back when it sleeps, yields or ends.
The same seed and the same calls therefore give the same interleaving, every run.

Code that is not inside a task (a test, a notebook cell) may also call ``wait_event``:
it then drives the scheduler itself until the condition holds, or raises ``Deadlock``
naming the sleeping tasks if nothing can run any more.

Time is virtual: ``msleep`` puts a task on the timer list, and when nothing is
runnable the clock jumps to the earliest timer.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Deadlock(RuntimeError):
    """wait_event outside a task found nothing runnable while its condition was false."""


class TaskExit(BaseException):
    """Raised inside a sleeping task when the scheduler shuts down."""


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
    state: str = "runnable"  # runnable | sleeping | done
    wchan: str = ""
    error: BaseException | None = None
    _go: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"Task({self.name!r}, pid={self.pid}, {self.state}{' on ' + self.wchan if self.wchan else ''})"


class Scheduler:
    """Runs tasks one at a time in a fixed order; virtual time in nanoseconds."""

    def __init__(self, *, first_pid: int = 1) -> None:
        self.tasks: list[Task] = []
        self.runqueue: deque[Task] = deque()
        self.timers: list[tuple[int, int, Task]] = []  # (deadline_ns, seq, task)
        self.now_ns = 0
        self.switches = 0
        self._seq = 0
        self._next_pid = first_pid
        self._back = threading.Event()
        self._local = threading.local()
        self._shutdown = False

    # -- tasks -------------------------------------------------------------
    @property
    def current(self) -> Task | None:
        """The task whose thread is running this code, or None outside any task."""
        return getattr(self._local, "task", None)

    def kthread_run(self, fn: Callable[..., Any], name: str, *args: Any, owner: str = "") -> Task:
        """kthread_run: create a task that runs fn(*args) and make it runnable."""
        task = Task(name=name, pid=self._next_pid, owner=owner)
        self._next_pid += 1

        def body() -> None:
            self._local.task = task
            task._go.wait()
            task._go.clear()
            try:
                if not self._shutdown:
                    fn(*args)
            except TaskExit:
                pass
            except BaseException as exc:  # surfaced by run()
                task.error = exc
            finally:
                task.state = "done"
                task.wchan = ""
                self._back.set()

        task._thread = threading.Thread(target=body, name=f"xenlab:{name}", daemon=True)
        self.tasks.append(task)
        self.runqueue.append(task)
        task._thread.start()
        return task

    def _switch_out(self, task: Task) -> None:
        """Give the baton back to the scheduler and wait to be chosen again."""
        self._back.set()
        task._go.wait()
        task._go.clear()
        if self._shutdown:
            raise TaskExit

    # -- sleeping and waking -----------------------------------------------
    def wait_event(self, wq: WaitQueue, condition: Callable[[], bool]) -> None:
        """wait_event: sleep on wq until condition() is true (re-checked after every wake-up)."""
        task = self.current
        if task is None:
            self._drive_until(condition, wq)
            return
        while not condition():
            task.state = "sleeping"
            task.wchan = wq.name
            wq.sleepers.append(task)
            self._switch_out(task)

    def wake_up(self, wq: WaitQueue) -> int:
        """wake_up: make every task sleeping on wq runnable; returns how many woke."""
        woken = 0
        while wq.sleepers:
            task = wq.sleepers.pop(0)
            if task.state == "sleeping":
                task.state = "runnable"
                task.wchan = ""
                self.runqueue.append(task)
                woken += 1
        return woken

    def schedule(self) -> None:
        """schedule: let the other runnable tasks run first (no-op outside a task)."""
        task = self.current
        if task is None:
            self.run()
            return
        self.runqueue.append(task)
        self._switch_out(task)

    def msleep(self, ms: int) -> None:
        """msleep: sleep for ms milliseconds of virtual time."""
        deadline = self.now_ns + ms * 1_000_000
        task = self.current
        if task is None:
            self._drive_until(lambda: self.now_ns >= deadline, None, advance_to=deadline)
            return
        self._seq += 1
        self.timers.append((deadline, self._seq, task))
        self.timers.sort(key=lambda t: (t[0], t[1]))
        task.state = "sleeping"
        task.wchan = "msleep"
        self._switch_out(task)

    # -- running -----------------------------------------------------------
    def _run_one(self, task: Task) -> None:
        self.switches += 1
        self._back.clear()
        task._go.set()
        self._back.wait()
        if task.error is not None:
            err, task.error = task.error, None
            raise RuntimeError(f"task {task.name} (pid {task.pid}) failed: {err!r}") from err

    def _fire_timers(self, up_to: int | None = None) -> bool:
        if not self.timers:
            return False
        deadline = self.timers[0][0]
        if up_to is not None and deadline > up_to:
            return False
        self.now_ns = max(self.now_ns, deadline)
        while self.timers and self.timers[0][0] <= self.now_ns:
            _, _, task = self.timers.pop(0)
            task.state = "runnable"
            task.wchan = ""
            self.runqueue.append(task)
        return True

    def run(self, max_switches: int = 1_000_000, *, timers: bool = False) -> int:
        """Run runnable tasks until none is runnable; with timers=True also let virtual time pass."""
        if self.current is not None:
            raise RuntimeError("Scheduler.run() called from inside a task; use schedule()")
        done = 0
        while done < max_switches:
            if not self.runqueue and not (timers and self._fire_timers()):
                break
            if not self.runqueue:
                continue
            task = self.runqueue.popleft()
            if task.state == "done":
                continue
            task.state = "running"
            self._run_one(task)
            done += 1
        return done

    def _drive_until(self, condition: Callable[[], bool], wq: WaitQueue | None,
                     advance_to: int | None = None) -> None:
        while not condition():
            if self.runqueue:
                task = self.runqueue.popleft()
                if task.state != "done":
                    task.state = "running"
                    self._run_one(task)
                continue
            if self._fire_timers(advance_to):
                continue
            if advance_to is not None and self.now_ns < advance_to:
                self.now_ns = advance_to
                continue
            sleeping = ", ".join(f"{t.name} on {t.wchan}" for t in self.tasks if t.state == "sleeping")
            where = wq.name if wq else "a timer"
            raise Deadlock(f"waiting on {where} but nothing can run (sleeping: {sleeping or 'none'})")

    def shutdown(self) -> None:
        """Stop every task: sleeping tasks get TaskExit; threads end."""
        self._shutdown = True
        for task in self.tasks:
            if task.state != "done" and task._thread is not None:
                self._back.clear()
                task._go.set()
                self._back.wait(timeout=1.0)

    def ps(self) -> list[str]:
        """One line per task: pid, state, name (what `ps` would show, minus real pids)."""
        return [f"{t.pid:5d} {t.state:9s} {t.name}" for t in self.tasks]

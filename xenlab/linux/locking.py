"""Sleeping locks on the deterministic scheduler: struct mutex and struct rw_semaphore.

Both sleep with ``sched.wait_event`` on their own wait queue, so a contended lock shows
up in ``sched.ps()`` as a task sleeping on "<name>". Called from outside any task (a
test, a notebook, boot code) a contended lock drives the scheduler until it is free, or
raises ``Deadlock`` if it never can be (e.g. the caller already holds it).

The scheduler runs waiting tasks' successors on the same stack, so it must know which
frame holds a lock (see "The nesting hazard" in ``xenlab.base.sched``): a mutex, or a
rw_semaphore taken for writing, is reported with ``sched.lock_acquired`` / ``lock_released``.
A read hold is not reported: readers never block readers, and no task in the lab takes one
of these rw_semaphores for writing.

A lock made with ``trace=`` and ``table=`` (a kernel's "<kernel>/locks") records every
acquire and release as a step of that kernel, one row per lock: "free" (the table's initial
value), "held by xenbus (pid 5)", "2 readers", "write-held by ...". ``init_row()`` is the row
of its mutex_init / DEFINE_MUTEX, which the kernel records where its code does that.
A ``SpinLock`` never sleeps: it only records (the lab runs one task at a time, so it is never
contended).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.base.sched import Scheduler, Task, WaitQueue, task_key

if TYPE_CHECKING:
    from xenlab.base.trace import Trace

OUTSIDE = "<outside any task>"
#: who holds a lock: a task, or OUTSIDE for code run from outside any task
Holder = Task | str
#: what a "<kernel>/locks" row holds for a lock nobody holds (the table's initial value)
FREE = "free"


def _me(sched: Scheduler) -> Holder:
    return sched.current or OUTSIDE


def holder_text(holder: Holder) -> str:
    """Who holds a lock, as its row says: "xenbus (pid 5)", or the caller outside any kthread."""
    return task_key(holder) if isinstance(holder, Task) else "the caller (no kthread)"


class _Recorded:
    """The recording half of a lock: its row in "<kernel>/locks" and the step of each change."""

    name: str
    trace: Trace | None
    table: str
    source: str
    key: str
    actor: str

    def _setup(self, trace: Trace | None, table: str, source: str) -> None:
        self.trace, self.table, self.source = trace, table, source
        #: the lock's key in its table: its name without the kernel's prefix ("request_mutex")
        self.key = self.name.rpartition(":")[2]
        self.actor = table.partition("/")[0]

    def row(self) -> str:
        """The lock's row now ("free", "held by ...")."""
        raise NotImplementedError

    def init_row(self) -> tuple[str, str, None, str]:
        """The row of its initialisation (mutex_init, DEFINE_MUTEX, ...): absent -> "free"."""
        return (self.table, self.key, None, FREE)

    def _rec(self, function: str, before: str) -> None:
        if self.trace is not None:
            after = self.row()
            self.trace.record(function, f"{self.key}: {after}", actor=self.actor, source=self.source,
                              changes=[(self.table, self.key, before, after)])


class Mutex(_Recorded):
    """struct mutex: mutex_lock sleeps until the owner calls mutex_unlock (kernel/locking/mutex.c)."""

    def __init__(self, sched: Scheduler, name: str, *, trace: Trace | None = None, table: str = "",
                 source: str = "kernel/locking/mutex.c") -> None:
        self.sched = sched
        self.name = name
        self.owner: Holder | None = None
        self.wq = WaitQueue(name)
        self._setup(trace, table, source)

    def row(self) -> str:
        """"free" or "held by <task>"."""
        return FREE if self.owner is None else f"held by {holder_text(self.owner)}"

    def lock(self) -> None:
        """mutex_lock: sleep until free, then own it."""
        self.sched.wait_event(self.wq, lambda: self.owner is None)
        self.owner = _me(self.sched)
        self.sched.lock_acquired(self)
        if self.trace is not None:
            self._rec("mutex_lock", FREE)

    def unlock(self) -> None:
        """mutex_unlock: release and wake the sleepers."""
        before = self.row() if self.trace is not None else FREE
        self.owner = None
        self.sched.lock_released(self)
        if self.trace is not None:
            self._rec("mutex_unlock", before)
        self.sched.wake_up(self.wq)

    def is_locked(self) -> bool:
        """mutex_is_locked."""
        return self.owner is not None

    def __repr__(self) -> str:
        return f"Mutex({self.name!r}, {'locked' if self.owner is not None else 'unlocked'})"


class RwSem(_Recorded):
    """struct rw_semaphore: many readers or one writer (kernel/locking/rwsem.c)."""

    def __init__(self, sched: Scheduler, name: str, *, trace: Trace | None = None, table: str = "",
                 source: str = "kernel/locking/rwsem.c") -> None:
        self.sched = sched
        self.name = name
        self.readers = 0
        self.writer: Holder | None = None
        self.wq = WaitQueue(name)
        self._setup(trace, table, source)

    def row(self) -> str:
        """"free", "1 reader", "3 readers" or "write-held by <task>"."""
        if self.writer is not None:
            return f"write-held by {holder_text(self.writer)}"
        if self.readers:
            return f"{self.readers} reader{'s' if self.readers != 1 else ''}"
        return FREE

    def down_read(self) -> None:
        """down_read: sleep while a writer holds it, then count one more reader."""
        self.sched.wait_event(self.wq, lambda: self.writer is None)
        before = self.row()
        self.readers += 1
        self._rec("down_read", before)

    def up_read(self) -> None:
        """up_read: one reader fewer; wake a waiting writer."""
        before = self.row()
        self.readers -= 1
        self._rec("up_read", before)
        self.sched.wake_up(self.wq)

    def down_write(self) -> None:
        """down_write: sleep until no reader and no writer, then own it."""
        self.sched.wait_event(self.wq, lambda: self.writer is None and self.readers == 0)
        self.writer = _me(self.sched)
        self.sched.lock_acquired(self)
        self._rec("down_write", FREE)

    def up_write(self) -> None:
        """up_write: release and wake everyone waiting."""
        before = self.row()
        self.writer = None
        self.sched.lock_released(self)
        self._rec("up_write", before)
        self.sched.wake_up(self.wq)

    def __repr__(self) -> str:
        return f"RwSem({self.name!r}, readers={self.readers}, writer={'yes' if self.writer else 'no'})"


class SpinLock(_Recorded):
    """spinlock_t: spin_lock / spin_unlock around a short section that never sleeps (kernel/spinlock.c).

    One task runs at a time and a holder never sleeps, so the lock is never found taken: it
    only records who holds it, which is what a learner steps through.
    """

    def __init__(self, sched: Scheduler, name: str, *, trace: Trace | None = None, table: str = "",
                 source: str = "kernel/spinlock.c") -> None:
        self.sched = sched
        self.name = name
        self.owner: Holder | None = None
        self._setup(trace, table, source)

    def row(self) -> str:
        """"free" or "held by <task>"."""
        return FREE if self.owner is None else f"held by {holder_text(self.owner)}"

    def lock(self) -> None:
        """spin_lock (held already only after a holder panicked: then it is simply taken over)."""
        before = self.row()
        self.owner = _me(self.sched)
        self._rec("spin_lock", before)

    def unlock(self) -> None:
        """spin_unlock."""
        before = self.row()
        self.owner = None
        self._rec("spin_unlock", before)

    def __repr__(self) -> str:
        return f"SpinLock({self.name!r}, {'locked' if self.owner is not None else 'unlocked'})"

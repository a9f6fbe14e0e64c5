"""Sleeping locks on the deterministic scheduler: struct mutex and struct rw_semaphore.

Both sleep with ``sched.wait_event`` on their own wait queue, so a contended lock shows
up in ``sched.ps()`` as a task sleeping on "<name>". Called from outside any task (a
test, a notebook, boot code) a contended lock drives the scheduler until it is free, or
raises ``Deadlock`` if it never can be (e.g. the caller already holds it).
"""

from __future__ import annotations

from xenlab.base.sched import Scheduler, Task, WaitQueue

OUTSIDE = "<outside any task>"
#: who holds a lock: a task, or OUTSIDE for code run from outside any task
Holder = Task | str


def _me(sched: Scheduler) -> Holder:
    return sched.current or OUTSIDE


class Mutex:
    """struct mutex: mutex_lock sleeps until the owner calls mutex_unlock (kernel/locking/mutex.c)."""

    def __init__(self, sched: Scheduler, name: str) -> None:
        self.sched = sched
        self.name = name
        self.owner: Holder | None = None
        self.wq = WaitQueue(name)

    def lock(self) -> None:
        """mutex_lock: sleep until free, then own it."""
        self.sched.wait_event(self.wq, lambda: self.owner is None)
        self.owner = _me(self.sched)

    def unlock(self) -> None:
        """mutex_unlock: release and wake the sleepers."""
        self.owner = None
        self.sched.wake_up(self.wq)

    def is_locked(self) -> bool:
        """mutex_is_locked."""
        return self.owner is not None

    def __repr__(self) -> str:
        return f"Mutex({self.name!r}, {'locked' if self.owner is not None else 'unlocked'})"


class RwSem:
    """struct rw_semaphore: many readers or one writer (kernel/locking/rwsem.c)."""

    def __init__(self, sched: Scheduler, name: str) -> None:
        self.sched = sched
        self.name = name
        self.readers = 0
        self.writer: Holder | None = None
        self.wq = WaitQueue(name)

    def down_read(self) -> None:
        """down_read: sleep while a writer holds it, then count one more reader."""
        self.sched.wait_event(self.wq, lambda: self.writer is None)
        self.readers += 1

    def up_read(self) -> None:
        """up_read: one reader fewer; wake a waiting writer."""
        self.readers -= 1
        self.sched.wake_up(self.wq)

    def down_write(self) -> None:
        """down_write: sleep until no reader and no writer, then own it."""
        self.sched.wait_event(self.wq, lambda: self.writer is None and self.readers == 0)
        self.writer = _me(self.sched)

    def up_write(self) -> None:
        """up_write: release and wake everyone waiting."""
        self.writer = None
        self.sched.wake_up(self.wq)

    def __repr__(self) -> str:
        return f"RwSem({self.name!r}, readers={self.readers}, writer={'yes' if self.writer else 'no'})"

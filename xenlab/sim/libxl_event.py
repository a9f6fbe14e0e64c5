"""libxl's event loop as `xl create` drives it: xenstore watches, device-state waits, the hotplug
children and the multidev that waits for a group of devices (tools/libs/light/libxl_event.c,
libxl_aoutils.c, libxl_fork.c, libxl_device.c).

Theory of operation
-------------------
xl is one thread inside libxl's event loop (``libxl__ao_inprogress`` -> ``eventloop_iteration``:
poll, then ``afterpoll_internal``). While a domain is created it waits for three things:

* **xenstore watches** (``libxl__ev_xswatch``). Each takes a slot of ``CTX->watch_slots`` and
  the token ``"<slot>/<counter>"`` (the counter is ``CTX->watch_counter++``, printed in hex).
  The slot array grows by four and its free list is a stack (``XEN_SLIST_INSERT_HEAD``), so a
  fresh context hands out slots 3, 2, 1, 0, and a deregistered slot goes back on top.
  xenstored's events queue up in libxenstore's ``watch_list`` in arrival order
  (``list_add_tail``); ``watchfd_callback`` takes them oldest first (``xs_check_watch``) until
  none is left and calls the slot's callback, skipping an event whose slot is empty or whose
  counter is not the watch's ("empty slot": a watch already gone).
* **device states** (``libxl__ev_devstate_wait``, an xswait): a watch on a backend's ``state``;
  each event re-reads the node; once it holds the wanted state the watch goes and the callback
  runs. The first event is the one xenstored fires when the watch is set.
* **child processes** (``libxl__ev_child_fork``): the hotplug scripts. libxl forks, goes back
  to its loop, and hears of the exit through SIGCHLD (``childproc_reaped`` -> the death
  callback).

A real dom0 runs the scripts libxl forked at the same time. Which of them takes the block
script's lock first (and so `losetup -f`'s lowest free loop device), or joins the bridge
first, is a race decided by dom0's scheduler, not by libxl: real runs show different orders
(tests/captures/README.md). The forks themselves come in the order the watch events arrive,
which is config order (the traced 3-disk run's `xl -vvv` log). The lab runs dom0's user
processes one at a time, each to its exit, in the order they were forked: the order they
would finish in if all ran at the same speed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xenlab.sim.xsclient import XsError

if TYPE_CHECKING:
    from xenlab.sim.daemons import SocketClient
    from xenlab.sim.machine import Machine

SRC_EVENT = "tools/libs/light/libxl_event.c"
SRC_FORK = "tools/libs/light/libxl_fork.c"
SRC_DEVICE = "tools/libs/light/libxl_device.c"
ERROR_TIMEDOUT = -21  # libxl_types.idl: ERROR_TIMEDOUT
ERROR_INVAL = -6
MAX_IDLE_TURNS = 50


@dataclass
class XsWatch:
    """libxl__ev_xswatch: a watch in a slot, with the counter that makes its token unique."""

    path: str
    callback: Callable[[str, str], None]  # (watch path, event path)
    slotnum: int = -1
    counterval: int = 0


@dataclass
class XsWait:
    """libxl__xswait_state: a watch on one path with a timeout (LIBXL_INIT_TIMEOUT in xl create)."""

    path: str
    callback: Callable[[int, str | None], None]  # (rc, the node's value or None)
    watch: XsWatch


@dataclass
class Child:
    """libxl__ev_child: a forked process (its body runs when dom0 gets to it) and its death callback."""

    what: str
    run: Callable[[], int]  # the process; returns its exit status
    death: Callable[[int], None]
    pid: int = 0


@dataclass
class Multidev:
    """libxl__multidev: a group of device operations whose callback runs once all are done."""

    callback: Callable[[int], None]
    outstanding: int = 1  # libxl__multidev_begin holds one for the caller until _prepared
    rc: int = 0
    done: bool = False

    def libxl__multidev_prepare(self) -> None:
        """libxl__multidev_prepare: one more device operation in flight."""
        self.outstanding += 1

    def multidev_one_callback(self, rc: int) -> None:
        """multidev_one_callback: one operation finished; the first error is kept; the last one calls back."""
        if rc and not self.rc:
            self.rc = rc
        self.outstanding -= 1
        if self.outstanding == 0:
            self.done = True
            self.callback(self.rc)

    def libxl__multidev_prepared(self, rc: int = 0) -> None:
        """libxl__multidev_prepared: the caller has started them all (drops its own hold)."""
        self.multidev_one_callback(rc)


@dataclass
class LibxlCtx:
    """The parts of libxl_ctx that `xl create` waits on: watch slots, children, the xenstore handle."""

    m: Machine
    xs: SocketClient
    watch_slots: list[XsWatch | None] = field(default_factory=list)
    watch_freeslots: list[int] = field(default_factory=list)  # top of the stack last
    watch_counter: int = 0
    children: list[Child] = field(default_factory=list)  # forked, not yet run (fork order)
    next_pid: int = 1000
    timeouts: list[XsWait] = field(default_factory=list)  # the pending xswaits, oldest first

    def record(self, function: str, summary: str, source: str) -> None:
        """One libxl step in the machine's trace (actor toolstack)."""
        self.m.trace.record(function, summary, actor="toolstack", source=source)

    # -- xenstore watches ---------------------------------------------------------------------
    def libxl__ev_xswatch_register(self, w: XsWatch) -> None:
        """libxl__ev_xswatch_register: take a free slot (growing the array by four), xs_watch."""
        if not self.watch_freeslots:
            old = len(self.watch_slots)
            new = (old + 1) << 2
            self.watch_slots += [None] * (new - old)
            for i in range(old, new):  # XEN_SLIST_INSERT_HEAD: the last one ends on top
                self.watch_freeslots.append(i)
        w.slotnum = self.watch_freeslots.pop()
        w.counterval = self.watch_counter
        self.watch_counter += 1
        token = f"{w.slotnum}/{w.counterval:x}"
        self.xs.watch(w.path, token)
        self.watch_slots[w.slotnum] = w
        self.record("libxl__ev_xswatch_register", f"watch {w.path} token={token}: slot {w.slotnum}",
                    SRC_EVENT)

    def libxl__ev_xswatch_deregister(self, w: XsWatch) -> None:
        """libxl__ev_xswatch_deregister: xs_unwatch, the slot back on top of the free list."""
        if w.slotnum < 0:
            return
        self.xs.unwatch(w.path, f"{w.slotnum}/{w.counterval:x}")
        self.watch_slots[w.slotnum] = None
        self.watch_freeslots.append(w.slotnum)
        w.slotnum = -1

    def watchfd_callback(self) -> bool:
        """watchfd_callback: every queued watch event, oldest first, to its slot's callback."""
        seen = False
        while self.xs.sock.events:
            epath, token = self.xs.sock.events.pop(0)  # xs_check_watch: list_top of watch_list
            seen = True
            slot_s, _, counter_s = token.partition("/")
            try:
                slotnum, counterval = int(slot_s), int(counter_s, 16)
            except ValueError:
                continue  # "failed to parse token"
            w = self.watch_slots[slotnum] if 0 <= slotnum < len(self.watch_slots) else None
            if w is None or w.counterval != counterval:
                continue  # "empty slot" / "counter != ...": a watch that is already gone
            if not (epath == w.path or epath.startswith(w.path.rstrip("/") + "/")):
                continue  # xs_path_is_subpath
            w.callback(w.path, epath)
        return seen

    # -- xswait: a watch plus a timeout (libxl_aoutils.c) -----------------------------------
    def libxl__xswait_start(self, path: str, callback: Callable[[int, str | None], None]) -> XsWait:
        """libxl__xswait_start: the timeout, then a watch on *path*; each event reads it for *callback*."""
        xswa = XsWait(path, callback, XsWatch(path, lambda _wpath, _epath: None))

        def xswait_xswatch_callback(_wpath: str, _epath: str) -> None:
            """xswait_xswatch_callback: read the node (None if it is gone), hand it on."""
            try:
                data: str | None = self.xs.read(path)
            except XsError:
                data = None
            callback(0, data)

        xswa.watch.callback = xswait_xswatch_callback
        self.timeouts.append(xswa)
        self.libxl__ev_xswatch_register(xswa.watch)
        return xswa

    def libxl__xswait_stop(self, xswa: XsWait) -> None:
        """libxl__xswait_stop: drop the timeout and the watch."""
        if xswa in self.timeouts:
            self.timeouts.remove(xswa)
        self.libxl__ev_xswatch_deregister(xswa.watch)

    def xswait_timeout_callback(self, xswa: XsWait) -> None:
        """xswait_timeout_callback -> xswait_report_error: stop, callback with ERROR_TIMEDOUT."""
        self.record("xswait_timeout_callback", f"xswait timeout (path={xswa.path})",
                    "tools/libs/light/libxl_aoutils.c")
        self.libxl__xswait_stop(xswa)
        xswa.callback(ERROR_TIMEDOUT, None)

    def libxl__ev_devstate_wait(self, state_path: str, wanted: int,
                                callback: Callable[[int], None]) -> None:
        """libxl__ev_devstate_wait: an xswait on *state_path* until it reads *wanted*."""
        holder: list[XsWait] = []

        def devstate_callback(rc: int, sstate: str | None) -> None:
            """devstate_callback: removed or timed out -> error; the wanted state -> done; else wait on."""
            if rc:
                self.record("devstate_callback", f"backend {state_path} wanted state {wanted} timed out",
                            SRC_EVENT)
            elif sstate is None:
                self.record("devstate_callback", f"backend {state_path} wanted state {wanted} "
                            "but it was removed", SRC_EVENT)
                rc = ERROR_INVAL
            elif int(sstate or 0) == wanted:
                self.record("devstate_callback", f"backend {state_path} wanted state {wanted} ok", SRC_EVENT)
            else:
                self.record("devstate_callback", f"backend {state_path} wanted state {wanted} "
                            f"still waiting state {int(sstate or 0)}", SRC_EVENT)
                return
            self.libxl__xswait_stop(holder[0])  # libxl__ev_devstate_cancel
            callback(rc)

        holder.append(self.libxl__xswait_start(state_path, devstate_callback))

    # -- children ---------------------------------------------------------------------------
    def libxl__ev_child_fork(self, what: str, run: Callable[[], int], death: Callable[[int], None]) -> int:
        """libxl__ev_child_fork (via libxl__async_exec_start): fork; the child runs on its own."""
        child = Child(what, run, death, self.next_pid)
        self.next_pid += 1
        self.children.append(child)
        self.record("libxl__async_exec_start", f"forking to execute: {what} (pid {child.pid})", SRC_FORK)
        return child.pid

    def childproc_reaped(self, child: Child, status: int) -> None:
        """childproc_reaped: SIGCHLD told libxl; the child's death callback runs."""
        self.record("childproc_reaped", f"pid {child.pid} ({child.what}) exited with status {status}",
                    SRC_FORK)
        child.death(status)

    # -- the loop ------------------------------------------------------------------------------
    def libxl__ao_inprogress(self, done: Callable[[], bool]) -> bool:
        """libxl__ao_inprogress: run eventloop_iteration until *done* (the ao completed).

        One iteration: dom0's kernel and daemons run until idle (the backends probe, xenstored
        serves); then xl's poll returns: the watch events first, then, when none is queued, the
        oldest forked child runs to its exit and is reaped. With nothing left to do the
        earliest timeout fires (virtual time passes, as LIBXL_INIT_TIMEOUT would).
        """
        idle = 0
        while not done():
            self.m.settle()
            if self.watchfd_callback():
                idle = 0
                continue
            if self.children:
                child = self.children.pop(0)
                status = child.run()
                self.childproc_reaped(child, status)
                idle = 0
                continue
            if idle < MAX_IDLE_TURNS and (self.m.sched.runqueue or self.m.sched.timers):
                self.m.sched.run(timers=True, max_switches=1000)
                idle += 1
                continue
            if self.timeouts:
                self.xswait_timeout_callback(self.timeouts[0])
                idle = 0
                continue
            return done()
        return True

"""KthreadView and StorePageView: a kernel's threads, wait queues, locks and work, and its store page.

``KthreadView("dom0")`` draws, after any step, what the kernel's trace tables hold:

* ``<kernel>/kthreads``: each kernel thread (``xenwatch (pid 1)``) running or sleeping on
  a wait queue (the scheduler records every sleep and wake-up), and from it each wait
  queue's sleepers (``xb_waitq``: who waits for the store ring or xenstored);
* ``<kernel>/locks``: each mutex, rw-semaphore and spinlock, free or who holds it (the
  locks record every acquire and release);
* ``<kernel>/work``: where ``probe_work`` (2.6.18) or ``xenbus_probe`` (6.1) is:
  idle, queued, running, done;
* ``<kernel>/xs_state``: the request and reply lists (2.6.18's ``reply_list``; 6.1's
  ``xb_write_list`` and ``xs_reply_list``).

``StorePageView("dom0")`` draws ``<kernel>/store_page``, the chain by which
``xen_store_interface`` reaches the page (virt -> phys -> pfn -> mfn), beside Xen's own
tables for the same page: the domain's p2m entry (``xen/dN/p2m``) and the frame's owner
(``xen/frames``, what m2p goes back from).

A row this step changed is marked '*' in the text and highlighted in the HTML.
"""

from __future__ import annotations

import re

from xenlab.views._html import esc, table, text_table
from xenlab.views.stepper import Context, TablePanel

#: the order a learner reads a kernel's sleeping locks in (the seed's first; others after, by name)
LOCK_ORDER = ("request_mutex", "response_mutex", "transaction_mutex", "watch_mutex", "xenwatch_mutex",
              "xb_write_mutex", "xs_response_mutex", "xs_watch_rwsem", "irq_mapping_update_lock")
CHAIN = ("virt", "phys", "pfn", "mfn")
_PID = re.compile(r"\(pid (\d+)\)$")


def _pid(key: str) -> int:
    m = _PID.search(key)
    return int(m.group(1)) if m else 0


def _queue(value: object) -> str:
    if value is None:
        return "(empty)"
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value) or "(empty)"
    return str(value)


class KthreadView(TablePanel):
    """``KthreadView("dom0")``: the kernel's threads and what each sleeps on, its locks, work and lists."""

    def __init__(self, kernel: str = "dom0") -> None:
        self.kernel = kernel
        self.title = f"{kernel}: kernel threads, wait queues, locks"
        self._first: dict[tuple[int, int, str], list[tuple[int, str]]] = {}  # table -> (first step, key)

    def _t(self, name: str) -> str:
        return f"{self.kernel}/{name}"

    def sections(self, ctx: Context) -> list[tuple[str, list[str], list[list[str]], list[str]]]:
        """(heading, column names, rows, marks) of each part, in the order they are drawn."""
        k = self._t
        out = []
        threads = ctx.table(k("kthreads"))
        keys = sorted(set(threads) | {key for (t, key) in ctx.changed if t == k("kthreads")}, key=_pid)
        rows, marks = [], []
        for key in keys:
            c = ctx.changed.get((k("kthreads"), key))
            state = threads.get(key, "exited" if c is not None else "")
            rows.append([str(_pid(key)), key.rsplit(" (pid", 1)[0], str(state)])
            marks.append("xl-new" if c is not None else "")
        out.append(("kernel threads", ["pid", "thread", "state"], rows, marks))
        queues: dict[str, list[str]] = {}
        for key in keys:
            state = threads.get(key, "")
            if isinstance(state, str) and state.startswith("sleeping on "):
                queues.setdefault(state.removeprefix("sleeping on "), []).append(key)
        qrows = [[wq, ", ".join(who)] for wq, who in sorted(queues.items())]
        qmarks = ["xl-new" if any((k("kthreads"), w) in ctx.changed for w in who) else ""
                  for _, who in sorted(queues.items())]
        out.append(("wait queues (who sleeps on each)", ["wait queue", "sleepers"], qrows, qmarks))
        locks = ctx.table(k("locks"))
        initial = ctx.trace.initial.get(k("locks"), "free")
        order = {n: i for i, n in enumerate(LOCK_ORDER)}
        lrows, lmarks = [], []
        for name in sorted(self._known(ctx, "locks"), key=lambda n: (order.get(n, len(order)), n)):
            c = ctx.changed.get((k("locks"), name))
            was = "" if c is None else ("new" if c.before is None else f"was {c.before}")
            lrows.append([name, str(locks.get(name, initial)), was])
            lmarks.append("xl-new" if c is not None else "")
        out.append(("locks", ["lock", "state", "this step"], lrows, lmarks))
        other, omarks = [], []
        for tname, label in (("work", "work"), ("xs_state", "list")):
            data = ctx.table(k(tname))
            init = ctx.trace.initial.get(k(tname))
            for key in self._known(ctx, tname):
                value = data.get(key, init) if tname == "work" else _queue(data.get(key))
                other.append([label, key, str(value)])
                omarks.append("xl-new" if (k(tname), key) in ctx.changed else "")
        out.append(("work and request lists", ["kind", "name", "now"], other, omarks))
        return out

    def _known(self, ctx: Context, name: str) -> list[str]:
        """Keys of the kernel's table *name* recorded at or before this step, in the order they first
        were (a free lock, an empty list stay listed once they exist, though replay leaves them out)."""
        table = self._t(name)
        stamp = (id(ctx.trace), len(ctx.trace), table)
        first = self._first.get(stamp)
        if first is None:
            seen: dict[str, int] = {}
            for step in ctx.trace.steps:
                for c in step.changes:
                    if c.table == table and c.key not in seen:
                        seen[c.key] = step.index
            first = self._first[stamp] = [(i, key) for key, i in seen.items()]
        return [key for i, key in first if i <= ctx.index]

    def text(self, ctx: Context) -> str:
        """Each part as aligned text ('*' marks a row this step changed)."""
        out = [f"[{self.kernel}]"]
        for heading, cols, rows, marks in self.sections(ctx):
            out.append(f"{heading}:" + ("" if rows else " (none)"))
            if rows:
                out.append(text_table(cols, rows, marks))
        return "\n".join(out)

    def html(self, ctx: Context) -> str:
        """The parts side by side, this step's rows highlighted."""
        cols = []
        for heading, names, rows, marks in self.sections(ctx):
            body = table(names, rows, marks) if rows else " <i>(none)</i>"
            cols.append(f"<div><b>{esc(heading)}</b>{body}</div>")
        return (f"<div class='xl-kthreads' data-kernel='{esc(self.kernel)}'><b>{esc(self.kernel)}</b>"
                f"<div class='xl-cols'>{''.join(cols)}</div></div>")


class StorePageView(TablePanel):
    """``StorePageView("dom0")``: how xen_store_interface reaches the page, and Xen's side of it."""

    def __init__(self, kernel: str = "dom0", domid: int | None = None) -> None:
        self.kernel = kernel
        if domid is None:
            domid = 0 if kernel == "dom0" else int(kernel.removeprefix("domU"))
        self.domid = domid
        self.title = f"{kernel}: the store page, virt -> phys -> pfn -> mfn"

    def rows(self, ctx: Context) -> tuple[list[list[str]], list[str]]:
        """(rows, marks): the chain's four links, then Xen's p2m entry and the frame's owner."""
        t = f"{self.kernel}/store_page"
        chain = ctx.table(t)
        rows, marks = [], []
        meaning = {"virt": "kernel virtual: the direct map (PAGE_OFFSET + phys)",
                   "phys": "pseudo-physical address (__pa)", "pfn": "phys >> PAGE_SHIFT",
                   "mfn": "machine frame (pfn_to_mfn, the p2m)"}
        for key in CHAIN:
            c = ctx.changed.get((t, key))
            value = chain.get(key)
            rows.append([key, f"{value:#x}" if isinstance(value, int) else "(not yet)", meaning[key]])
            marks.append("xl-new" if c is not None else "")
        pfn, mfn = chain.get("pfn"), chain.get("mfn")
        if isinstance(pfn, int):
            p2m = f"xen/d{self.domid}/p2m"
            got = ctx.table(p2m).get(f"{pfn:#x}")
            rows.append([f"{p2m}[{pfn:#x}]", f"{got:#x}" if isinstance(got, int) else "(none)",
                         "Xen's p2m: the same mfn" if got == mfn else "Xen's p2m"])
            marks.append("xl-new" if ctx.is_changed(p2m, f"{pfn:#x}") else "")
        if isinstance(mfn, int):
            owner = ctx.table("xen/frames").get(f"{mfn:#x}")
            rows.append([f"xen/frames[{mfn:#x}]", str(owner or "(none)"), "its owner (m2p goes back)"])
            marks.append("xl-new" if ctx.is_changed("xen/frames", f"{mfn:#x}") else "")
        return rows, marks

    def text(self, ctx: Context) -> str:
        """The chain as aligned text ('*' marks what this step set)."""
        rows, marks = self.rows(ctx)
        body = text_table(["link", "value", "what it is"], rows, marks)
        return f"[{self.kernel}] xen_store_interface:\n{body}"

    def html(self, ctx: Context) -> str:
        """The chain as a table, this step's links highlighted."""
        rows, marks = self.rows(ctx)
        chain = ctx.table(f"{self.kernel}/store_page")
        line = " &rarr; ".join(f"{k} {chain[k]:#x}" for k in CHAIN if isinstance(chain.get(k), int))
        return (f"<div class='xl-storepage' data-kernel='{esc(self.kernel)}'><b>{esc(self.kernel)}</b>: "
                "xen_store_interface "
                f"<span class='xl-muted'>{line or '(no store page yet)'}</span>"
                f"{table(['link', 'value', 'what it is'], rows, marks)}</div>")

"""TableView: a few named trace tables, row by row, as they are after the step.

For the state a lesson wants in view that has no picture of its own: ``/proc/xen``'s
entries and their modes (``dom0/proc``), the xenbus globals (``dom0/xenbus``:
``xen_store_mfn``, ``xen_store_evtchn``, ``xenbus_irq``, ``xenstored_ready``), the ring
indices (``dom0/ring``), a domain's p2m (``xen/d0/p2m``)... Rows this step changed are
marked, with the value they had before.
"""

from __future__ import annotations

from typing import Any

from xenlab.views._html import esc, table, text_table
from xenlab.views.stepper import Context, TablePanel


def _show(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 4096:
        return f"{value:#x}"
    return getattr(value, "name", None) or str(value)


class TableView(TablePanel):
    """``TableView({"/proc/xen": "dom0/proc", "xenbus globals": "dom0/xenbus"})``."""

    def __init__(self, tables: dict[str, str], *, title: str = "state",
                 keys: dict[str, list[str]] | None = None, limit: int = 12) -> None:
        self.tables = dict(tables)
        self.title = title
        self.keys = keys or {}
        self.limit = limit

    def rows(self, ctx: Context, name: str) -> tuple[list[list[str]], list[str]]:
        """(rows, marks) of one table: key, value, and what it was if this step changed it."""
        data = ctx.table(name)
        keys = self.keys.get(name) or sorted(data)
        keys = keys + [k for (t, k) in ctx.changed if t == name and k not in keys and k not in data]
        rows, marks = [], []
        for k in keys:
            c = ctx.changed.get((name, k))
            value = _show(data[k]) if k in data else "(none)"
            rows.append([k, value, f"was {_show(c.before)}" if c is not None else ""])
            marks.append("xl-new" if c is not None else "")
        if len(rows) > self.limit:
            keep = [i for i in range(len(rows)) if i < self.limit or marks[i]]
            rows, marks = [rows[i] for i in keep], [marks[i] for i in keep]
        return rows, marks

    def text(self, ctx: Context) -> str:
        """Each table as aligned text; '*' marks a row this step changed."""
        out = []
        for label, name in self.tables.items():
            rows, marks = self.rows(ctx, name)
            out.append(f"{label} ({name}):" + ("" if rows else " (empty)"))
            if rows:
                out.append(text_table(["key", "value", "this step"], rows, marks))
        return "\n".join(out)

    def html(self, ctx: Context) -> str:
        """The same tables side by side, changed rows highlighted."""
        cols = []
        for label, name in self.tables.items():
            rows, marks = self.rows(ctx, name)
            body = table(["key", "value", "this step"], rows, marks) if rows else " <i>(empty)</i>"
            cols.append(f"<div><b>{esc(label)}</b> <span class='xl-muted'>{esc(name)}</span>{body}</div>")
        return f"<div class='xl-cols'>{''.join(cols)}</div>"

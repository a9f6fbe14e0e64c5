"""StoreView: the xenstore tree with values and permissions, and the watches, per step.

Reads the tables xenstored records (``xenstored/tree``: path -> value,
``xenstored/perms``: path -> ``n0,r1``, ``xenstored/watches``: ``"<conn> <path> <token>"``).
Rows the current step changed are flagged (``*`` in text, highlighted in HTML); a
node the step removed is shown struck through. A path box narrows the tree to one
subtree; an invalid path is reported in the view, never raised.
"""

from __future__ import annotations

from typing import Any

from xenlab.views._html import esc, table, text_table
from xenlab.views.stepper import Context, TablePanel
from xenlab.xenstored.paths import is_valid_nodename

TREE, PERMS, WATCHES = "xenstored/tree", "xenstored/perms", "xenstored/watches"


class StoreView(TablePanel):
    """The store at a step: ``StoreView(path="/local/domain/1").show(trace)``."""

    title = "xenstore"

    def __init__(self, path: str = "/", *, perms: bool = True, watches: bool = True, limit: int = 80) -> None:
        self.perms = perms
        self.watches = watches
        self.limit = limit
        self.path = "/"
        self.error = ""
        self.on_change: Any = None
        self._box: Any = None
        self.set_path(path)

    def set_path(self, path: str) -> bool:
        """Show only the subtree at *path*; False (with a message in the view) if it is not a valid path."""
        path = str(path).strip() or "/"
        if path != "/" and (not path.startswith("/") or path.endswith("/") or not is_valid_nodename(path)):
            self.error = (f"{path!r} is not a valid absolute xenstore path (letters, digits and -/_@ only, "
                          "starting with /, no trailing /)")
        else:
            self.path, self.error = path, ""
        if self.on_change:
            self.on_change()
        return not self.error

    def controls(self) -> list[Any]:
        """A text box choosing the subtree."""
        import ipywidgets as W

        self._box = W.Text(value=self.path, description="path", continuous_update=False,
                           layout=W.Layout(width="260px"))
        self._box.observe(lambda ch: self.set_path(ch["new"]), names="value")
        return [self._box]

    def _in_scope(self, p: str) -> bool:
        return self.path == "/" or p == self.path or p.startswith(self.path + "/")

    def rows(self, ctx: Context) -> tuple[list[list[str]], list[str]]:
        """(rows, marks) for the tree under the chosen path, sorted by path."""
        tree, perms = ctx.table(TREE), ctx.table(PERMS)
        gone = {k for (t, k), c in ctx.changed.items() if t == TREE and c.after is None}
        paths = sorted(p for p in set(tree) | gone if self._in_scope(p))
        rows, marks = [], []
        for p in paths[: self.limit]:
            base = 0 if self.path == "/" else self.path.count("/")
            depth = (0 if p == "/" else p.count("/")) - base
            name = "/" if p == "/" else p.rsplit("/", 1)[1]
            label = "  " * depth + name
            if p in gone:
                rows.append([label, "(removed)", ""])
                marks.append("xl-gone")
                continue
            row = [label, f'"{tree[p]}"']
            if self.perms:
                row.append(perms.get(p, ""))
            rows.append(row)
            changed = ctx.is_changed(TREE, p) or ctx.is_changed(PERMS, p)
            marks.append("xl-new" if changed else "")
        if len(paths) > self.limit:
            rows.append([f"... {len(paths) - self.limit} more nodes", "", ""][: 3 if self.perms else 2])
            marks.append("")
        return rows, marks

    def watch_rows(self, ctx: Context) -> tuple[list[list[str]], list[str]]:
        """(rows, marks) of the watches: connection, path, token."""
        w = ctx.table(WATCHES)
        gone = {k for (t, k), c in ctx.changed.items() if t == WATCHES and c.after is None}
        rows, marks = [], []
        for key in sorted(set(w) | gone):
            conn, _, rest = key.partition(" ")
            path, _, token = rest.partition(" ")
            rows.append([conn, path, token])
            marks.append("xl-gone" if key in gone else ("xl-new" if ctx.is_changed(WATCHES, key) else ""))
        return rows, marks

    def _headers(self) -> list[str]:
        return ["node", "value", "perms"] if self.perms else ["node", "value"]

    def text(self, ctx: Context) -> str:
        """The tree (and watches) as stable text."""
        out = [f"! {self.error}"] if self.error else []
        rows, marks = self.rows(ctx)
        head = f"tree under {self.path}: {len(rows)} rows" if rows else f"no nodes under {self.path} yet"
        out.append(head)
        if rows:
            out.append(text_table(self._headers(), rows, marks))
        if self.watches:
            wr, wm = self.watch_rows(ctx)
            out.append(f"watches: {len(wr)}" if wr else "watches: none")
            if wr:
                out.append(text_table(["connection", "path", "token"], wr, wm))
        return "\n".join(out)

    def html(self, ctx: Context) -> str:
        """The tree (and watches) as HTML tables with this step's changes highlighted."""
        out = [f"<div class='xl-err'>{esc(self.error)}</div>"] if self.error else []
        rows, marks = self.rows(ctx)
        empty = f"<i>no nodes under {esc(self.path)} yet</i>"
        out.append(table(self._headers(), rows, marks) if rows else empty)
        if self.watches:
            wr, wm = self.watch_rows(ctx)
            out.append("<b>watches</b>" + (table(["connection", "path", "token"], wr, wm) if wr else " none"))
        return "".join(out)

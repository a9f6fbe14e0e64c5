"""IrqView: a guest's IRQ space and event channels, and each domain's port table, per step.

Reads what the IRQ layer and the hypervisor record: every ``<kernel>/irq*`` table keyed
by IRQ number (binding, bindcount, handlers...), ``<kernel>/evtchn_to_irq`` (port ->
IRQ) and every ``xen/d<N>/*`` table keyed by port (state, remote end, pending, mask...).
Columns come from the tables actually recorded, so the view follows the model. Each IRQ
shows the step at which it was last allocated; the DYNIRQ range of 2.6.18 shows how
full it is and says so when it is exhausted.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from xenlab.views._html import esc, table, text_table
from xenlab.views.stepper import Context, TablePanel

if TYPE_CHECKING:
    from xenlab.linux.kernel import Kernel


def _num(key: str) -> int | None:
    try:
        return int(key)
    except ValueError:
        return None


FREE = (None, -1, 0, "", ())


def _live(value: Any) -> bool:
    """True if a row value means "in use" (the kernel's arrays use -1/0 for free slots)."""
    return not any(value is f or (type(value) is type(f) and value == f) for f in FREE)


def _fmt(value: Any, table: str = "") -> str:
    if table.endswith("/irq_info") and isinstance(value, int):
        from xenlab.linux.xenlinux import evtchn  # 2.6.18 packs type<<24 | index<<16 | port

        t = evtchn.type_from_irq_info(value)
        name = evtchn.IRQT_NAMES_L18[t] if t < len(evtchn.IRQT_NAMES_L18) else str(t)
        return (f"{name} idx {evtchn.index_from_irq_info(value)} port {evtchn.evtchn_from_irq_info(value)}"
                if value else "IRQT_UNBOUND")
    if table.endswith("/irq_info") and isinstance(value, (tuple, list)) and len(value) == 5:
        kind, port, cpu, refcnt, index = value  # modern: (type, evtchn, cpu, refcnt, index)
        return f"{kind} port {port} cpu{cpu} idx {index}" + (f" refcnt {refcnt}" if refcnt != -1 else "")
    if re.search(r"^xen/d\d+/evtchn$", table) and isinstance(value, (tuple, list)) and value:
        return _port_state(tuple(value))
    if isinstance(value, (tuple, list)):
        return " ".join(_fmt(v) for v in value)
    return str(value)


def _port_state(v: tuple[Any, ...]) -> str:
    """A port as Xen holds it (the hypervisor's trace summary) in words."""
    kind, rest = v[0], v[1:]
    if kind == "unbound" and len(rest) == 1:
        return f"unbound, for d{rest[0]}"
    if kind == "interdomain" and len(rest) == 2:
        return f"interdomain -> d{rest[0]} port {rest[1]}"
    if kind == "virq" and len(rest) == 2:
        return f"virq {rest[0]} (vcpu {rest[1]})"
    if kind == "ipi" and len(rest) == 1:
        return f"ipi (vcpu {rest[0]})"
    return " ".join(str(x) for x in v)


class IrqView(TablePanel):
    """``IrqView("dom0", ranges={"PIRQ": (0, 256), "DYNIRQ": (256, 256)}, domains=[0, 1]).show(trace)``."""

    def __init__(self, kernel: str = "dom0", *, ranges: dict[str, tuple[int, int]] | None = None,
                 domains: list[int] | None = None, ports: bool = True, limit: int = 16) -> None:
        self.kernel = kernel
        self.limit = limit
        self.ranges = dict(ranges or {})
        self.domains = domains
        self.ports = ports
        self.title = f"IRQs and event channels ({kernel})"
        self._more: dict[str, int] = {}

    @classmethod
    def of(cls, kernel: Kernel, **kw: Any) -> IrqView:
        """The view of *kernel*'s IRQs, with its fixed IRQ windows (2.6.18: PIRQ, DYNIRQ) if it has any."""
        kw.setdefault("ranges", kernel.irq_ranges() or None)
        return cls(kernel.name, **kw)

    # -- data -----------------------------------------------------------------------------------
    def irq_tables(self, ctx: Context) -> list[str]:
        """The kernel's IRQ-keyed tables (``<kernel>/irq...``)."""
        return [t for t in ctx.tables(f"{self.kernel}/irq") if t != f"{self.kernel}/irq"]

    def range_of(self, irq: int) -> str:
        """Which named range (PIRQ, DYNIRQ) *irq* falls in, '' when numbering is dynamic."""
        for name, (base, count) in self.ranges.items():
            if base <= irq < base + count:
                return name
        return ""

    def allocated_at(self, ctx: Context, tables: list[str]) -> dict[int, int]:
        """IRQ -> the last step (<= now) where it went from free to in use (a row or a port mapping)."""
        e2i = f"{self.kernel}/evtchn_to_irq"
        wanted = set(tables)
        at: dict[int, int] = {}
        live: dict[int, int] = {}  # irq -> rows currently live
        rows: dict[tuple[str, str], bool] = {}
        for step in ctx.trace.steps[: ctx.index + 1]:
            for c in step.changes:
                if c.table in wanted and (n := _num(c.key)) is not None:
                    irq, key = n, (c.table, c.key)
                elif c.table == e2i:
                    irq = c.after if _live(c.after) and isinstance(c.after, int) else c.before
                    if not isinstance(irq, int) or irq < 0:
                        continue
                    key = (c.table, c.key)
                else:
                    continue
                was, now = rows.get(key, False), _live(c.after)
                rows[key] = now
                if now and not was:
                    if live.get(irq, 0) == 0:
                        at[irq] = step.index
                    live[irq] = live.get(irq, 0) + 1
                elif was and not now:
                    live[irq] = live.get(irq, 0) - 1
        return at

    def live_irqs(self, ctx: Context) -> set[int]:
        """IRQs in use at this step: a port maps to them or one of their rows is not the free value."""
        used = {n for t in self.irq_tables(ctx) for k, v in ctx.table(t).items()
                if (n := _num(k)) is not None and _live(v)}
        e2i = ctx.table(f"{self.kernel}/evtchn_to_irq")
        used |= {v for v in e2i.values() if isinstance(v, int) and v >= 0}
        return used

    def irq_rows(self, ctx: Context) -> tuple[list[str], list[list[str]], list[str]]:
        """(headers, rows, marks) of every IRQ in use."""
        tables = self.irq_tables(ctx)
        e2i = ctx.table(f"{self.kernel}/evtchn_to_irq")
        ports: dict[int, list[str]] = {}
        for port, irq in e2i.items():
            if isinstance(irq, int) and irq >= 0:
                ports.setdefault(irq, []).append(port)
        irqs = sorted(self.live_irqs(ctx))
        at = self.allocated_at(ctx, tables)
        short = [t.split("/", 1)[1] for t in tables]
        headers = ["irq"] + (["range"] if self.ranges else []) + ["port"] + short + ["since step"]
        rows, marks = [], []
        for irq in irqs:
            row = [str(irq)] + ([self.range_of(irq)] if self.ranges else [])
            row.append(",".join(sorted(ports.get(irq, []), key=lambda p: _num(p) or 0)) or "-")
            row += [_fmt(ctx.table(t).get(str(irq), "-"), t) for t in tables]
            row.append(str(at.get(irq, "-")))
            rows.append(row)
            hit = any(ctx.is_changed(t, str(irq)) for t in tables) or any(
                ctx.is_changed(f"{self.kernel}/evtchn_to_irq", p) for p in ports.get(irq, []))
            marks.append("xl-new" if hit else "")
        rows, marks = self._clip(rows, marks, "IRQs")
        return headers, rows, marks

    def range_lines(self, ctx: Context) -> list[str]:
        """One line per named range: used of total, 'EXHAUSTED' when full."""
        used = self.live_irqs(ctx)
        out = []
        for name, (base, count) in self.ranges.items():
            n = sum(1 for i in used if base <= i < base + count)
            state = "EXHAUSTED" if n >= count else f"{count - n} free"
            out.append(f"{name} {base}..{base + count - 1}: {n} of {count} in use, {state}")
        if not self.ranges:
            out.append("IRQ numbers are allocated dynamically (no fixed PIRQ/DYNIRQ ranges)")
        return out

    def port_tables(self, ctx: Context) -> dict[str, list[str]]:
        """Label -> port-keyed tables: the kernel's ``evtchn_*`` arrays, then each domain's ``xen/d<N>/*``."""
        doms: dict[int, list[str]] = {}
        for t in ctx.tables("xen/d"):
            m = re.match(r"xen/d(\d+)/evtchn", t)
            if m and (self.domains is None or int(m.group(1)) in self.domains):
                if any(_num(k) is not None for k in ctx.table(t)):
                    doms.setdefault(int(m.group(1)), []).append(t)
        out = {}
        mine = [t for t in ctx.tables(f"{self.kernel}/evtchn_")
                if any(_num(k) is not None for k in ctx.table(t))]
        if mine:
            out[f"{self.kernel} kernel: ports"] = mine
        out.update({f"Xen: domain {d} ports": ts for d, ts in sorted(doms.items())})
        return out

    def port_rows(self, ctx: Context, tables: list[str]) -> tuple[list[str], list[list[str]], list[str]]:
        """(headers, rows, marks) of one domain's ports.

        A port only masked, or with only a FIFO priority, is not listed: every port starts masked,
        and EVTCHNOP_init_control gives every allocated port the default priority.
        """
        ports = sorted({n for t in tables if not t.endswith(("/evtchn_mask", "/evtchn_priority"))
                        for k in ctx.table(t) if (n := _num(k)) is not None})
        headers = ["port"] + [t.rsplit("/", 1)[1] for t in tables]
        rows, marks = [], []
        for p in ports:
            rows.append([str(p)] + [_fmt(ctx.table(t).get(str(p), "-"), t) for t in tables])
            marks.append("xl-new" if any(ctx.is_changed(t, str(p)) for t in tables) else "")
        rows, marks = self._clip(rows, marks, "ports")
        return headers, rows, marks

    def _clip(self, rows: list[list[str]], marks: list[str], what: str) -> tuple[list[list[str]], list[str]]:
        """At most ``limit`` rows (those this step changed are always kept); the note says how many hide."""
        self._more[what] = 0
        if len(rows) <= self.limit:
            return rows, marks
        keep = [i for i in range(len(rows)) if i < self.limit or marks[i]]
        self._more[what] = len(rows) - len(keep)
        return [rows[i] for i in keep], [marks[i] for i in keep]

    def _note(self, what: str) -> str:
        n = self._more.get(what, 0)
        return f"  ... and {n} more {what}" if n else ""

    # -- rendering -------------------------------------------------------------------------------
    def text(self, ctx: Context) -> str:
        """IRQ space, IRQ table and port tables as stable text."""
        out = self.range_lines(ctx)
        headers, rows, marks = self.irq_rows(ctx)
        out.append(text_table(headers, rows, marks) if rows else "no IRQ bound yet")
        out.append(self._note("IRQs"))
        if self.ports:
            for label, tables in self.port_tables(ctx).items():
                h, r, m = self.port_rows(ctx, tables)
                out.append(f"{label}:" if r else f"{label}: none")
                if r:
                    out.append(text_table(h, r, m))
                    out.append(self._note("ports"))
        return "\n".join(line for line in out if line)

    def html(self, ctx: Context) -> str:
        """The same as HTML: ranges, IRQ table, and the port tables side by side."""
        lines = self.range_lines(ctx)
        spans = [f"<span class='{'xl-err' if 'EXHAUSTED' in s else ''}'>{esc(s)}</span>" for s in lines]
        out = ["<div>" + "<br>".join(spans) + "</div>"]
        headers, rows, marks = self.irq_rows(ctx)
        out.append(table(headers, rows, marks) if rows else "<i>no IRQ bound yet</i>")
        out.append(esc(self._note("IRQs")))
        if self.ports:
            cols = []
            for label, tables in self.port_tables(ctx).items():
                h, r, m = self.port_rows(ctx, tables)
                body = table(h, r, m) + esc(self._note("ports")) if r else " none"
                cols.append(f"<div><b>{esc(label)}</b>{body}</div>")
            out.append(f"<div class='xl-cols'>{''.join(cols)}</div>")
        return "".join(out)

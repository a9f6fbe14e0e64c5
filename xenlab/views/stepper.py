"""The Stepper: walk a machine's Trace step by step, forwards and backwards.

A Stepper shows one step at a time: the function that ran (kernel/Xen name), its
one-line summary, the source file it mirrors, the printk it produced and the table
rows it changed, followed by any number of *panels* (IrqView, StoreView, ...) drawn
from ``trace.state_at(i)``. The trace replays from checkpoints, so going back is as
cheap as going forward: nothing is re-run.

Widgets (Play, slider, previous/next, a stage menu and a "go to" box) are built
lazily on first display; ``text()`` is the same content as stable text.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from xenlab.base.trace import Change, Step, Trace
from xenlab.views._html import box, esc


@dataclass
class Context:
    """What a panel draws from: the trace, the step index, the replayed tables and the step's changes."""

    trace: Trace
    index: int
    state: dict[str, dict[str, Any]]
    step: Step | None
    changed: dict[tuple[str, str], Change] = field(default_factory=dict)

    @classmethod
    def at(cls, trace: Trace, index: int) -> Context:
        """The context after step *index* (-1: before the first step)."""
        state = trace.state_at(index)
        step = trace[index] if index >= 0 else None
        changed = {(c.table, c.key): c for c in step.changes} if step else {}
        return cls(trace, index, state, step, changed)

    def table(self, name: str) -> dict[str, Any]:
        """One replayed table (empty if nothing was recorded into it yet)."""
        return self.state.get(name, {})

    def tables(self, prefix: str = "", suffix: str = "") -> list[str]:
        """Names of the tables known at this step with the given prefix and suffix, sorted."""
        return sorted(t for t in self.state if t.startswith(prefix) and t.endswith(suffix))

    def is_changed(self, table: str, key: str) -> bool:
        """True if this step changed table[key]."""
        return (table, key) in self.changed


class Panel(Protocol):
    """A view drawn under the step: title, text and HTML from a Context.

    Optional: ``controls()`` (widgets beside the stage menu), ``on_change`` (set to the
    stepper's refresh), ``widgets()`` (widgets under the body, e.g. a Picture's Image,
    which the panel's ``html`` updates in place on every step).
    """

    title: str

    def text(self, ctx: Context) -> str: ...

    def html(self, ctx: Context) -> str: ...


class TablePanel:
    """Base for the views: renders from a Context; usable alone through ``text_at``/``show``."""

    title = "tables"

    def text(self, ctx: Context) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def html(self, ctx: Context) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def controls(self) -> list[Any]:
        """Extra widgets the panel adds to its stepper (e.g. a path filter)."""
        return []

    def text_at(self, trace: Trace, index: int = -1) -> str:
        """The panel's text after step *index* of *trace* (default: the last step)."""
        index = len(trace) - 1 if index == -1 else index
        return self.text(Context.at(trace, index))

    def show(self, trace: Trace, **kw: Any) -> Stepper:
        """A Stepper over *trace* showing this panel."""
        return Stepper(trace, [self], **kw)


def _stage_menu(trace: Trace, shown: list[int]) -> list[tuple[str, int]]:
    """(label, position of its first shown step) per stage; stages with no shown step merge into the next."""
    starts: dict[int, list[str]] = {}
    stages = list(trace.stages)
    for i, (name, start) in enumerate(stages):
        nxt = stages[i + 1][1] if i + 1 < len(stages) else len(trace)
        if shown and nxt <= shown[0] and start < shown[0]:
            continue  # the stage is over before the first step shown here
        pos = bisect.bisect_left(shown, start)
        if pos < len(shown):
            starts.setdefault(pos, []).append(name)
    return [(f"#{shown[pos]} {' / '.join(names)}", pos) for pos, names in sorted(starts.items())]


def _draw(panel: Any, how: str, ctx: Context) -> str:
    """A panel's text or HTML; a panel that cannot draw this step says why instead of raising."""
    try:
        return str(getattr(panel, how)(ctx))
    except Exception as exc:  # a view must never show a traceback (tables recorded by others may change)
        msg = f"! cannot draw step {ctx.index}: {type(exc).__name__}: {exc}"
        return msg if how == "text" else f"<div class='xl-err'>{esc(msg)}</div>"


class Stepper:
    """Step through *trace* with *panels*; ``go``/``next``/``prev``/``jump`` or the widgets.

    ``start`` is a step number, a stage name, or -1 for the last step shown.
    ``only`` (a predicate on Step) and ``steps`` (a range of step numbers) narrow what the
    slider walks through, e.g. only the ring functions of a chatty trace; the state shown
    is still the whole machine's after that step.
    """

    def __init__(self, trace: Trace, panels: list[Any] | tuple[Any, ...] = (), *, start: int | str = 0,
                 title: str = "", changes: bool = True, interval_ms: int = 600,
                 only: Callable[[Step], bool] | None = None, steps: range | None = None) -> None:
        self.trace = trace
        self.panels = list(panels)
        self.title = title
        self.show_changes = changes
        self.interval_ms = interval_ms
        # The stepper shows the trace as it is now: steps recorded later (by later cells) are not its.
        self.n = len(trace)
        span = steps if steps is not None else range(self.n)
        self.filtered = only is not None or steps is not None
        self.shown = [i for i in span if 0 <= i < self.n and (only is None or only(trace[i]))]
        self.pos = 0 if self.shown else -1
        self.message = "" if self.shown else (
            "the trace is empty: run something first" if not self.n else "no step matches the filter")
        self._stages = _stage_menu(trace, self.shown)
        self._w: dict[str, Any] | None = None
        self._syncing = False
        if isinstance(start, str):
            self.jump(start)
        elif start == -1 and self.shown:
            self._go_pos(len(self.shown) - 1)
        elif start:
            self.go(start)

    # -- navigation (never raises on bad input: the message says what was wrong) -----------
    @property
    def index(self) -> int:
        """The step number (trace index) shown now, -1 if none."""
        return self.shown[self.pos] if self.pos >= 0 else -1

    @property
    def last(self) -> int:
        """Index of the last step of the trace (as it was when the stepper was made)."""
        return self.n - 1

    def _go_pos(self, pos: int) -> bool:
        if not 0 <= pos < len(self.shown):
            return self._fail(f"position {pos} is out of range 0..{len(self.shown) - 1}")
        self.pos, self.message = pos, ""
        self._refresh()
        return True

    def go(self, index: Any) -> bool:
        """Show step *index* (the next shown one when a filter hides it); False and a message if invalid."""
        try:
            i = int(index)
        except (TypeError, ValueError):
            return self._fail(f"{index!r} is not a step number")
        if isinstance(index, float) and index != i:
            return self._fail(f"{index!r} is not a step number")
        if not self.shown:
            return self._fail(self.message or "no steps")
        if not 0 <= i <= self.last:
            return self._fail(f"step {i} is out of range: this trace has steps 0..{self.last}")
        pos = bisect.bisect_left(self.shown, i)
        if pos == len(self.shown):
            return self._fail(f"step {i} is after the last step shown here ({self.shown[-1]})")
        return self._go_pos(pos)

    def next(self) -> bool:
        """One step forward (a message at the last step)."""
        if self.pos >= len(self.shown) - 1:
            return self._fail(f"already at the last step ({self.index})")
        return self._go_pos(self.pos + 1)

    def prev(self) -> bool:
        """One step back (a message at the first step)."""
        if self.pos <= 0:
            return self._fail(f"already at the first step ({self.index})")
        return self._go_pos(self.pos - 1)

    def jump(self, stage: str) -> bool:
        """Go to the first step of the stage called *stage* (a message listing stages if none)."""
        for name, start in self.trace.stages:
            if name == stage and start <= self.last:
                return self.go(start)
        names = ", ".join(self.trace.stage_names()) or "none recorded"
        return self._fail(f"no stage named {stage!r}; stages: {names}")

    def goto(self, text: str) -> bool:
        """What the "go to" box does: a step number, or a stage name."""
        text = str(text).strip()
        if not text:
            return False
        if text.lstrip("-").isdigit():
            return self.go(int(text))
        return self.jump(text)

    def _fail(self, message: str) -> bool:
        self.message = message
        self._refresh()
        return False

    # -- content -------------------------------------------------------------------------------
    def context(self) -> Context:
        """The Context of the current step."""
        return Context.at(self.trace, self.index)

    def stage(self) -> str:
        """Name of the stage the current step belongs to."""
        return self.trace[self.index].stage if self.index >= 0 else ""

    def _where(self) -> str:
        where = f"step {self.index} of 0..{self.last}"
        return where + (f" ({self.pos + 1} of {len(self.shown)} shown)" if self.filtered else "")

    def step_text(self) -> str:
        """The current step alone: position, stage, function, summary, source, printk, changes."""
        if self.index < 0:
            return "(no steps)"
        s = self.trace[self.index]
        lines = [self._where() + (f" - stage {s.stage!r}" if s.stage else ""),
                 f"{s.function}  [{s.actor}]  ({s.source})", f"  {s.summary}"]
        if s.printk:
            lines.append(f"  printk: {s.printk}")
        if self.show_changes:
            lines.extend(f"  {c}" for c in s.changes)
        return "\n".join(lines)

    def text(self) -> str:
        """Everything the stepper shows, as stable text."""
        parts = [self.title] if self.title else []
        if self.message:
            parts.append(f"! {self.message}")
        parts.append(self.step_text())
        if self.index >= 0:
            ctx = self.context()
            for p in self.panels:
                parts.append(f"== {p.title} ==\n{_draw(p, 'text', ctx)}")
        return "\n".join(parts)

    def step_html(self) -> str:
        """The current step as HTML."""
        if self.index < 0:
            return "<i>(no steps)</i>"
        s = self.trace[self.index]
        stage = f" &middot; stage <b>{esc(s.stage)}</b>" if s.stage else ""
        out = [f'<div class="xl-muted">{esc(self._where())}{stage} &middot; {esc(s.actor)}</div>',
               f"<div><b style='font-size:14px'>{esc(s.function)}()</b> "
               f"<span class='xl-muted'>{esc(s.source)}</span></div>", f"<div>{esc(s.summary)}</div>"]
        if s.printk:
            out.append(f"<div>printk: <code>{esc(s.printk)}</code></div>")
        if self.show_changes and s.changes:
            out.append("<div>" + "<br>".join(f"<span class='xl-new'>{esc(c)}</span>" for c in s.changes)
                       + "</div>")
        return "".join(out)

    def html(self) -> str:
        """Everything the stepper shows, as HTML (what the body widget holds)."""
        parts = [f"<h4>{esc(self.title)}</h4>"] if self.title else []
        parts.append(self.step_html())
        if self.index >= 0:
            ctx = self.context()
            for p in self.panels:
                parts.append(f"<h4>{esc(p.title)}</h4>{_draw(p, 'html', ctx)}")
        return box("".join(parts))

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        return self.html()

    # -- widgets ---------------------------------------------------------------------------
    @property
    def widget(self) -> Any:
        """The ipywidgets VBox (built on first use)."""
        return self._build()["root"]

    def _build(self) -> dict[str, Any]:
        if self._w is not None:
            return self._w
        import ipywidgets as W

        n = max(len(self.shown) - 1, 0)
        play = W.Play(value=max(self.pos, 0), min=0, max=n, interval=self.interval_ms, description="play")
        label = "shown" if self.filtered else "step"
        slider = W.IntSlider(value=max(self.pos, 0), min=0, max=n, description=label,
                             continuous_update=False, layout=W.Layout(width="420px"))
        W.jslink((play, "value"), (slider, "value"))
        prev = W.Button(description="◀ prev", layout=W.Layout(width="80px"))
        nxt = W.Button(description="next ▶", layout=W.Layout(width="80px"))
        stages = W.Dropdown(options=[("(jump to a stage)", -1)] + self._stages, value=-1,
                            layout=W.Layout(width="300px"))
        goto = W.Text(placeholder="step number or stage name", continuous_update=False,
                      layout=W.Layout(width="200px"))
        msg = W.HTML("")
        body = W.HTML("")
        slider.observe(lambda ch: self._from_widget(self._go_pos, ch["new"]), names="value")
        prev.on_click(lambda _b: self.prev())
        nxt.on_click(lambda _b: self.next())
        stages.observe(lambda ch: ch["new"] >= 0 and self._from_widget(self._go_pos, ch["new"]),
                       names="value")
        goto.observe(lambda ch: self._from_widget(self.goto, ch["new"]), names="value")
        extra = [c for p in self.panels for c in getattr(p, "controls", lambda: [])()]
        for p in self.panels:
            if hasattr(p, "on_change"):
                p.on_change = self._refresh
        # A panel with widgets() (a Picture) gets them under the body; it updates them in place.
        figures = [w for p in self.panels for w in getattr(p, "widgets", lambda: [])()]
        rows = [W.HBox([play, slider, prev, nxt]), W.HBox([stages, goto] + extra), msg, body, *figures]
        root = W.VBox(rows)
        root.add_class("xenlab-stepper")
        self._w = dict(root=root, play=play, slider=slider, prev=prev, next=nxt, stages=stages,
                       goto=goto, message=msg, body=body)
        self._refresh()
        return self._w

    def _from_widget(self, action: Any, value: Any) -> None:
        if not self._syncing:
            action(value)

    def _refresh(self) -> None:
        w = self._w
        if w is None:
            return
        self._syncing = True
        try:
            if self.pos >= 0:
                w["slider"].value = self.pos
                starts = [s for _, s in self._stages if s <= self.pos]
                w["stages"].value = starts[-1] if starts else -1
            w["message"].value = (f"<span style='color:#b00;font-weight:bold'>{esc(self.message)}</span>"
                                  if self.message else "")
            w["body"].value = self.html()
        finally:
            self._syncing = False

    def __getitem__(self, name: str) -> Any:
        """A named widget: play, slider, prev, next, stages, goto, message, body."""
        return self._build()[name]

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        try:
            bundle = dict(self.widget._repr_mimebundle_() or {})
        except ImportError:
            bundle = {"text/html": self.html()}
        bundle["text/plain"] = self.text()
        return bundle

"""The Stepper: walk a machine's Trace step by step, forwards and backwards.

A Stepper shows one step at a time: the function that ran (kernel/Xen name), its
one-line summary, the source file it mirrors, the printk it produced and the table
rows it changed, followed by any number of *panels* (IrqView, StoreView, ...) drawn
from ``trace.state_at(i)``. The trace replays from checkpoints, so going back is as
cheap as going forward: nothing is re-run.

Widgets (play/pause, previous/next, a slider, a stage menu and a "go to" box) are
built lazily on first display; ``text()`` is the same content as stable text. Every
control speaks the trace's step numbers, and every bad input is answered in the
stepper's message line, never reverted silently or raised.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from xenlab.base.trace import Change, Step, Trace
from xenlab.views._html import STYLE, box, esc


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


def _stage_positions(trace: Trace, shown: list[int]) -> dict[str, int]:
    """Stage name -> position of its first shown step, for the stages this stepper walks through.

    A stage over before the first shown step, or beginning after the last, is not one of them;
    a stage with no shown step of its own starts where the next shown step is.
    """
    out: dict[str, int] = {}
    stages = list(trace.stages)
    for i, (name, start) in enumerate(stages):
        nxt = stages[i + 1][1] if i + 1 < len(stages) else len(trace)
        if shown and nxt <= shown[0] and start < shown[0]:
            continue  # the stage is over before the first step shown here
        pos = bisect.bisect_left(shown, start)
        if pos < len(shown):
            out.setdefault(name, pos)
    return out


def _stage_menu(trace: Trace, shown: list[int]) -> list[tuple[str, int]]:
    """(label, position) per entry of the stage menu; stages starting at the same shown step share one."""
    starts: dict[int, list[str]] = {}
    for name, pos in _stage_positions(trace, shown).items():
        starts.setdefault(pos, []).append(name)
    return [(f"{' / '.join(names)} (step {shown[pos]})", pos) for pos, names in sorted(starts.items())]


def _draw(panel: Any, how: str, ctx: Context) -> str:
    """A panel's text or HTML; a panel that cannot draw this step says why instead of raising."""
    try:
        return str(getattr(panel, how)(ctx))
    except Exception as exc:  # a view must never show a traceback (tables recorded by others may change)
        msg = f"! cannot draw step {ctx.index}: {type(exc).__name__}: {exc}"
        return msg if how == "text" else f"<div class='xl-err'>{esc(msg)}</div>"


class Stepper:
    """Step through *trace* with *panels*; ``go``/``next``/``prev``/``jump``/``goto`` or the widgets.

    ``start`` is a step number, a stage name, or -1 for the last step shown (default: the first).
    ``only`` (a predicate on Step) and ``steps`` (a range of step numbers) narrow what the
    slider walks through, e.g. only the ring functions of a chatty trace; the state shown
    is still the whole machine's after that step.

    One numbering everywhere: the trace's step numbers (``#31`` in ``Step.line()``, in the
    lessons' listings and in ``xenlab trace``). The header, the label beside the slider, the
    stage menu and the "go to" box all show or take them; the slider's position is never shown.
    """

    def __init__(self, trace: Trace, panels: list[Any] | tuple[Any, ...] = (), *,
                 start: int | str | None = None, title: str = "", changes: bool = True,
                 interval_ms: int = 600, only: Callable[[Step], bool] | None = None,
                 steps: range | None = None) -> None:
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
        self.note = ""
        self._stage_pos = _stage_positions(trace, self.shown)
        self._stages = _stage_menu(trace, self.shown)
        self._w: dict[str, Any] | None = None
        self._syncing = False
        self._ctx: Context | None = None
        if isinstance(start, str):
            self.jump(start)
        elif start == -1 and self.shown:
            self._go_pos(len(self.shown) - 1)
        elif start is not None:
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

    def span(self) -> str:
        """The step numbers this stepper walks through, as a learner reads them: '30..78'."""
        return f"{self.shown[0]}..{self.shown[-1]}" if self.shown else "none"

    def _go_pos(self, pos: int, note: str = "") -> bool:
        if not 0 <= pos < len(self.shown):
            return self._fail(f"there is no such position here: this stepper shows steps {self.span()}")
        self.pos, self.message, self.note = pos, "", note
        self._refresh()
        return True

    def go(self, index: Any) -> bool:
        """Show step *index*; a step the filter hides goes to the next one shown, with a note saying so.

        A step outside this stepper, or a value that is not a step number, leaves the step as it is
        and returns False with a message.
        """
        if isinstance(index, bool) or (isinstance(index, float) and not index.is_integer()):
            return self._fail(f"{index!r} is not a step number")
        try:
            i = int(index)
        except (TypeError, ValueError):
            return self._fail(f"{index!r} is not a step number")
        if not self.shown:
            return self._fail(self.message or "no steps")
        if not self.shown[0] <= i <= self.shown[-1]:
            return self._fail(f"step {i} is not in this stepper: it shows steps {self.span()}")
        pos = bisect.bisect_left(self.shown, i)
        if self.shown[pos] != i:
            return self._go_pos(pos, f"step {i} is not one this stepper stops at: "
                                     f"went on to step {self.shown[pos]}, the next one it shows")
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

    def stage_names(self) -> list[str]:
        """The stages this stepper walks through (what its stage menu and ``jump`` offer)."""
        return list(self._stage_pos)

    def _stage_list(self) -> str:
        names = self.stage_names()
        if not names:
            return "this stepper has no named stages"
        if len(names) == 1:
            return f"this stepper has one stage, {names[0]!r}"
        return "this stepper's stages: " + ", ".join(names)

    def jump(self, stage: str) -> bool:
        """Go to the first step shown here of the stage *stage* (if none, a message naming the stages)."""
        if stage in self._stage_pos:
            return self._go_pos(self._stage_pos[stage])
        if stage in self.trace.stage_names():
            return self._fail(f"stage {stage!r} is not in this stepper (steps {self.span()}); "
                              + self._stage_list())
        return self._fail(f"no stage named {stage!r}; " + self._stage_list())

    def goto(self, text: str) -> bool:
        """What the "go to" box does: a step number, or a stage name; empty clears the message."""
        text = str(text).strip()
        if not text:
            self.message = self.note = ""
            self._refresh()
            return False
        if text.lstrip("-").isdigit():
            return self.go(int(text))
        return self.jump(text)

    def _fail(self, message: str) -> bool:
        self.message, self.note = message, ""
        self._refresh()
        return False

    # -- content -------------------------------------------------------------------------------
    def context(self) -> Context:
        """The Context of the current step (replayed once per step shown, then reused)."""
        if self._ctx is None or self._ctx.index != self.index or self._ctx.trace is not self.trace:
            self._ctx = Context.at(self.trace, self.index)
        return self._ctx

    def stage(self) -> str:
        """Name of the stage the current step belongs to."""
        return self.trace[self.index].stage if self.index >= 0 else ""

    def _where(self) -> str:
        count = len(self.shown)
        return (f"step {self.index} (this stepper: {count} step{'s' if count != 1 else ''}, "
                f"{self.span()})")

    def step_text(self) -> str:
        """The current step alone: number, stage, function, summary, source, printk, changes."""
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
        if self.note:
            parts.append(f"({self.note})")
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
        out = [f'<div class="xl-muted xl-where">{esc(self._where())}{stage} &middot; {esc(s.actor)}</div>',
               f"<div><b style='font-size:14px'>{esc(s.function)}()</b> "
               f"<span class='xl-muted'>{esc(s.source)}</span></div>", f"<div>{esc(s.summary)}</div>"]
        if s.printk:
            out.append(f"<div>printk: <code>{esc(s.printk)}</code></div>")
        if self.show_changes and s.changes:
            out.append("<div>" + "<br>".join(f"<span class='xl-new'>{esc(c)}</span>" for c in s.changes)
                       + "</div>")
        return "".join(out)

    def html(self, style: bool = True) -> str:
        """Everything the stepper shows, as HTML (the widget's body holds it without the <style>)."""
        parts = [f"<h4>{esc(self.title)}</h4>"] if self.title else []
        parts.append(self.step_html())
        if self.index >= 0:
            ctx = self.context()
            for p in self.panels:
                parts.append(f"<h4>{esc(p.title)}</h4>{_draw(p, 'html', ctx)}")
        return box("".join(parts), style=style)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        return self.html()

    # -- widgets ---------------------------------------------------------------------------
    @property
    def widget(self) -> Any:
        """The ipywidgets VBox (built on first use)."""
        return self._build()["root"]

    def _play_tooltip(self, playing: bool) -> str:
        if playing:
            return "pause: stop playing and stay on this step"
        return (f"play: one step every {self.interval_ms / 1000:g} s up to the last step here "
                "(from the first if at the end); click again to pause")

    def _slider_tip(self) -> str:
        return (f"the step shown; the slider moves through the {len(self.shown)} steps shown here "
                f"({self.span()}), arrow keys one at a time")

    def _build(self) -> dict[str, Any]:
        if self._w is not None:
            return self._w
        import ipywidgets as W

        n = max(len(self.shown) - 1, 0)
        # The browser-side timer: a Play widget kept out of sight. Its own buttons have no tooltips and
        # its stop button rewinds to the first step; the learner gets one play/pause toggle instead.
        timer = W.Play(value=max(self.pos, 0), min=0, max=n, interval=self.interval_ms, show_repeat=False,
                       layout=W.Layout(display="none"))
        play = W.ToggleButton(value=False, description="▶ play", tooltip=self._play_tooltip(False),
                              layout=W.Layout(width="90px"))
        play.add_class("xl-play")
        W.jslink((play, "value"), (timer, "playing"))
        # No readout: the one place to type a step is the go-to box, which answers bad input.
        slider = W.IntSlider(value=max(self.pos, 0), min=0, max=n, readout=False, continuous_update=False,
                             layout=W.Layout(width="360px"))
        slider.add_class("xl-slider")

        W.jslink((timer, "value"), (slider, "value"))
        where = W.HTML("")
        where.add_class("xl-step")
        prev = W.Button(description="◀ prev", tooltip="previous step", layout=W.Layout(width="80px"))
        nxt = W.Button(description="next ▶", tooltip="next step", layout=W.Layout(width="80px"))
        prev.add_class("xl-prev")
        nxt.add_class("xl-next")
        stages = W.Dropdown(options=[("jump to a stage...", -1)] + self._stages, value=-1,
                            tooltip="go to the first step of a stage", layout=W.Layout(width="300px"))
        stages.add_class("xl-stages")
        goto = W.Text(placeholder="go to: step or stage, Enter", continuous_update=False,
                      tooltip=f"type a step number ({self.span()}) or a stage name, then Enter",
                      layout=W.Layout(width="240px"))
        goto.add_class("xl-goto")
        msg = W.HTML("")
        msg.add_class("xl-message")
        body = W.HTML("")
        body.add_class("xl-body")
        style = W.HTML(STYLE, layout=W.Layout(display="none"))
        slider.observe(lambda ch: self._from_widget(self._go_pos, ch["new"]), names="value")
        prev.on_click(lambda _b: self.prev())
        nxt.on_click(lambda _b: self.next())
        play.observe(self._on_play, names="value")
        stages.observe(lambda ch: ch["new"] >= 0 and self._from_widget(self._go_pos, ch["new"]),
                       names="value")
        goto.observe(lambda ch: self._from_widget(self._on_goto, ch["new"]), names="value")
        extra = [c for p in self.panels for c in getattr(p, "controls", lambda: [])()]
        for p in self.panels:
            if hasattr(p, "on_change"):
                p.on_change = self._refresh
        # A stage menu with fewer than two entries has nothing to choose: it is left out.
        second = ([stages] if len(self._stages) >= 2 else []) + [goto] + extra
        # A panel with widgets() (a Picture) gets them under the body; it updates them in place.
        figures = [w for p in self.panels for w in getattr(p, "widgets", lambda: [])()]
        rows = [W.HBox([play, prev, nxt, slider, where, timer]), W.HBox(second), msg, body, style, *figures]
        root = W.VBox(rows)
        root.add_class("xenlab-stepper")
        self._w = dict(root=root, play=play, timer=timer, slider=slider, where=where, prev=prev, next=nxt,
                       stages=stages, goto=goto, message=msg, body=body)
        self._refresh()
        return self._w

    def _on_play(self, change: dict[str, Any]) -> None:
        w = self._w
        if w is not None:
            w["play"].description = "⏸ pause" if change["new"] else "▶ play"
            w["play"].tooltip = self._play_tooltip(bool(change["new"]))

    def _on_goto(self, text: str) -> None:
        """The box: a step or a stage; a good value is cleared so the same one can be typed again."""
        if self.goto(text) and self._w is not None:
            self._syncing = True
            try:
                self._w["goto"].value = ""
            finally:
                self._syncing = False

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
                w["where"].value = f"<b title='{esc(self._slider_tip())}'>step {self.index}</b>"
            w["stages"].value = -1  # the menu always offers every stage, the current one included
            if self.message:
                w["message"].value = f"<span style='color:#b00;font-weight:bold'>{esc(self.message)}</span>"
            elif self.note:
                w["message"].value = f"<span style='color:#555'>{esc(self.note)}</span>"
            else:
                w["message"].value = ""
            # The stylesheet is in the widget once (``style`` below): a <style> in every redraw makes the
            # browser restyle the whole page on every step.
            w["body"].value = self.html(style=False)
        finally:
            self._syncing = False

    def __getitem__(self, name: str) -> Any:
        """A named widget: play, timer, slider, where, prev, next, stages, goto, message, body."""
        return self._build()[name]

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        try:
            bundle = dict(self.widget._repr_mimebundle_() or {})
        except ImportError:
            bundle = {"text/html": self.html()}
        bundle["text/plain"] = self.text()
        return bundle

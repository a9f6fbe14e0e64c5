"""SequenceDiagram: the bring-up as a sequence diagram drawn from the trace, around the current step.

Lanes, left to right: the dom0 kernel, Xen, xenstored (dom0 user space), the toolstack
(xl, libxl, the hotplug scripts, xenconsoled) and the guest kernel. Time runs down. Each
step of a window around the current one is a row, read from the step itself:

* a Xen step other than a send is a **hypercall**: an arrow to Xen from whoever ran just
  before it (the kernel or daemon that made the call);
* ``evtchn_send`` (``dA port X -> dB port Y``) is an **event-channel notification**: an
  arrow from the end that owns port X to the end that owns port Y (a kernel owns the ports
  in its ``evtchn_to_irq``; dom0's other ports are xenstored's);
* a ring write is a **ring message**: the kernel's ``xb_write`` an arrow to xenstored
  (``req``), the daemon's ``ml_interface_write`` / ``writechn`` an arrow back (``rsp``);
* anything else is local work, a dot on its lane with the function's name.

The current step is highlighted; chatty plumbing steps (``NOISE``) are left out of the
window unless they are the current step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from xenlab.base.trace import Step
from xenlab.views.picture import Picture
from xenlab.views.stepper import Context

LANES = ("dom0 kernel", "Xen", "xenstored", "toolstack", "guest kernel")
NOISE = frozenset({"evtchn_2l_set_pending", "clear_evtchn", "do_IRQ", "handle_irq_event", "evtchn_interrupt",
                   "kobject_uevent"})
RING_WRITES = {"xb_write": "req", "ml_interface_write": "rsp", "writechn": "rsp"}
RING_READS = {"xb_read", "ml_interface_read", "readchn"}
KIND_COLOR = {"hypercall": "#1f5fa8", "notify": "#c07000", "ring": "#2e7d32", "local": "#555"}
_SEND = re.compile(r"^d(\d+) port (\d+) -> d(\d+) port (\d+)")
_DOM = re.compile(r"^d(\d+):")
_BYTES = re.compile(r"(\d+) bytes")


@dataclass(frozen=True)
class Event:
    """One row of the diagram: a step, its lane, the lane its arrow goes to (None: local), kind, label."""

    index: int
    src: str
    dst: str | None
    kind: str
    label: str

    def line(self, current: bool) -> str:
        """The row as stable text ('>' marks the current step)."""
        mark = ">" if current else " "
        where = f"{self.src} -> {self.dst}" if self.dst else self.src
        return f"{mark} #{self.index:<6} {where:30} {self.kind:9} {self.label}"


def lane_of(actor: str) -> str:
    """The lane an actor's steps are drawn on."""
    if actor == "xen":
        return "Xen"
    if actor == "dom0":
        return "dom0 kernel"
    if actor.startswith("domU"):
        return "guest kernel"
    if actor.endswith("xenstored"):
        return "xenstored"
    return "toolstack"


class SequenceDiagram(Picture):
    """``SequenceDiagram()``: a window of rows around the stepper's step (``before``/``after`` rows)."""

    size = (7.6, 6.4)

    def __init__(self, *, before: int = 16, after: int = 6, noise: frozenset[str] = NOISE) -> None:
        super().__init__()
        self.before, self.after = before, after
        self.noise = noise
        self.title = "the bring-up as a sequence diagram"

    # -- reading the trace -----------------------------------------------------------------------
    def _port_lane(self, ctx: Context, dom: int, port: int) -> str:
        kernel = "dom0" if dom == 0 else f"domU{dom}"
        if str(port) in ctx.table(f"{kernel}/evtchn_to_irq"):
            return "dom0 kernel" if dom == 0 else "guest kernel"
        return "xenstored" if dom == 0 else "guest kernel"

    def _caller(self, ctx: Context, i: int) -> str:
        steps = ctx.trace.steps
        for j in list(range(i - 1, max(i - 5, -1), -1)) + list(range(i + 1, min(i + 3, len(steps)))):
            if steps[j].actor != "xen":
                return lane_of(steps[j].actor)
        return "dom0 kernel"

    def event(self, ctx: Context, s: Step) -> Event:
        """The row one step makes."""
        src = lane_of(s.actor)
        if s.actor == "xen":
            m = _SEND.match(s.summary)
            if s.function == "evtchn_send" and m:
                a, pa, b, pb = (int(x) for x in m.groups())
                return Event(s.index, self._port_lane(ctx, a, pa), self._port_lane(ctx, b, pb), "notify",
                             f"d{a} port {pa} -> d{b} port {pb}")
            return Event(s.index, self._caller(ctx, s.index), "Xen", "hypercall", s.function)
        if s.function in RING_WRITES:
            n = _BYTES.search(s.summary)
            size = f" {n.group(1)} B" if n else ""
            ring = RING_WRITES[s.function]
            if ring == "req":
                return Event(s.index, src, "xenstored", "ring", f"{s.function}: req{size}")
            m = _DOM.match(s.summary)
            dst = "dom0 kernel" if m is None or m.group(1) == "0" else "guest kernel"
            return Event(s.index, src, dst, "ring", f"{s.function}: rsp{size}")
        return Event(s.index, src, None, "local", s.function)

    def window(self, ctx: Context) -> list[Step]:
        """The steps drawn: up to ``before`` rows up to the current step, ``after`` rows after it."""
        steps = ctx.trace.steps
        i = max(ctx.index, 0)
        if not steps:
            return []
        up, j = [], i - 1
        while j >= 0 and len(up) < self.before:
            if steps[j].function not in self.noise:
                up.append(steps[j])
            j -= 1
        down, j = [], i + 1
        while j < len(steps) and len(down) < self.after:
            if steps[j].function not in self.noise:
                down.append(steps[j])
            j += 1
        return list(reversed(up)) + [steps[i]] + down

    # -- the three forms -------------------------------------------------------------------------
    def describe(self, ctx: Context) -> str:
        """One line per row: step, from -> to, kind, label; '>' marks the current step."""
        rows = [self.event(ctx, s).line(s.index == ctx.index) for s in self.window(ctx)]
        return "lanes: " + " | ".join(LANES) + "\n" + "\n".join(rows)

    def alt(self, ctx: Context) -> str:
        """How many arrows of each kind the window has and what the current step is."""
        events = [self.event(ctx, s) for s in self.window(ctx)]
        counts = {k: sum(e.kind == k for e in events) for k in ("hypercall", "notify", "ring", "local")}
        cur = next((e for e in events if e.index == ctx.index), None)
        now = (f" The current step #{cur.index} is highlighted: {cur.src}"
               + (f" to {cur.dst}" if cur.dst else "") + f", {cur.kind} {cur.label}.") if cur else ""
        return (f"A sequence diagram with five lanes ({', '.join(LANES)}) showing steps "
                f"{events[0].index if events else 0}..{events[-1].index if events else 0}: "
                f"{counts['hypercall']} hypercalls, {counts['notify']} event-channel notifications, "
                f"{counts['ring']} ring messages, {counts['local']} local steps." + now)

    def draw(self, fig: Any, ctx: Context) -> None:
        """Lanes as columns, rows down the page, arrows coloured by kind, the current row highlighted."""
        from matplotlib.patches import Rectangle

        events = [self.event(ctx, s) for s in self.window(ctx)]
        ax = fig.add_axes((0.0, 0.0, 1.0, 0.95))
        n = max(len(events), 1)
        x = {lane: 1.6 + 1.5 * k for k, lane in enumerate(LANES)}
        ax.set_xlim(0, 1.6 + 1.5 * len(LANES))
        ax.set_ylim(-n - 0.2, 1.3)
        ax.axis("off")
        for lane, lx in x.items():
            ax.plot([lx, lx], [0.4, -n + 0.2], color="#bbb", linewidth=0.8, zorder=0)
            ax.text(lx, 0.8, lane, ha="center", va="center", fontsize=7, fontweight="bold",
                    bbox={"boxstyle": "round,pad=0.3", "fc": "#eef", "ec": "#99a", "lw": 0.6})
        for r, e in enumerate(events):
            y = -r
            cur = e.index == ctx.index
            if cur:
                ax.add_patch(Rectangle((0.05, y - 0.48), 1.6 + 1.5 * len(LANES) - 0.1, 0.96,
                                       facecolor="#fff3a0", edgecolor="#c00000", linewidth=1.0, zorder=0))
            ax.text(0.1, y, f"#{e.index}", fontsize=7, va="center", color="#c00000" if cur else "#777",
                    fontweight="bold" if cur else "normal")
            color = KIND_COLOR[e.kind]
            weight = "bold" if cur else "normal"
            if e.dst is None or e.dst == e.src:
                ax.plot([x[e.src]], [y], marker="o", markersize=3.5, color=color)
                label = e.label if e.dst is None else f"{e.kind}: {e.label}"
                ax.text(x[e.src] + 0.08, y, label, fontsize=7, va="center", color=color, fontweight=weight)
                continue
            x0, x1 = x[e.src], x[e.dst]
            ax.annotate("", xy=(x1, y - 0.12), xytext=(x0, y - 0.12),
                        arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.6 if cur else 0.8,
                                    "linestyle": "--" if e.kind == "notify" else "-", "shrinkA": 0,
                                    "shrinkB": 0, "mutation_scale": 7})
            ax.text(min(x0, x1) + 0.06, y + 0.14, e.label, fontsize=7, va="center", color=color,
                    fontweight=weight)
        ax.text(0.1, -n - 0.05, "blue: hypercall   orange, dashed: event-channel notification   "
                "green: ring message   grey dot: local step", fontsize=7, color="#555", va="center")
        fig.suptitle(f"bring-up around step {ctx.index}", fontsize=9, y=0.99)

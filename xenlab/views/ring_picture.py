"""RingPicture: a store page's two rings drawn as rings, 1024 slots around a circle each.

Slot 0 is at the top and the slots run clockwise, so the wrap from slot 1023 to slot 0
is where the circle closes. The outer ring is ``req`` (guest -> xenstored), the inner
``rsp`` (xenstored -> guest). The hands are the four free-running indices: ``cons``
(red) and ``prod`` (green), each pointing at the slot ``MASK_XENSTORE_IDX`` gives; the
bytes in flight (``prod - cons``) are the coloured arc between them, and the bytes the
current step moved an index over are outlined.

The indices come from the trace (the guest's ``<kernel>/ring`` table: ``req_prod``,
``rsp_cons``; the daemon's ``xenstored/ring/d<N>``: ``req_cons``, ``rsp_prod``), so the
picture steps back by replay like every view. Given a followed ``RingView``
(``frames=``), the arc is cut into headers and payloads as RingView frames them;
``initial=`` names a table holding indices written into the page before either side
ran (the ``ring-not-quiescent`` fault's ``toolstack/store_page``).
"""

from __future__ import annotations

import math
from typing import Any

from xenlab.abi.xs_wire import MASK_XENSTORE_IDX, XENSTORE_RING_SIZE
from xenlab.views.picture import Picture
from xenlab.views.ring import COLORS, PALE, RingView, _taken
from xenlab.views.stepper import Context

_U32 = 0xFFFFFFFF
RINGS = ("req", "rsp")
#: who writes which index: the guest kernel produces requests and consumes responses
GUEST_FIELDS = ("req_prod", "rsp_cons")
DAEMON_FIELDS = ("req_cons", "rsp_prod")
RADII = {"req": (1.0, 0.22), "rsp": (0.68, 0.22)}  # outer radius, width
FLIGHT = {"req": "#f4a742", "rsp": "#6fa8dc"}


#: hands closer than this many slots share one label (two 2-line labels at r=1.2 would overlap)
NEAR = 64


def slots_text(start: int, n: int) -> str:
    """The slots n bytes from free-running index *start* occupy, split at the wrap."""
    if n <= 0:
        return "no slots"
    a = MASK_XENSTORE_IDX(start)
    end = a + n - 1
    if end < XENSTORE_RING_SIZE:
        return f"slots {a}..{end}"
    return f"slots {a}..{XENSTORE_RING_SIZE - 1} then {0}..{end - XENSTORE_RING_SIZE} (wraps from 1023 to 0)"


def _angle(idx: float) -> float:
    """Degrees (counter-clockwise from 3 o'clock) of the start of slot position *idx* (0 at 12, clockwise)."""
    return 90.0 - 360.0 * idx / XENSTORE_RING_SIZE


class RingPicture(Picture):
    """``RingPicture("dom0", domid=0)``: dom0's store ring as two circles, for a Stepper."""

    size = (5.2, 5.2)

    def __init__(self, kernel: str = "dom0", domid: int | None = None, *,
                 frames: RingView | None = None, initial: str | None = None) -> None:
        super().__init__()
        self.kernel = kernel
        # the lab names kernels dom0, domU1, domU2...: the domid is the number
        self.domid = domid if domid is not None else int(kernel.removeprefix("domU").removeprefix("dom") or 0)
        self.frames = frames
        self.initial = initial  # a table holding what was in the page before either side wrote it
        self.title = f"the store ring of {kernel}, drawn as a ring"

    # -- data ------------------------------------------------------------------------------------
    def _tables(self) -> tuple[str, ...]:
        tables = (f"{self.kernel}/ring", f"xenstored/ring/d{self.domid}")
        return tables + ((self.initial,) if self.initial else ())

    def indices(self, ctx: Context) -> dict[str, int]:
        """The four free-running indices after this step (0 where nothing was recorded yet)."""
        guest, daemon = (ctx.table(t) for t in self._tables()[:2])
        initial = ctx.table(self.initial) if self.initial else {}
        out = {}
        for f in GUEST_FIELDS + DAEMON_FIELDS:
            first, second = (guest, daemon) if f in GUEST_FIELDS else (daemon, guest)
            v = first.get(f, second.get(f, initial.get(f, 0)))
            out[f] = int(v) if isinstance(v, int) else 0
        return out

    def moved(self, ctx: Context) -> dict[str, tuple[int, int]]:
        """index name -> (before, after) for each index this step changed."""
        out = {}
        for t in self._tables():
            for f in GUEST_FIELDS + DAEMON_FIELDS:
                c = ctx.changed.get((t, f))
                if c is not None and isinstance(c.after, int):
                    out[f] = (int(c.before) if isinstance(c.before, int) else 0, int(c.after))
        return out

    def _segments(self, ctx: Context) -> dict[str, list[Any]]:
        if self.frames is None:
            return {}
        raw = self.frames._at(ctx.index)
        if raw is None:
            return {}
        d = self.frames.decode(raw)
        return {r: d[r]["segs"] for r in RINGS}

    # -- text ------------------------------------------------------------------------------------
    def describe(self, ctx: Context) -> str:
        """Both rings' hands and bytes in flight, and what this step moved, as stable text."""
        ix = self.indices(ctx)
        moved = self.moved(ctx)
        lines = [f"store ring of {self.kernel} (d{self.domid}): 1024 slots per ring, "
                 "slot 0 at the top, clockwise"]
        for r, who in (("req", "guest -> xenstored"), ("rsp", "xenstored -> guest")):
            cons, prod = ix[f"{r}_cons"], ix[f"{r}_prod"]
            n = (prod - cons) & _U32
            state = (f"{n} bytes in flight ({slots_text(cons, n)})" if 0 < n <= XENSTORE_RING_SIZE
                     else "empty" if n == 0 else f"INVALID: prod - cons = {n} > 1024")
            lines.append(f"{r} ({who}): cons {cons:#x} -> slot {MASK_XENSTORE_IDX(cons)}, "
                         f"prod {prod:#x} -> slot {MASK_XENSTORE_IDX(prod)}, "
                         f"{prod // XENSTORE_RING_SIZE} full turns; {state}")
        for f, (a, b) in sorted(moved.items()):
            n = (b - a) & _U32
            lines.append(f"this step: {f} {a:#x} -> {b:#x}, {n} bytes over {slots_text(a, n)}")
        return "\n".join(lines)

    def alt(self, ctx: Context) -> str:
        """Which ring has bytes in flight, where the hands point, what this step moved."""
        ix = self.indices(ctx)
        parts = []
        for r in RINGS:
            cons, prod = ix[f"{r}_cons"], ix[f"{r}_prod"]
            n = (prod - cons) & _U32
            parts.append(f"{r} ring: {n} bytes in flight between {r}_cons at slot {MASK_XENSTORE_IDX(cons)} "
                         f"and {r}_prod at slot {MASK_XENSTORE_IDX(prod)}")
        moved = self.moved(ctx)
        tail = "; this step moved " + ", ".join(
            f"{f} by {(b - a) & _U32} bytes" for f, (a, b) in sorted(moved.items())) if moved else ""
        return (f"Two circles of 1024 slots ({self.kernel}'s store page): " + "; ".join(parts) + tail + ".")

    # -- picture ---------------------------------------------------------------------------------
    def draw(self, fig: Any, ctx: Context) -> None:
        """Two annuli of 1024 slot ticks, in-flight arcs, the moved bytes outlined, four hands."""
        from matplotlib.collections import LineCollection, PatchCollection
        from matplotlib.patches import FancyArrowPatch, Wedge

        ax = fig.add_axes((0.0, 0.0, 1.0, 0.94))
        ax.set_xlim(-1.32, 1.32)
        ax.set_ylim(-1.32, 1.32)
        ax.set_aspect("equal")
        ax.axis("off")
        ix = self.indices(ctx)
        moved = self.moved(ctx)
        segs = self._segments(ctx)

        wedges: list[Any] = []  # one PatchCollection: add_patch per wedge costs ~1 ms each

        def arc(ring: str, start: int, n: int, **kw: Any) -> None:
            outer, width = RADII[ring]
            a = MASK_XENSTORE_IDX(start)
            wedges.append(Wedge((0, 0), outer, _angle(a + n), _angle(a), width=width, **kw))

        for ring in RINGS:
            outer, width = RADII[ring]
            wedges.append(Wedge((0, 0), outer, 0, 360, width=width, facecolor="#f3f3f3", edgecolor="#999",
                                linewidth=0.6))
            ticks = []
            for s in range(XENSTORE_RING_SIZE):
                th = math.radians(_angle(s))
                inner = outer - width * (0.35 if s % 64 else 1.0)
                ticks.append([(inner * math.cos(th), inner * math.sin(th)),
                              (outer * math.cos(th), outer * math.sin(th))])
            ax.add_collection(LineCollection(ticks, colors="#d0d0d0", linewidths=0.25))
            cons, prod = ix[f"{ring}_cons"], ix[f"{ring}_prod"]
            n = (prod - cons) & _U32
            if segs.get(ring):
                for s in segs[ring]:
                    done = _taken(s, cons, prod) == s.length
                    arc(ring, s.start, s.length, facecolor=(PALE if done else COLORS)[s.kind],
                        edgecolor="#777", linewidth=0.3)
            elif 0 < n <= XENSTORE_RING_SIZE:
                arc(ring, cons, n, facecolor=FLIGHT[ring], edgecolor="#555", linewidth=0.4)
            for f in (f"{ring}_cons", f"{ring}_prod"):
                if f in moved:
                    a, b = moved[f]
                    arc(ring, a, (b - a) & _U32 or 0, facecolor="none", edgecolor="#000", linewidth=1.8)
            ax.text(0, outer - width / 2, ring, ha="center", va="center", fontsize=8, fontweight="bold",
                    color="#333")
        ax.add_collection(PatchCollection(wedges, match_original=True))
        # the hands: cons red, prod green, from the centre to the slot they point at
        for ring in RINGS:
            outer, width = RADII[ring]
            cons, prod = ix[f"{ring}_cons"], ix[f"{ring}_prod"]
            same = MASK_XENSTORE_IDX(cons) == MASK_XENSTORE_IDX(prod)
            gap = (MASK_XENSTORE_IDX(prod) - MASK_XENSTORE_IDX(cons)) % XENSTORE_RING_SIZE
            near = not same and min(gap, XENSTORE_RING_SIZE - gap) < NEAR  # two labels would overlap
            for f, color, idx in ((f"{ring}_cons", "#c00000", cons), (f"{ring}_prod", "#008000", prod)):
                th = math.radians(_angle(MASK_XENSTORE_IDX(idx)))
                tip, base = outer + (0.06 if ring == "req" else 0.0), outer - width - 0.03
                ax.add_patch(FancyArrowPatch((base * math.cos(th), base * math.sin(th)),
                                             (tip * math.cos(th), tip * math.sin(th)),
                                             arrowstyle="-|>", mutation_scale=8, color=color,
                                             linewidth=2.2 if f in moved else 1.0, alpha=0.9))
                if (same or near) and f.endswith("cons"):
                    continue  # one label for both hands
                if near:  # both hands' values in one label, at the producer's hand
                    label = "\n".join(f"{ring}_{h} {v:#x} (slot {MASK_XENSTORE_IDX(v)})"
                                       for h, v in (("cons", cons), ("prod", prod)))
                else:
                    label = (f"{ring}_cons = {ring}_prod\n{idx:#x} (slot {MASK_XENSTORE_IDX(idx)})" if same
                             else f"{f}\n{idx:#x} (slot {MASK_XENSTORE_IDX(idx)})")
                r = 1.2 if ring == "req" else 0.3
                ax.text(r * math.cos(th), r * math.sin(th), label, ha="center", va="center", fontsize=7.5,
                        color="#333" if same or near else color,
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
        # slot numbers around the outside and the wrap
        for s in range(128, XENSTORE_RING_SIZE, 128):
            th = math.radians(_angle(s))
            ax.text(1.06 * math.cos(th), 1.06 * math.sin(th), str(s), ha="center", va="center", fontsize=7,
                    color="#777")
        ax.annotate("", xy=(0.07, 0.97), xytext=(-0.07, 0.97),
                    arrowprops={"arrowstyle": "->", "color": "#555", "connectionstyle": "arc3,rad=-0.2"})
        ax.text(-1.3, 1.25, "slot 0 at the top, clockwise;\n1023 wraps to 0 at the top\n"
                "red: cons, green: prod;\noutlined: moved this step", ha="left", va="top", fontsize=7,
                color="#555")
        flight = [f"{r}: {(ix[f'{r}_prod'] - ix[f'{r}_cons']) & _U32} B in flight" for r in RINGS]
        ax.text(0, 0.0, "\n".join(flight), ha="center", va="center", fontsize=7.5)
        step = ctx.step
        fig.suptitle(f"{self.kernel} store ring after step {ctx.index}"
                     + (f": {step.function}" if step else ""), fontsize=9, y=0.985)

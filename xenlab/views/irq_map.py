"""IrqMap: a kernel's dynamic IRQ range drawn as a grid, ports pointing at the IRQs they raise.

Each cell is one IRQ number, coloured by what ``irq_info`` says is bound to it (free,
VIRQ, IPI, caller port, local port, a plain event channel, PIRQ, or taken without a
binding). Arrows run from the event-channel ports (``<kernel>/evtchn_to_irq``) to their
IRQ. On a ``find_unbound_irq`` step (2.6.18) the cells its scan looked at light up and
the IRQ it returned is framed; when every cell is taken the map says EXHAUSTED, which
is 2.6.18's ``-ENOSPC`` at 256 dynamic IRQs. A modern kernel has no fixed window: its
IRQ numbers come from ``irq_alloc_descs_from`` and start after the legacy ones; give
``beside=(modern_trace, "dom0")`` to draw that numbering next to the 2.6.18 one, at the
end of the stage of the same name.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from xenlab.base.trace import Trace
from xenlab.views.picture import Picture
from xenlab.views.stepper import Context

if TYPE_CHECKING:
    from xenlab.linux.kernel import Kernel

COLS = 16
KINDS = {  # irq_info type -> (label, colour)
    "IRQT_VIRQ": ("VIRQ", "#6fa8dc"),
    "IRQT_IPI": ("IPI", "#93c47d"),
    "IRQT_CALLER_PORT": ("caller port", "#f4a742"),
    "IRQT_LOCAL_PORT": ("local port", "#c27ba0"),
    "IRQT_EVTCHN": ("event channel (modern)", "#8e7cc3"),
    "IRQT_PIRQ": ("PIRQ", "#a0a0a0"),
    "taken": ("taken (no binding recorded)", "#e06666"),
}
FREE_COLOR = "#f3f3f3"
_SCAN = re.compile(r"(\d+) in use before IRQ (\d+)")
_ALLOC = re.compile(r"-> IRQ (\d+)")


def _num(key: str) -> int | None:
    try:
        return int(key)
    except ValueError:
        return None


def irq_kind(info: Any, bindcount: Any = 0) -> str | None:
    """The irq_info type name of one IRQ (2.6.18 packs it in an int, modern keeps a tuple); None if free."""
    if isinstance(info, int) and info:
        from xenlab.linux.xenlinux import evtchn  # 2.6.18's type << 24 | index << 16 | port

        t = evtchn.type_from_irq_info(info)
        return evtchn.IRQT_NAMES_L18[t] if t < len(evtchn.IRQT_NAMES_L18) else str(t)
    if isinstance(info, (tuple, list)) and info and info[0] != "IRQT_UNBOUND":
        return str(info[0])
    if isinstance(bindcount, int) and bindcount > 0:
        return "taken"
    return None


def _compact(nums: list[int]) -> str:
    """[1, 2, 3, 7] -> '1..3, 7'."""
    runs: list[list[int]] = []
    for n in sorted(nums):
        if runs and runs[-1][1] == n - 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(f"{a}..{b}" if b > a else str(a) for a, b in runs) or "-"


class IrqMap(Picture):
    """``IrqMap("dom0", base=256, count=256)``: 2.6.18's DYNIRQ window; ``IrqMap.of(kernel)`` picks it."""

    size = (7.6, 5.2)

    def __init__(self, kernel: str = "dom0", *, base: int = 256, count: int = 256,
                 label: str = "2.6.18 DYNIRQ",
                 beside: tuple[Trace, str] | None = None, ports: int = 18) -> None:
        super().__init__()
        self.kernel = kernel
        self.base, self.count, self.label = base, count, label
        self.beside = beside
        self.max_ports = ports
        self.title = f"the IRQ map of {kernel}"

    @classmethod
    def of(cls, kernel: Kernel, **kw: Any) -> IrqMap:
        """The map of a Kernel: its DYNIRQ window if it has one, else the first 64 dynamic numbers."""
        ranges = kernel.irq_ranges()
        if "DYNIRQ" in ranges:
            base, count = ranges["DYNIRQ"]
            return cls(kernel.name, base=base, count=count, **kw)
        return cls(kernel.name, base=0, count=64, label="modern: irq_alloc_descs", **kw)

    # -- data ------------------------------------------------------------------------------------
    def cells(self, ctx: Context, kernel: str | None = None, base: int | None = None,
              count: int | None = None) -> dict[int, str]:
        """IRQ -> kind for every IRQ in the window that is not free."""
        k = kernel or self.kernel
        base = self.base if base is None else base
        count = self.count if count is None else count
        info, bind = ctx.table(f"{k}/irq_info"), ctx.table(f"{k}/irq_bindcount")
        out = {}
        for key in set(info) | set(bind):
            n = _num(key)
            if n is None or not base <= n < base + count:
                continue
            kind = irq_kind(info.get(key, 0), bind.get(key, 0))
            if kind is not None:
                out[n] = kind
        for irq in ctx.table(f"{k}/evtchn_to_irq").values():
            if isinstance(irq, int) and base <= irq < base + count and irq not in out:
                out[irq] = "taken"
        return out

    def ports(self, ctx: Context, kernel: str | None = None) -> list[tuple[int, int]]:
        """(port, irq) of every port bound to an IRQ, by port."""
        e2i = ctx.table(f"{kernel or self.kernel}/evtchn_to_irq")
        return sorted((p, irq) for key, irq in e2i.items()
                      if (p := _num(key)) is not None and isinstance(irq, int) and irq >= 0)

    def scan(self, ctx: Context) -> tuple[range, int | None] | None:
        """The IRQs this step's allocation looked at and the one it returned (None: not an allocation)."""
        s = ctx.step
        if s is None or s.actor != self.kernel:
            return None
        if s.function == "find_unbound_irq":
            if "all" in s.summary and "in use" in s.summary:
                return range(self.base, self.base + self.count), None
            m = _SCAN.search(s.summary)
            if m:
                found = int(m.group(2))
                return range(self.base, found + 1), found
        if s.function.startswith("xen_allocate_irq") and (m := _ALLOC.search(s.summary)):
            return range(int(m.group(1)), int(m.group(1)) + 1), int(m.group(1))
        return None

    def _beside_ctx(self, ctx: Context) -> Context | None:
        if self.beside is None:
            return None
        trace, _ = self.beside
        stage = ctx.step.stage if ctx.step else ""
        starts = [i for name, i in trace.stages if name == stage]
        if starts:
            later = [i for _, i in trace.stages if i > starts[0]]
            end = (min(later) if later else len(trace)) - 1
        else:
            end = len(trace) - 1
        return Context.at(trace, max(end, -1))

    # -- text ------------------------------------------------------------------------------------
    def _summary(self, ctx: Context, kernel: str, base: int, count: int, label: str) -> list[str]:
        cells = self.cells(ctx, kernel, base, count)
        free = count - len(cells)
        state = "EXHAUSTED" if free == 0 else f"{free} free"
        lines = [f"{kernel} IRQs {base}..{base + count - 1} ({label}): "
                 f"{len(cells)} of {count} in use, {state}"]
        by: dict[str, list[int]] = {}
        for irq, kind in cells.items():
            by.setdefault(KINDS.get(kind, (kind, ""))[0], []).append(irq)
        if by:
            lines.append("  " + "; ".join(f"{name}: {_compact(irqs)}" for name, irqs in sorted(by.items())))
        ports = [(p, i) for p, i in self.ports(ctx, kernel) if base <= i < base + count]
        if ports:
            shown = ", ".join(f"{p}->{i}" for p, i in ports[: self.max_ports])
            more = f" (+{len(ports) - self.max_ports} more)" if len(ports) > self.max_ports else ""
            lines.append(f"  evtchn_to_irq (port->IRQ): {shown}{more}")
        return lines

    def describe(self, ctx: Context) -> str:
        """The window's use by kind, the port arrows, this step's scan, and the modern numbering."""
        lines = self._summary(ctx, self.kernel, self.base, self.count, self.label)
        sc = self.scan(ctx)
        if sc is not None:
            looked, found = sc
            lines.append(f"  this step: scanned IRQ {looked.start}..{looked.stop - 1} -> "
                         + (f"IRQ {found}" if found is not None else "none free (-ENOSPC)"))
        other = self._beside_ctx(ctx)
        if other is not None and self.beside is not None:
            k = self.beside[1]
            used = [irq for _, irq in self.ports(other, k)]
            top = max(used, default=0)
            lines.append(f"beside it, modern (Linux 6.1) at step {other.index}:")
            lines += self._summary(other, k, 0, max(32, (top // COLS + 1) * COLS), "modern: irq_alloc_descs")
        return "\n".join(lines)

    def alt(self, ctx: Context) -> str:
        """How full the window is, which kinds hold IRQs, and what this step's scan found."""
        cells = self.cells(ctx)
        kinds = sorted({KINDS.get(k, (k, ""))[0] for k in cells.values()})
        sc = self.scan(ctx)
        scan = ""
        if sc is not None:
            scan = (f" This step's scan looked at IRQ {sc[0].start}..{sc[0].stop - 1} and "
                    + (f"returned IRQ {sc[1]}." if sc[1] is not None else "found none free."))
        return (f"A {COLS}-column grid of {self.kernel}'s IRQs {self.base}..{self.base + self.count - 1}: "
                f"{len(cells)} of {self.count} in use ({', '.join(kinds) or 'none'}), with arrows from "
                f"{len(self.ports(ctx))} event-channel ports." + scan)

    # -- picture ---------------------------------------------------------------------------------
    def _grid(self, ax: Any, ctx: Context, kernel: str, base: int, count: int, label: str,
              scan: tuple[range, int | None] | None, arrows: bool) -> None:
        from matplotlib.collections import PatchCollection
        from matplotlib.patches import Rectangle

        cells = self.cells(ctx, kernel, base, count)
        rows = (count + COLS - 1) // COLS
        rects, lit = [], []
        for i in range(count):
            irq = base + i
            x, y = i % COLS, rows - 1 - i // COLS
            kind = cells.get(irq)
            color = KINDS.get(kind, ("", "#e06666"))[1] if kind else FREE_COLOR
            rects.append(Rectangle((x, y), 0.92, 0.92, facecolor=color, edgecolor="#bbb", linewidth=0.3))
            if scan is not None and irq in scan[0]:
                lit.append(Rectangle((x - 0.04, y - 0.04), 1.0, 1.0, facecolor="#ffe600", alpha=0.45,
                                     edgecolor="none"))
        ax.add_collection(PatchCollection(rects, match_original=True))
        if lit:
            ax.add_collection(PatchCollection(lit, match_original=True))
        if scan is not None and scan[1] is not None and base <= scan[1] < base + count:
            i = scan[1] - base
            ax.add_patch(Rectangle((i % COLS - 0.08, rows - 1 - i // COLS - 0.08), 1.08, 1.08,
                                   facecolor="none", edgecolor="#c00000", linewidth=2.0))
        for r in range(rows):
            ax.text(-0.2, r + 0.46, str(base + (rows - 1 - r) * COLS), ha="right", va="center", fontsize=6.5,
                    color="#777")
        free = count - len(cells)
        head = f"{label}: IRQ {base}..{base + count - 1}, {len(cells)} in use"
        head += ", EXHAUSTED (-ENOSPC)" if free == 0 else f", {free} free"
        ax.text(0, rows + 0.4, head, fontsize=7.5, color="#c00000" if free == 0 else "#222", va="bottom")
        ax.set_xlim(-7.5 if arrows else -2.2, COLS + 0.3)
        ax.set_ylim(-0.6, rows + 1.6)
        ax.set_aspect("equal")
        ax.axis("off")
        if not arrows:
            return
        ports = [(p, irq) for p, irq in self.ports(ctx, kernel) if base <= irq < base + count]
        shown = ports[: self.max_ports]
        gap = min(1.0, rows / max(len(shown), 1))
        for j, (p, irq) in enumerate(shown):
            y = rows - 0.5 - j * gap
            i = irq - base
            hit = ctx.is_changed(f"{kernel}/evtchn_to_irq", str(p))
            ax.text(-6.9, y, f"port {p}", fontsize=7, va="center", ha="left",
                    bbox={"boxstyle": "round,pad=0.2", "fc": "#fff3a0" if hit else "white", "ec": "#999",
                          "lw": 0.4})
            ax.annotate("", xy=(i % COLS + 0.46, rows - 1 - i // COLS + 0.46), xytext=(-5.0, y),
                        arrowprops={"arrowstyle": "->", "lw": 1.4 if hit else 0.5,
                                    "color": "#c00000" if hit else "#555", "shrinkA": 0, "shrinkB": 1})
        if len(ports) > len(shown):
            ax.text(-6.9, -0.4, f"+{len(ports) - len(shown)} more ports", fontsize=7, color="#777")

    def draw(self, fig: Any, ctx: Context) -> None:
        """The grid (with port arrows and the scan), and the modern numbering beside it when given."""
        from matplotlib.patches import Patch

        other = self._beside_ctx(ctx)
        ax = fig.add_axes((0.0, 0.08, 0.62 if other else 0.98, 0.84))
        self._grid(ax, ctx, self.kernel, self.base, self.count, self.label, self.scan(ctx), arrows=True)
        if other is not None and self.beside is not None:
            k = self.beside[1]
            top = max((irq for _, irq in self.ports(other, k)), default=0)
            ax2 = fig.add_axes((0.64, 0.30, 0.35, 0.55))
            self._grid(ax2, other, k, 0, max(32, (top // COLS + 1) * COLS), "modern", None, arrows=False)
            ax2.text(0, -0.5, f"Linux 6.1 at step {other.index}: numbers\nfrom irq_alloc_descs, after the"
                     " legacy 0..23", fontsize=7, va="top", color="#555")
        kinds = list(KINDS)
        handles = [Patch(facecolor=FREE_COLOR, edgecolor="#bbb", label="free")]
        handles += [Patch(facecolor=KINDS[k][1], label=KINDS[k][0]) for k in kinds]
        handles.append(Patch(facecolor="#ffe600", alpha=0.45, label="scanned this step"))
        fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7, frameon=False)
        step = ctx.step
        fig.suptitle(f"{self.kernel} IRQ map after step {ctx.index}" + (f": {step.function}" if step else ""),
                     fontsize=9, y=0.985)

"""HandshakeDiagram: the XenbusState handshake drawn from the transition table, devices on it.

One row per side (backend, frontend): the states as nodes left to right in their
numeric order, and one arrow per ``from -> to`` pair the kernel's drivers make, read from
``xenlab.linux.xenbus_transitions.handshake_edges`` (the same table that validates every
``xenbus_switch_state`` in the lab), so the picture cannot drift from the model. Rows
that apply "from any state" (the core's ``xenbus_dev_fatal``, ``xenbus_dev_remove``...)
start at a ``*`` node. Each device sits under the state its ``<kernel>/xenbus_state``
row holds after the step; the switch this step made is drawn red.
"""

from __future__ import annotations

from typing import Any

from xenlab.linux.xenbus_transitions import BACKEND, FRONTEND, TOOLSTACK, handshake_edges, state_name
from xenlab.views.picture import Picture
from xenlab.views.stepper import Context

ORDER = ("*", "Unknown", "Initialising", "InitWait", "Initialised", "Connected", "Closing", "Closed",
         "Reconfiguring", "Reconfigured")


def _short(node: str) -> str:
    """A device's node without its kernel's prefix: backend/vbd/1/51712 -> vbd/1/51712."""
    return node.split("/", 1)[1] if "/" in node else node


class HandshakeDiagram(Picture):
    """``HandshakeDiagram("2.6.18", backend="dom0", frontend="domU1")``."""

    size = (7.6, 5.0)

    def __init__(self, flavour: str = "2.6.18", *, backend: str = "dom0", frontend: str = "domU1") -> None:
        super().__init__()
        self.flavour = flavour
        self.sides = ((BACKEND, backend), (FRONTEND, frontend))
        self.title = f"the XenbusState handshake ({flavour}), drawn from the transition table"

    # -- data ------------------------------------------------------------------------------------
    def edges(self, role: str) -> dict[tuple[str, str], list[str]]:
        """(from, to) -> the drivers (and core) that make that switch, in table order."""
        out: dict[tuple[str, str], list[str]] = {}
        # the toolstack writes each end's first state (Initialising) when it creates the device
        for drv, a, b, fn in handshake_edges(self.flavour, TOOLSTACK) + handshake_edges(self.flavour, role):
            who = out.setdefault((a, b), [])
            if f"{drv}:{fn}" not in who:
                who.append(f"{drv}:{fn}")
        return out

    def devices(self, ctx: Context, kernel: str) -> dict[str, str]:
        """Device node -> its state's name after this step."""
        return {node: state_name(int(v)) for node, v in sorted(ctx.table(f"{kernel}/xenbus_state").items())
                if isinstance(v, int)}

    def switched(self, ctx: Context, kernel: str) -> list[tuple[str, str, str]]:
        """(node, from, to) of every state this step switched in *kernel*."""
        out = []
        for (table, key), c in sorted(ctx.changed.items()):
            if table == f"{kernel}/xenbus_state" and isinstance(c.after, int):
                before = state_name(int(c.before)) if isinstance(c.before, int) else "(none)"
                out.append((key, before, state_name(int(c.after))))
        return out

    # -- the three forms -------------------------------------------------------------------------
    def describe(self, ctx: Context) -> str:
        """Each side's edges, its devices' states, and this step's switch."""
        lines = [f"XenbusState handshake of {self.flavour}, from xenbus_transitions.handshake_edges"]
        for role, kernel in self.sides:
            lines.append(f"{role} ({kernel}):")
            by_from: dict[str, list[str]] = {}
            for (a, b), who in self.edges(role).items():
                names = dict.fromkeys(w.split(":")[0] for w in who)
                by_from.setdefault(a, []).append(f"{b} [{', '.join(names)}]")
            for a in sorted(by_from, key=ORDER.index):
                lines.append(f"  {a} -> " + ", ".join(by_from[a]))
            devs = self.devices(ctx, kernel)
            listed = "; ".join(f"{_short(n)} {s}" for n, s in devs.items())
            lines.append("  devices: " + (listed or "none yet"))
            for node, a, b in self.switched(ctx, kernel):
                ok = (a, b) in self.edges(role) or ("*", b) in self.edges(role)
                note = "" if ok or a == "(none)" else " (NOT IN THE TABLE)"
                lines.append(f"  this step: {node} {a} -> {b}{note}")
        return "\n".join(lines)

    def alt(self, ctx: Context) -> str:
        """Where each side's devices are, and the switch this step made."""
        parts = []
        for role, kernel in self.sides:
            devs = self.devices(ctx, kernel)
            where = ", ".join(f"{_short(n)} in {s}" for n, s in devs.items()) or "no devices yet"
            parts.append(f"{role} ({kernel}, {len(self.edges(role))} arrows): {where}")
        moved = [f"{n} {a} to {b}" for _, k in self.sides for n, a, b in self.switched(ctx, k)]
        return ("Two rows of XenbusStates with the switches each side's drivers make as arrows; "
                + "; ".join(parts) + (f". This step switched {', '.join(moved)}." if moved else "."))

    def draw(self, fig: Any, ctx: Context) -> None:
        """Per side: states as boxes, table edges as arcs (forward above, backward below), devices under."""
        for row, (role, kernel) in enumerate(self.sides):
            ax = fig.add_axes((0.0, 0.5 - 0.48 * row, 1.0, 0.45))
            edges = self.edges(role)
            used = {s for pair in edges for s in pair}
            used |= {"Initialising", "InitWait", "Initialised", "Connected", "Closing", "Closed"}
            nodes = [s for s in ORDER if s in used]
            x = {s: k * 1.0 for k, s in enumerate(nodes)}
            ax.set_xlim(-0.6, len(nodes) - 0.4)
            ax.set_ylim(-1.1, 1.1)
            ax.axis("off")
            hot = {(a, b) for _, a, b in self.switched(ctx, kernel)}
            for a, b in edges:
                if a not in x or b not in x or a == b:
                    continue
                forward = x[b] > x[a]
                red = (a, b) in hot or (a == "*" and any(t == b for _, t in hot))
                rad = -min(0.45, 1.1 / abs(x[b] - x[a]))  # about the same height for short and long arcs
                y = 0.14 if forward else -0.14
                ax.annotate("", xy=(x[b], y), xytext=(x[a], y),
                            arrowprops={"arrowstyle": "-|>", "color": "#c00000" if red else "#6a7fa0",
                                        "lw": 1.8 if red else 0.6, "mutation_scale": 7, "shrinkA": 12,
                                        "shrinkB": 12, "connectionstyle": f"arc3,rad={rad}"})
            devs = self.devices(ctx, kernel)
            at: dict[str, list[str]] = {}
            for node, s in devs.items():
                at.setdefault(s, []).append(_short(node))
            for s in nodes:
                has = s in at
                ax.text(x[s], 0, s if s != "*" else "* (any)", ha="center", va="center", fontsize=7.5,
                        fontweight="bold" if has else "normal",
                        bbox={"boxstyle": "round,pad=0.3", "fc": "#d9ead3" if has else "#f3f3f3",
                              "ec": "#6a7fa0", "lw": 0.6})
                if has:
                    ax.text(x[s], -0.3, "\n".join(at[s]), ha="center", va="top", fontsize=7,
                            color="#1a5e1a")
            ax.text(-0.55, 1.15, f"{role} ({kernel})", fontsize=8, fontweight="bold", va="top")
        fig.suptitle(f"XenbusState handshake ({self.flavour}) after step {ctx.index}: arcs above go forward, "
                     "below go back; red: this step", fontsize=8, y=0.995)

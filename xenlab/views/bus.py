"""BusView: the driver model of every guest kernel, growing as registration and probing proceed.

Reads what the driver model and xenbus record: ``<kernel>/bus`` (bus name),
``<kernel>/driver`` (``bus/driver``), ``<kernel>/device`` (``bus/device``),
``<kernel>/device_driver`` (``bus/device`` -> bound driver) and ``<kernel>/xenbus_state``
(xenstore node -> XenbusState). Each kernel is one column, so dom0's backend and the
domU's frontend stand side by side during the handshake.
"""

from __future__ import annotations

from typing import Any

from xenlab.abi.xenbus import xenbus_strstate
from xenlab.views._html import esc
from xenlab.views.stepper import Context, TablePanel

KINDS = ("bus", "driver", "device", "device_driver", "xenbus_state")


def _split(key: str) -> tuple[str, str]:
    """A driver-model key "bus/name" -> (bus, name); a device on no bus is keyed by its name alone."""
    bus, sep, name = key.partition("/")
    return (bus, name) if sep else ("", key)


def _state(value: Any) -> str:
    if isinstance(value, int):
        return f"{value} ({xenbus_strstate(value)})"
    return str(value)


class BusView(TablePanel):
    """``BusView(kernels=["dom0", "domU1"]).show(trace)``; default: every kernel that has a bus."""

    title = "buses, drivers, devices and xenbus states"

    def __init__(self, kernels: list[str] | None = None) -> None:
        self.kernels = kernels

    def kernel_names(self, ctx: Context) -> list[str]:
        """The kernels to draw: the chosen ones, or every owner of a driver-model table."""
        if self.kernels is not None:
            return list(self.kernels)
        owners = {t.split("/", 1)[0] for t in ctx.state if t.split("/", 1)[-1] in KINDS}
        return sorted(owners, key=lambda o: (o != "dom0", o))

    def lines(self, ctx: Context, k: str) -> list[tuple[str, bool]]:
        """(line, changed-this-step) for one kernel: buses with devices and drivers, then xenbus states."""
        buses = ctx.table(f"{k}/bus")
        drivers = ctx.table(f"{k}/driver")
        devices = ctx.table(f"{k}/device")
        bound = ctx.table(f"{k}/device_driver")
        states = ctx.table(f"{k}/xenbus_state")
        out: list[tuple[str, bool]] = []
        names = sorted(set(buses) | {_split(key)[0] for key in list(drivers) + list(devices)})
        for bus in names:
            label = f"/sys/bus/{bus}" if bus else "/sys/devices (root devices, no bus)"
            out.append((label, ctx.is_changed(f"{k}/bus", bus)))
            for key in sorted((d for d in devices if _split(d)[0] == bus), key=lambda d: _split(d)[1]):
                drv = bound.get(key)
                hit = ctx.is_changed(f"{k}/device", key) or ctx.is_changed(f"{k}/device_driver", key)
                tail = f" -> driver {drv}" if drv else (" (no driver)" if bus else "")
                out.append((f"  device {_split(key)[1]}{tail}", hit))
            for key in sorted(d for d in drivers if _split(d)[0] == bus):
                out.append((f"  driver {_split(key)[1]}", ctx.is_changed(f"{k}/driver", key)))
        if states:
            out.append(("xenbus states:", False))
            for node in sorted(states):
                out.append((f"  {node}: {_state(states[node])}", ctx.is_changed(f"{k}/xenbus_state", node)))
        if not out:
            out.append(("(nothing registered yet)", False))
        return out

    def text(self, ctx: Context) -> str:
        """Every kernel's driver model as stable text ('*' marks what this step changed)."""
        out = []
        for k in self.kernel_names(ctx):
            out.append(f"[{k}]")
            out.extend(("* " if hit else "  ") + line for line, hit in self.lines(ctx, k))
        return "\n".join(out) if out else "(no kernel has registered a bus yet)"

    def html(self, ctx: Context) -> str:
        """One column per kernel, this step's changes highlighted."""
        cols = []
        for k in self.kernel_names(ctx):
            cells = []
            for line, hit in self.lines(ctx, k):
                cell = esc(line).replace("  ", "&nbsp;&nbsp;")
                cells.append(f"<span class='xl-new'>{cell}</span>" if hit else cell)
            rows = "<br>".join(cells)
            cols.append(f"<div><b>{esc(k)}</b><br>{rows}</div>")
        if not cols:
            return "<i>no kernel has registered a bus yet</i>"
        return f"<div class='xl-cols'>{''.join(cols)}</div>"

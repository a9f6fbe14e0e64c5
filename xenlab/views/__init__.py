"""Views: the step-through widgets of the lessons (the only layer importing ipywidgets/matplotlib).

Every view has a stable text form (``.text()``, also its ``text/plain`` repr) so nbval
can compare it and a learner without widgets still sees the state; ipywidgets is
imported lazily, the first time a widget is actually built.

    Stepper(trace, panels)   Play / slider / previous / next / jump to a stage
    StoreView()              xenstore tree, permissions, watches (panel)
    IrqView("dom0")          IRQ space, evtchn_to_irq, port tables (panel)
    BusView()                buses, drivers, devices, xenbus states (panel)
    RingView(buf)            req/rsp rings of a store page (panel or standalone)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Stepper": "stepper", "Context": "stepper", "TablePanel": "stepper",
    "StoreView": "store", "IrqView": "irq", "BusView": "bus",
    "RingView": "ring", "decode_ring": "ring",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"xenlab.views.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'xenlab.views' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)

"""Views: the step-through widgets of the lessons (the only layer importing ipywidgets/matplotlib).

Every view has a stable text form (``.text()``, also its ``text/plain`` repr) so nbval
can compare it and a learner without widgets still sees the state; ipywidgets is
imported inside the functions that build a widget (``Stepper.widget``,
``StoreView.controls``), the first time one is actually built, so importing the views
costs nothing without a notebook.

    Stepper(trace, panels)   play/pause, previous/next, slider, stage menu, go-to box
    StoreView()              xenstore tree, permissions, watches (panel)
    IrqView("dom0")          IRQ space, evtchn_to_irq, port tables (panel)
    BusView()                buses, drivers, devices, xenbus states (panel)
    RingView(buf)            req/rsp rings of a store page (panel or standalone)
"""

from __future__ import annotations

from xenlab.views.bus import BusView
from xenlab.views.irq import IrqView
from xenlab.views.ring import RingView
from xenlab.views.stepper import Context, Stepper, TablePanel
from xenlab.views.store import StoreView

__all__ = ["BusView", "Context", "IrqView", "RingView", "Stepper", "StoreView", "TablePanel"]

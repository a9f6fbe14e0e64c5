"""Views: the step-through widgets of the lessons (the only layer importing ipywidgets/matplotlib).

Every view has a stable text form (``.text()``, also its ``text/plain`` repr) so nbval
can compare it and a learner without widgets still sees the state; ipywidgets is
imported inside the functions that build a widget (``Stepper.widget``,
``StoreView.controls``), the first time one is actually built, so importing the views
costs nothing without a notebook.

    Stepper(trace, panels)   play/pause, previous/next, slider, stage menu, go-to box
    StoreView()              xenstore tree, permissions, watches (panel)
    IrqView("dom0")          IRQ space, evtchn_to_irq, port tables (panel)
    FifoView(1)              a domain's event delivery: FIFO control block, queues, event words
                             (or, on the 2-level ABI, the shared_info bits) (panel)
    BusView()                buses, drivers, devices, xenbus states (panel)
    RingView(buf)            req/rsp rings of a store page (panel or standalone)
    TableView({label: table}) a few trace tables row by row (/proc/xen modes, xenbus globals...)
    KthreadView("dom0")      kernel threads and the wait queue each sleeps on, locks, probe_work, lists
    StorePageView("dom0")    the store page: virt -> phys -> pfn -> mfn, beside Xen's p2m

Pictures (matplotlib, imported only when one is drawn; text form only without it):
    RingPicture("dom0")      the store ring drawn as two rings of 1024 slots, cons/prod hands
    IrqMap("dom0")           the dynamic IRQ range as a grid, ports -> IRQs, find_unbound_irq's scan
    SequenceDiagram()        the bring-up around the current step: lanes, hypercalls, notifications
    HandshakeDiagram()       the XenbusState handshake from the transition table, devices on it
    picture.at(trace, i)     one picture at one step, for a cell (PNG + its text form)
"""

from __future__ import annotations

from xenlab.views.bus import BusView
from xenlab.views.fifo import FifoView
from xenlab.views.handshake import HandshakeDiagram
from xenlab.views.irq import IrqView
from xenlab.views.irq_map import IrqMap
from xenlab.views.kthreads import KthreadView, StorePageView
from xenlab.views.picture import Picture
from xenlab.views.ring import RingView
from xenlab.views.ring_picture import RingPicture
from xenlab.views.sequence import SequenceDiagram
from xenlab.views.stepper import Context, Stepper, TablePanel
from xenlab.views.store import StoreView
from xenlab.views.tables import TableView

__all__ = ["BusView", "Context", "FifoView", "HandshakeDiagram", "IrqMap", "IrqView", "KthreadView",
           "Picture", "RingPicture", "RingView", "SequenceDiagram", "Stepper", "StorePageView", "StoreView",
           "TablePanel", "TableView"]

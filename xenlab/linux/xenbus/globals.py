"""The xenbus globals a guest kernel keeps (xen_store_evtchn, xen_store_interface, xenstored_ready ...).

2.6.18 keeps them as file-scope variables of drivers/xen/xenbus/xenbus_probe.c and
xenbus_comms.c; modern Linux in xenbus_probe.c (plus xen_store_domain_type). One
XenbusGlobals hangs off each Kernel as ``kernel.xb``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

XS_UNKNOWN, XS_PV, XS_HVM, XS_LOCAL = 0, 1, 2, 3
XS_DOMAIN_TYPE_NAMES = {XS_UNKNOWN: "XS_UNKNOWN", XS_PV: "XS_PV", XS_HVM: "XS_HVM", XS_LOCAL: "XS_LOCAL"}


@dataclass
class XenbusGlobals:
    """xen_store_evtchn, xen_store_mfn/gfn, xen_store_interface, xenstored_ready, the xenbus IRQ."""

    xen_store_evtchn: int = 0
    xen_store_mfn: int = 0
    xen_store_page: Any = None  # the Page (xenlab.xen.memory) holding the ring
    xen_store_interface: Any = None  # xenstore_domain_interface laid over that page
    xenstored_ready: int = 0
    xen_store_domain_type: int = XS_UNKNOWN
    xenbus_irq: int = 0


def xb_globals(kernel: Any) -> XenbusGlobals:
    """The kernel's xenbus globals, created on first use."""
    xb = getattr(kernel, "xb", None)
    if xb is None:
        xb = XenbusGlobals()
        kernel.xb = xb
    return xb

"""drivers/xen/xenfs/xenstored.c, Linux 6.1: what dom0's /proc/xen/xsd_kva and xsd_port read."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel


def xsd_kva_open(kernel: PvopsKernel) -> str:
    """xsd_kva_open: "0x%p" of xen_store_interface (a stable stand-in for the hashed pointer).

    %p prints a hashed value; the lab uses a fixed mixing of the page frame so runs stay identical.
    """
    xb = kernel.xb
    pfn = kernel.hv.domains[kernel.domid].mfn_to_pfn(xb.xen_store_mfn)
    return f"0x{(pfn * 0x9E3779B1) & 0xFFFFFFFF:016x}"


def xsd_port_open(kernel: PvopsKernel) -> str:
    """xsd_port_open: "%d" of xen_store_evtchn."""
    return f"{kernel.xb.xen_store_evtchn}"

"""arch/x86/include/asm/xen/page.h, Linux 6.1: the frame number a guest hands Xen for one of its pages.

A grant or a FIFO control block names a page by its *gfn*: a PV guest's gfn is the machine
frame (pfn_to_mfn through its p2m list); an auto-translated (HVM) guest's is its own pfn,
which Xen translates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.abi.version import XENFEAT_auto_translated_physmap, XENVER_get_features

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel
    from xenlab.xen.memory import Page


def xen_feature(kernel: PvopsKernel, flag: int) -> bool:
    """xen_feature (include/xen/features.h): a bit of what XENVER_get_features reported."""
    features = kernel.hv.xen_version(kernel.domid, XENVER_get_features)
    return isinstance(features, int) and features >= 0 and bool(features >> flag & 1)


def pfn_to_gfn(kernel: PvopsKernel, pfn: int) -> int:
    """pfn_to_gfn: the pfn itself when auto-translated, else pfn_to_mfn(pfn)."""
    if xen_feature(kernel, XENFEAT_auto_translated_physmap):
        return pfn
    return kernel.hv.domains[kernel.domid].pfn_to_mfn(pfn)


def virt_to_gfn(kernel: PvopsKernel, page: Page) -> int:
    """virt_to_gfn: pfn_to_gfn(virt_to_pfn(v)) of a page of the guest's own memory."""
    return pfn_to_gfn(kernel, kernel.hv.domains[kernel.domid].mfn_to_pfn(page.mfn))

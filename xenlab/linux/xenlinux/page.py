"""include/asm-x86_64/mach-xen/asm/page.h, XenLinux 2.6.18: pfn_to_mfn and virt_to_mfn.

The frame a driver puts in a grant: a PV guest's machine frame, looked up in its p2m; with
XENFEAT_auto_translated_physmap (the PV-on-HVM drivers in an HVM guest) the pfn itself,
which Xen translates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.abi.version import XENFEAT_auto_translated_physmap, XENVER_get_features

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel
    from xenlab.xen.memory import Page


def xen_feature(kernel: XenLinuxKernel, flag: int) -> bool:
    """xen_feature (include/xen/features.h): a bit of what setup_xen_features read (XENVER_get_features)."""
    features = kernel.hv.xen_version(kernel.domid, XENVER_get_features)
    return isinstance(features, int) and features >= 0 and bool(features >> flag & 1)


def pfn_to_mfn(kernel: XenLinuxKernel, pfn: int) -> int:
    """pfn_to_mfn: the pfn itself when auto-translated, else phys_to_machine_mapping[pfn]."""
    if xen_feature(kernel, XENFEAT_auto_translated_physmap):
        return pfn
    return kernel.hv.domains[kernel.domid].pfn_to_mfn(pfn)


def virt_to_mfn(kernel: XenLinuxKernel, page: Page) -> int:
    """virt_to_mfn: pfn_to_mfn(__pa(v) >> PAGE_SHIFT) of a page of the guest's own memory."""
    return pfn_to_mfn(kernel, kernel.hv.domains[kernel.domid].mfn_to_pfn(page.mfn))

"""mm/page_alloc.c, Linux 6.1: the guest's own pages (get_zeroed_page, free_page), as the lab needs them.

A page the guest freed earlier is reused first (``kernel.free_pages``); otherwise the
domain gets a new frame at its next pfn (populate_physmap), so pfn and mfn are both known.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel
    from xenlab.xen.memory import Page


def get_zeroed_page(kernel: PvopsKernel) -> Page:
    """get_zeroed_page: a zeroed page of the guest's own memory."""
    if kernel.free_pages:
        page = kernel.free_pages.pop()
        page.buf[:] = bytes(len(page.buf))
        return page
    return kernel.hv.populate_physmap(kernel.domid)


def free_page(kernel: PvopsKernel, page: Page) -> None:
    """free_page: the page goes back to the guest's free pool (the frame stays the domain's)."""
    kernel.free_pages.append(page)
    kernel.record("free_page", f"page mfn {page.mfn:#x} back to the free pool", "mm/page_alloc.c")

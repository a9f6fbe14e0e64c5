"""mm/page_alloc.c, Linux 2.6.18 as XenLinux runs it: the pages the Xen drivers ask for.

A page the kernel freed earlier is reused first (``kernel.free_pages``, last freed first);
otherwise the domain gets a new frame at its next pfn (what populate_physmap gives), so
pfn and mfn are both known.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel
    from xenlab.xen.memory import Page

SRC = "mm/page_alloc.c"


def get_zeroed_page(kernel: XenLinuxKernel) -> Page:
    """get_zeroed_page: a zeroed page of the guest's own memory."""
    if kernel.free_pages:
        page = kernel.free_pages.pop()
        page.buf[:] = bytes(len(page.buf))
        return page
    return kernel.hv.memory.alloc_page(kernel.domid)


def free_page(kernel: XenLinuxKernel, page: Page) -> None:
    """free_page: the page goes back to the kernel's free pool (the frame stays the domain's)."""
    kernel.free_pages.append(page)
    kernel.record("free_page", f"page mfn {page.mfn:#x} back to the free pool", SRC)

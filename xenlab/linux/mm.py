"""The guest's page allocator as far as xenbus and the drivers use it (mm/page_alloc.c).

Both kernels get a page for a ring or the store with ``get_zeroed_page`` and give it back
with ``free_page``. A freed page stays the domain's frame and goes on the kernel's free
list (``kernel.free_pages``), which ``get_zeroed_page`` takes from first; otherwise the
domain gets a new frame at its next pfn (XENMEM_populate_physmap), so a page's pfn and
mfn are both known.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xenlab.linux.kernel import Kernel
    from xenlab.xen.memory import Page

SRC = "mm/page_alloc.c"


def get_zeroed_page(kernel: Kernel) -> Page:
    """get_zeroed_page: a zeroed page of the guest's own memory, a freed one first (mm/page_alloc.c)."""
    if kernel.free_pages:
        page = kernel.free_pages.pop()
        page.buf[:] = bytes(len(page.buf))
        return page
    return kernel.hv.populate_physmap(kernel.domid)


def free_page(kernel: Kernel, page: Page) -> None:
    """free_page: back to the guest's free pool; the frame stays the domain's (mm/page_alloc.c)."""
    kernel.free_pages.append(page)
    kernel.record("free_page", f"page mfn {page.mfn:#x} back to the free pool", SRC)

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
PAGE_SHIFT = 12
#: the keys of a "<kernel>/store_page" row set, in the order a learner follows them
CHAIN = ("virt", "phys", "pfn", "mfn")


def mfn_to_virt(kernel: Kernel, mfn: int) -> int:
    """mfn_to_virt: __va(mfn_to_pfn(mfn) << PAGE_SHIFT), the frame's address in the direct map."""
    pfn = kernel.hv.domains[kernel.domid].mfn_to_pfn(mfn)
    return kernel.PAGE_OFFSET + (pfn << PAGE_SHIFT)


def page_chain(kernel: Kernel, mfn: int) -> tuple[tuple[str, int], ...]:
    """A PV guest's page, both ways round: kernel virtual (direct map) -> pseudo-physical -> pfn -> mfn
    (the p2m; m2p goes back), as ((key, value), ...) in CHAIN's order."""
    virt = mfn_to_virt(kernel, mfn)
    phys = virt - kernel.PAGE_OFFSET  # __pa: a direct-map address less PAGE_OFFSET
    return (("virt", virt), ("phys", phys), ("pfn", phys >> PAGE_SHIFT), ("mfn", mfn))


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

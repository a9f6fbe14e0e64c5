"""`xl create` of an HVM guest: libxl__build_hvm and the domain builder's HVM parts.

Theory of operation
-------------------
An HVM guest has no start_info. Where a PV guest's builder writes the store and console
pages' mfns and ports into start_info, ``libxl__build_hvm`` (tools/libs/light/libxl_dom.c)
lays out guest-physical memory and lets the domain builder (tools/libs/guest/xg_dom_x86.c)
leave everything in HVM parameters, which the guest reads with HVMOP_get_param:

1. the memory layout: RAM from pfn 0 up to ``lowmem_end``; the MMIO hole below 4G starts at
   ``mmio_start = 4G - HVM_BELOW_4G_MMIO_LENGTH`` (a guest with a device model);
2. ``alloc_magic_pages_hvm``: the 8 special pages at ``special_pfn(i) =
   X86_HVM_END_SPECIAL_REGION - X86_HVM_NR_SPECIAL_PAGES + i`` (inside the hole),
   populated and cleared, and their params set: STORE_PFN (SPECIALPAGE_XENSTORE),
   BUFIOREQ_PFN, IOREQ_PFN, CONSOLE_PFN, PAGING/MONITOR/SHARING_RING_PFN; with a device
   model 8 ioreq-server pages below them (IOREQ_SERVER_PFN, NR_IOREQ_SERVER_PAGES); the
   identity page table (IDENT_PT, a byte address);
3. ``bootlate_hvm``: CONSOLE_EVTCHN and STORE_EVTCHN, the ports libxl__build_pre allocated;
4. ``xc_dom_gnttab_init``: grant refs 0 and 1 name the console and store pages by **gfn**
   (the guest is translated), and libxl's ``store_mfn`` -- what it writes to
   store/ring-ref and hands xenstored in INTRODUCE -- is the store page's pfn.

Every parameter is set by dom0 through HVMOP_set_param (``Hypervisor.hvm_set_param``), so
the trace shows each one as Xen stored it.

Not modelled: hvmloader and the firmware, QEMU (the device model: no ioreq server runs,
the emulated devices are not unplugged because there are none), the hvm_info page, the
e820 and ACPI tables, video memory (``mem_size`` is the whole of memory), populating all
of RAM up front (the lab allocates the guest's pages when its kernel first asks for them,
numbered from pfn 0 below the hole), and the HVM start_info used by PVH.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.abi.hvm import (
    HVM_BELOW_4G_MMIO_LENGTH,
    HVM_PARAM_BUFIOREQ_PFN,
    HVM_PARAM_CONSOLE_EVTCHN,
    HVM_PARAM_CONSOLE_PFN,
    HVM_PARAM_IDENT_PT,
    HVM_PARAM_IOREQ_PFN,
    HVM_PARAM_IOREQ_SERVER_PFN,
    HVM_PARAM_MONITOR_RING_PFN,
    HVM_PARAM_NR_IOREQ_SERVER_PAGES,
    HVM_PARAM_PAGING_RING_PFN,
    HVM_PARAM_SHARING_RING_PFN,
    HVM_PARAM_STORE_EVTCHN,
    HVM_PARAM_STORE_PFN,
    X86_HVM_END_SPECIAL_REGION,
    X86_HVM_NR_SPECIAL_PAGES,
)
from xenlab.xen.memory import PAGE_SHIFT

if TYPE_CHECKING:
    from xenlab.sim.toolstack import BuiltDomain, Toolstack

SRC_XG = "tools/libs/guest/xg_dom_x86.c"
SRC_LIBXL = "tools/libs/light/libxl_dom.c"

# xg_dom_x86.c's special pages, in the order of their pfns
SPECIALPAGE_PAGING = 0
SPECIALPAGE_ACCESS = 1
SPECIALPAGE_SHARING = 2
SPECIALPAGE_BUFIOREQ = 3
SPECIALPAGE_XENSTORE = 4
SPECIALPAGE_IOREQ = 5
SPECIALPAGE_IDENT_PT = 6
SPECIALPAGE_CONSOLE = 7
NR_IOREQ_SERVER_PAGES = 8


def special_pfn(x: int) -> int:
    """special_pfn (xg_dom_x86.c): special page *x* sits just below X86_HVM_END_SPECIAL_REGION."""
    return X86_HVM_END_SPECIAL_REGION - X86_HVM_NR_SPECIAL_PAGES + x


def ioreq_server_pfn(x: int) -> int:
    """ioreq_server_pfn (xg_dom_x86.c): the ioreq server pages, just below the special pages."""
    return special_pfn(0) - NR_IOREQ_SERVER_PAGES + x


def _param(ts: Toolstack, domid: int, index: int, value: int) -> None:
    """xc_hvm_param_set: HVMOP_set_param on the guest, from dom0."""
    rc = ts.m.hv.hvm_set_param(0, domid, index, value)
    if rc:
        raise RuntimeError(f"xc_hvm_param_set(d{domid}, {index}, {value:#x}) failed: {rc}")


def alloc_magic_pages_hvm(ts: Toolstack, domid: int, b: BuiltDomain, device_model: bool) -> None:
    """alloc_magic_pages_hvm (xg_dom_x86.c): the special pages, cleared, and the params naming them."""
    hv = ts.m.hv
    pages = [hv.populate_physmap(domid, special_pfn(i)) for i in range(X86_HVM_NR_SPECIAL_PAGES)]
    for index, page in ((HVM_PARAM_STORE_PFN, SPECIALPAGE_XENSTORE), (HVM_PARAM_BUFIOREQ_PFN,
                        SPECIALPAGE_BUFIOREQ), (HVM_PARAM_IOREQ_PFN, SPECIALPAGE_IOREQ),
                        (HVM_PARAM_CONSOLE_PFN, SPECIALPAGE_CONSOLE), (HVM_PARAM_PAGING_RING_PFN,
                        SPECIALPAGE_PAGING), (HVM_PARAM_MONITOR_RING_PFN, SPECIALPAGE_ACCESS),
                        (HVM_PARAM_SHARING_RING_PFN, SPECIALPAGE_SHARING)):
        _param(ts, domid, index, special_pfn(page))
    if device_model:  # the default ioreq server uses IOREQ/BUFIOREQ; more servers get these pages
        for i in range(NR_IOREQ_SERVER_PAGES):
            hv.populate_physmap(domid, ioreq_server_pfn(i))
        _param(ts, domid, HVM_PARAM_IOREQ_SERVER_PFN, ioreq_server_pfn(0))
        _param(ts, domid, HVM_PARAM_NR_IOREQ_SERVER_PAGES, NR_IOREQ_SERVER_PAGES)
    _param(ts, domid, HVM_PARAM_IDENT_PT, special_pfn(SPECIALPAGE_IDENT_PT) << PAGE_SHIFT)
    b.store_page, b.console_page = pages[SPECIALPAGE_XENSTORE], pages[SPECIALPAGE_CONSOLE]
    ts.record("alloc_magic_pages_hvm", f"d{domid}: special pages pfn {special_pfn(0):#x}-"
              f"{special_pfn(X86_HVM_NR_SPECIAL_PAGES - 1):#x}: xenstore pfn "
              f"{special_pfn(SPECIALPAGE_XENSTORE):#x}, console pfn {special_pfn(SPECIALPAGE_CONSOLE):#x}",
              SRC_XG)


def bootlate_hvm(ts: Toolstack, domid: int, b: BuiltDomain) -> None:
    """bootlate_hvm (xg_dom_x86.c): the console and xenstore ports go into HVM params."""
    _param(ts, domid, HVM_PARAM_CONSOLE_EVTCHN, b.console_port)
    _param(ts, domid, HVM_PARAM_STORE_EVTCHN, b.store_port)


def libxl__build_hvm(ts: Toolstack, domid: int, b: BuiltDomain) -> None:
    """libxl__build_hvm (libxl_dom.c): memory layout, the domain builder, then store_mfn = the store pfn."""
    hv = ts.m.hv
    d = hv.domains[domid]
    mem_size = b.config.memory_mb << 20
    mmio_start = (1 << 32) - HVM_BELOW_4G_MMIO_LENGTH  # device_model: mmio_size = HVM_BELOW_4G_MMIO_LENGTH
    lowmem_end = min(mem_size, mmio_start)
    highmem_end = (1 << 32) + (mem_size - mmio_start) if mem_size > mmio_start else 0
    d.mmio_start_pfn = mmio_start >> PAGE_SHIFT
    ts.record("libxl__build_hvm", f"d{domid}: lowmem_end {lowmem_end:#x}, highmem_end {highmem_end:#x}, "
              f"mmio_start {mmio_start:#x}", SRC_LIBXL)
    alloc_magic_pages_hvm(ts, domid, b, device_model=True)
    bootlate_hvm(ts, domid, b)
    # libxl__build_dom's xc_dom_gnttab_init: a translated guest's grants name gfns
    console_pfn, xenstore_pfn = special_pfn(SPECIALPAGE_CONSOLE), special_pfn(SPECIALPAGE_XENSTORE)
    hv.gnttab_seed(domid, console_pfn, xenstore_pfn)
    b.console_mfn, b.store_mfn = console_pfn, xenstore_pfn  # state->console_mfn = dom->console_pfn

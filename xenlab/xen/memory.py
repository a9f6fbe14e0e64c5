"""Machine memory: 4096-byte pages named by machine frame numbers (mfns), owned by domains.

Theory of operation
-------------------
Xen hands out machine frames from its heap (``alloc_domheap_pages``,
xen/common/page_alloc.c) and each domain sees its own frames through a physical
numbering (pfns); the p2m maps pfn -> mfn and the m2p maps back. Here the frames
come from a deterministic counter starting at ``mfn_base`` so the same machine gives
the same numbers every run.

A page is any writable 4096-byte buffer. A simulated page is a ``bytearray``. A
real page (``MachineMemory(real=True)``) is a file of 4096 bytes mapped with
``mmap``; its ``path`` can be opened and mapped by another process (a xenstored in
a second Python, a C program), and both see the same bytes, as two domains sharing a
granted frame do.

The allocator can be made to fail on demand (``fail_next``, ``limit``): a failed
allocation is -ENOMEM, the hypervisor's answer when its heap is exhausted.
"""

from __future__ import annotations

import mmap
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xenlab.abi.errno import ENOMEM
from xenlab.base.trace import Trace
from xenlab.xen.errors import XenError

PAGE_SIZE = 4096
PAGE_SHIFT = 12
SRC_PAGE_ALLOC = "xen/common/page_alloc.c"
DEFAULT_MFN_BASE = 0x10000

if TYPE_CHECKING:
    from xenlab.xen.domain import Domain

#: a frame's bytes: a bytearray (simulated) or an mmap.mmap (real, shared with other processes)
PageBuffer = bytearray | mmap.mmap


@dataclass(eq=False)
class Page:
    """One machine frame: ``mfn``, its writable 4096-byte ``buf``, the owning domain."""

    mfn: int
    buf: PageBuffer
    owner: int
    path: str | None = None  # real pages: the file another process can mmap

    def __repr__(self) -> str:
        return f"Page(mfn={self.mfn:#x}, owner=d{self.owner}{', real' if self.path else ''})"

    def zero(self) -> None:
        """clear_page (xen/arch/x86): fill the frame with zeroes."""
        self.buf[:PAGE_SIZE] = bytes(PAGE_SIZE)


def map_real_page(path: str) -> mmap.mmap:
    """Map a real page by its path (what a second process does to share it)."""
    fd = os.open(path, os.O_RDWR)
    try:
        return mmap.mmap(fd, PAGE_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)


@dataclass
class MachineMemory:
    """The hypervisor's frames: deterministic mfns, simulated or real (shared) pages."""

    trace: Trace | None = None
    mfn_base: int = DEFAULT_MFN_BASE
    real: bool = False
    directory: str | None = None  # real pages live here (a fresh temporary folder if None)
    limit: int | None = None  # at most this many pages allocated at once (None: no limit)
    fail_next: int = 0  # the next N allocations fail with -ENOMEM
    frames: dict[int, Page] = field(default_factory=dict)
    #: Domains by id (the Hypervisor's ``domains``): a frame allocated to one of them gets a
    #: pfn in its p2m, the next one after its highest, as a guest's own pages all have.
    domains: dict[int, Domain] = field(default_factory=dict)
    next_mfn: int = -1
    _own_dir: bool = False

    def __post_init__(self) -> None:
        if self.next_mfn < 0:
            self.next_mfn = self.mfn_base
        if self.real and self.directory is None:
            self.directory = tempfile.mkdtemp(prefix="xenlab-mem-")
            self._own_dir = True

    def _record(self, function: str, summary: str, changes: list[tuple[str, Any, Any, Any]]) -> None:
        if self.trace is not None:
            self.trace.record(function, summary, actor="xen", source=SRC_PAGE_ALLOC, changes=changes)

    def _new_buffer(self, mfn: int) -> tuple[PageBuffer, str | None]:
        if not self.real:
            return bytearray(PAGE_SIZE), None
        assert self.directory is not None
        path = os.path.join(self.directory, f"mfn-{mfn:x}")
        with open(path, "wb") as f:
            f.write(bytes(PAGE_SIZE))
        return map_real_page(path), path

    def can_alloc(self) -> bool:
        """True if the next allocation would succeed (no injected failure, under the limit)."""
        return self.fail_next <= 0 and (self.limit is None or len(self.frames) < self.limit)

    def alloc_page(self, owner_domid: int, *, pfn: int | None = None, xenheap: bool = False) -> Page:
        """alloc_domheap_page (page_alloc.c) + clear_page: a zeroed frame (XenError ENOMEM if none)."""
        page = self.try_alloc_page(owner_domid, pfn=pfn, xenheap=xenheap)
        if page is None:
            raise XenError(-ENOMEM, f"alloc_domheap_page for d{owner_domid}")
        return page

    def try_alloc_page(self, owner_domid: int, *, pfn: int | None = None, xenheap: bool = False
                       ) -> Page | None:
        """alloc_domheap_page (xen/common/page_alloc.c): a zeroed frame, or None when the heap fails.

        If *owner_domid* is a domain, the frame also gets guest frame *pfn* (default: the
        next after the domain's highest) in its p2m -- unless it is a *xenheap* page Xen
        shares with the domain (shared_info, grant frames), which a PV guest reaches by
        machine address instead.
        """
        d = None if xenheap else self.domains.get(owner_domid)
        if d is not None and pfn is not None and pfn in d.p2m:
            raise ValueError(f"d{owner_domid} pfn {pfn:#x} is already backed by mfn {d.p2m[pfn]:#x}")
        if not self.can_alloc():
            if self.fail_next > 0:
                self.fail_next -= 1
            self._record("alloc_domheap_pages", f"d{owner_domid}: no free frame -> NULL (-ENOMEM)", [])
            return None
        mfn = self.next_mfn
        self.next_mfn += 1
        buf, path = self._new_buffer(mfn)
        page = Page(mfn, buf, owner_domid, path)
        self.frames[mfn] = page
        rows: list[tuple[str, Any, Any, Any]] = [("xen/frames", f"{mfn:#x}", None, f"d{owner_domid}")]
        where = ""
        if d is not None:
            if pfn is None:  # the next RAM pfn (an HVM guest's special pages sit in its MMIO hole)
                hole = d.mmio_start_pfn
                pfn = max((p for p in d.p2m if hole is None or p < hole), default=-1) + 1
            d.p2m[pfn], d.m2p[mfn] = mfn, pfn
            rows.append((f"xen/d{owner_domid}/p2m", f"{pfn:#x}", None, mfn))
            where = f" at pfn {pfn:#x}"
        self._record("alloc_domheap_pages", f"d{owner_domid}: zeroed frame mfn {mfn:#x}{where}", rows)
        return page

    def page(self, mfn: int) -> Page | None:
        """The frame *mfn* (mfn_to_page), or None if no such frame is allocated."""
        return self.frames.get(mfn)

    def free_page(self, page: Page) -> None:
        """free_domheap_page (page_alloc.c): the frame goes back to the heap (its mfn is not reused)."""
        if self.frames.get(page.mfn) is not page:
            raise ValueError(f"free_page: {page!r} is not an allocated frame")
        del self.frames[page.mfn]
        rows: list[tuple[str, Any, Any, Any]] = [("xen/frames", f"{page.mfn:#x}", f"d{page.owner}", None)]
        d = self.domains.get(page.owner)
        if d is not None and page.mfn in d.m2p:
            pfn = d.m2p.pop(page.mfn)
            del d.p2m[pfn]
            rows.append((f"xen/d{page.owner}/p2m", f"{pfn:#x}", page.mfn, None))
        self._record("free_domheap_pages", f"d{page.owner}: frame mfn {page.mfn:#x} freed", rows)
        if page.path is not None:
            os.unlink(page.path)

    def close(self) -> None:
        """Unmap every real page and remove the folder this memory created."""
        for page in self.frames.values():
            if page.path is not None:
                try:
                    page.buf.close()
                except BufferError:
                    pass  # a ctypes view still exports it; the mapping dies with the process
        if self._own_dir and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self._own_dir = False

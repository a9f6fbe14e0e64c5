"""The guest's grant-reference allocator (drivers/xen/grant-table.c), enough for ring refs.

Theory of operation
-------------------
A guest hands out grant references from a free list. References 0..7 are reserved
(GNTTAB_NR_RESERVED_ENTRIES: 0 the console ring, 1 the xenstore ring, as the toolstack
sets them up), so the first free reference is 8. ``get_free_entries`` takes from the
head of the list; a freed reference, or a freed chain from
``gnttab_alloc_grant_references``, goes back on the head (so it is reused first).
Initially the list is ascending, which is why a guest's first ring gets ref 8.

The lab does not model the grant table's frames or mappings in Xen; a grant is a row
``ref -> (domid, frame, readonly)`` in the granting kernel, recorded in the trace as
``<kernel>/grant_table``. The numbers are what the guest's allocator would hand out
given the same sequence of allocations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xenlab.abi.errno import ENOSPC

# get_zeroed_page / free_page are mm code (xenlab.linux.mm); named here for this module's old importers
from xenlab.linux.mm import free_page as free_page
from xenlab.linux.mm import get_zeroed_page as get_zeroed_page

GNTTAB_NR_RESERVED_ENTRIES = 8
SRC = "drivers/xen/grant-table.c"


@dataclass
class GrantTable:
    """One kernel's grant entries and free list (head first; never-used refs follow in order)."""

    nr_entries: int = 32 * 512  # gnttab_max_grant_frames() * GREFS_PER_GRANT_FRAME (v1, 4 KiB frames)
    entries: dict[int, tuple[int, int, bool]] = field(default_factory=dict)
    freed: list[int] = field(default_factory=list)  # returned refs, head of the free list first
    next_unused: int = GNTTAB_NR_RESERVED_ENTRIES

    def get_free_entries(self, count: int) -> list[int]:
        """get_free_entries: take *count* refs from the head of the free list ([] if too few)."""
        if len(self.freed) + (self.nr_entries - self.next_unused) < count:
            return []
        out = self.freed[:count]
        del self.freed[:count]
        while len(out) < count:
            out.append(self.next_unused)
            self.next_unused += 1
        return out

    def put_free_entries(self, refs: list[int]) -> None:
        """Put refs back on the head of the free list, first ref first."""
        self.freed[:0] = refs


def gnttab(kernel: Any) -> GrantTable:
    """The kernel's grant table (``kernel.gnttab``), created on first use."""
    table = getattr(kernel, "gnttab", None)
    if table is None:
        table = GrantTable()
        kernel.gnttab = table
    return table


def gnttab_grant_foreign_access(kernel: Any, domid: int, frame: int, readonly: bool = False) -> int:
    """gnttab_grant_foreign_access: grant *domid* access to *frame*; the ref or -ENOSPC (grant-table.c)."""
    refs = gnttab(kernel).get_free_entries(1)
    if not refs:
        return -ENOSPC
    ref = refs[0]
    gnttab(kernel).entries[ref] = (domid, frame, readonly)
    kernel.record("gnttab_grant_foreign_access", f"ref {ref}: frame {frame:#x} to domain {domid}", SRC,
                  changes=[(f"{kernel.name}/grant_table", ref, None, f"d{domid} frame {frame:#x}"
                            + (" ro" if readonly else ""))])
    return ref


def gnttab_end_foreign_access(kernel: Any, ref: int) -> None:
    """gnttab_end_foreign_access: revoke the grant and put *ref* back on the free list (grant-table.c)."""
    table = gnttab(kernel)
    old = table.entries.pop(ref, None)
    table.put_free_entries([ref])
    kernel.record("gnttab_end_foreign_access", f"ref {ref} revoked and freed", SRC,
                  changes=[(f"{kernel.name}/grant_table", ref, None if old is None else
                            f"d{old[0]} frame {old[1]:#x}" + (" ro" if old[2] else ""), None)])


def gnttab_alloc_grant_references(kernel: Any, count: int) -> list[int] | int:
    """gnttab_alloc_grant_references: reserve a chain of *count* refs; the chain or -ENOSPC."""
    refs = gnttab(kernel).get_free_entries(count)
    if not refs and count:
        return -ENOSPC
    if count:
        kernel.record("gnttab_alloc_grant_references", f"reserved {count} refs {refs[0]}..{refs[-1]}", SRC)
    return refs


def gnttab_claim_grant_reference(chain: list[int]) -> int:
    """gnttab_claim_grant_reference: take the next ref of a reserved chain (-ENOSPC when empty)."""
    return chain.pop(0) if chain else -ENOSPC


def gnttab_grant_foreign_access_ref(kernel: Any, ref: int, domid: int, frame: int,
                                    readonly: bool = False) -> None:
    """gnttab_grant_foreign_access_ref: fill in an already claimed ref (grant-table.c)."""
    gnttab(kernel).entries[ref] = (domid, frame, readonly)
    kernel.record("gnttab_grant_foreign_access_ref", f"ref {ref}: frame {frame:#x} to domain {domid}", SRC,
                  changes=[(f"{kernel.name}/grant_table", ref, None, f"d{domid} frame {frame:#x}"
                            + (" ro" if readonly else ""))])


def gnttab_free_grant_references(kernel: Any, chain: list[int]) -> None:
    """gnttab_free_grant_references: give the unclaimed rest of a chain back (head of the free list)."""
    if chain:
        gnttab(kernel).put_free_entries(list(chain))
        kernel.record("gnttab_free_grant_references", f"returned {len(chain)} unclaimed refs", SRC)
        chain.clear()

"""drivers/xen/grant-table.c, Linux 6.1: the guest's grant-reference allocator, enough for ring refs.

Theory of operation
-------------------
A guest hands out grant references from a free list. References 0..7 are reserved
(GNTTAB_NR_RESERVED_ENTRIES: 0 the console ring, 1 the xenstore ring, as the toolstack
sets them up), so the first free reference is 8. ``get_free_entries`` takes from the
head of the list; a freed reference, or a freed chain from
``gnttab_alloc_grant_references``, goes back on the head (so it is reused first).
Initially the list is ascending, which is why a guest's first ring gets ref 8.

The lab does not model the grant table's frames in the guest; a grant is a row
``ref -> (domid, frame, readonly)`` in the granting kernel, recorded in the trace as
``<kernel>/grant_table``. The numbers are what the guest's allocator would hand out
given the same sequence of allocations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xenlab.abi.errno import ENOSPC
from xenlab.linux.kernel import KERN_INFO, KERN_WARNING

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel

GNTTAB_NR_RESERVED_ENTRIES = 8
SRC = "drivers/xen/grant-table.c"


@dataclass
class GrantTable:
    """The kernel's grant entries and free list (head first; never-used refs follow in order)."""

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
        """put_free_entry: refs go back on the head of the free list, first ref first."""
        self.freed[:0] = refs


def _row(domid: int, frame: int, readonly: bool) -> str:
    return f"d{domid} frame {frame:#x}" + (" ro" if readonly else "")


def gnttab_grant_foreign_access(kernel: PvopsKernel, domid: int, frame: int, readonly: bool = False) -> int:
    """gnttab_grant_foreign_access: grant *domid* access to *frame*; the ref or -ENOSPC."""
    refs = kernel.gnttab.get_free_entries(1)
    if not refs:
        return -ENOSPC
    ref = refs[0]
    kernel.gnttab.entries[ref] = (domid, frame, readonly)
    kernel.record("gnttab_grant_foreign_access", f"ref {ref}: frame {frame:#x} to domain {domid}", SRC,
                  changes=[(kernel.table("grant_table"), ref, None, _row(domid, frame, readonly))])
    return ref


def gnttab_end_foreign_access(kernel: PvopsKernel, ref: int) -> None:
    """gnttab_end_foreign_access: revoke the grant and put *ref* back on the free list."""
    old = kernel.gnttab.entries.pop(ref, None)
    kernel.gnttab.put_free_entries([ref])
    kernel.record("gnttab_end_foreign_access", f"ref {ref} revoked and freed", SRC,
                  changes=[(kernel.table("grant_table"), ref, None if old is None else _row(*old), None)])


def gnttab_alloc_grant_references(kernel: PvopsKernel, count: int) -> tuple[int, list[int]]:
    """gnttab_alloc_grant_references: reserve a chain of *count* refs: (0, chain) or (-ENOSPC, [])."""
    refs = kernel.gnttab.get_free_entries(count)
    if not refs and count:
        return -ENOSPC, []
    if count:
        kernel.record("gnttab_alloc_grant_references", f"reserved {count} refs {refs[0]}..{refs[-1]}", SRC)
    return 0, refs


def gnttab_claim_grant_reference(chain: list[int]) -> int:
    """gnttab_claim_grant_reference: take the next ref of a reserved chain (-ENOSPC when empty)."""
    return chain.pop(0) if chain else -ENOSPC


def gnttab_grant_foreign_access_ref(kernel: PvopsKernel, ref: int, domid: int, frame: int,
                                    readonly: bool = False) -> None:
    """gnttab_grant_foreign_access_ref: fill in an already claimed ref."""
    kernel.gnttab.entries[ref] = (domid, frame, readonly)
    kernel.record("gnttab_grant_foreign_access_ref", f"ref {ref}: frame {frame:#x} to domain {domid}", SRC,
                  changes=[(kernel.table("grant_table"), ref, None, _row(domid, frame, readonly))])


def gnttab_free_grant_references(kernel: PvopsKernel, chain: list[int]) -> None:
    """gnttab_free_grant_references: give the unclaimed rest of a chain back (head of the free list)."""
    if chain:
        kernel.gnttab.put_free_entries(list(chain))
        kernel.record("gnttab_free_grant_references", f"returned {len(chain)} unclaimed refs", SRC)
        chain.clear()


def gnttab_request_version(kernel: PvopsKernel) -> int:
    """gnttab_request_version: no xen_gnttab_version=2 and no v2 need on a PV guest: version 1, said once."""
    text = "xen:grant_table: Grant tables using version 1 layout"  # pr_fmt "xen:" KBUILD_MODNAME ": "
    kernel.printk(KERN_INFO, text)
    kernel.record("gnttab_request_version", "grant_table_version = 1 (gnttab_v1_ops)", SRC, printk=text)
    return 1


def gnttab_init(kernel: PvopsKernel) -> int:
    """gnttab_init (from __gnttab_init, core_initcall_sync): pick the version, set up the free list.

    The frames themselves (gnttab_setup's GNTTABOP_setup_table) are not modelled: the lab's
    grant table is the free list and the granted rows (see the module docstring).
    """
    gnttab_request_version(kernel)
    text = "Grant table initialized"  # a bare printk: no pr_fmt prefix, the default loglevel
    kernel.printk(KERN_WARNING, text)
    kernel.record("gnttab_init", f"{kernel.gnttab.nr_entries} entries, the first free ref "
                  f"{GNTTAB_NR_RESERVED_ENTRIES}", SRC, printk=text)
    return 0

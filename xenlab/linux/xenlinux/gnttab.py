"""drivers/xen/core/gnttab.c, XenLinux 2.6.18: the guest's grant references.

Theory of operation
-------------------
A guest hands out grant references from a free list. References 0..7 are reserved
(NR_RESERVED_ENTRIES: 0 the console ring, 1 the xenstore ring, as the toolstack sets
them up), so the first free reference is 8. ``get_free_entries`` takes from the head of
the list; a freed reference, or a freed chain from ``gnttab_alloc_grant_references``,
goes back on the head (so it is reused first). Initially the list is ascending, which
is why a guest's first ring gets ref 8.

The lab does not model the grant table's frames in Xen for the guest's own grants; a
grant is a row ``ref -> (domid, frame, readonly)`` in the granting kernel
(``kernel.gnttab``), recorded in the trace as ``<kernel>/grant_table``. A chain of
reserved references (C: a head ref linked through gnttab_entry()) is a Python list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xenlab.abi.errno import ENOSPC

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel

SRC = "drivers/xen/core/gnttab.c"
NR_RESERVED_ENTRIES = 8
GTF_readonly = 1 << 2


@dataclass
class GrantTable:
    """The file-scope state of gnttab.c: the entries handed out and the free list (head first)."""

    nr_entries: int = 32 * 512  # max_nr_grant_frames() * ENTRIES_PER_GRANT_FRAME (4 KiB frames)
    entries: dict[int, tuple[int, int, bool]] = field(default_factory=dict)
    freed: list[int] = field(default_factory=list)  # returned refs, head of the free list first
    next_unused: int = NR_RESERVED_ENTRIES  # never-used refs follow the freed ones, in order


def get_free_entries(kernel: XenLinuxKernel, count: int) -> list[int]:
    """get_free_entries: take *count* refs from the head of the free list ([] if too few)."""
    gt = kernel.gnttab
    if len(gt.freed) + (gt.nr_entries - gt.next_unused) < count:
        return []
    out = gt.freed[:count]
    del gt.freed[:count]
    while len(out) < count:
        out.append(gt.next_unused)
        gt.next_unused += 1
    return out


def put_free_entries(kernel: XenLinuxKernel, refs: list[int]) -> None:
    """put_free_entry / the chain splice of gnttab_free_grant_references: refs back on the head."""
    kernel.gnttab.freed[:0] = refs


def _row(domid: int, frame: int, readonly: bool) -> str:
    return f"d{domid} frame {frame:#x}" + (" ro" if readonly else "")


def gnttab_grant_foreign_access(kernel: XenLinuxKernel, domid: int, frame: int, flags: int) -> int:
    """gnttab_grant_foreign_access: grant *domid* access to *frame*; the ref or -ENOSPC."""
    refs = get_free_entries(kernel, 1)
    if not refs:
        return -ENOSPC
    ref, readonly = refs[0], bool(flags & GTF_readonly)
    kernel.gnttab.entries[ref] = (domid, frame, readonly)
    kernel.record("gnttab_grant_foreign_access", f"ref {ref}: frame {frame:#x} to domain {domid}", SRC,
                  changes=[(kernel.table("grant_table"), ref, None, _row(domid, frame, readonly))])
    return ref


def gnttab_grant_foreign_access_ref(kernel: XenLinuxKernel, ref: int, domid: int, frame: int,
                                    flags: int) -> None:
    """gnttab_grant_foreign_access_ref: fill in an already claimed ref."""
    readonly = bool(flags & GTF_readonly)
    kernel.gnttab.entries[ref] = (domid, frame, readonly)
    kernel.record("gnttab_grant_foreign_access_ref", f"ref {ref}: frame {frame:#x} to domain {domid}", SRC,
                  changes=[(kernel.table("grant_table"), ref, None, _row(domid, frame, readonly))])


def gnttab_end_foreign_access(kernel: XenLinuxKernel, ref: int, page: int = 0) -> None:
    """gnttab_end_foreign_access: revoke the grant and put *ref* back on the free list (the lab
    never passes a page to free with it: its ring pages stay allocated)."""
    old = kernel.gnttab.entries.pop(ref, None)
    put_free_entries(kernel, [ref])
    kernel.record("gnttab_end_foreign_access", f"ref {ref} revoked and freed", SRC,
                  changes=[(kernel.table("grant_table"), ref, None if old is None else _row(*old), None)])


def gnttab_free_grant_references(kernel: XenLinuxKernel, head: list[int]) -> None:
    """gnttab_free_grant_references: give the unclaimed rest of a chain back (head of the free list)."""
    if head:
        put_free_entries(kernel, list(head))
        kernel.record("gnttab_free_grant_references", f"returned {len(head)} unclaimed refs", SRC)
        head.clear()


def gnttab_alloc_grant_references(kernel: XenLinuxKernel, count: int) -> tuple[int, list[int]]:
    """gnttab_alloc_grant_references: reserve a chain of *count* refs; (0, chain) or (-ENOSPC, [])."""
    refs = get_free_entries(kernel, count)
    if not refs and count:
        return -ENOSPC, []
    if count:
        kernel.record("gnttab_alloc_grant_references", f"reserved {count} refs {refs[0]}..{refs[-1]}", SRC)
    return 0, refs


def gnttab_claim_grant_reference(private_head: list[int]) -> int:
    """gnttab_claim_grant_reference: take the next ref of a reserved chain (-ENOSPC when empty)."""
    return private_head.pop(0) if private_head else -ENOSPC

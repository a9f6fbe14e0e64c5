"""Grant tables, version 1 (xen/common/grant_table.c): how one domain maps another's page.

Theory of operation
-------------------
Each domain owns grant frames (4096-byte pages of ``grant_entry_v1``, 512 refs each)
that it writes itself: to let domain B map its frame F it fills ref R with
``frame = F``, ``domid = B``, then ``flags = GTF_permit_access`` (| GTF_readonly).
B calls GNTTABOP_map_grant_ref naming (A, R); Xen checks the entry, marks it
GTF_reading (and GTF_writing for a writable map) so A can see it is in use, and hands
B a handle. Unmapping the last mapping clears those bits again. The toolstack seeds
refs 0 (console) and 1 (xenstore) of a new guest (``gnttab_seed``), which is how
xenstored maps a guest's store page.

Statuses are GNTST_* as Xen returns them; a failed map changes nothing. The lab grows
a table when it is first used (Xen allocates the first frame at domain creation) so
that machine-frame numbers elsewhere do not move.
"""

from __future__ import annotations

import ctypes

from xenlab.abi.event_channel import DOMID_SELF
from xenlab.abi.grant_table import (
    GNTST_NAMES,
    GNTTAB_RESERVED_CONSOLE,
    GNTTAB_RESERVED_XENSTORE,
    GNTMAP_device_map,
    GNTMAP_host_map,
    GNTMAP_readonly,
    GNTST_bad_domain,
    GNTST_bad_gntref,
    GNTST_bad_handle,
    GNTST_bad_page,
    GNTST_general_error,
    GNTST_okay,
    GNTST_permission_denied,
    GTF_permit_access,
    GTF_reading,
    GTF_readonly,
    GTF_type_mask,
    GTF_writing,
    grant_entry_v1,
)
from xenlab.xen.domain import Domain
from xenlab.xen.memory import MachineMemory, Page
from xenlab.xen.record import Row, XenPart

SRC_GNT = "xen/common/grant_table.c"
ENTRIES_PER_FRAME = 4096 // ctypes.sizeof(grant_entry_v1)


def nr_grant_entries(d: Domain) -> int:
    """nr_grant_entries (grant_table.c): refs in the frames the domain has so far."""
    return len(d.grant_frames) * ENTRIES_PER_FRAME


def shared_entry_v1(d: Domain, ref: int) -> grant_entry_v1:
    """shared_entry_v1 (grant_table.c): the grant_entry_v1 of *ref*, laid over its frame's bytes."""
    page = d.grant_frames[ref // ENTRIES_PER_FRAME]
    return grant_entry_v1.from_buffer(page.buf, (ref % ENTRIES_PER_FRAME) * ctypes.sizeof(grant_entry_v1))


class GrantTables(XenPart):
    """GNTTABOP_setup_table / map_grant_ref / unmap_grant_ref and the toolstack's seeding."""

    memory: MachineMemory

    def gnttab_grow_table(self, d: Domain, nr_frames: int) -> bool:
        """gnttab_grow_table (grant_table.c): add zeroed frames up to *nr_frames*; False if over the limit."""
        if nr_frames > d.max_grant_frames:
            return False
        while len(d.grant_frames) < nr_frames:
            page = self.memory.alloc_page(d.domid, xenheap=True)
            d.grant_frames.append(page)
            n = len(d.grant_frames) - 1
            self._rec("gnttab_grow_table", f"d{d.domid}: grant frame {n} is mfn {page.mfn:#x}",
                      [(f"xen/d{d.domid}/grant_frames", n, None, page.mfn)], source=SRC_GNT)
        return True

    def gnttab_setup_table(self, caller: int, dom: int, nr_frames: int) -> list[int] | int:
        """gnttab_setup_table (grant_table.c): *nr_frames* frames for *dom*; their mfns, or GNTST_*."""
        cur = self.domains[caller]
        d = cur if dom == DOMID_SELF else self.domains.get(dom)
        what = f"d{caller}: setup_table(dom={dom}, nr_frames={nr_frames})"
        if d is None:
            return self._gfail("gnttab_setup_table", f"{what}: no such domain", GNTST_bad_domain)
        if d is not cur and not cur.privileged:
            return self._gfail("gnttab_setup_table", f"{what}: not privileged", GNTST_permission_denied)
        if not self.gnttab_grow_table(d, nr_frames):
            return self._gfail("gnttab_setup_table", f"{what}: d{d.domid} may have {d.max_grant_frames} "
                               "frames", GNTST_general_error)
        mfns = [p.mfn for p in d.grant_frames[:nr_frames]]
        self._rec("gnttab_setup_table", f"{what}: frames {', '.join(f'{m:#x}' for m in mfns)}",
                  source=SRC_GNT)
        return mfns

    def _gfail(self, function: str, summary: str, status: int) -> int:
        self._rec(function, f"{summary} -> {GNTST_NAMES[status]}", source=SRC_GNT)
        return status

    def gnttab_seed(self, domid: int, console_frame: int, xenstore_frame: int, console_domid: int = 0,
                    xenstore_domid: int = 0) -> None:
        """xc_dom_gnttab_seed (tools/libs/guest/xg_dom_boot.c): refs 0 and 1 for the console and xenstore."""
        d = self.domains[domid]
        self.gnttab_grow_table(d, 1)
        rows: list[Row] = []
        for ref, frame, backend in ((GNTTAB_RESERVED_CONSOLE, console_frame, console_domid),
                                    (GNTTAB_RESERVED_XENSTORE, xenstore_frame, xenstore_domid)):
            e = shared_entry_v1(d, ref)
            before = (int(e.flags), int(e.domid), int(e.frame)) if e.flags else None
            e.frame, e.domid, e.flags = frame, backend, GTF_permit_access
            rows.append((f"xen/d{domid}/grant", ref, before, (GTF_permit_access, backend, frame)))
        self.trace.record("xc_dom_gnttab_seed", f"d{domid}: grant ref 0 = console frame {console_frame:#x} "
                          f"for d{console_domid}, ref 1 = xenstore frame {xenstore_frame:#x} "
                          f"for d{xenstore_domid}",
                          actor="toolstack", source="tools/libs/guest/xg_dom_boot.c", changes=rows)

    def gnttab_map_grant_ref(self, caller: int, dom: int, ref: int, flags: int = GNTMAP_host_map
                             ) -> tuple[int, int, Page | None]:
        """map_grant_ref (grant_table.c): map ref *ref* of domain *dom*; (GNTST_*, handle, page)."""
        ld = self.domains[caller]
        fn = "map_grant_ref"
        readonly = bool(flags & GNTMAP_readonly)
        what = f"d{caller}: map d{dom} ref {ref}{' readonly' if readonly else ''}"
        if not flags & (GNTMAP_device_map | GNTMAP_host_map):
            return self._gfail(fn, f"{what}: neither host_map nor device_map", GNTST_bad_gntref), 0, None
        rd = self.domains.get(dom)  # rcu_lock_domain_by_id: DOMID_SELF is not resolved here
        if rd is None:
            return self._gfail(fn, f"{what}: no such domain", GNTST_bad_domain), 0, None
        if not 0 <= ref < nr_grant_entries(rd):
            n = nr_grant_entries(rd)
            return self._gfail(fn, f"{what}: d{dom} has {n} refs", GNTST_bad_gntref), 0, None
        e = shared_entry_v1(rd, ref)
        pins = rd.grant_pins.get(ref, [0, 0, caller])  # [readonly pins, writable pins, act->domid]
        if pins[:2] != [0, 0] and pins[2] != caller:
            return self._gfail(fn, f"{what}: ref already in use by d{pins[2]}", GNTST_general_error), 0, None
        if pins[:2] == [0, 0] and ((e.flags & GTF_type_mask) != GTF_permit_access or e.domid != caller):
            return self._gfail(fn, f"{what}: entry flags {int(e.flags):#x} for d{int(e.domid)}, not a grant "
                               f"to d{caller}", GNTST_general_error), 0, None
        if not readonly and e.flags & GTF_readonly:
            return self._gfail(fn, f"{what}: write-pin of a read-only grant", GNTST_general_error), 0, None
        # get_paged_frame: a translated (HVM) granter names a gfn, which its p2m turns into the frame
        mfn = rd.p2m.get(int(e.frame), -1) if rd.hvm else int(e.frame)
        page = self.memory.page(mfn)
        if page is None or page.owner != dom:
            why = f"{what}: frame {int(e.frame):#x} is not d{dom}'s"
            return self._gfail(fn, why, GNTST_bad_page), 0, None
        before = int(e.flags)
        e.flags = before | GTF_reading | (0 if readonly else GTF_writing)
        pins[0 if readonly else 1] += 1
        rd.grant_pins[ref] = pins
        handle = next(h for h in range(len(ld.maptrack) + 1) if h not in ld.maptrack)
        ld.maptrack[handle] = (dom, ref, readonly)
        rows: list[Row] = [(f"xen/d{caller}/maptrack", handle, None, (dom, ref, readonly))]
        if int(e.flags) != before:
            rows.append((f"xen/d{dom}/grant", ref, (before, int(e.domid), int(e.frame)),
                         (int(e.flags), int(e.domid), int(e.frame))))
        self._rec(fn, f"{what}: frame {page.mfn:#x}, handle {handle}", rows, source=SRC_GNT)
        return GNTST_okay, handle, page

    def gnttab_unmap_grant_ref(self, caller: int, handle: int) -> int:
        """unmap_grant_ref (grant_table.c): drop mapping *handle*; the last one clears GTF_reading/writing."""
        ld = self.domains[caller]
        fn = "unmap_grant_ref"
        if handle not in ld.maptrack:
            return self._gfail(fn, f"d{caller}: unmap handle {handle}: not in use", GNTST_bad_handle)
        dom, ref, readonly = ld.maptrack.pop(handle)
        rows: list[Row] = [(f"xen/d{caller}/maptrack", handle, (dom, ref, readonly), None)]
        rd = self.domains.get(dom)
        if rd is not None and ref in rd.grant_pins:
            pins = rd.grant_pins[ref]
            pins[0 if readonly else 1] -= 1
            e = shared_entry_v1(rd, ref)
            before = int(e.flags)
            if not pins[1]:
                e.flags &= ~GTF_writing & 0xFFFF
            if pins[:2] == [0, 0]:
                e.flags &= ~GTF_reading & 0xFFFF
                del rd.grant_pins[ref]
            if int(e.flags) != before:
                rows.append((f"xen/d{dom}/grant", ref, (before, int(e.domid), int(e.frame)),
                             (int(e.flags), int(e.domid), int(e.frame))))
        self._rec(fn, f"d{caller}: handle {handle} (d{dom} ref {ref}) unmapped", rows, source=SRC_GNT)
        return GNTST_okay

"""Grant tables (v1): a guest shares a page, the backend domain maps it (xen/common/grant_table.c).

The entries are bytes in the guest's grant frame (8 bytes per ref: flags @0, domid @2,
frame @4), so what Xen writes back (GTF_reading / GTF_writing while mapped) can be read
straight from the page, as the guest itself reads it.
"""

from __future__ import annotations

from xenlab.abi.event_channel import DOMID_SELF
from xenlab.abi.grant_table import (
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
    GTF_writing,
)
from xenlab.xen import Hypervisor
from xenlab.xen.grant_table import nr_grant_entries, shared_entry_v1


def machine() -> Hypervisor:
    hv = Hypervisor()
    hv.domain_create(0, "Domain-0", privileged=True, initdomain=True)
    hv.domain_create(1, "guest")
    return hv


def grant(hv: Hypervisor, domid: int, ref: int, to: int, frame: int, readonly: bool = False) -> None:
    """What gnttab_grant_foreign_access_ref does in the guest: frame, domid, then flags."""
    e = shared_entry_v1(hv.domains[domid], ref)
    e.frame, e.domid = frame, to
    e.flags = GTF_permit_access | (GTF_readonly if readonly else 0)


def entry_bytes(hv: Hypervisor, domid: int, ref: int) -> tuple[int, int, int]:
    raw = hv.domains[domid].grant_frames[0].buf[ref * 8: ref * 8 + 8]
    return (int.from_bytes(raw[0:2], "little"), int.from_bytes(raw[2:4], "little"),
            int.from_bytes(raw[4:8], "little"))


def test_a_backend_maps_a_granted_ring_and_the_guest_sees_it_in_use() -> None:
    hv = machine()
    assert len(hv.gnttab_setup_table(1, DOMID_SELF, 1)) == 1  # type: ignore[arg-type]
    assert nr_grant_entries(hv.domains[1]) == 512
    frame = hv.domains[1].grant_frames[0]
    assert frame.mfn not in hv.domains[1].m2p  # a Xen-heap page shared with the guest, not guest RAM
    ring = hv.memory.alloc_page(1)
    grant(hv, 1, 8, 0, ring.mfn)  # ref 8: the first one after the 8 reserved
    assert entry_bytes(hv, 1, 8) == (GTF_permit_access, 0, ring.mfn)
    status, handle, page = hv.gnttab_map_grant_ref(0, 1, 8, GNTMAP_host_map)
    assert (status, handle, page) == (GNTST_okay, 0, ring)
    assert entry_bytes(hv, 1, 8)[0] == GTF_permit_access | GTF_reading | GTF_writing
    page.buf[0:4] = b"ring"  # the same bytes for both domains
    assert bytes(ring.buf[0:4]) == b"ring"
    assert hv.gnttab_unmap_grant_ref(0, handle) == GNTST_okay
    assert entry_bytes(hv, 1, 8)[0] == GTF_permit_access
    assert hv.gnttab_unmap_grant_ref(0, handle) == GNTST_bad_handle


def test_readonly_grants_and_pins() -> None:
    hv = machine()
    hv.gnttab_setup_table(1, DOMID_SELF, 1)
    page = hv.memory.alloc_page(1)
    grant(hv, 1, 9, 0, page.mfn, readonly=True)
    assert hv.gnttab_map_grant_ref(0, 1, 9, GNTMAP_host_map)[0] == GNTST_general_error  # write-pin of r/o
    s1, h1, _ = hv.gnttab_map_grant_ref(0, 1, 9, GNTMAP_host_map | GNTMAP_readonly)
    s2, h2, _ = hv.gnttab_map_grant_ref(0, 1, 9, GNTMAP_host_map | GNTMAP_readonly)
    assert (s1, s2, h1, h2) == (GNTST_okay, GNTST_okay, 0, 1)
    assert entry_bytes(hv, 1, 9)[0] == GTF_permit_access | GTF_readonly | GTF_reading
    hv.gnttab_unmap_grant_ref(0, h1)
    assert entry_bytes(hv, 1, 9)[0] & GTF_reading  # still one mapping
    hv.gnttab_unmap_grant_ref(0, h2)
    assert entry_bytes(hv, 1, 9)[0] == GTF_permit_access | GTF_readonly


def test_map_errors_are_grant_statuses_and_change_nothing() -> None:
    hv = machine()
    hv.domain_create(2, "other")
    hv.gnttab_setup_table(1, DOMID_SELF, 1)
    page = hv.memory.alloc_page(1)
    grant(hv, 1, 8, 2, page.mfn)  # granted to d2, not dom0
    foreign = hv.memory.alloc_page(0)
    grant(hv, 1, 10, 0, foreign.mfn)  # a frame the guest does not own
    before = [entry_bytes(hv, 1, r) for r in range(12)]
    cases = [
        ((0, 1, 8, 0), GNTST_bad_gntref),  # neither host_map nor device_map
        ((0, 9, 8, GNTMAP_host_map), GNTST_bad_domain),
        ((0, DOMID_SELF, 8, GNTMAP_host_map), GNTST_bad_domain),  # map does not resolve DOMID_SELF
        ((0, 1, 512, GNTMAP_host_map), GNTST_bad_gntref),  # beyond the one frame
        ((0, 1, 8, GNTMAP_host_map), GNTST_general_error),  # granted to another domain
        ((0, 1, 11, GNTMAP_host_map), GNTST_general_error),  # never granted
        ((0, 1, 10, GNTMAP_host_map), GNTST_bad_page),
    ]
    for args, status in cases:
        assert hv.gnttab_map_grant_ref(*args)[0] == status, args
    assert [entry_bytes(hv, 1, r) for r in range(12)] == before
    assert hv.domains[0].maptrack == {}
    assert hv.gnttab_setup_table(1, 0, 1) == GNTST_permission_denied
    # while d2 has ref 8 mapped, the entry's domain is fixed: dom0 cannot map it even if rewritten
    assert hv.gnttab_map_grant_ref(2, 1, 8, GNTMAP_host_map)[0] == GNTST_okay
    shared_entry_v1(hv.domains[1], 8).domid = 0
    assert hv.gnttab_map_grant_ref(0, 1, 8, GNTMAP_host_map)[0] == GNTST_general_error
    assert hv.gnttab_setup_table(1, DOMID_SELF, 65) == GNTST_general_error


def test_toolstack_seeds_console_and_xenstore_refs_and_xenstored_maps_ref_1() -> None:
    """xc_dom_gnttab_seed: ref 0 the console page, ref 1 the store page, both for dom0."""
    hv = machine()
    store, console = hv.memory.alloc_page(1), hv.memory.alloc_page(1)
    hv.gnttab_seed(1, console.mfn, store.mfn)
    assert entry_bytes(hv, 1, 0) == (GTF_permit_access, 0, console.mfn)
    assert entry_bytes(hv, 1, 1) == (GTF_permit_access, 0, store.mfn)
    status, _, page = hv.gnttab_map_grant_ref(0, 1, 1, GNTMAP_host_map)
    assert status == GNTST_okay and page is store
    assert hv.trace.state_at(len(hv.trace) - 1)["xen/d0/maptrack"] == {"0": (1, 1, False)}


def test_a_dying_backend_releases_its_mappings() -> None:
    """gnttab_release_mappings: when the mapping domain dies, the guest's entry is no longer in use."""
    hv = machine()
    hv.domain_create(2, "driver-domain")
    hv.gnttab_setup_table(1, DOMID_SELF, 1)
    page = hv.memory.alloc_page(1)
    grant(hv, 1, 8, 2, page.mfn)
    assert hv.gnttab_map_grant_ref(2, 1, 8, GNTMAP_host_map)[0] == GNTST_okay
    hv.domain_destroy(2)
    assert entry_bytes(hv, 1, 8)[0] == GTF_permit_access

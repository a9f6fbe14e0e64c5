"""Property test of grant tables: random grants, rewrites, maps and unmaps by three domains.

Whatever happens, an entry's GTF_reading bit is set exactly while some domain has it
mapped and GTF_writing exactly while some mapping is writable; every mapping of a ref
is by one domain; a failed map changes no entry and no handle; and a domain's handles
are the lowest free ones.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xenlab.abi.event_channel import DOMID_SELF
from xenlab.abi.grant_table import (
    GNTMAP_host_map,
    GNTMAP_readonly,
    GNTST_okay,
    GTF_permit_access,
    GTF_reading,
    GTF_readonly,
    GTF_writing,
)
from xenlab.xen import Hypervisor
from xenlab.xen.grant_table import shared_entry_v1

EXAMPLES = int(os.environ.get("XENLAB_FUZZ_EXAMPLES", "60"))
refs = st.integers(min_value=0, max_value=3) | st.sampled_from([511, 512])
doms = st.sampled_from([0, 1, 2, 9, DOMID_SELF])
map_flags = st.sampled_from([GNTMAP_host_map, GNTMAP_host_map | GNTMAP_readonly, 0])
ops = st.one_of(
    st.tuples(st.just("share"), st.sampled_from([0, 1, 2]), refs, st.booleans()),  # grant + the peer maps
    st.tuples(st.just("grant"), refs, doms, st.booleans(), st.booleans()),  # ref, to, readonly, own frame
    st.tuples(st.just("revoke"), refs),
    st.tuples(st.just("map"), doms, refs, map_flags),
    st.tuples(st.just("unmap"), st.integers(min_value=0, max_value=4)),
)
streams = st.lists(st.tuples(st.sampled_from([0, 1, 2]), ops), min_size=5, max_size=50)


def snapshot(hv: Hypervisor) -> tuple:
    entries = tuple((d.domid, r, int(shared_entry_v1(d, r).flags), int(shared_entry_v1(d, r).domid))
                    for d in hv.domains.values() for r in range(4))
    return entries, tuple((d.domid, tuple(sorted(d.maptrack.items()))) for d in hv.domains.values())


def check(hv: Hypervisor) -> None:
    for d in hv.domains.values():
        for ref in range(4):
            maps = [(m.domid, ro) for m in hv.domains.values() for (dom, r, ro) in m.maptrack.values()
                    if dom == d.domid and r == ref]
            flags = int(shared_entry_v1(d, ref).flags)
            assert bool(flags & GTF_reading) == bool(maps), (d.domid, ref, maps, flags)
            assert bool(flags & GTF_writing) == any(not ro for _, ro in maps), (d.domid, ref, maps, flags)
            assert len({m for m, _ in maps}) <= 1  # one mapping domain per ref at a time


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams)
def test_random_grant_streams_keep_the_flags_honest(stream: list) -> None:
    hv = Hypervisor()
    hv.domain_create(0, "Domain-0", privileged=True, initdomain=True)
    hv.domain_create(1, "guest1")
    hv.domain_create(2, "guest2")
    pages = {}
    for domid in (0, 1, 2):
        hv.gnttab_setup_table(domid, DOMID_SELF, 1)
        pages[domid] = hv.memory.alloc_page(domid)
    for caller, (op, *args) in stream:
        if op == "share":  # the usual pairing, so that successful maps are common
            to, ref, readonly = args
            if ref < 512 and to != caller:
                e = shared_entry_v1(hv.domains[caller], ref)
                e.frame, e.domid = pages[caller].mfn, to
                e.flags = GTF_permit_access | (GTF_readonly if readonly else 0) | (
                    e.flags & (GTF_reading | GTF_writing))
                flags = GNTMAP_host_map | (GNTMAP_readonly if readonly else 0)
                hv.gnttab_map_grant_ref(to, caller, ref, flags)
        elif op == "grant":  # the guest writes its own entry (it may rewrite one in use: Xen must cope)
            ref, to, readonly, own = args
            if ref < 512:
                e = shared_entry_v1(hv.domains[caller], ref)
                e.frame = pages[caller if own else (caller + 1) % 3].mfn
                e.domid = to & 0xFFFF
                keep = e.flags & (GTF_reading | GTF_writing)
                e.flags = GTF_permit_access | (GTF_readonly if readonly else 0) | keep
        elif op == "revoke":
            if args[0] < 512:
                e = shared_entry_v1(hv.domains[caller], args[0])
                e.flags &= GTF_reading | GTF_writing  # what a guest may clear; Xen's bits stay
        elif op == "map":
            before = snapshot(hv)
            lowest = next(h for h in range(10) if h not in hv.domains[caller].maptrack)
            status, handle, page = hv.gnttab_map_grant_ref(caller, *args)
            if status != GNTST_okay:
                assert snapshot(hv) == before and page is None
            else:
                assert page is not None and page.owner == args[0] and handle == lowest
        else:
            hv.gnttab_unmap_grant_ref(caller, args[0])
        check(hv)

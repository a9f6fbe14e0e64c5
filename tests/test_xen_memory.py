"""Machine memory: deterministic frames, per-domain p2m, failure on demand, real shared pages."""

from __future__ import annotations

import subprocess
import sys

import pytest

from xenlab.abi.errno import ENOMEM
from xenlab.abi.xs_wire import xenstore_domain_interface
from xenlab.xen import Hypervisor, MachineMemory, XenError


def test_frames_are_numbered_from_the_base_and_zeroed() -> None:
    mem = MachineMemory(mfn_base=0x80000)
    a, b = mem.alloc_page(0), mem.alloc_page(1)
    assert (a.mfn, b.mfn) == (0x80000, 0x80001)
    assert (a.owner, b.owner) == (0, 1)
    assert len(a.buf) == 4096 and bytes(a.buf) == bytes(4096)
    assert mem.page(0x80001) is b and mem.page(0x80002) is None


def test_same_machine_same_numbers() -> None:
    def build() -> list[int]:
        hv = Hypervisor()
        hv.domain_create(0, "Domain-0", privileged=True, initdomain=True)
        hv.domain_create(1, "guest")
        return [hv.populate_physmap(1).mfn, hv.memory.alloc_page(0).mfn]

    assert build() == build()


def test_p2m_and_m2p_are_inverse() -> None:
    hv = Hypervisor()
    d = hv.domain_create(3, "guest")
    page = hv.populate_physmap(3)
    pfn = d.mfn_to_pfn(page.mfn)
    assert d.pfn_to_mfn(pfn) == page.mfn
    assert pfn == 1  # pfn 0 holds start_info
    assert d.pfn_to_mfn(0) == d.start_info_page.mfn
    with pytest.raises(KeyError, match="no pfn 0x99"):
        d.pfn_to_mfn(0x99)


def test_a_guests_own_page_gets_the_next_pfn_and_loses_it_when_freed() -> None:
    """get_zeroed_page in a guest is one of its own frames: it has a pfn, and frees give it back."""
    hv = Hypervisor()
    d = hv.domain_create(1, "guest")
    page = hv.memory.alloc_page(1)
    assert d.mfn_to_pfn(page.mfn) == 1 and d.pfn_to_mfn(1) == page.mfn
    p2m = hv.trace.state_at(len(hv.trace) - 1)["xen/d1/p2m"]
    assert p2m == {"0x0": d.start_info_page.mfn, "0x1": page.mfn}
    hv.memory.free_page(page)
    assert 1 not in d.p2m and page.mfn not in d.m2p
    with pytest.raises(ValueError, match="already backed"):
        hv.populate_physmap(1, pfn=0)


def test_allocation_fails_on_demand() -> None:
    """fail_next makes the next allocations fail (-ENOMEM), as an exhausted heap does."""
    mem = MachineMemory()
    mem.fail_next = 1
    assert mem.try_alloc_page(0) is None
    assert mem.try_alloc_page(0) is not None
    mem.limit = 1
    with pytest.raises(XenError) as err:
        mem.alloc_page(0)
    assert err.value.rc == -ENOMEM and "ENOMEM" in str(err.value)


def test_free_page_and_unknown_frames() -> None:
    mem = MachineMemory()
    page = mem.alloc_page(0)
    mem.free_page(page)
    assert mem.page(page.mfn) is None
    with pytest.raises(ValueError, match="not an allocated frame"):
        mem.free_page(page)


def test_a_real_page_is_shared_with_another_process() -> None:
    """A real page is a file mapping: a second Python writes the ring indices, we read them."""
    mem = MachineMemory(real=True)
    try:
        page = mem.alloc_page(1)
        intf = xenstore_domain_interface.from_buffer(page.buf)
        intf.req_prod = 7
        child = (
            "import sys\n"
            "from xenlab.abi.xs_wire import xenstore_domain_interface\n"
            "from xenlab.xen.memory import map_real_page\n"
            "buf = map_real_page(sys.argv[1])\n"
            "intf = xenstore_domain_interface.from_buffer(buf)\n"
            "print(intf.req_prod)\n"
            "intf.rsp_prod = 42\n"
            "buf[0:5] = b'hello'\n"
            "del intf\n"
            "buf.flush()\n"
        )
        out = subprocess.run([sys.executable, "-c", child, page.path], capture_output=True, text=True,
                             check=True)
        assert out.stdout.strip() == "7"  # the child saw our write
        assert intf.rsp_prod == 42  # and we see the child's
        assert bytes(page.buf[0:5]) == b"hello"
        del intf
    finally:
        mem.close()


def test_a_hypervisor_with_real_pages_gives_real_shared_info() -> None:
    hv = Hypervisor(real=True)
    try:
        d = hv.domain_create(0, "Domain-0", privileged=True, initdomain=True)
        assert d.shared_info_page.path is not None
        port = hv.evtchn_bind_ipi(0, 0)
        hv.evtchn_send(0, port)
        with open(d.shared_info_page.path, "rb") as f:
            raw = f.read()
        assert raw[2048] == 1 << port and raw[0] == 1  # the file holds the real bits
    finally:
        hv.close()

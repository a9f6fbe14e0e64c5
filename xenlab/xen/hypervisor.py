"""The simulated hypervisor: machine memory, domains, event channels, grant tables.

``Hypervisor`` is what the guests and xenstored meet through: pages (``memory``),
domains (``domains``, ``domain_create``; life cycle in ``domctl.py``), the EVTCHNOP_*
operations (``evtchn.py``; delivery through the domain's port ops, ``event_2l.py`` until
the guest switches itself to ``event_fifo.py``; and ``event_channel_op``, the
ctypes-level hypercall entry that fills the OUT fields of the argument struct as
HYPERVISOR_event_channel_op does), grant tables (``grant_table.py``) and an HVM domain's
parameters (``hvm.py``: HYPERVISOR_hvm_op).
"""

from __future__ import annotations

import ctypes

from xenlab.abi import event_channel as ev
from xenlab.abi import version as ver
from xenlab.abi.errno import EBUSY, EEXIST, ENOSYS, ESRCH
from xenlab.abi.event_channel import DOMID_FIRST_RESERVED, ECS
from xenlab.base.trace import Trace
from xenlab.xen.domain import Channel, Domain
from xenlab.xen.domctl import DomainControl
from xenlab.xen.errors import XenError
from xenlab.xen.event_2l import SRC
from xenlab.xen.hvm import HvmOps
from xenlab.xen.memory import DEFAULT_MFN_BASE, MachineMemory, Page

SRC_DOMAIN = "xen/common/domain.c"
#: evtchn_init caps max_evtchn_port at INT_MAX (dom0's -1 becomes this).
INT_MAX = 2**31 - 1


class Hypervisor(DomainControl, HvmOps):
    """Xen: memory, domains, event channels (2-level and FIFO), grant tables (v1), HVM params."""

    def __init__(self, trace: Trace | None = None, bits: int = 64, *, real: bool = False,
                 mfn_base: int = DEFAULT_MFN_BASE, directory: str | None = None) -> None:
        if bits not in (32, 64):
            raise ValueError(f"bits must be 64 (x86_64 guests) or 32 (32-bit PV guests), not {bits}")
        self.trace = trace if trace is not None else Trace()
        self.bits = bits
        self.memory = MachineMemory(self.trace, mfn_base=mfn_base, real=real, directory=directory)
        self.domains: dict[int, Domain] = {}
        self.global_virq_handlers: dict[int, int] = {}  # virq -> domid (default: the hardware domain)
        self.memory.domains = self.domains  # a domain's own frames get pfns in its p2m

    #: the build the lab simulates: Xen 4.17.7 (xen/Makefile's XEN_VERSION, XEN_SUBVERSION, XEN_EXTRAVERSION)
    XEN_VERSION, XEN_SUBVERSION, XEN_EXTRAVERSION = 4, 17, ".7"

    def __repr__(self) -> str:
        doms = ", ".join(f"d{d} {self.domains[d].name!r}" for d in sorted(self.domains))
        return f"Hypervisor({self.bits}-bit, {len(self.memory.frames)} frame(s), domains: {doms or 'none'})"

    # -- HYPERVISOR_xen_version ------------------------------------------------------------
    def xen_version(self, caller: int, cmd: int) -> int | str:
        """do_xen_version (xen/common/kernel.c): XENVER_version -> (major << 16) | minor,
        XENVER_extraversion -> the extraversion string, XENVER_get_features -> submap 0; -ENOSYS else."""
        if cmd == ver.XENVER_version:
            return (self.XEN_VERSION << 16) | self.XEN_SUBVERSION
        if cmd == ver.XENVER_extraversion:
            return self.XEN_EXTRAVERSION
        if cmd == ver.XENVER_get_features:
            d = self.domains.get(caller)
            if d is None:
                return -ESRCH
            if d.hvm:  # translated paging; the HVM bits (libxl's HVM guests have pirqs)
                return ((1 << ver.XENFEAT_writable_page_tables) | (1 << ver.XENFEAT_auto_translated_physmap)
                        | (1 << ver.XENFEAT_hvm_safe_pvclock) | (1 << ver.XENFEAT_hvm_callback_vector)
                        | (1 << ver.XENFEAT_hvm_pirqs))
            # a PV guest on x86: writable page/descriptor tables, preserve A/D, map avail bits
            return ((1 << ver.XENFEAT_writable_page_tables) | (1 << ver.XENFEAT_writable_descriptor_tables)
                    | (1 << ver.XENFEAT_mmu_pt_update_preserve_ad) | (1 << ver.XENFEAT_gnttab_map_avail_bits))
        return -ENOSYS

    # -- domains ----------------------------------------------------------------------
    def domain_create(self, domid: int, name: str, vcpus: int = 1, privileged: bool = False,
                      initdomain: bool = False, hvm: bool = False, *,
                      max_evtchn_port: int | None = None, upcalls_masked: bool = False,
                      bits: int | None = None) -> Domain:
        """domain_create + evtchn_init (xen/common/domain.c): a domain with port 0 reserved.

        *max_evtchn_port* limits the ports (libxl passes event_channels, 1023 by
        default, for a guest; dom0 is created with -1, which evtchn_init caps at INT_MAX,
        so only the ABI limits it: 4096 ports on 2-level, 2^17 on FIFO). *upcalls_masked*: domain
        builders set evtchn_upcall_mask = 1 on every vcpu and the guest clears it when it
        enables interrupts; left False, upcalls arrive from the start. *bits* (default:
        the hypervisor's) is the guest's word size: 32 for a 32-bit PV guest on a 64-bit Xen.
        """
        bits = self.bits if bits is None else bits
        if bits not in (32, 64):
            raise ValueError(f"bits must be 64 or 32, not {bits}")
        if domid in self.domains:
            raise XenError(-EEXIST, f"domain_create({domid}, {name!r}): domain {domid} exists")
        if not 0 <= domid < DOMID_FIRST_RESERVED:
            raise ValueError(f"domid {domid} is not a real domain id (0..{DOMID_FIRST_RESERVED - 1})")
        if not 1 <= vcpus <= 32:
            raise ValueError(f"vcpus must be 1..32 (the legacy vcpu_info slots), not {vcpus}")
        shinfo = self.memory.alloc_page(domid, xenheap=True)
        sinfo = self.memory.alloc_page(domid)
        d = Domain(domid, name, vcpus, privileged, initdomain, hvm, bits, shinfo, sinfo,
                   max_evtchn_port if max_evtchn_port is not None else INT_MAX)
        self._map(d, sinfo, 0)
        if upcalls_masked:
            for v in range(32):
                d.shared_info.vcpu_info[v].evtchn_upcall_mask = 1
        # evtchn_init: 2-level port ops, first bucket, port 0 reserved so that 0 never names a real port.
        self.evtchn_2l_init(d)
        port0 = self.get_free_port(d)
        assert port0 == 0
        d.chns[0] = Channel(0, ECS.ECS_RESERVED)
        self.domains[domid] = d
        flags = [f for f, on in (("privileged", privileged), ("initdomain", initdomain), ("hvm", hvm)) if on]
        flagtext = f", {', '.join(flags)}" if flags else ""
        self.trace.record("domain_create", f"d{domid} '{name}': {vcpus} vcpu(s){flagtext}; shared_info mfn "
                          f"{shinfo.mfn:#x}, start_info mfn {sinfo.mfn:#x}; port 0 reserved",
                          actor="xen", source=SRC_DOMAIN,
                          changes=[("xen/domains", domid, None, name),
                                   (f"xen/d{domid}/p2m", "0x0", None, sinfo.mfn),
                                   (f"xen/d{domid}/evtchn", 0, None, ("reserved",))])
        return d

    def close(self) -> None:
        """Unmap and remove real pages (nothing to do for simulated ones)."""
        self.memory.close()

    def _map(self, d: Domain, page: Page, pfn: int) -> None:
        d.p2m[pfn] = page.mfn
        d.m2p[page.mfn] = pfn

    def populate_physmap(self, domid: int, pfn: int | None = None) -> Page:
        """XENMEM_populate_physmap (xen/common/memory.c), one frame: a zeroed page at *pfn* (or the next)."""
        if domid not in self.domains:
            raise ValueError(f"populate_physmap: no domain {domid}")
        return self.memory.alloc_page(domid, pfn=pfn)

    # -- HYPERVISOR_event_channel_op ------------------------------------------------
    def event_channel_op(self, caller: int, cmd: int, arg_struct: ctypes.Structure) -> int:
        """do_event_channel_op (xen/common/event_channel.c): run *cmd*, fill the OUT fields; 0 or -errno."""
        want = ev.EVTCHNOP_ARGS.get(cmd)
        if want is None:
            self.trace.record("do_event_channel_op", f"d{caller}: cmd {cmd} -> -ENOSYS (no such command)",
                              actor="xen", source=SRC)
            return -ENOSYS
        if not isinstance(arg_struct, want):
            raise TypeError(f"EVTCHNOP_{ev.EVTCHNOP_NAMES[cmd]} takes struct {want.__name__}, "
                            f"not {type(arg_struct).__name__}")
        a = arg_struct
        if cmd == ev.EVTCHNOP_alloc_unbound:
            return self._out(a, "port", self.evtchn_alloc_unbound(caller, a.dom, a.remote_dom))
        if cmd == ev.EVTCHNOP_bind_interdomain:
            rc = self.evtchn_bind_interdomain(caller, a.remote_dom, a.remote_port)
            return self._out(a, "local_port", rc)
        if cmd == ev.EVTCHNOP_bind_virq:
            return self._out(a, "port", self.evtchn_bind_virq(caller, a.virq, a.vcpu))
        if cmd == ev.EVTCHNOP_bind_ipi:
            return self._out(a, "port", self.evtchn_bind_ipi(caller, a.vcpu))
        if cmd == ev.EVTCHNOP_bind_pirq:
            return self._out(a, "port", self.evtchn_bind_pirq(caller, a.pirq, a.flags))
        if cmd == ev.EVTCHNOP_close:
            return self.evtchn_close(caller, a.port)
        if cmd == ev.EVTCHNOP_send:
            return self.evtchn_send(caller, a.port)
        if cmd == ev.EVTCHNOP_unmask:
            return self.evtchn_unmask(caller, a.port)
        if cmd == ev.EVTCHNOP_bind_vcpu:
            return self.evtchn_bind_vcpu(caller, a.port, a.vcpu)
        if cmd == ev.EVTCHNOP_reset:
            return self.evtchn_reset(caller, a.dom)
        if cmd == ev.EVTCHNOP_init_control:
            rc = self.evtchn_fifo_init_control(caller, a.control_gfn, a.offset, a.vcpu)
            if rc == 0:  # copied back only on success
                a.link_bits = ev.EVTCHN_FIFO_LINK_BITS
            return rc
        if cmd == ev.EVTCHNOP_expand_array:
            return self.evtchn_fifo_expand_array(caller, a.array_gfn)
        if cmd == ev.EVTCHNOP_set_priority:
            return self.evtchn_set_priority(caller, a.port, a.priority)
        if cmd == ev.EVTCHNOP_reset_cont:
            # evtchn_reset(d, resuming=true) with no preempted reset to resume: d->next_evtchn is 0
            self.trace.record("evtchn_reset", f"d{caller}: reset_cont: no reset in progress -> -EBUSY",
                              actor="xen", source=SRC)
            return -EBUSY
        st = self.evtchn_status(caller, a.dom, a.port)
        if isinstance(st, int):
            return st
        a.status, a.vcpu = st.status, st.vcpu
        ctypes.memmove(ctypes.addressof(a.u), ctypes.addressof(st.u), ctypes.sizeof(st.u))
        return 0

    @staticmethod
    def _out(arg: ctypes.Structure, field: str, rc: int) -> int:
        if rc < 0:
            return rc
        setattr(arg, field, rc)
        return 0

"""struct domain: what the hypervisor knows about one domain (xen/include/xen/sched.h).

Identity and flags (domid, name, vcpus, privileged = is_control_domain, initdomain =
the hardware domain, hvm), its memory (p2m / m2p), the two pages a PV guest starts
from (start_info in its own memory, shared_info from Xen's heap), its HVM params, and
its event-channel table (``chns``, ports 0..valid_evtchns-1, grown in buckets as Xen
grows them), its port ABI (``evtchn_port_ops``: 2-level until the guest's first
EVTCHNOP_init_control, then FIFO with ``evtchn_fifo``). The event-channel operations
themselves live in ``evtchn.py``, ``event_2l.py`` and ``event_fifo.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xenlab.abi.event_channel import ECS, EVTCHN_FIFO_NR_CHANNELS
from xenlab.abi.start_info import SIF_INITDOMAIN, SIF_PRIVILEGED, start_info_layout
from xenlab.xen.memory import Page
from xenlab.xen.shared_info import SharedInfo

if TYPE_CHECKING:
    from xenlab.xen.event import EvtchnPortOps
    from xenlab.xen.event_fifo import EvtchnFifoDomain

#: Ports per bucket of struct evtchn: PAGE_SIZE / next_power_of_2(sizeof(struct evtchn)).
#: struct evtchn is declared __attribute__((aligned(64))) in xen/include/xen/sched.h, so 64
#: bytes and 64 ports per bucket on x86_64 (inferred from the declaration).
EVTCHNS_PER_BUCKET = 64


@dataclass
class Channel:
    """struct evtchn: one port's state, its notify vcpu and the state's union fields."""

    port: int
    state: ECS = ECS.ECS_FREE
    notify_vcpu_id: int = 0
    remote_dom: int = 0  # u.unbound.remote_domid, or u.interdomain.remote_dom's id
    remote_port: int = 0  # u.interdomain.remote_port
    virq: int = 0  # u.virq
    pirq: int = 0  # u.pirq.irq
    # FIFO ABI only (Xen keeps them in every struct evtchn; evtchn_free resets none of them):
    pending: bool = False  # raised while the port had no event word yet; re-raised when its page comes
    priority: int = 0  # its queue; evtchn_fifo_init sets EVTCHN_FIFO_PRIORITY_DEFAULT when bound
    fifo_lastq: tuple[int, int] = (0, 0)  # (last_vcpu_id, last_priority): the queue it was last linked on

    def summary(self) -> tuple[Any, ...] | None:
        """The state as a short tuple for the trace (None when the port is free)."""
        s = self.state
        if s == ECS.ECS_FREE:
            return None
        if s == ECS.ECS_RESERVED:
            return ("reserved",)
        if s == ECS.ECS_UNBOUND:
            return ("unbound", self.remote_dom)
        if s == ECS.ECS_INTERDOMAIN:
            return ("interdomain", self.remote_dom, self.remote_port)
        if s == ECS.ECS_VIRQ:
            return ("virq", self.virq, self.notify_vcpu_id)
        if s == ECS.ECS_IPI:
            return ("ipi", self.notify_vcpu_id)
        return ("pirq", self.pirq)


@dataclass(eq=False)
class Domain:
    """One domain as Xen sees it: flags, memory, start_info, shared_info, HVM params, ports."""

    domid: int
    name: str
    vcpus: int
    privileged: bool
    initdomain: bool
    hvm: bool
    bits: int
    shared_info_page: Page
    start_info_page: Page
    max_evtchn_port: int  # highest port this domain may use (libxl: event_channels, 1023)
    p2m: dict[int, int] = field(default_factory=dict)
    m2p: dict[int, int] = field(default_factory=dict)
    hvm_params: dict[int, int] = field(default_factory=dict)  # d->arch.hvm.params (absent: 0)
    evtchn_upcall_vector: dict[int, int] = field(default_factory=dict)  # vcpu -> vector (HVMOP)
    #: HVM: the first pfn of the MMIO hole below 4G (libxl's mmio_start); the lab hands out the
    #: guest's own pages lazily, numbered below it (the special pages lie inside the hole)
    mmio_start_pfn: int | None = None
    chns: list[Channel] = field(default_factory=list)
    virq_to_evtchn: list[dict[int, int]] = field(default_factory=list)  # per vcpu: virq -> port
    pirq_to_evtchn: dict[int, int] = field(default_factory=dict)
    nr_pirqs: int = 256
    irq_caps: set[int] = field(default_factory=set)  # pirqs this domain may bind (irqs_permit_access)
    free_hint: int = 0  # no free port below this one (speeds up get_free_port; not in Xen)
    controller_pause_count: int = 0
    is_dying: bool = False
    is_shut_down: bool = False
    shutdown_code: int | None = None  # SHUTDOWN_* the guest (or toolstack) gave
    upcall: Callable[[int], None] | None = None
    grant_frames: list[Page] = field(default_factory=list)  # the grant table's frames, 512 refs each
    max_grant_frames: int = 64  # gnttab_max_frames (xl.cfg max_grant_frames) default
    grant_pins: dict[int, list[int]] = field(default_factory=dict)  # ref -> [ro maps, rw maps, mapper]
    maptrack: dict[int, tuple[int, int, bool]] = field(default_factory=dict)  # handle -> (dom, ref, ro)
    evtchn_port_ops: EvtchnPortOps | None = None  # d->evtchn_port_ops: 2-level from evtchn_init
    evtchn_fifo: EvtchnFifoDomain | None = None  # d->evtchn_fifo: set by the first EVTCHNOP_init_control

    def __post_init__(self) -> None:
        self.shared_info = SharedInfo(self.shared_info_page.buf, self.bits)
        self.start_info = start_info_layout(self.bits).from_buffer(self.start_info_page.buf)
        self.start_info.magic = f"xen-3.0-x86_{'64' if self.bits == 64 else '32p'}".encode()
        self.start_info.shared_info = self.shared_info_page.mfn << 12
        if self.privileged:
            self.start_info.flags |= SIF_PRIVILEGED
        if self.initdomain:
            self.start_info.flags |= SIF_INITDOMAIN
        self.virq_to_evtchn = [{} for _ in range(self.vcpus)]

    def __repr__(self) -> str:
        flags = "".join(f", {f}" for f in ("privileged", "initdomain", "hvm") if getattr(self, f))
        return (f"Domain(d{self.domid} {self.name!r}, {self.vcpus} vcpu(s){flags}, "
                f"{len(self.ports_in_use()) - 1} port(s) in use)")

    @property
    def max_vcpus(self) -> int:
        """d->max_vcpus."""
        return self.vcpus

    @property
    def max_evtchns(self) -> int:
        """max_evtchns(d) (event_channel.h): 2-level BITS_PER_EVTCHN_WORD(d) squared; FIFO 2^17."""
        return EVTCHN_FIFO_NR_CHANNELS if self.evtchn_fifo is not None else self.bits * self.bits

    @property
    def valid_evtchns(self) -> int:
        """d->valid_evtchns: ports with a struct evtchn allocated (whole buckets)."""
        return len(self.chns)

    def port_is_valid(self, port: int) -> bool:
        """port_is_valid (xen/common/event_channel.c): the port lies in an allocated bucket."""
        return 0 <= port < len(self.chns)

    def pfn_to_mfn(self, pfn: int) -> int:
        """pfn_to_mfn / get_gfn: the machine frame behind guest frame *pfn* (KeyError if unmapped)."""
        try:
            return self.p2m[pfn]
        except KeyError:
            raise KeyError(f"d{self.domid} has no pfn {pfn:#x} in its p2m") from None

    def mfn_to_pfn(self, mfn: int) -> int:
        """mfn_to_pfn / the m2p table: the guest frame number of machine frame *mfn*."""
        try:
            return self.m2p[mfn]
        except KeyError:
            raise KeyError(f"mfn {mfn:#x} is not in d{self.domid}'s p2m") from None

    def ports_in_use(self) -> list[int]:
        """Ports that are not free, lowest first (port 0, reserved, included)."""
        return [c.port for c in self.chns if c.state != ECS.ECS_FREE]

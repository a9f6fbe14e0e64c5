"""Event-channel hypercall ABI (xen/include/public/event_channel.h) and hypervisor port states."""

from __future__ import annotations

import ctypes
from enum import IntEnum

domid_t = ctypes.c_uint16
evtchn_port_t = ctypes.c_uint32

DOMID_FIRST_RESERVED = 0x7FF0
DOMID_SELF = 0x7FF0
DOMID_IO = 0x7FF1
DOMID_XEN = 0x7FF2
DOMID_COW = 0x7FF3
DOMID_INVALID = 0x7FF4
DOMID_IDLE = 0x7FFF
DOMID_MASK = 0x7FFF

__HYPERVISOR_event_channel_op_compat = 16
__HYPERVISOR_event_channel_op = 32

EVTCHNOP_bind_interdomain = 0
EVTCHNOP_bind_virq = 1
EVTCHNOP_bind_pirq = 2
EVTCHNOP_close = 3
EVTCHNOP_send = 4
EVTCHNOP_status = 5
EVTCHNOP_alloc_unbound = 6
EVTCHNOP_bind_ipi = 7
EVTCHNOP_bind_vcpu = 8
EVTCHNOP_unmask = 9
EVTCHNOP_reset = 10
EVTCHNOP_init_control = 11
EVTCHNOP_expand_array = 12
EVTCHNOP_set_priority = 13
EVTCHNOP_reset_cont = 14  # continue a preempted reset (Xen 4.12+)

EVTCHNOP_NAMES: dict[int, str] = {
    v: k[len("EVTCHNOP_"):] for k, v in dict(globals()).items() if k.startswith("EVTCHNOP_")
}

BIND_PIRQ__WILL_SHARE = 1


class ECS(IntEnum):
    """Hypervisor-internal port states (xen/include/xen/sched.h, ECS_*)."""

    ECS_FREE = 0
    ECS_RESERVED = 1
    ECS_UNBOUND = 2
    ECS_INTERDOMAIN = 3
    ECS_PIRQ = 4
    ECS_VIRQ = 5
    ECS_IPI = 6


globals().update({s.name: s for s in ECS})

EVTCHNSTAT_closed = 0
EVTCHNSTAT_unbound = 1
EVTCHNSTAT_interdomain = 2
EVTCHNSTAT_pirq = 3
EVTCHNSTAT_virq = 4
EVTCHNSTAT_ipi = 5

# Limits. The 2-level ABI has (bits per xen_ulong_t)^2 ports.
EVTCHN_2L_NR_CHANNELS_64 = 64 * 64  # sizeof(xen_ulong_t) * sizeof(xen_ulong_t) * 64 on x86_64
EVTCHN_2L_NR_CHANNELS_32 = 32 * 32

# The FIFO ABI (Xen 4.4+). Priority 0 is the highest, 15 the lowest; a port is bound at 7.
EVTCHN_FIFO_PRIORITY_MAX = 0
EVTCHN_FIFO_PRIORITY_DEFAULT = 7
EVTCHN_FIFO_PRIORITY_MIN = 15
EVTCHN_FIFO_MAX_QUEUES = EVTCHN_FIFO_PRIORITY_MIN + 1
#: One 32-bit event word per port, in the guest's event array pages.
event_word_t = ctypes.c_uint32
#: The event word's flag bits (bit numbers) and its LINK field (the next port in the queue).
EVTCHN_FIFO_PENDING = 31
EVTCHN_FIFO_MASKED = 30
EVTCHN_FIFO_LINKED = 29
EVTCHN_FIFO_BUSY = 28
EVTCHN_FIFO_LINK_BITS = 17
EVTCHN_FIFO_LINK_MASK = (1 << EVTCHN_FIFO_LINK_BITS) - 1
EVTCHN_FIFO_NR_CHANNELS = 1 << EVTCHN_FIFO_LINK_BITS


def EVTCHN_2L_NR_CHANNELS(bits: int = 64) -> int:
    """Ports in the 2-level ABI for a guest whose xen_ulong_t has `bits` bits."""
    return bits * bits


# VIRQs (xen/include/public/xen.h); VIRQ_ARCH_0 is VIRQ_MCA on x86.
VIRQ_TIMER = 0
VIRQ_DEBUG = 1
VIRQ_CONSOLE = 2
VIRQ_DOM_EXC = 3
VIRQ_TBUF = 4
VIRQ_DEBUGGER = 6
VIRQ_XENOPROF = 7
VIRQ_CON_RING = 8
VIRQ_PCPU_STATE = 9
VIRQ_MEM_EVENT = 10
VIRQ_ARGO = 11
VIRQ_ENOMEM = 12
VIRQ_XENPMU = 13
VIRQ_ARCH_0 = 16
VIRQ_ARCH_1 = 17
VIRQ_ARCH_2 = 18
VIRQ_ARCH_3 = 19
VIRQ_ARCH_4 = 20
VIRQ_ARCH_5 = 21
VIRQ_ARCH_6 = 22
VIRQ_ARCH_7 = 23
VIRQ_MCA = VIRQ_ARCH_0
NR_VIRQS = 24
#: VIRQs bound per vcpu (the rest are global and live on vcpu 0).
PER_VCPU_VIRQS = frozenset({VIRQ_TIMER, VIRQ_DEBUG, VIRQ_XENOPROF, VIRQ_XENPMU})


class evtchn_alloc_unbound(ctypes.Structure):
    """struct evtchn_alloc_unbound: IN dom, remote_dom; OUT port."""

    _fields_ = [("dom", domid_t), ("remote_dom", domid_t), ("port", evtchn_port_t)]


class evtchn_bind_interdomain(ctypes.Structure):
    """struct evtchn_bind_interdomain: IN remote_dom, remote_port; OUT local_port."""

    _fields_ = [("remote_dom", domid_t), ("remote_port", evtchn_port_t), ("local_port", evtchn_port_t)]


class evtchn_bind_virq(ctypes.Structure):
    """struct evtchn_bind_virq: IN virq, vcpu; OUT port."""

    _fields_ = [("virq", ctypes.c_uint32), ("vcpu", ctypes.c_uint32), ("port", evtchn_port_t)]


class evtchn_bind_pirq(ctypes.Structure):
    """struct evtchn_bind_pirq: IN pirq, flags; OUT port."""

    _fields_ = [("pirq", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("port", evtchn_port_t)]


class evtchn_bind_ipi(ctypes.Structure):
    """struct evtchn_bind_ipi: IN vcpu; OUT port."""

    _fields_ = [("vcpu", ctypes.c_uint32), ("port", evtchn_port_t)]


class evtchn_close(ctypes.Structure):
    """struct evtchn_close: IN port."""

    _fields_ = [("port", evtchn_port_t)]


class evtchn_send(ctypes.Structure):
    """struct evtchn_send: IN port."""

    _fields_ = [("port", evtchn_port_t)]


class _status_unbound(ctypes.Structure):
    _fields_ = [("dom", domid_t)]


class _status_interdomain(ctypes.Structure):
    _fields_ = [("dom", domid_t), ("port", evtchn_port_t)]


class _status_u(ctypes.Union):
    _fields_ = [
        ("unbound", _status_unbound),
        ("interdomain", _status_interdomain),
        ("pirq", ctypes.c_uint32),
        ("virq", ctypes.c_uint32),
    ]


class evtchn_status(ctypes.Structure):
    """struct evtchn_status: IN dom, port; OUT status, vcpu, u."""

    _fields_ = [
        ("dom", domid_t),
        ("port", evtchn_port_t),
        ("status", ctypes.c_uint32),
        ("vcpu", ctypes.c_uint32),
        ("u", _status_u),
    ]


class evtchn_bind_vcpu(ctypes.Structure):
    """struct evtchn_bind_vcpu: IN port, vcpu."""

    _fields_ = [("port", evtchn_port_t), ("vcpu", ctypes.c_uint32)]


class evtchn_unmask(ctypes.Structure):
    """struct evtchn_unmask: IN port."""

    _fields_ = [("port", evtchn_port_t)]


class evtchn_reset(ctypes.Structure):
    """struct evtchn_reset: IN dom."""

    _fields_ = [("dom", domid_t)]


class evtchn_init_control(ctypes.Structure):
    """struct evtchn_init_control: IN control_gfn, offset, vcpu; OUT link_bits."""

    _fields_ = [
        ("control_gfn", ctypes.c_uint64),
        ("offset", ctypes.c_uint32),
        ("vcpu", ctypes.c_uint32),
        ("link_bits", ctypes.c_uint8),
        ("_pad", ctypes.c_uint8 * 7),
    ]


class evtchn_expand_array(ctypes.Structure):
    """struct evtchn_expand_array: IN array_gfn."""

    _fields_ = [("array_gfn", ctypes.c_uint64)]


class evtchn_set_priority(ctypes.Structure):
    """struct evtchn_set_priority: IN port, priority."""

    _fields_ = [("port", evtchn_port_t), ("priority", ctypes.c_uint32)]


class evtchn_fifo_control_block(ctypes.Structure):
    """struct evtchn_fifo_control_block: one per vcpu, in a guest page: READY bits, head[] per queue."""

    _fields_ = [
        ("ready", ctypes.c_uint32),
        ("_rsvd", ctypes.c_uint32),
        ("head", ctypes.c_uint32 * EVTCHN_FIFO_MAX_QUEUES),
    ]


#: How an event word's flags read in the lab's trace and views: P, M, L, B or "-" each.
EVENT_WORD_FLAGS = ((EVTCHN_FIFO_PENDING, "P"), (EVTCHN_FIFO_MASKED, "M"), (EVTCHN_FIFO_LINKED, "L"),
                    (EVTCHN_FIFO_BUSY, "B"))


_EVENT_WORD_FLAGS_MASK = sum(1 << b for b, _ in EVENT_WORD_FLAGS)
#: the flag text of every combination of the four flags (a boot formats some ten thousand words)
_EVENT_WORD_FLAG_TEXT = {
    flags: "".join(c if flags >> b & 1 else "-" for b, c in EVENT_WORD_FLAGS)
    for flags in (sum(1 << b for n, (b, _) in enumerate(EVENT_WORD_FLAGS) if combo >> n & 1)
                  for combo in range(1 << len(EVENT_WORD_FLAGS)))
}


def event_word_bits(word: int) -> tuple[str, int] | None:
    """An event word as the trace table ``xen/d<N>/event_word`` holds it: ("P-L-", LINK); None for 0."""
    if not word:
        return None
    return _EVENT_WORD_FLAG_TEXT[word & _EVENT_WORD_FLAGS_MASK], word & EVTCHN_FIFO_LINK_MASK


#: The argument struct of each EVTCHNOP_* command.
EVTCHNOP_ARGS: dict[int, type[ctypes.Structure]] = {
    EVTCHNOP_bind_interdomain: evtchn_bind_interdomain,
    EVTCHNOP_bind_virq: evtchn_bind_virq,
    EVTCHNOP_bind_pirq: evtchn_bind_pirq,
    EVTCHNOP_close: evtchn_close,
    EVTCHNOP_send: evtchn_send,
    EVTCHNOP_status: evtchn_status,
    EVTCHNOP_alloc_unbound: evtchn_alloc_unbound,
    EVTCHNOP_bind_ipi: evtchn_bind_ipi,
    EVTCHNOP_bind_vcpu: evtchn_bind_vcpu,
    EVTCHNOP_unmask: evtchn_unmask,
    EVTCHNOP_reset: evtchn_reset,
    EVTCHNOP_reset_cont: evtchn_reset,
    EVTCHNOP_init_control: evtchn_init_control,
    EVTCHNOP_expand_array: evtchn_expand_array,
    EVTCHNOP_set_priority: evtchn_set_priority,
}


class _evtchn_op_u(ctypes.Union):
    _fields_ = [
        ("alloc_unbound", evtchn_alloc_unbound),
        ("bind_interdomain", evtchn_bind_interdomain),
        ("bind_virq", evtchn_bind_virq),
        ("bind_pirq", evtchn_bind_pirq),
        ("bind_ipi", evtchn_bind_ipi),
        ("close", evtchn_close),
        ("send", evtchn_send),
        ("status", evtchn_status),
        ("bind_vcpu", evtchn_bind_vcpu),
        ("unmask", evtchn_unmask),
    ]


class evtchn_op(ctypes.Structure):
    """struct evtchn_op: cmd + union, the argument of the old hypercall 16 (event_channel_op_compat)."""

    _fields_ = [("cmd", ctypes.c_uint32), ("u", _evtchn_op_u)]

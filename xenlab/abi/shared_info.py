"""struct shared_info and struct vcpu_info (xen/include/public/xen.h, arch-x86/xen*.h).

Two layouts: x86_64 guests (xen_ulong_t is 64-bit) and 32-bit PV guests (x86_32,
where unsigned long is 32-bit and uint64_t is only 4-byte aligned). Laid over a
4096-byte page with ``from_buffer``, field access reads and writes the real bytes.
"""

from __future__ import annotations

import ctypes

XEN_LEGACY_MAX_VCPUS = 32


class vcpu_time_info(ctypes.Structure):
    """struct vcpu_time_info: 32 bytes of time-keeping state per vcpu."""

    _pack_ = 4
    _fields_ = [
        ("version", ctypes.c_uint32),
        ("pad0", ctypes.c_uint32),
        ("tsc_timestamp", ctypes.c_uint64),
        ("system_time", ctypes.c_uint64),
        ("tsc_to_system_mul", ctypes.c_uint32),
        ("tsc_shift", ctypes.c_int8),
        ("flags", ctypes.c_uint8),
        ("pad1", ctypes.c_uint8 * 2),
    ]


class arch_vcpu_info_x86_64(ctypes.Structure):
    """struct arch_vcpu_info on x86_64: cr2 and one pad word."""

    _fields_ = [("cr2", ctypes.c_uint64), ("pad", ctypes.c_uint64)]


class arch_vcpu_info_x86_32(ctypes.Structure):
    """struct arch_vcpu_info on x86_32: cr2 and five pad words."""

    _fields_ = [("cr2", ctypes.c_uint32), ("pad", ctypes.c_uint32 * 5)]


class vcpu_info_x86_64(ctypes.Structure):
    """struct vcpu_info (x86_64): upcall_pending @0, upcall_mask @1, pending_sel @8; 64 bytes."""

    _fields_ = [
        ("evtchn_upcall_pending", ctypes.c_uint8),
        ("evtchn_upcall_mask", ctypes.c_uint8),
        ("evtchn_pending_sel", ctypes.c_uint64),
        ("arch", arch_vcpu_info_x86_64),
        ("time", vcpu_time_info),
    ]


class vcpu_info_x86_32(ctypes.Structure):
    """struct vcpu_info (x86_32): upcall_pending @0, upcall_mask @1, pending_sel @4; 64 bytes."""

    _pack_ = 4
    _fields_ = [
        ("evtchn_upcall_pending", ctypes.c_uint8),
        ("evtchn_upcall_mask", ctypes.c_uint8),
        ("evtchn_pending_sel", ctypes.c_uint32),
        ("arch", arch_vcpu_info_x86_32),
        ("time", vcpu_time_info),
    ]


class arch_shared_info_x86_64(ctypes.Structure):
    """struct arch_shared_info (x86_64): the p2m bookkeeping words."""

    _fields_ = [
        ("max_pfn", ctypes.c_uint64),
        ("pfn_to_mfn_frame_list_list", ctypes.c_uint64),
        ("nmi_reason", ctypes.c_uint64),
        ("p2m_cr3", ctypes.c_uint64),
        ("p2m_vaddr", ctypes.c_uint64),
        ("p2m_generation", ctypes.c_uint64),
    ]


class arch_shared_info_x86_32(ctypes.Structure):
    """struct arch_shared_info (x86_32): the p2m words and wc_sec_hi."""

    _fields_ = [
        ("max_pfn", ctypes.c_uint32),
        ("pfn_to_mfn_frame_list_list", ctypes.c_uint32),
        ("nmi_reason", ctypes.c_uint32),
        ("p2m_cr3", ctypes.c_uint32),
        ("p2m_vaddr", ctypes.c_uint32),
        ("p2m_generation", ctypes.c_uint32),
        ("wc_sec_hi", ctypes.c_uint32),
    ]


class shared_info_x86_64(ctypes.Structure):
    """struct shared_info (x86_64): vcpu_info[32] @0, evtchn_pending @2048, evtchn_mask @2560."""

    _fields_ = [
        ("vcpu_info", vcpu_info_x86_64 * XEN_LEGACY_MAX_VCPUS),
        ("evtchn_pending", ctypes.c_uint64 * 64),
        ("evtchn_mask", ctypes.c_uint64 * 64),
        ("wc_version", ctypes.c_uint32),
        ("wc_sec", ctypes.c_uint32),
        ("wc_nsec", ctypes.c_uint32),
        ("wc_sec_hi", ctypes.c_uint32),
        ("arch", arch_shared_info_x86_64),
    ]


class shared_info_x86_32(ctypes.Structure):
    """struct shared_info (x86_32): vcpu_info[32] @0, evtchn_pending @2048, evtchn_mask @2176."""

    _pack_ = 4
    _fields_ = [
        ("vcpu_info", vcpu_info_x86_32 * XEN_LEGACY_MAX_VCPUS),
        ("evtchn_pending", ctypes.c_uint32 * 32),
        ("evtchn_mask", ctypes.c_uint32 * 32),
        ("wc_version", ctypes.c_uint32),
        ("wc_sec", ctypes.c_uint32),
        ("wc_nsec", ctypes.c_uint32),
        ("arch", arch_shared_info_x86_32),
    ]


def shared_info_layout(bits: int) -> type[ctypes.Structure]:
    """The shared_info struct of a guest whose xen_ulong_t has *bits* bits (64 or 32)."""
    if bits == 64:
        return shared_info_x86_64
    if bits == 32:
        return shared_info_x86_32
    raise ValueError(f"bits must be 64 (x86_64) or 32 (x86_32 PV), not {bits}")

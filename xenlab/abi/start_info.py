"""start_info (xen/include/public/xen.h): what a PV guest starts from (HVM parameters: abi/hvm.py)."""

from __future__ import annotations

import ctypes

MAX_GUEST_CMDLINE = 1024
SIF_PRIVILEGED = 1 << 0
SIF_INITDOMAIN = 1 << 1
SIF_MULTIBOOT_MOD = 1 << 2
SIF_MOD_START_PFN = 1 << 3
SIF_VIRT_P2M_4TOOLS = 1 << 4
SIF_PM_MASK = 0xFF << 8  # a byte reserved for xen-pm options

GNTTAB_RESERVED_CONSOLE = 0
GNTTAB_RESERVED_XENSTORE = 1


class _console_domU(ctypes.Structure):
    _fields_ = [("mfn", ctypes.c_uint64), ("evtchn", ctypes.c_uint32)]


class _console_dom0(ctypes.Structure):
    _fields_ = [("info_off", ctypes.c_uint32), ("info_size", ctypes.c_uint32)]


class _console(ctypes.Union):
    _fields_ = [("domU", _console_domU), ("dom0", _console_dom0)]


class start_info(ctypes.Structure):
    """struct start_info for an x86_64 PV guest (xen_pfn_t and unsigned long are 64-bit)."""

    _fields_ = [
        ("magic", ctypes.c_char * 32),
        ("nr_pages", ctypes.c_uint64),
        ("shared_info", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("store_mfn", ctypes.c_uint64),
        ("store_evtchn", ctypes.c_uint32),
        ("console", _console),
        ("pt_base", ctypes.c_uint64),
        ("nr_pt_frames", ctypes.c_uint64),
        ("mfn_list", ctypes.c_uint64),
        ("mod_start", ctypes.c_uint64),
        ("mod_len", ctypes.c_uint64),
        ("cmd_line", ctypes.c_int8 * MAX_GUEST_CMDLINE),
        ("first_p2m_pfn", ctypes.c_uint64),
        ("nr_p2m_frames", ctypes.c_uint64),
    ]


class _console_domU_x86_32(ctypes.Structure):
    _fields_ = [("mfn", ctypes.c_uint32), ("evtchn", ctypes.c_uint32)]


class _console_x86_32(ctypes.Union):
    _fields_ = [("domU", _console_domU_x86_32), ("dom0", _console_dom0)]


class start_info_x86_32(ctypes.Structure):
    """struct start_info for a 32-bit PV guest (xen_pfn_t and unsigned long are 32-bit)."""

    _fields_ = [
        ("magic", ctypes.c_char * 32),
        ("nr_pages", ctypes.c_uint32),
        ("shared_info", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("store_mfn", ctypes.c_uint32),
        ("store_evtchn", ctypes.c_uint32),
        ("console", _console_x86_32),
        ("pt_base", ctypes.c_uint32),
        ("nr_pt_frames", ctypes.c_uint32),
        ("mfn_list", ctypes.c_uint32),
        ("mod_start", ctypes.c_uint32),
        ("mod_len", ctypes.c_uint32),
        ("cmd_line", ctypes.c_int8 * MAX_GUEST_CMDLINE),
        ("first_p2m_pfn", ctypes.c_uint32),
        ("nr_p2m_frames", ctypes.c_uint32),
    ]


def start_info_layout(bits: int) -> type[ctypes.Structure]:
    """The start_info struct of a guest whose unsigned long has *bits* bits (64 or 32)."""
    if bits not in (32, 64):
        raise ValueError(f"bits must be 64 (x86_64) or 32 (x86_32 PV), not {bits}")
    return start_info if bits == 64 else start_info_x86_32

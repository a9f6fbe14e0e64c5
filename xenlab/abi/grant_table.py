"""Grant tables, version 1 (xen/include/public/grant_table.h): entries, map/unmap, statuses.

A domain shares a page by writing a grant entry (flags, the domain allowed in, the
frame) into its grant table; the other domain maps it with GNTTABOP_map_grant_ref
naming (domain, ref). Refs 0..7 are reserved for the toolstack: 0 the console ring,
1 the xenstore ring.
"""

from __future__ import annotations

import ctypes

from xenlab.abi.event_channel import domid_t

grant_ref_t = ctypes.c_uint32
grant_handle_t = ctypes.c_uint32

GNTTAB_NR_RESERVED_ENTRIES = 8
GNTTAB_RESERVED_CONSOLE = 0
GNTTAB_RESERVED_XENSTORE = 1

# grant_entry_v1.flags
GTF_invalid = 0
GTF_permit_access = 1
GTF_accept_transfer = 2
GTF_transitive = 3
GTF_type_mask = 3
GTF_readonly = 1 << 2
GTF_reading = 1 << 3
GTF_writing = 1 << 4
GTF_PWT = 1 << 5
GTF_PCD = 1 << 6
GTF_PAT = 1 << 7
GTF_sub_page = 1 << 8
GTF_transfer_committed = 1 << 2
GTF_transfer_completed = 1 << 3

GNTTABOP_map_grant_ref = 0
GNTTABOP_unmap_grant_ref = 1
GNTTABOP_setup_table = 2
GNTTABOP_dump_table = 3
GNTTABOP_transfer = 4
GNTTABOP_copy = 5
GNTTABOP_query_size = 6
GNTTABOP_unmap_and_replace = 7
GNTTABOP_set_version = 8
GNTTABOP_get_status_frames = 9
GNTTABOP_get_version = 10
GNTTABOP_swap_grant_ref = 11
GNTTABOP_cache_flush = 12

# gnttab_map_grant_ref.flags
GNTMAP_device_map = 1 << 0
GNTMAP_host_map = 1 << 1
GNTMAP_readonly = 1 << 2
GNTMAP_application_map = 1 << 3
GNTMAP_contains_pte = 1 << 4

# enum grant_status
GNTST_okay = 0
GNTST_general_error = -1
GNTST_bad_domain = -2
GNTST_bad_gntref = -3
GNTST_bad_handle = -4
GNTST_bad_virt_addr = -5
GNTST_bad_dev_addr = -6
GNTST_no_device_space = -7
GNTST_permission_denied = -8
GNTST_bad_page = -9
GNTST_bad_copy_arg = -10
GNTST_address_too_big = -11
GNTST_eagain = -12
GNTST_no_space = -13

GNTST_NAMES: dict[int, str] = {v: k for k, v in dict(globals()).items() if k.startswith("GNTST_")}


class grant_entry_v1(ctypes.Structure):
    """struct grant_entry_v1: 8 bytes per ref, 512 refs per 4096-byte grant frame."""

    _fields_ = [("flags", ctypes.c_uint16), ("domid", domid_t), ("frame", ctypes.c_uint32)]


class gnttab_map_grant_ref(ctypes.Structure):
    """struct gnttab_map_grant_ref: IN host_addr, flags, ref, dom; OUT status, handle, dev_bus_addr."""

    _fields_ = [
        ("host_addr", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("ref", grant_ref_t),
        ("dom", domid_t),
        ("status", ctypes.c_int16),
        ("handle", grant_handle_t),
        ("dev_bus_addr", ctypes.c_uint64),
    ]


class gnttab_unmap_grant_ref(ctypes.Structure):
    """struct gnttab_unmap_grant_ref: IN host_addr, dev_bus_addr, handle; OUT status."""

    _fields_ = [
        ("host_addr", ctypes.c_uint64),
        ("dev_bus_addr", ctypes.c_uint64),
        ("handle", grant_handle_t),
        ("status", ctypes.c_int16),
    ]


class gnttab_setup_table(ctypes.Structure):
    """struct gnttab_setup_table: IN dom, nr_frames; OUT status; frame_list a guest pointer (x86_64)."""

    _fields_ = [
        ("dom", domid_t),
        ("nr_frames", ctypes.c_uint32),
        ("status", ctypes.c_int16),
        ("frame_list", ctypes.c_uint64),
    ]

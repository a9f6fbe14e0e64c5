"""xenstore wire protocol and shared-page layout (xen/include/public/io/xs_wire.h)."""

from __future__ import annotations

import ctypes
from enum import IntEnum


class xsd_sockmsg_type(IntEnum):
    """enum xsd_sockmsg_type: the message types of the xenstore protocol."""

    XS_CONTROL = 0
    XS_DIRECTORY = 1
    XS_READ = 2
    XS_GET_PERMS = 3
    XS_WATCH = 4
    XS_UNWATCH = 5
    XS_TRANSACTION_START = 6
    XS_TRANSACTION_END = 7
    XS_INTRODUCE = 8
    XS_RELEASE = 9
    XS_GET_DOMAIN_PATH = 10
    XS_WRITE = 11
    XS_MKDIR = 12
    XS_RM = 13
    XS_SET_PERMS = 14
    XS_WATCH_EVENT = 15
    XS_ERROR = 16
    XS_IS_DOMAIN_INTRODUCED = 17
    XS_RESUME = 18
    XS_SET_TARGET = 19
    # 20 was XS_RESTRICT; the value is now invalid.
    XS_RESET_WATCHES = 21
    XS_DIRECTORY_PART = 22
    XS_GET_FEATURE = 23
    XS_SET_FEATURE = 24
    XS_GET_QUOTA = 25
    XS_SET_QUOTA = 26
    XS_INVALID = 0xFFFF


XS_DEBUG = xsd_sockmsg_type.XS_CONTROL  # the old name of XS_CONTROL
XS_TYPE_COUNT = 27  # number of type values defined (0..26, 20 unused)
XS_TYPE_COUNT_4_17 = 23  # the same count in the Xen 4.17 headers (DIRECTORY_PART is the last)

# Module-level names as the C header spells them.
globals().update({t.name: t for t in xsd_sockmsg_type})

#: struct xsd_errors xsd_errors[]: the error names in wire order with their errno values.
XSD_ERRORS: tuple[tuple[str, int], ...] = (
    ("EINVAL", 22),
    ("EACCES", 13),
    ("EEXIST", 17),
    ("EISDIR", 21),
    ("ENOENT", 2),
    ("ENOMEM", 12),
    ("ENOSPC", 28),
    ("EIO", 5),
    ("ENOTEMPTY", 39),
    ("ENOSYS", 38),
    ("EROFS", 30),
    ("EBUSY", 16),
    ("EAGAIN", 11),
    ("EISCONN", 106),
    ("E2BIG", 7),
    ("EPERM", 1),
)
#: 2.6.18's copy of the table stops at EISCONN.
XSD_ERRORS_2_6_18 = XSD_ERRORS[:14]
XSD_ERROR_BY_NAME: dict[str, int] = dict(XSD_ERRORS)
XSD_ERROR_BY_ERRNO: dict[int, str] = {num: name for name, num in XSD_ERRORS}

XS_WATCH_PATH = 0
XS_WATCH_TOKEN = 1

XENSTORE_PAYLOAD_MAX = 4096
XENSTORE_ABS_PATH_MAX = 3072
XENSTORE_REL_PATH_MAX = 2048

XENSTORE_SERVER_FEATURE_RECONNECTION = 1
XENSTORE_SERVER_FEATURE_ERROR = 2
XENSTORE_SERVER_FEATURE_WATCHDEPTH = 4  # master only (not in 4.17 headers)
XENSTORE_SERVER_FEATURE_DOMID_ANY = 8  # master only (not in 4.17 headers)

XENSTORE_CONNECTED = 0
XENSTORE_RECONNECT = 1

XENSTORE_ERROR_NONE = 0
XENSTORE_ERROR_COMM = 1
XENSTORE_ERROR_RINGIDX = 2
XENSTORE_ERROR_PROTO = 3

XENSTORE_RING_SIZE = 1024
XENSTORE_RING_IDX = ctypes.c_uint32
PAGE_SIZE = 4096


def MASK_XENSTORE_IDX(idx: int) -> int:
    """MASK_XENSTORE_IDX(idx): the slot of free-running index idx in a 1024-byte ring."""
    return idx & (XENSTORE_RING_SIZE - 1)


class xsd_sockmsg(ctypes.LittleEndianStructure):
    """struct xsd_sockmsg: the 16-byte header before every payload (host order = little-endian on x86)."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("req_id", ctypes.c_uint32),
        ("tx_id", ctypes.c_uint32),
        ("len", ctypes.c_uint32),
    ]


XSD_SOCKMSG_SIZE = ctypes.sizeof(xsd_sockmsg)


class xenstore_domain_interface(ctypes.Structure):
    """struct xenstore_domain_interface as in Xen 4.17 (the 2.6.18 layout is its first six fields)."""

    _fields_ = [
        ("req", ctypes.c_char * XENSTORE_RING_SIZE),
        ("rsp", ctypes.c_char * XENSTORE_RING_SIZE),
        ("req_cons", XENSTORE_RING_IDX),
        ("req_prod", XENSTORE_RING_IDX),
        ("rsp_cons", XENSTORE_RING_IDX),
        ("rsp_prod", XENSTORE_RING_IDX),
        ("server_features", ctypes.c_uint32),
        ("connection", ctypes.c_uint32),
        ("error", ctypes.c_uint32),
    ]


#: Fields present in 2.6.18's copy of the header (the struct read through its prefix).
FIELDS_2_6_18 = ("req", "rsp", "req_cons", "req_prod", "rsp_cons", "rsp_prod")

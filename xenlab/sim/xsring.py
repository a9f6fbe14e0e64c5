"""`xsring`: read a domain's store page the way realxen's xsring.py reads a real one.

``xsring [LABEL]`` prints one line with the indices and flags of
``struct xenstore_domain_interface``; ``xsring -d`` also decodes the xsd_sockmsg messages
still in the two rings (the last up to 1024 bytes before each producer index), like the
``ring-decoded.txt`` of a real capture. Everything is read from the page's bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.abi.xs_wire import (
    XENSTORE_RING_SIZE,
    XSD_SOCKMSG_SIZE,
    xenstore_domain_interface,
    xsd_sockmsg_type,
)

if TYPE_CHECKING:
    from xenlab.xen.memory import PageBuffer

_REQ = xenstore_domain_interface.req.offset
_RSP = xenstore_domain_interface.rsp.offset


def xsring_line(label: str, intf: xenstore_domain_interface) -> str:
    """The one-line summary of a store page (the fields of struct xenstore_domain_interface)."""
    return (f"RING {label}: req_cons={intf.req_cons} req_prod={intf.req_prod} rsp_cons={intf.rsp_cons} "
            f"rsp_prod={intf.rsp_prod} server_features={intf.server_features:#x} "
            f"connection={intf.connection} error={intf.error}")


def ring_bytes(buf: PageBuffer, ring_offset: int, start: int, end: int) -> bytes:
    """The bytes of free-running indices [start, end) of one ring (byte x lives at x % 1024)."""
    mem = memoryview(buf).cast("B")
    return bytes(mem[ring_offset + (i % XENSTORE_RING_SIZE)] for i in range(start, end))


def decode_messages(data: bytes) -> tuple[list[tuple[str, int, int, bytes]], int]:
    """Whole xsd_sockmsg messages at the start of *data*: (type, req_id, tx_id, payload), bytes left over."""
    out: list[tuple[str, int, int, bytes]] = []
    i = 0
    while i + XSD_SOCKMSG_SIZE <= len(data):
        mtype, req_id, tx_id, ln = (int.from_bytes(data[i + k:i + k + 4], "little") for k in (0, 4, 8, 12))
        if i + XSD_SOCKMSG_SIZE + ln > len(data):
            break
        try:
            name = xsd_sockmsg_type(mtype).name.removeprefix("XS_")
        except ValueError:
            name = f"type{mtype}"
        out.append((name, req_id, tx_id, data[i + XSD_SOCKMSG_SIZE:i + XSD_SOCKMSG_SIZE + ln]))
        i += XSD_SOCKMSG_SIZE + ln
    return out, len(data) - i


def decode_ring(buf: PageBuffer, intf: xenstore_domain_interface) -> list[str]:
    """The messages in both rings, one line each, as realxen's ring-decoded.txt shows them.

    Message boundaries are known only from index 0, so a ring whose producer index has
    passed 1024 (it wrapped, older bytes overwritten) is reported, not decoded.
    """
    lines: list[str] = []
    for what, off, prod in (("req", _REQ, intf.req_prod), ("rsp", _RSP, intf.rsp_prod)):
        lines.append(f"  {what} ring bytes [0,{prod}):")
        if prod > XENSTORE_RING_SIZE:
            lines.append(f"    (wrapped: bytes before {prod - XENSTORE_RING_SIZE} are overwritten, so the "
                         "message boundaries are lost)")
            continue
        msgs, rest = decode_messages(ring_bytes(buf, off, 0, prod))
        for name, req_id, tx_id, payload in msgs:
            lines.append(f"    {name:<18} req_id={req_id:<4} tx_id={tx_id} len={len(payload):<3} "
                         f"payload={payload!r}")
        if rest:
            lines.append(f"    ({rest} bytes of a message not complete yet)")
    return lines

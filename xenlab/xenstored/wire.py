"""The xenstore wire protocol, sans-IO: bytes in, messages out, and back (xs_wire.h, docs/misc/xenstore.txt).

OWNER: the wire/transport engineer. The Message dataclass, encode() and ProtocolError
are the contract other modules use; keep their shape.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from xenlab.abi.xs_wire import XENSTORE_PAYLOAD_MAX, XSD_SOCKMSG_SIZE

_HEADER = struct.Struct("<IIII")


class ProtocolError(ValueError):
    """A malformed message on the wire; the text says what was wrong."""


@dataclass(frozen=True)
class Message:
    """One xsd_sockmsg: header fields and the raw payload bytes."""

    type: int
    req_id: int
    tx_id: int
    payload: bytes

    @property
    def len(self) -> int:
        """The header's len field."""
        return len(self.payload)


def encode(msg: Message) -> bytes:
    """The header (16 bytes, little-endian) followed by the payload."""
    if len(msg.payload) > XENSTORE_PAYLOAD_MAX:
        raise ProtocolError(f"payload of {len(msg.payload)} bytes exceeds XENSTORE_PAYLOAD_MAX "
                            f"({XENSTORE_PAYLOAD_MAX})")
    return _HEADER.pack(msg.type, msg.req_id, msg.tx_id, len(msg.payload)) + msg.payload


assert _HEADER.size == XSD_SOCKMSG_SIZE

"""The xenstore wire protocol, sans-IO: bytes in, messages out, and back (xs_wire.h, docs/misc/xenstore.txt).

OWNER: the wire/transport engineer. The Message dataclass, encode() and ProtocolError
are the contract other modules use; keep their shape.

Theory of operation
-------------------
Every message is a 16-byte little-endian ``xsd_sockmsg`` header (type, req_id, tx_id,
len) followed by ``len`` payload bytes, ``len <= XENSTORE_PAYLOAD_MAX``. A transport
(ring or Unix socket) receives bytes in whatever pieces the other side chose; it feeds
them to a ``Decoder`` and gets whole ``Message``\\ s back. The decoder never does IO and
never raises anything but a ``ProtocolError`` subclass naming what was wrong.

Only framing errors are fatal to a connection (the daemon cannot find the next header):
``PayloadTooLong`` (len > 4096; C xenstored drops the connection, on a ring it sets
``error = XENSTORE_ERROR_PROTO``) and ``Truncated`` (the peer closed mid-message).
Payload format errors (``MissingNul``, ``BadField``) are answered with an error reply
(C xenstored: EINVAL from ``onearg``/``get_strings``) and the connection lives on;
``UnknownType`` is answered ENOSYS. The payload helpers (``xenlab.xenstored.payload``)
raise them so the dispatcher can map each to its errno.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from xenlab.abi.xs_wire import (
    XENSTORE_PAYLOAD_MAX,
    XSD_SOCKMSG_SIZE,
    xsd_sockmsg_type,
)

_HEADER = struct.Struct("<IIII")


class ProtocolError(ValueError):
    """A malformed message on the wire; the text says what was wrong."""

    #: the errno name a daemon answers with when the error is not fatal to the connection
    errname = "EINVAL"


class PayloadTooLong(ProtocolError):
    """A header announcing more than XENSTORE_PAYLOAD_MAX payload bytes (fatal: the stream is lost)."""

    def __init__(self, length: int) -> None:
        self.length = length
        super().__init__(f"header len {length} exceeds XENSTORE_PAYLOAD_MAX ({XENSTORE_PAYLOAD_MAX})")


class UnknownType(ProtocolError):
    """A message type the protocol does not define (C xenstored answers ENOSYS)."""

    errname = "ENOSYS"

    def __init__(self, msg_type: int) -> None:
        self.msg_type = msg_type
        super().__init__(f"unknown message type {msg_type}")


class Truncated(ProtocolError):
    """The stream ended inside a message (fatal)."""

    def __init__(self, have: int, need: int, where: str) -> None:
        self.have, self.need = have, need
        super().__init__(f"stream closed inside the {where}: {have} of {need} bytes")


class MissingNul(ProtocolError):
    """A payload field that must be NUL-terminated is not (C xenstored answers EINVAL)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what}: missing NUL terminator")


class BadField(ProtocolError):
    """A payload with the wrong number of fields or a field that does not parse (EINVAL)."""


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

    @property
    def type_name(self) -> str:
        """XS_READ, XS_WATCH_EVENT, ... or the number for an undefined type."""
        return type_name(self.type)


def type_name(msg_type: int) -> str:
    """The enum xsd_sockmsg_type name of *msg_type* (its number in decimal if undefined)."""
    try:
        return xsd_sockmsg_type(msg_type).name
    except ValueError:
        return str(msg_type)


def check_type(msg_type: int) -> xsd_sockmsg_type:
    """The type as an enum member; UnknownType for 20 (old XS_RESTRICT), INVALID and undefined ones."""
    if msg_type == 20 or msg_type == xsd_sockmsg_type.XS_INVALID:
        raise UnknownType(msg_type)
    try:
        return xsd_sockmsg_type(msg_type)
    except ValueError:
        raise UnknownType(msg_type) from None


def encode(msg: Message) -> bytes:
    """The header (16 bytes, little-endian) followed by the payload."""
    if len(msg.payload) > XENSTORE_PAYLOAD_MAX:
        raise ProtocolError(f"payload of {len(msg.payload)} bytes exceeds XENSTORE_PAYLOAD_MAX "
                            f"({XENSTORE_PAYLOAD_MAX})")
    return _HEADER.pack(msg.type, msg.req_id, msg.tx_id, len(msg.payload)) + msg.payload


def encode_all(msgs: Iterable[Message]) -> bytes:
    """Several messages back to back, as they travel on a ring or a socket."""
    return b"".join(encode(m) for m in msgs)


def decode_header(data: bytes) -> tuple[int, int, int, int]:
    """(type, req_id, tx_id, len) of the first 16 bytes of *data*."""
    if len(data) < XSD_SOCKMSG_SIZE:
        raise Truncated(len(data), XSD_SOCKMSG_SIZE, "header")
    return _HEADER.unpack_from(data)


class Decoder:
    """Bytes in arbitrary pieces -> Messages (the read_message() loop of xenstored_core.c, sans IO).

    ``feed(data)`` returns the messages completed by *data*. After a fatal error the
    decoder is dead (``error`` set) and every later call raises it again, as the daemon
    stops reading a connection it has marked in error. ``strict_types=True`` also
    rejects undefined types (a client checking replies; a daemon answers them ENOSYS).
    """

    def __init__(self, *, max_len: int = XENSTORE_PAYLOAD_MAX, strict_types: bool = False) -> None:
        self.max_len = max_len
        self.strict_types = strict_types
        self.error: ProtocolError | None = None
        self._buf = bytearray()
        self._header: tuple[int, int, int, int] | None = None

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole message (header bytes included)."""
        return len(self._buf) + (XSD_SOCKMSG_SIZE if self._header else 0)

    @property
    def header(self) -> tuple[int, int, int, int] | None:
        """The header of the message being received, once its 16 bytes are in."""
        return self._header

    @property
    def wanted(self) -> int:
        """Bytes still missing from the header, or from the payload once the header is in."""
        if self._header is None:
            return XSD_SOCKMSG_SIZE - len(self._buf)
        return self._header[3] - len(self._buf)

    def reset(self) -> None:
        """Forget any partial message (the reconnect handshake drops partial packets)."""
        self._buf.clear()
        self._header = None
        self.error = None

    def feed(self, data: bytes) -> list[Message]:
        """Take more bytes; return the messages they complete (maybe none)."""
        return list(self.iter_feed(data))

    def iter_feed(self, data: bytes) -> Iterator[Message]:
        """As feed(), yielding each message as soon as it is complete."""
        if self.error is not None:
            raise self.error
        self._buf += data
        while True:
            if self._header is None:
                if len(self._buf) < XSD_SOCKMSG_SIZE:
                    return
                hdr = _HEADER.unpack_from(self._buf)
                if hdr[3] > self.max_len:
                    self.error = PayloadTooLong(hdr[3])
                    raise self.error
                if self.strict_types:
                    try:
                        check_type(hdr[0])
                    except UnknownType as exc:
                        self.error = exc
                        raise
                del self._buf[:XSD_SOCKMSG_SIZE]
                self._header = hdr
            length = self._header[3]
            if len(self._buf) < length:
                return
            payload = bytes(self._buf[:length])
            del self._buf[:length]
            msg_type, req_id, tx_id, _ = self._header
            self._header = None
            yield Message(msg_type, req_id, tx_id, payload)

    def close(self) -> None:
        """The peer closed the stream: Truncated if it stopped inside a message."""
        if self.error is not None:
            raise self.error
        if self._header is not None:
            self.error = Truncated(len(self._buf), self._header[3], "payload")
        elif self._buf:
            self.error = Truncated(len(self._buf), XSD_SOCKMSG_SIZE, "header")
        if self.error is not None:
            raise self.error


def decode_all(data: bytes) -> list[Message]:
    """Every message in *data*, which must end on a message boundary."""
    dec = Decoder()
    msgs = dec.feed(data)
    dec.close()
    return msgs


assert _HEADER.size == XSD_SOCKMSG_SIZE

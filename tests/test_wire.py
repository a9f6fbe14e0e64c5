"""The xenstore wire protocol: a 16-byte little-endian header, then at most 4096 payload bytes."""

from __future__ import annotations

import pytest

from xenlab.abi import xs_wire as xsw
from xenlab.xenstored import payload as pl
from xenlab.xenstored import wire
from xenlab.xenstored.wire import Decoder, Message


def test_header_is_four_little_endian_u32s() -> None:
    # A READ of "/" with req_id 7 in transaction 3: type 2, then 7, 3, len 2.
    data = wire.encode(Message(xsw.XS_READ, 7, 3, b"/\0"))
    assert data == bytes([2, 0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0]) + b"/\0"


def test_decoder_takes_bytes_one_at_a_time() -> None:
    msgs = [Message(xsw.XS_WRITE, 1, 0, b"a\0b"), Message(xsw.XS_READ, 2, 0, b"a\0")]
    stream = wire.encode_all(msgs)
    dec = Decoder()
    got: list[Message] = []
    for i in range(len(stream)):
        got += dec.feed(stream[i:i + 1])
        # Nothing comes out before the last byte of a message arrives.
        if i == 16 + 3 - 2:
            assert got == []
    assert got == msgs
    assert dec.pending == 0
    dec.close()


def test_header_then_payload_reports_pending_bytes() -> None:
    dec = Decoder()
    assert dec.feed(wire.encode(Message(xsw.XS_READ, 0, 0, b"/local\0"))[:20]) == []
    assert dec.header == (xsw.XS_READ, 0, 0, 7)
    assert dec.pending == 20
    # C xenstored reads the header, then exactly the payload: 3 more bytes are wanted.
    assert dec.wanted == 3
    assert Decoder().wanted == 16


def test_len_over_4096_is_fatal_and_names_the_length() -> None:
    dec = Decoder()
    hdr = bytes(wire._HEADER.pack(xsw.XS_WRITE, 0, 0, 4097))
    with pytest.raises(wire.PayloadTooLong, match="4097"):
        dec.feed(hdr)
    # The stream is lost: the decoder stays in error, as xenstored ignores the connection.
    with pytest.raises(wire.PayloadTooLong):
        dec.feed(wire.encode(Message(xsw.XS_READ, 0, 0, b"/\0")))


def test_exactly_4096_is_allowed() -> None:
    msg = Message(xsw.XS_WRITE, 0, 0, b"p\0" + b"x" * 4094)
    assert wire.decode_all(wire.encode(msg)) == [msg]


def test_encode_refuses_an_oversized_payload() -> None:
    with pytest.raises(wire.ProtocolError, match="4097 bytes exceeds XENSTORE_PAYLOAD_MAX"):
        wire.encode(Message(xsw.XS_WRITE, 0, 0, b"x" * 4097))


@pytest.mark.parametrize("cut, where", [(5, "header"), (18, "payload")])
def test_closing_inside_a_message_is_truncated(cut: int, where: str) -> None:
    dec = Decoder()
    dec.feed(wire.encode(Message(xsw.XS_READ, 0, 0, b"/tool\0"))[:cut])
    with pytest.raises(wire.Truncated, match=where):
        dec.close()


def test_unknown_types_pass_framing_but_strict_mode_rejects_them() -> None:
    # A daemon must answer type 20 (the removed XS_RESTRICT) with ENOSYS, so framing accepts it...
    raw = wire.encode(Message(20, 5, 0, b"\0"))
    assert wire.decode_all(raw)[0].type == 20
    # ...while a client checking replies can ask for strictness.
    with pytest.raises(wire.UnknownType, match="unknown message type 20") as exc:
        Decoder(strict_types=True).feed(raw)
    assert exc.value.errname == "ENOSYS"
    with pytest.raises(wire.UnknownType):
        wire.check_type(xsw.XS_INVALID)
    assert wire.check_type(22) is xsw.xsd_sockmsg_type.XS_DIRECTORY_PART


def test_reconnect_reset_drops_a_partial_packet() -> None:
    dec = Decoder()
    dec.feed(b"\x02\x00\x00")
    dec.reset()
    msg = Message(xsw.XS_READ, 0, 0, b"x\0")
    assert dec.feed(wire.encode(msg)) == [msg]


# Payload formats ----------------------------------------------------------------------


def test_path_requests_need_their_nul() -> None:
    assert pl.parse_path(pl.path_payload("/local/domain/0")) == b"/local/domain/0"
    with pytest.raises(wire.MissingNul, match="path"):
        pl.parse_path(b"/local")
    with pytest.raises(wire.BadField, match="one NUL-terminated string"):
        pl.parse_path(b"/a\0/b\0")


def test_write_value_is_raw_bytes_without_a_terminator() -> None:
    payload = pl.write_payload("/vm/name", b"two words\0and a nul")
    assert payload == b"/vm/name\0two words\0and a nul"
    assert pl.parse_write(payload) == (b"/vm/name", b"two words\0and a nul")
    assert pl.parse_write(b"/empty\0") == (b"/empty", b"")
    with pytest.raises(wire.MissingNul, match="WRITE path"):
        pl.parse_write(b"/no-separator")


def test_watch_takes_an_optional_depth_only_when_allowed() -> None:
    assert pl.parse_watch(pl.watch_payload("backend", "FFFF8800")) == (b"backend", b"FFFF8800", None)
    three = pl.watch_payload("@releaseDomain", "domlist", depth=1)
    assert three == b"@releaseDomain\0domlist\x001\0"
    assert pl.parse_watch(three, allow_depth=True)[2] == 1
    with pytest.raises(wire.BadField, match="expected 2 NUL-terminated strings, got 3"):
        pl.parse_watch(three)


def test_introduce_fields_and_signed_gfn() -> None:
    payload = pl.introduce_payload(1, 0xFEFFF, 3)
    assert payload == b"1\x001044479\x003\0"
    assert pl.parse_introduce(payload) == (1, 0xFEFFF, 3)
    assert pl.parse_introduce(b"2\0-1\x005\0") == (2, -1, 5)
    with pytest.raises(wire.BadField, match="INTRODUCE domid: 'x' is not a decimal number"):
        pl.parse_introduce(b"x\x001\x002\0")
    with pytest.raises(wire.BadField, match="expected 3"):
        pl.parse_introduce(b"1\x002\0")


def test_permissions_letter_then_domid() -> None:
    path, perms = pl.parse_set_perms(pl.perms_payload("/dev", ["n0", "r1"]))
    assert (path, perms) == (b"/dev", [("n", 0), ("r", 1)])
    assert pl.parse_perms_reply(b"w1\0b0\0") == [("w", 1), ("b", 0)]
    with pytest.raises(wire.BadField, match="first letter"):
        pl.parse_perm(b"x1")
    with pytest.raises(wire.BadField, match="at least one permission"):
        pl.parse_set_perms(b"/dev\0")


def test_transaction_end_is_t_or_f() -> None:
    assert pl.parse_transaction_end(pl.transaction_end_payload(True)) is True
    assert pl.parse_transaction_end(b"F\0") is False
    with pytest.raises(wire.BadField, match="neither T nor F"):
        pl.parse_transaction_end(b"X\0")


def test_domain_ops() -> None:
    assert pl.parse_domid(b"7\0") == 7
    assert pl.parse_set_target(pl.set_target_payload(2, 1)) == (2, 1)
    assert pl.parse_directory_part(pl.directory_part_payload("/local/domain", 12)) == \
        (b"/local/domain", 12)


def test_replies_copy_the_request_ids() -> None:
    req = Message(xsw.XS_WRITE, 9, 4, b"a\0b")
    assert pl.reply_ok(req) == Message(xsw.XS_WRITE, 9, 4, b"OK\0")
    err = pl.reply_error(req, -2)
    assert err == Message(xsw.XS_ERROR, 9, 4, b"ENOENT\0")
    assert pl.parse_error(err.payload) == "ENOENT"
    # An errno outside xsd_errors[] goes out as EINVAL (send_error's fallback).
    assert pl.reply_error(req, 36).payload == b"EINVAL\0"
    assert pl.reply_error(req, "EPERM").payload == b"EPERM\0"


def test_watch_events_have_zero_ids() -> None:
    ev = pl.watch_event("/local/domain/1/device", "tok")
    assert (ev.type, ev.req_id, ev.tx_id) == (xsw.XS_WATCH_EVENT, 0, 0)
    assert pl.parse_watch_event(ev.payload) == (b"/local/domain/1/device", b"tok")


def test_directory_reply() -> None:
    req = Message(xsw.XS_DIRECTORY, 1, 0, b"/\0")
    assert pl.directory_reply(req, ["local", "tool"]).payload == b"local\0tool\0"
    assert pl.directory_reply(req, []).payload == b""


def test_directory_part_pages_through_a_long_list() -> None:
    names = [f"node{i:05d}" for i in range(1000)]  # 10 bytes each + NUL = 11000 bytes
    blob = pl.join_strings(*names)
    req = Message(xsw.XS_DIRECTORY_PART, 1, 0, b"")
    got: list[bytes] = []
    offset = 0
    replies = 0
    while True:
        rep = pl.directory_part_reply(req, 42, blob, offset)
        assert rep.len <= xsw.XENSTORE_PAYLOAD_MAX
        gen, part = pl.parse_directory_part_reply(rep.payload)
        assert gen == 42
        replies += 1
        if not part:
            break
        got += part
        offset += sum(len(n) + 1 for n in part)
    assert got == [n.encode() for n in names]
    # 4096 - len("42\0") - 1 = 4092 bytes per page hold 372 names of 11 bytes: 3 pages + the end marker.
    assert replies == 4
    assert pl.directory_part_reply(req, 42, blob, len(blob)).payload == b"42\0\0"


def test_the_remaining_formats() -> None:
    assert pl.transaction_start_payload() == b"\0"
    assert pl.parse_transaction_id(b"12\0") == 12
    assert pl.parse_control(pl.control_payload("quota", "1")) == (b"quota", [b"1"])
    assert pl.feature_payload() == b"" and pl.feature_payload(3, 1) == b"3\x001\0"
    assert pl.quota_payload("nodes", 2, 500) == b"2\0nodes\x00500\0"
    assert pl.parse_directory_reply(b"a\0b\0") == [b"a", b"b"]
    with pytest.raises(wire.BadField, match="no command"):
        pl.parse_control(b"")

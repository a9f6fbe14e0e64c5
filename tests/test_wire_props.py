"""Property tests of the codec: any split decodes the same; garbage only raises ProtocolError."""

from __future__ import annotations

from fuzz import quick_and_long_with
from hypothesis import strategies as st

from xenlab.xenstored import payload as pl
from xenlab.xenstored import wire
from xenlab.xenstored.wire import Decoder, Message

quick_and_long = quick_and_long_with(150)  # 150 examples in every `make test`


messages = st.builds(
    Message,
    type=st.integers(0, 0xFFFFFFFF),
    req_id=st.integers(0, 0xFFFFFFFF),
    tx_id=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=4096),
)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points + [len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


@quick_and_long(st.lists(messages, max_size=6), st.lists(st.integers(0, 1 << 20), max_size=30))
def _any_split_round_trips(msgs: list[Message], cuts: list[int]) -> None:
    stream = wire.encode_all(msgs)
    dec = Decoder()
    got: list[Message] = []
    for piece in _split(stream, cuts):
        got += dec.feed(piece)
    dec.close()
    assert got == msgs


@quick_and_long(st.binary(max_size=9000), st.lists(st.integers(0, 1 << 14), max_size=10), st.booleans())
def _garbage_raises_only_protocol_errors(data: bytes, cuts: list[int], strict: bool) -> None:
    dec = Decoder(strict_types=strict)
    try:
        for piece in _split(data, cuts):
            for msg in dec.feed(piece):
                assert msg.len <= 4096
        dec.close()
    except wire.ProtocolError:
        assert dec.error is not None


PARSERS = [
    pl.parse_path, pl.parse_write, pl.parse_watch, pl.parse_set_perms, pl.parse_perms_reply,
    pl.parse_introduce, pl.parse_domid, pl.parse_set_target, pl.parse_directory_part,
    pl.parse_transaction_end, pl.parse_error, pl.parse_directory_part_reply,
    pl.parse_watch_event, pl.split_strings, pl.parse_control, pl.parse_directory_reply,
    pl.parse_transaction_id,
]


@quick_and_long(st.binary(max_size=64)
                | st.lists(st.sampled_from([b"1", b"-2", b"r0", b"x", b"\0", b"T", b"/a"])).map(b"".join))
def _payload_parsers_fail_only_with_protocol_errors(payload: bytes) -> None:
    for parse in PARSERS:
        try:
            parse(payload)
        except wire.ProtocolError:
            pass


@quick_and_long(st.lists(st.binary(min_size=1, max_size=40).filter(lambda b: b"\0" not in b), max_size=400),
       st.integers(0, 1 << 40))
def _directory_part_pages_are_complete_and_bounded(names: list[bytes], generation: int) -> None:
    blob = pl.join_strings(*names)
    req = Message(22, 0, 0, b"")
    offset, got = 0, []
    for _ in range(len(names) + 2):
        rep = pl.directory_part_reply(req, generation, blob, offset)
        assert rep.len <= 4096
        gen, part = pl.parse_directory_part_reply(rep.payload)
        assert gen == generation
        if not part:
            break
        got += part
        offset += sum(len(n) + 1 for n in part)
    assert got == names

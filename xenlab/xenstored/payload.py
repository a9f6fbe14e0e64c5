"""Payload formats of every xenstore message type: build them, parse them (docs/misc/xenstore.txt).

Payloads are strings joined by NULs, as xs.c builds them and xenstored_core.c parses them
(``onearg``, ``get_strings``). A parse that fails raises a ``wire.ProtocolError`` subclass
naming the field: ``MissingNul`` or ``BadField`` (a daemon answers EINVAL). Everything here
is also reachable as ``wire.<name>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from xenlab.abi.xs_wire import (
    XENSTORE_PAYLOAD_MAX,
    XS_DIRECTORY_PART,
    XS_ERROR,
    XS_WATCH_EVENT,
    XSD_ERROR_BY_ERRNO,
    XSD_ERROR_BY_NAME,
)
from xenlab.xenstored.wire import BadField, Message, MissingNul


def _b(s: str | bytes) -> bytes:
    return s.encode() if isinstance(s, str) else bytes(s)


def join_strings(*fields: str | bytes) -> bytes:
    """Each field followed by a NUL (path\\0, path\\0token\\0, perm lists...)."""
    return b"".join(_b(f) + b"\0" for f in fields)


def split_strings(payload: bytes, what: str = "payload") -> list[bytes]:
    """The NUL-terminated strings of *payload* (get_strings, xenstored_core.c); MissingNul if unterminated."""
    if not payload:
        return []
    if payload[-1:] != b"\0":
        raise MissingNul(what)
    return payload[:-1].split(b"\0")


def one_arg(payload: bytes, what: str = "argument") -> bytes:
    """The single NUL-terminated string of a payload (onearg() in xenstored_core.c)."""
    if b"\0" not in payload:
        raise MissingNul(what)
    if payload.index(b"\0") + 1 != len(payload):
        count = payload.count(b"\0")
        raise BadField(f"{what}: expected one NUL-terminated string, got {count} NULs")
    return payload[:-1]


def n_args(payload: bytes, counts: Sequence[int], what: str) -> list[bytes]:
    """Exactly one of *counts* NUL-terminated strings (INTRODUCE 3, WATCH 2 or 3...)."""
    fields = split_strings(payload, what)
    if len(fields) not in counts:
        want = " or ".join(str(c) for c in counts)
        raise BadField(f"{what}: expected {want} NUL-terminated strings, got {len(fields)}")
    return fields


def parse_int(field: bytes, what: str, *, signed: bool = False) -> int:
    """A decimal field (domid, port, gfn, offset); BadField naming *what* if it is not one."""
    text = field.decode("ascii", "replace")
    ok = text.isdigit() or (signed and text[:1] == "-" and text[1:].isdigit())
    if not ok:
        raise BadField(f"{what}: {text!r} is not a decimal number")
    return int(text)


# Requests -----------------------------------------------------------------------------


def request(msg_type: int, payload: bytes, req_id: int = 0, tx_id: int = 0) -> Message:
    """A request message."""
    return Message(int(msg_type), req_id, tx_id, payload)


def path_payload(path: str | bytes) -> bytes:
    """path\\0: DIRECTORY, READ, GET_PERMS, MKDIR, RM (and domid\\0 for the domain ops)."""
    return join_strings(path)


def parse_path(payload: bytes) -> bytes:
    """The path of a path\\0 request."""
    return one_arg(payload, "path")


def write_payload(path: str | bytes, value: str | bytes) -> bytes:
    """path\\0value: WRITE (the value is not NUL-terminated and may hold any byte)."""
    return _b(path) + b"\0" + _b(value)


def parse_write(payload: bytes) -> tuple[bytes, bytes]:
    """(path, value) of a WRITE payload."""
    if b"\0" not in payload:
        raise MissingNul("WRITE path")
    path, _, value = payload.partition(b"\0")
    return path, value


def watch_payload(path: str | bytes, token: str | bytes, depth: int | None = None) -> bytes:
    """path\\0token\\0[depth\\0]: WATCH and UNWATCH (depth only with the WATCHDEPTH feature)."""
    return join_strings(path, token) + (join_strings(str(depth)) if depth is not None else b"")


def parse_watch(payload: bytes, *, allow_depth: bool = False) -> tuple[bytes, bytes, int | None]:
    """(path, token, depth or None) of a WATCH/UNWATCH payload."""
    fields = n_args(payload, (2, 3) if allow_depth else (2,), "WATCH")
    depth = parse_int(fields[2], "WATCH depth") if len(fields) == 3 else None
    return fields[0], fields[1], depth


def perms_payload(path: str | bytes, perms: Iterable[str | bytes]) -> bytes:
    """path\\0perm\\0perm\\0...: SET_PERMS."""
    return join_strings(path, *perms)


def parse_perm(field: bytes) -> tuple[str, int]:
    """('r'|'w'|'b'|'n', domid) of one permission string such as b'r1'."""
    letter = field[:1].decode("ascii", "replace")
    if letter not in ("r", "w", "b", "n"):
        raise BadField(f"permission {field!r}: first letter must be one of w, r, b, n")
    return letter, parse_int(field[1:], f"permission {field!r} domid")


def format_perm(letter: str, domid: int) -> str:
    """'r1', 'n0': one permission string."""
    return f"{letter}{domid}"


def parse_set_perms(payload: bytes) -> tuple[bytes, list[tuple[str, int]]]:
    """(path, [(letter, domid), ...]) of a SET_PERMS payload; BadField without a permission."""
    fields = split_strings(payload, "SET_PERMS")
    if len(fields) < 2:
        raise BadField(f"SET_PERMS: expected a path and at least one permission, got {len(fields)} strings")
    return fields[0], [parse_perm(f) for f in fields[1:]]


def parse_perms_reply(payload: bytes) -> list[tuple[str, int]]:
    """The permissions of a GET_PERMS reply."""
    return [parse_perm(f) for f in split_strings(payload, "GET_PERMS reply")]


def introduce_payload(domid: int, gfn: int, evtchn: int) -> bytes:
    """domid\\0gfn\\0evtchn\\0: INTRODUCE (libxl sends the gfn as signed decimal)."""
    return join_strings(str(domid), str(gfn), str(evtchn))


def parse_introduce(payload: bytes) -> tuple[int, int, int]:
    """(domid, gfn, evtchn) of an INTRODUCE payload."""
    d, g, e = n_args(payload, (3,), "INTRODUCE")
    return parse_int(d, "INTRODUCE domid"), parse_int(g, "INTRODUCE gfn", signed=True), \
        parse_int(e, "INTRODUCE evtchn")


def parse_domid(payload: bytes, what: str = "domid") -> int:
    """The domid of RELEASE, GET_DOMAIN_PATH, IS_DOMAIN_INTRODUCED, RESUME."""
    return parse_int(one_arg(payload, what), what)


def set_target_payload(domid: int, target: int) -> bytes:
    """domid\\0tdomid\\0: SET_TARGET."""
    return join_strings(str(domid), str(target))


def parse_set_target(payload: bytes) -> tuple[int, int]:
    """(domid, target domid) of a SET_TARGET payload."""
    d, t = n_args(payload, (2,), "SET_TARGET")
    return parse_int(d, "SET_TARGET domid"), parse_int(t, "SET_TARGET target")


def directory_part_payload(path: str | bytes, offset: int) -> bytes:
    """path\\0offset\\0: DIRECTORY_PART."""
    return join_strings(path, str(offset))


def parse_directory_part(payload: bytes) -> tuple[bytes, int]:
    """(path, offset) of a DIRECTORY_PART request."""
    p, off = n_args(payload, (2,), "DIRECTORY_PART")
    return p, parse_int(off, "DIRECTORY_PART offset")


def transaction_end_payload(commit: bool) -> bytes:
    """T\\0 to commit, F\\0 to abort: TRANSACTION_END."""
    return b"T\0" if commit else b"F\0"


def parse_transaction_end(payload: bytes) -> bool:
    """True for commit (T), False for abort (F); BadField otherwise."""
    arg = one_arg(payload, "TRANSACTION_END")
    if arg not in (b"T", b"F"):
        raise BadField(f"TRANSACTION_END: {arg!r} is neither T nor F")
    return arg == b"T"


def transaction_start_payload() -> bytes:
    """TRANSACTION_START (and RESET_WATCHES): one empty string, i.e. a lone NUL."""
    return b"\0"


def control_payload(cmd: str, *args: str | bytes) -> bytes:
    """cmd\0[arg\0...]: CONTROL (alias DEBUG), e.g. ``quota``, ``log``, ``check``."""
    return join_strings(cmd, *args)


def parse_control(payload: bytes) -> tuple[bytes, list[bytes]]:
    """(command, args) of a CONTROL payload."""
    fields = split_strings(payload, "CONTROL")
    if not fields:
        raise BadField("CONTROL: no command")
    return fields[0], fields[1:]


def feature_payload(domid: int | None = None, value: int | None = None) -> bytes:
    """GET_FEATURE ``[domid\0]`` / SET_FEATURE ``domid\0value\0`` (numbered from Xen 4.21)."""
    fields = [str(x) for x in (domid, value) if x is not None]
    return join_strings(*fields)


def quota_payload(quota: str, domid: int | None = None, value: int | None = None) -> bytes:
    """GET_QUOTA ``[domid\0]quota\0`` / SET_QUOTA ``[domid\0]quota\0value\0`` (Xen 4.21)."""
    head = [str(domid)] if domid is not None else []
    tail = [str(value)] if value is not None else []
    return join_strings(*head, quota, *tail)


# Replies ------------------------------------------------------------------------------


def reply(req: Message, payload: bytes) -> Message:
    """A reply: the request's type, req_id and tx_id with *payload*."""
    return Message(req.type, req.req_id, req.tx_id, payload)


def reply_ok(req: Message) -> Message:
    """OK\\0, the success reply of WRITE, MKDIR, RM, WATCH, INTRODUCE..."""
    return reply(req, b"OK\0")


def error_name(err: int | str) -> str:
    """The wire name of an errno (negative accepted); untranslatable ones go out as EINVAL (send_error)."""
    if isinstance(err, str):
        return err if err in XSD_ERROR_BY_NAME else "EINVAL"
    return XSD_ERROR_BY_ERRNO.get(abs(err), "EINVAL")


def reply_error(req: Message, err: int | str) -> Message:
    """An XS_ERROR reply carrying the error's name and the request's req_id/tx_id."""
    return Message(XS_ERROR, req.req_id, req.tx_id, join_strings(error_name(err)))


def parse_error(payload: bytes) -> str:
    """The name in an XS_ERROR payload (e.g. 'ENOENT')."""
    return one_arg(payload, "ERROR").decode("ascii", "replace")


def directory_reply(req: Message, names: Iterable[str | bytes]) -> Message:
    """The children names, each NUL-terminated (an empty directory is an empty payload)."""
    return reply(req, join_strings(*names))


def parse_directory_reply(payload: bytes) -> list[bytes]:
    """The child names of a DIRECTORY reply."""
    return split_strings(payload, "DIRECTORY reply")


def parse_transaction_id(payload: bytes) -> int:
    """The id in a TRANSACTION_START reply (decimal, NUL-terminated)."""
    return parse_int(one_arg(payload, "TRANSACTION_START reply"), "transaction id")


def directory_part_reply(req: Message, generation: int, children: bytes, offset: int) -> Message:
    """gen\\0, the children from *offset* that fit, a final \\0 (send_directory_part, xenstored_core.c)."""
    gen = join_strings(str(generation))
    if offset >= len(children):
        return Message(XS_DIRECTORY_PART, req.req_id, req.tx_id, gen + b"\0")
    maxlen = XENSTORE_PAYLOAD_MAX - len(gen) - 1
    length = 0
    while True:
        name_len = children.index(b"\0", offset + length) - (offset + length)
        if length + name_len >= maxlen:
            break
        length += name_len + 1
        if offset + length == len(children):
            break
    return Message(XS_DIRECTORY_PART, req.req_id, req.tx_id,
                   gen + children[offset:offset + length] + b"\0")


def parse_directory_part_reply(payload: bytes) -> tuple[int, list[bytes]]:
    """(generation, names) of a DIRECTORY_PART reply; no names means the end of the list."""
    if b"\0" not in payload:
        raise MissingNul("DIRECTORY_PART generation")
    gen, _, rest = payload.partition(b"\0")
    if rest[-1:] != b"\0":
        raise MissingNul("DIRECTORY_PART list terminator")
    names = split_strings(rest[:-1], "DIRECTORY_PART reply")
    return parse_int(gen, "DIRECTORY_PART generation"), names


def watch_event(path: str | bytes, token: str | bytes) -> Message:
    """An XS_WATCH_EVENT (req_id = tx_id = 0): path\\0token\\0."""
    return Message(XS_WATCH_EVENT, 0, 0, join_strings(path, token))


def parse_watch_event(payload: bytes) -> tuple[bytes, bytes]:
    """(path, token) of a watch event (XS_WATCH_PATH, XS_WATCH_TOKEN)."""
    path, token = n_args(payload, (2,), "WATCH_EVENT")
    return path, token

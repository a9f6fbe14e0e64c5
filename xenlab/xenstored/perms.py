"""Node permissions: parsing, printing and who may do what (xs_lib.c, xenstored_core.c perm_for_conn).

A node's permission list is a tuple of ``(perms, domid)`` pairs. The first pair names the
owner (full access) and its letter is what every domain not listed gets; later pairs
grant one domain ``r``, ``w``, ``b`` (both) or ``n`` (none). Privileged connections
(dom0) bypass all of it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

XS_PERM_NONE = 0x00
XS_PERM_READ = 0x01
XS_PERM_WRITE = 0x02
XS_PERM_ENOENT_OK = 0x04  # internal use only
XS_PERM_OWNER = 0x08  # internal use only
XS_PERM_IGNORE = 0x10  # internal use only

Perm = tuple[int, int]
Perms = tuple[Perm, ...]

_LETTER_BITS = {"r": XS_PERM_READ, "w": XS_PERM_WRITE, "b": XS_PERM_READ | XS_PERM_WRITE,
                "n": XS_PERM_NONE}
_BITS_LETTER = {bits: letter for letter, bits in _LETTER_BITS.items()}
_STRTOL = re.compile(r"[ \t\n\r\f\v]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


def _strtol0(text: str) -> int | None:
    """strtol(text, &end, 0) that must consume all of *text*; None where xs_strings_to_perms fails."""
    m = _STRTOL.fullmatch(text)
    if not m:
        return None
    digits = m.group(2)
    if digits[:2] in ("0x", "0X"):
        value = int(digits[2:], 16)
    elif digits.startswith("0") and len(digits) > 1:
        value = int(digits[1:], 8)
    else:
        value = int(digits)
    value = min(value, (1 << 63) - 1)  # strtol saturates at LONG_MAX
    if m.group(1) == "-":
        value = -value
    return value & 0xFFFFFFFF  # stored into an unsigned int


def xs_strings_to_perms(strings: Sequence[str]) -> Perms | None:
    """xs_strings_to_perms(): w/r/b/n each followed by a domid; None (EINVAL) if bad (xs_lib.c)."""
    out: list[Perm] = []
    for s in strings:
        if not s or s[0] not in _LETTER_BITS:
            return None
        domid = _strtol0(s[1:]) if s[1:] else None
        if domid is None:
            return None
        out.append((_LETTER_BITS[s[0]], domid))
    return tuple(out)


def xs_perm_to_string(perm: Perm) -> str:
    """xs_perm_to_string(): the letter and the domid as a signed int, e.g. ``r1`` (xs_lib.c)."""
    bits, domid = perm
    signed = domid - (1 << 32) if domid >= 1 << 31 else domid
    return f"{_BITS_LETTER[bits & ~XS_PERM_IGNORE & 0x3]}{signed}"


def perms_to_strings(perms: Perms) -> list[str]:
    """perms_to_strings(): every entry as text, owner first (xenstored_core.c)."""
    return [xs_perm_to_string(p) for p in perms]


def perms_text(perms: Perms) -> str:
    """The list as ``xenstore-ls -p`` prints it, e.g. ``n0,r1``."""
    return ",".join(perms_to_strings(perms))


def parse_perms(text: str | Sequence[str]) -> Perms:
    """Python-facing: ``"n0,r1"`` or ``["n0", "r1"]`` to a permission tuple (ValueError names a bad entry)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    perms = xs_strings_to_perms(items)
    if not perms:
        raise ValueError(f"bad permission list {text!r}: entries are w/r/b/n followed by a domid")
    return perms


def perm_for_conn(domid: int, privileged: bool, perms: Perms, target: int | None = None,
                  can_write: bool = True) -> int:
    """perm_for_conn(): the XS_PERM_* bits a connection of *domid* has on a node (xenstored_core.c)."""
    mask = XS_PERM_READ | XS_PERM_WRITE | XS_PERM_OWNER
    if not can_write:
        mask &= ~XS_PERM_WRITE
    owner = perms[0][1]
    if privileged or owner == domid or (target is not None and owner == target):
        return (XS_PERM_READ | XS_PERM_WRITE | XS_PERM_OWNER) & mask
    for bits, who in perms[1:]:
        if not bits & XS_PERM_IGNORE and (who == domid or (target is not None and who == target)):
            return bits & mask
    return perms[0][0] & mask

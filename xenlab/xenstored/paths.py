"""Node names as C xenstored checks and rewrites them (tools/xenstore/xenstored_core.c, xenstored_watch.c).

A node name is absolute (``/local/domain/1/name``); a connection may send a relative one
(``name``), which the daemon prefixes with its home ``/local/domain/<domid>``
(``canonicalize``). Names starting with ``@`` are special watch paths, never nodes.
"""

from __future__ import annotations

import re

from xenlab.abi.xs_wire import XENSTORE_REL_PATH_MAX

#: valid_chars(): the only characters a node name may contain.
VALID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-/_@")

# sscanf(node, "/local/domain/%5u/%n", ...): at most 5 characters of number (a sign counts).
_LOCAL_PREFIX = re.compile(r"/local/domain/(?:[+-]\d{1,4}|\d{1,5})/")

#: The special watch paths the daemon fires itself.
INTRODUCE_DOMAIN = "@introduceDomain"
RELEASE_DOMAIN = "@releaseDomain"
SPECIAL_PATHS = (INTRODUCE_DOMAIN, RELEASE_DOMAIN)


_VALID = re.compile(r"[A-Za-z0-9\-/_@]*")


def valid_chars(node: str) -> bool:
    """valid_chars(): every character is a letter, digit or one of ``-/_@`` (xenstored_core.c)."""
    return _VALID.fullmatch(node) is not None


def is_valid_nodename(node: str, path_max: int = XENSTORE_REL_PATH_MAX) -> bool:
    """is_valid_nodename(): absolute, no trailing or double slash, short, valid chars (xenstored_core.c)."""
    if not node.startswith("/"):
        return False
    if node.endswith("/") and node != "/":
        return False
    if "//" in node:
        return False
    m = _LOCAL_PREFIX.match(node)
    local_off = m.end() if m else 0
    if len(node) > local_off + path_max:
        return False
    return valid_chars(node)


def get_implicit_path(domid: int) -> str:
    """get_implicit_path(): a connection's home directory, ``/local/domain/<domid>`` (xenstored_domain.c)."""
    return f"/local/domain/{domid}"


def canonicalize(node: str, domid: int) -> str:
    """canonicalize(): absolute and ``@`` names kept, relative ones put under home (xenstored_core.c)."""
    if node.startswith("/") or node.startswith("@"):
        return node
    return f"{get_implicit_path(domid)}/{node}"


def get_parent(node: str) -> str:
    """get_parent(): the name up to its last slash, else ``/`` (xenstored_core.c)."""
    slash = node.rfind("/", 1)
    return node[:slash] if slash > 0 else "/"


def basename(node: str) -> str:
    """basename(): the last component of a name other than ``/`` (xenstored_core.c)."""
    return node[node.rfind("/") + 1:]


def child_name(parent: str, child: str) -> str:
    """child_name(): the full name of *child* under *parent* (xenstored_core.c)."""
    return f"/{child}" if parent == "/" else f"{parent}/{child}"


def watch_prefixes(name: str) -> list[str]:
    """Every *parent* with is_child(*name*, parent): ``/``, each ancestor of *name*, *name* itself."""
    out = ["/"]
    out += [name[:i] for i in range(1, len(name)) if name[i] == "/"]
    if name != "/":
        out.append(name)
    return out


def is_child(child: str, parent: str) -> bool:
    """is_child(): *child* is *parent* or below it; everything is below ``/`` (xenstored_watch.c)."""
    if parent == "/":
        return True
    if not child.startswith(parent):
        return False
    return len(child) == len(parent) or child[len(parent)] == "/"


def atoi(text: str) -> int:
    """C atoi(): optional blanks and sign, then leading digits; 0 when there are none."""
    m = re.match(r"[ \t\n\r\f\v]*([+-]?[0-9]+)", text)
    if not m:
        return 0
    value = int(m.group(1))
    # atoi returns an int: wrap as the 32-bit C value would.
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def get_strings(payload: bytes) -> list[str]:
    """get_strings(): every NUL-terminated string of a payload; bytes after the last NUL are ignored."""
    return [p.decode("latin-1") for p in payload.split(b"\0")[:-1]]


def onearg(payload: bytes) -> str | None:
    """onearg(): the payload's only string; None unless it holds exactly one NUL, at the end."""
    if not payload or payload.find(b"\0") != len(payload) - 1:
        return None
    return payload[:-1].decode("latin-1")

"""Watches: a connection's (path, token) pairs and the events they produce (xenstored_watch.c).

A watch on P fires when P or any node below it is created, changed, has its permissions
changed or is deleted; deleting an ancestor of P fires it too, with P's own path. The
event carries the changed path (relative if the watch was registered relative) and the
token. Only connections that may read the node (or its parent, or the node before a
permission change) see an event. ``@introduceDomain`` / ``@releaseDomain`` are special:
the daemon fires them, and only privileged connections or those granted read access via
SET_PERMS on the special path get them.
"""

from __future__ import annotations

from dataclasses import dataclass

from xenlab.abi.xs_wire import XENSTORE_REL_PATH_MAX
from xenlab.xenstored.paths import canonicalize, get_implicit_path, is_valid_nodename


@dataclass(frozen=True)
class Watch:
    """struct watch: the watched node (absolute), the token, and the prefix stripped from event paths."""

    node: str
    token: str
    relative_path: str | None = None


def get_watch_path(watch: Watch, name: str) -> str:
    """get_watch_path(): the event path, made relative again for a relative watch (xenstored_watch.c)."""
    if watch.relative_path is not None and name.startswith(watch.relative_path):
        name = name[len(watch.relative_path):]
        if name.startswith("/"):
            name = name[1:]
    return name


def check_watch_path(path: str, domid: int, path_max: int) -> tuple[str, bool] | None:
    """check_watch_path(): (absolute path, relative?) or None for EINVAL; ``@`` paths kept as they are."""
    if path.startswith("@"):
        if len(path) > XENSTORE_REL_PATH_MAX:
            return None
        return path, False
    relative = not path.startswith("/")
    path = canonicalize(path, domid)
    if not is_valid_nodename(path, path_max):
        return None
    return path, relative


def add_watch(path: str, token: str, relative: bool, domid: int) -> Watch:
    """add_watch(): a new watch; relative ones remember the connection's home path."""
    return Watch(path, token, get_implicit_path(domid) if relative else None)

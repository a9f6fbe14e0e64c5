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
from typing import TYPE_CHECKING

from xenlab.abi.errno import E2BIG, EEXIST, EINVAL, ENOENT, ENOMEM
from xenlab.abi.xs_wire import XENSTORE_REL_PATH_MAX
from xenlab.xenstored.paths import canonicalize, get_implicit_path, get_strings, is_valid_nodename
from xenlab.xenstored.store import QuotaError, XenstoreError

if TYPE_CHECKING:
    from xenlab.xenstored.daemon import Connection, Daemon
    from xenlab.xenstored.transaction import Transaction
    from xenlab.xenstored.wire import Message


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


def do_watch(daemon: Daemon, conn: Connection, req: Message, tx: Transaction | None) -> None:
    """do_watch(): register (path, token), ack, then one event for the path at once."""
    strings = get_strings(req.payload)
    if len(strings) != 2:
        raise XenstoreError(EINVAL, "WATCH wants path and token")
    checked = check_watch_path(strings[0], conn.domid, daemon.quotas.path_max)
    if checked is None:
        raise XenstoreError(EINVAL, f"invalid watch path {strings[0]!r}")
    path, relative = checked
    token = strings[1]
    if daemon.find_watch(conn, path, token) is not None:
        raise XenstoreError(EEXIST, f"watch {path} {token}")
    if not conn.privileged and len(conn.watches) > daemon.quotas.watches:
        raise QuotaError(E2BIG, f"domain {conn.domid} has {len(conn.watches)} watches")
    if not conn.privileged and daemon.domain_memory_chk(conn.domid, len(path) + len(token)):
        raise XenstoreError(ENOMEM, f"domain {conn.domid} over its memory quota")
    watch = add_watch(path, token, relative, conn.domid)
    conn.watches.append(watch)
    daemon.index_watch(conn, watch)
    daemon.row("xenstored/watches", daemon.watch_key(conn, watch), None, "watch")
    daemon.send_ack(conn, req)
    daemon.send_event(conn, get_watch_path(watch, watch.node), token)


def do_unwatch(daemon: Daemon, conn: Connection, req: Message, tx: Transaction | None) -> None:
    """do_unwatch(): drop the watch with that path and token; ENOENT if there is none."""
    strings = get_strings(req.payload)
    if len(strings) != 2:
        raise XenstoreError(EINVAL, "UNWATCH wants path and token")
    node = canonicalize(strings[0], conn.domid)
    w = daemon.find_watch(conn, node, strings[1])
    if w is not None:
        conn.watches.remove(w)
        daemon.unindex_watch(conn, w)
        daemon.row("xenstored/watches", daemon.watch_key(conn, w), "watch", None)
        daemon.send_ack(conn, req)
        return
    raise XenstoreError(ENOENT, f"no watch {node} {strings[1]}")


def do_reset_watches(daemon: Daemon, conn: Connection, req: Message, tx: Transaction | None) -> None:
    """do_reset_watches(): drop all of the connection's watches and transactions (xenstored_domain.c)."""
    daemon.conn_delete_all_watches(conn)
    daemon.conn_delete_all_transactions(conn)
    daemon.send_ack(conn, req)

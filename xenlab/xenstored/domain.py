"""Domain management and CONTROL of C xenstored 4.17 (xenstored_domain.c, xenstored_control.c).

INTRODUCE tells the daemon about a new guest: its domid, the frame of its store page and
the event channel port the guest listens on. The daemon maps the page and binds the port
(here: the ``on_introduce`` hook the transport supplies; without one a ring-less
connection is made, enough for tests) and fires ``@introduceDomain``. RELEASE (or the
domain's death) drops the connection, deletes the nodes the guest owned and fires
``@releaseDomain``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from xenlab.abi.errno import EINVAL, ENOENT
from xenlab.xenstored.paths import (
    INTRODUCE_DOMAIN,
    RELEASE_DOMAIN,
    atoi,
    child_name,
    get_implicit_path,
    get_strings,
    onearg,
)
from xenlab.xenstored.store import XenstoreError

if TYPE_CHECKING:
    from xenlab.xenstored.daemon import Connection, Daemon, Domain
    from xenlab.xenstored.transaction import Transaction
    from xenlab.xenstored.wire import Message

SOURCE = "tools/xenstore/xenstored_domain.c"
DOMID_SELF = 0x7FF0


def onearg_domain(daemon: Daemon, payload: bytes) -> Domain:
    """onearg_domain(): the connected domain named by the only argument (EINVAL for 0, ENOENT unknown)."""
    arg = onearg(payload)
    if arg is None:
        raise XenstoreError(EINVAL, "wants one domid")
    domid = atoi(arg) & 0xFFFFFFFF
    if domid == 0:
        raise XenstoreError(EINVAL, "domid 0")
    return find_connected_domain(daemon, domid)


def find_connected_domain(daemon: Daemon, domid: int) -> Domain:
    """find_connected_domain(): ENOENT if unknown, EINVAL if it has no connection."""
    dom = daemon.domains.get(domid)
    if dom is None:
        raise XenstoreError(ENOENT, f"no domain {domid}")
    if dom.conn is None:
        raise XenstoreError(EINVAL, f"domain {domid} has no connection")
    return dom


def do_introduce(daemon: Daemon, conn: Connection, req: Message, tx: Transaction | None) -> None:
    """do_introduce(): domid, frame, port; map + bind through the transport, then fire @introduceDomain."""
    vec = get_strings(req.payload)
    if len(vec) < 3:
        raise XenstoreError(EINVAL, "INTRODUCE wants domid, mfn and port")
    domid = atoi(vec[0]) & 0xFFFFFFFF
    mfn = atoi(vec[1])
    port = atoi(vec[2])
    if port <= 0:
        raise XenstoreError(EINVAL, f"port {port}")
    # introduce_domain(): map the page and bind the port (the transport's hook); for a domain
    # already introduced (kexec, soft reset) the hook may re-bind its port.
    if daemon.on_introduce is not None:
        rc = daemon.on_introduce(domid, mfn, port)
        if rc < 0:
            raise XenstoreError(-rc, f"introducing domain {domid}")
    dom = daemon.domains.get(domid)
    if dom is None or dom.conn is None:
        daemon.new_connection(domid, label="ring")
        dom = daemon.domains[domid]
    was = f"introduced mfn={dom.mfn} port={dom.port}" if dom.introduced else "known"
    new = not dom.introduced
    dom.introduced, dom.mfn, dom.port = True, mfn, port
    daemon.row("xenstored/domains", str(domid), was, f"introduced mfn={mfn} port={port}")
    if new and domid != 0:  # not for the master domain; exact=false as in 4.17
        daemon.fire_watches(None, INTRODUCE_DOMAIN, None, False)
    # do_introduce(): domain_conn_reset() drops the connection's watches, transactions and output
    assert dom.conn is not None
    domain_conn_reset(daemon, dom.conn)
    daemon.send_ack(conn, req)


def domain_conn_reset(daemon: Daemon, conn: Connection) -> None:
    """domain_conn_reset(): forget the connection's watches, transactions and unsent output."""
    daemon.conn_delete_all_watches(conn)
    daemon.conn_delete_all_transactions(conn)
    conn.clear_output()
    if conn.on_reset is not None:  # req_cons = req_prod = rsp_cons = rsp_prod = 0
        conn.on_reset(conn)


def domain_shutdown(daemon: Daemon, domid: int) -> bool:
    """check_domains(): a domain newly seen shut down fires @releaseDomain once (until RESUME)."""
    dom = daemon.domains.get(domid)
    if dom is None or dom.shutdown or not dom.introduced:
        return False
    dom.shutdown = True
    daemon.fire_watches(None, RELEASE_DOMAIN, None, True)
    return True


def domain_tree_remove(daemon: Daemon, domid: int) -> None:
    """domain_tree_remove(): delete every node the dying domain owns (XSA-417), watches firing."""
    from xenlab.xenstored.ops import rm_node

    store = daemon.store
    stack = ["/"]
    while stack and store.entries_of(domid) > 0:
        name = stack.pop()
        node = store.read_node(name)
        if node is None:
            continue
        if node.owner == domid and name != "/":
            rm_node(daemon, None, store, name)
            continue
        stack.extend(child_name(name, c) for c in reversed(node.children))
    for special, perms in list(daemon.special_perms.items()):
        kept = tuple(p for i, p in enumerate(perms) if i == 0 or p[1] != domid)
        daemon.special_perms[special] = kept


def destroy_domain(daemon: Daemon, domid: int) -> None:
    """destroy_domain(): forget the domain, drop its connection and nodes, fire @releaseDomain."""
    dom = daemon.domains.pop(domid, None)
    if dom is None:
        return
    if dom.conn is not None:
        daemon.close_connection(dom.conn)
    domain_tree_remove(daemon, domid)
    was = f"introduced mfn={dom.mfn} port={dom.port}" if dom.introduced else "known"
    daemon.row("xenstored/domains", str(domid), was, None)
    if dom.introduced:
        daemon.fire_watches(None, RELEASE_DOMAIN, None, True)
    if daemon.on_release is not None:
        daemon.on_release(domid)


def forget_dead_domains(daemon: Daemon) -> list[int]:
    """check_domains(): a domain known only from permissions (never introduced) is freed once gone.

    Its record holds the generation that tells a permission entry older than the domain
    from a newer one; a later domain with the same domid gets a new record (XSA-322).
    """
    if daemon.domain_exists is None:
        return []
    gone = [d for d, dom in sorted(daemon.domains.items())
            if d != 0 and not dom.introduced and not daemon.domain_exists(d)]
    for domid in gone:
        del daemon.domains[domid]
        daemon.row("xenstored/domains", str(domid), "known", None)
    return gone


def reset_permissions(daemon: Daemon, domid: int) -> None:
    """Store.reset_permissions (oxenstored store.ml): drop every entry naming *domid* from every node."""
    store = daemon.store
    for path in list(store.nodes):
        node = store.nodes[path]
        kept = node.perms[:1] + tuple(p for p in node.perms[1:] if p[1] != domid)
        if kept != node.perms:
            store.write_node(path, replace(node, perms=kept))


def do_release(daemon: Daemon, conn: Connection, req: Message, tx: Transaction | None) -> None:
    """do_release(): the toolstack says the domain is gone."""
    dom = onearg_domain(daemon, req.payload)
    if dom.conn is not None:
        daemon.conn_delete_all_watches(dom.conn)  # no events for its own nodes going
    destroy_domain(daemon, dom.domid)
    if daemon.personality == "oxenstored":  # do_release (process.ml): its ACL entries go (XSA-322)
        reset_permissions(daemon, dom.domid)
    daemon.send_ack(conn, req)


def do_get_domain_path(daemon: Daemon, conn: Connection, req: Message, tx: Transaction | None) -> None:
    """do_get_domain_path(): ``/local/domain/<domid>`` for any number."""
    arg = onearg(req.payload)
    if arg is None:
        raise XenstoreError(EINVAL, "wants one domid")
    path = get_implicit_path(atoi(arg) & 0xFFFFFFFF)
    daemon.send_reply(conn, req, path.encode() + b"\0")


def do_is_domain_introduced(daemon: Daemon, conn: Connection, req: Message, tx: Transaction | None) -> None:
    """do_is_domain_introduced(): ``T`` or ``F``."""
    arg = onearg(req.payload)
    if arg is None:
        raise XenstoreError(EINVAL, "wants one domid")
    domid = atoi(arg) & 0xFFFFFFFF
    dom = daemon.domains.get(domid)
    known = domid == DOMID_SELF or (dom is not None and dom.introduced)
    daemon.send_reply(conn, req, b"T\0" if known else b"F\0")


def do_resume(daemon: Daemon, conn: Connection, req: Message, tx: Transaction | None) -> None:
    """do_resume(): clear the domain's shutdown flag so @releaseDomain can fire again."""
    dom = onearg_domain(daemon, req.payload)
    dom.shutdown = False
    daemon.send_ack(conn, req)


def do_set_target(daemon: Daemon, conn: Connection, req: Message, tx: Transaction | None) -> None:
    """do_set_target(): let a device-model domain act with its target's permissions."""
    vec = get_strings(req.payload)
    if len(vec) < 2:
        raise XenstoreError(EINVAL, "SET_TARGET wants domid and target")
    dom = find_connected_domain(daemon, atoi(vec[0]) & 0xFFFFFFFF)
    target = find_connected_domain(daemon, atoi(vec[1]) & 0xFFFFFFFF)
    assert dom.conn is not None
    daemon.row("xenstored/domains", f"{dom.domid} target", dom.conn.target, target.domid)
    dom.conn.target = target.domid
    daemon.send_ack(conn, req)


# -- CONTROL ------------------------------------------------------------------------------------
_QUOTA_ROWS = (
    ("nodes", "nodes", "Nodes per domain"),
    ("watches", "watches", "Watches per domain"),
    ("transactions", "transactions", "Transactions per domain"),
    ("outstanding", "outstanding", "Outstanding requests per domain"),
    ("transaction-nodes", "transaction_nodes", "Max. number of accessed nodes per transaction"),
    ("memory", "memory", "Total Xenstore memory per domain (error level)"),
    ("node-size", "node_size", "Max. size of a node"),
    ("path-max", "path_max", "Max. length of a node path"),
    ("permissions", "perms", "Max. number of permissions per node"),
)
#: the lab's commands, in the order and with the parameter text of 4.17's cmds[] table
CONTROL_CMDS = (("check", ""), ("log", "on|off"), ("print", "<string>"),
                ("quota", "[set <name> <val>|<domid>]"), ("help", ""))


def do_control(daemon: Daemon, conn: Connection, req: Message, tx: Transaction | None) -> None:
    """do_control(): the lab's subset of ``xenstore-control`` commands; unknown ones EINVAL."""
    vec = get_strings(req.payload)
    if not vec:
        raise XenstoreError(EINVAL, "CONTROL wants a command")
    cmd, args = vec[0], vec[1:]
    if cmd == "check":
        daemon.log.extend(daemon.store.check())
        daemon.send_ack(conn, req)
    elif cmd == "help" and not args:
        text = "".join(f"{c:<15} {p}\n" for c, p in CONTROL_CMDS)
        daemon.send_reply(conn, req, text.encode() + b"\0")
    elif cmd == "print" and args:
        daemon.log.append(f"control: {args[0]}")
        daemon.send_ack(conn, req)
    elif cmd == "log" and len(args) == 1 and args[0] in ("on", "off"):
        daemon.send_ack(conn, req)
    elif cmd == "quota":
        daemon.send_reply(conn, req, control_quota(daemon, args).encode() + b"\0")
    else:
        raise XenstoreError(EINVAL, f"unknown control command {cmd!r}")


def control_quota(daemon: Daemon, args: list[str]) -> str:
    """do_control_quota(): show the quotas, set one, or show a domain's usage."""
    if not args:
        lines = ["Quota settings:"]
        for name, field, descr in _QUOTA_ROWS:
            lines.append(f"{name:<17}: {getattr(daemon.quotas, field):8d} {descr}")
        return "\n".join(lines) + "\n"
    if args[0] == "set":  # quota_set(): atoi() of the value, which must be at least 1
        fields = {name: field for name, field, _ in _QUOTA_ROWS}
        if len(args) != 3 or atoi(args[2]) < 1 or args[1] not in fields:
            raise XenstoreError(EINVAL, f"quota set {args[1:]}")
        daemon.quotas = replace(daemon.quotas, **{fields[args[1]]: atoi(args[2])})
        return "OK"
    if len(args) == 1:  # quota_get(): atoi() of the domid ("x" or "²" is domain 0)
        domid = atoi(args[0]) & 0xFFFFFFFF
        dom = daemon.domains.get(domid)
        if dom is None:
            raise XenstoreError(ENOENT, f"no domain {domid}")
        c = dom.conn
        rows = [("nodes", daemon.store.entries_of(domid)), ("watches", len(c.watches) if c else 0),
                ("transactions", c.transaction_started if c else 0),
                ("outstanding", c.outstanding if c else 0), ("memory", daemon.domain_memory(domid))]
        return f"Domain {domid}:\n" + "".join(f"{n:<16}: {v:8d}\n" for n, v in rows)
    raise XenstoreError(EINVAL, "quota arguments")

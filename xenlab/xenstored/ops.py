"""The node operations of C xenstored 4.17 (xenstored_core.c, xenstored_watch.c, xenstored_transaction.c).

Each ``do_*`` takes (daemon, conn, request, transaction or None), queues its reply with
``daemon.send_reply`` / ``send_ack`` and raises ``XenstoreError(errno)`` for the error
reply; the checks come in the order C xenstored makes them, so the same bad request gets
the same errno name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.abi.errno import EACCES, EAGAIN, EBUSY, EINVAL, ENOENT, ENOMEM, ENOSPC, EPERM
from xenlab.abi.xs_wire import XENSTORE_PAYLOAD_MAX
from xenlab.abi.xs_wire import xsd_sockmsg_type as T
from xenlab.xenstored.paths import (
    atoi,
    basename,
    canonicalize,
    child_name,
    get_parent,
    get_strings,
    is_valid_nodename,
    onearg,
)
from xenlab.xenstored.perms import (
    XS_PERM_IGNORE,
    XS_PERM_NONE,
    XS_PERM_OWNER,
    XS_PERM_READ,
    XS_PERM_WRITE,
    perms_to_strings,
    xs_strings_to_perms,
)
from xenlab.xenstored.store import Node, QuotaError, Store, XenstoreError
from xenlab.xenstored.transaction import OcamlTransaction, Transaction
from xenlab.xenstored.wire import Message

if TYPE_CHECKING:
    from xenlab.xenstored.daemon import Connection, Daemon

View = Store | Transaction


def view(daemon: Daemon, tx: Transaction | None) -> View:
    """The tree a request sees: its transaction's or the committed one."""
    return tx if tx is not None else daemon.store


# -- node access as xenstored_core.c does it ---------------------------------------------------
def ask_parents(daemon: Daemon, conn: Connection, v: View, name: str) -> int:
    """ask_parents(): the connection's permission on the nearest existing ancestor."""
    while True:
        name = get_parent(name)
        node = v.read_node(name)
        if node is not None:
            return daemon.node_perm(conn, node)
        if name == "/":
            return XS_PERM_NONE


def errno_from_parents(daemon: Daemon, conn: Connection, v: View, name: str, err: int, perm: int) -> int:
    """errno_from_parents(): hide ENOENT/EACCES as EACCES unless the ancestor grants *perm*."""
    if ask_parents(daemon, conn, v, name) & perm:
        return err
    return EACCES


def get_node(daemon: Daemon, conn: Connection, v: View, name: str | None, perm: int) -> Node:
    """get_node(): the node if *name* is valid, exists and *perm* is granted; XenstoreError otherwise."""
    if name is None or not is_valid_nodename(name, daemon.quotas.path_max):
        raise XenstoreError(EINVAL, f"invalid node name {name!r}")
    node = v.read_node(name)
    if node is not None:
        if daemon.node_perm(conn, node) & perm == perm:
            return node
        err = EACCES
    else:
        err = ENOENT
    raise XenstoreError(errno_from_parents(daemon, conn, v, name, err, perm), name)


def get_node_canonicalized(daemon: Daemon, conn: Connection, v: View, name: str | None,
                           perm: int) -> tuple[Node, str]:
    """get_node_canonicalized(): get_node() of the name made absolute; returns (node, name)."""
    if name is not None:
        name = canonicalize(name, conn.domid)
    return get_node(daemon, conn, v, name, perm), name or ""


def write_node(daemon: Daemon, conn: Connection, v: View, name: str, node: Node,
               no_quota_check: bool = False) -> Node:
    """write_node(): store the record; ENOSPC for a guest's record of quota size (fails a transaction)."""
    if not no_quota_check and not conn.privileged and node.record_size() >= daemon.quotas.node_size:
        if isinstance(v, Transaction):
            v.fail = True
        raise QuotaError(ENOSPC, f"{name}: node record of {node.record_size()} bytes")
    if not no_quota_check:
        node_memory_chk(daemon, conn, v, [(name, node)])
    return v.write_node(name, node)


def node_memory_chk(daemon: Daemon, conn: Connection, v: View, records: list[tuple[str, Node]]) -> None:
    """do_tdb_write()'s domain_memory_add(): ENOMEM if writing *records* takes a guest over its quota.

    A committed record is charged to its owner (record + name, the old record given back); one
    written inside a transaction to the transaction's connection, keyed ``<generation>/<name>``.
    """
    add: dict[int, int] = {}
    tx = v if isinstance(v, Transaction) else None
    sizes = conn.tx_memory.setdefault((tx.id, tx.generation), {}) if tx is not None else None
    written: dict[str, int] = {}
    for name, node in records:
        domid = conn.domid if tx is not None else node.owner
        if not domid or daemon.personality != "cxenstored":  # dom0 is never checked: no sizes to sum
            continue
        if sizes is not None and tx is not None:
            size = node.record_size() + len(str(tx.generation)) + 1 + len(name)
            gone = sizes.get(name, 0)
            written[name] = size
        else:
            size = node.record_size() + len(name)
            old = daemon.store.nodes.get(name)
            gone = old.record_size() + len(name) if old is not None and old.owner == domid else 0
        add[domid] = add.get(domid, 0) + size - gone
    for domid, mem in sorted(add.items()):
        if daemon.domain_memory_chk(domid, mem):
            raise XenstoreError(ENOMEM, f"{name}: domain {domid} over its memory quota")
    if sizes is not None:
        sizes.update(written)


def create_node(daemon: Daemon, conn: Connection, v: View, name: str, value: bytes) -> Node:
    """create_node(): make *name* and its missing parents, inheriting permissions, within the node quota."""
    names = [name]
    parent_name = get_parent(name)
    parent = v.read_node(parent_name)
    while parent is None:
        if parent_name == "/":
            raise XenstoreError(ENOENT, "no root node")
        names.append(parent_name)
        parent_name = get_parent(parent_name)
        parent = v.read_node(parent_name)
    # construct_node(): each new node copies its parent's permissions; a guest owns what it makes.
    perms = parent.perms
    if not conn.privileged:
        perms = ((perms[0][0], conn.domid),) + perms[1:]
    new: list[tuple[str, Node]] = []
    for i, n in enumerate(names):  # names[0] is the leaf
        children = (basename(names[i - 1]),) if i else ()
        new.append((n, Node(value if i == 0 else b"", perms, children)))
    # Written bottom up: the quota is checked before each new node.
    tx = v if isinstance(v, Transaction) else None
    for i, (n, node) in enumerate(new):
        # (inside a transaction the count only moves at commit: transaction_entry_inc())
        if not conn.privileged and v.entries_of(conn.domid) + (0 if tx else i) >= daemon.quotas.nodes:
            if tx is not None and i:
                tx.fail = True
            raise QuotaError(ENOSPC, f"domain {conn.domid} owns {daemon.quotas.nodes} nodes")
        if not conn.privileged and node.record_size() >= daemon.quotas.node_size:
            if tx is not None:
                tx.fail = True
            raise QuotaError(ENOSPC, f"{n}: node record of {node.record_size()} bytes")
    top = Node(parent.value, parent.perms, daemon.store.add_child(parent.children, basename(names[-1])),
               parent.generation)
    if not conn.privileged and top.record_size() >= daemon.quotas.node_size:
        if tx is not None:
            tx.fail = True
        raise QuotaError(ENOSPC, f"{parent_name}: node record of {top.record_size()} bytes")
    node_memory_chk(daemon, conn, v, [*new, (parent_name, top)])
    written = [v.write_node(n, node) for n, node in new]
    v.write_node(parent_name, top)
    return written[0]


def rm_node(daemon: Daemon, conn: Connection | None, v: View, name: str) -> None:
    """rm_node(): delete *name* and everything below it, children first, firing watches as it goes.

    walk_node_tree() with delnode_sub() as exit function, post-order. After each child C's
    rm_from_parent() rewrites the parent (inside the subtree) without it: one write_node(),
    so one generation number, for a record deleted a moment later and never seen by anyone.
    Here the walk takes that generation number and skips rebuilding the children list, so
    removing n children costs O(n), not O(n^2).
    """
    parent_name = get_parent(name)
    if v.read_node(parent_name) is None:
        raise XenstoreError(EINVAL, f"{name}: no parent")
    tx = v if isinstance(v, Transaction) else None
    root = v.read_node(name)
    stack: list[tuple[str, Node | None, int]] = [(name, root, 0)]
    while stack:
        path, node, idx = stack[-1]
        if node is not None and idx < len(node.children):
            stack[-1] = (path, node, idx + 1)
            child = child_name(path, node.children[idx])
            stack.append((child, v.read_node(child), 0))
            continue
        stack.pop()
        if node is None:
            continue
        v.delete_node(path)
        if tx is not None and conn is not None and conn.tx_memory:
            conn.tx_memory.get((tx.id, tx.generation), {}).pop(path, None)
        daemon.fire_watches(tx, path, node, path != name)
        if stack:  # rm_from_parent(): the parent's write_node() (generation++)
            daemon.store.generation += 1
    parent = v.read_node(parent_name)
    if parent is not None and basename(name) in parent.children:
        v.write_node(parent_name, Node(parent.value, parent.perms, parent.children.without(basename(name))))


# -- the operations ----------------------------------------------------------------------------
def do_read(daemon: Daemon, conn: Connection, req: Message, tx: Transaction | None) -> None:
    """do_read(): the value, without a trailing NUL."""
    node, name = get_node_canonicalized(daemon, conn, view(daemon, tx), onearg(req.payload), XS_PERM_READ)
    if tx is not None:
        tx.set_read_lowpath(name)
    daemon.send_reply(conn, req, node.value)


def send_directory(daemon: Daemon, conn: Connection, req: Message, tx: Transaction | None) -> None:
    """send_directory(): the children field (each name NUL-terminated); E2BIG over 4096 bytes."""
    node, name = get_node_canonicalized(daemon, conn, view(daemon, tx), onearg(req.payload), XS_PERM_READ)
    if tx is not None:
        tx.set_read_lowpath(name)
    daemon.send_reply(conn, req, node.children_bytes())


def send_directory_part(daemon: Daemon, conn: Connection, req: Message, tx: Transaction | None) -> None:
    """send_directory_part(): generation, then children from a byte offset; an extra NUL ends the list."""
    if req.payload.count(b"\0") != 2:
        raise XenstoreError(EINVAL, "DIRECTORY_PART wants path and offset")
    path, offset = get_strings(req.payload)[:2]
    node, name = get_node_canonicalized(daemon, conn, view(daemon, tx), path, XS_PERM_READ)
    if tx is not None:
        tx.set_read_lowpath(name)
    off = atoi(offset) & 0xFFFFFFFF
    gen = str(node.generation).encode() + b"\0"
    children = node.children_bytes()
    if off >= len(children):
        daemon.send_reply(conn, req, gen + b"\0")
        return
    maxlen = XENSTORE_PAYLOAD_MAX - len(gen) - 1
    length = 0
    while True:
        end = children.index(b"\0", off + length)
        child = end - (off + length)
        if length + child >= maxlen:
            break
        length += child + 1
        if off + length == len(children):
            break
    data = gen + children[off:off + length]
    if off + length == len(children):
        data += b"\0"
    daemon.send_reply(conn, req, data)


def do_get_perms(daemon: Daemon, conn: Connection, req: Message, tx: Transaction | None) -> None:
    """do_get_perms(): the permission strings, each NUL-terminated."""
    node, name = get_node_canonicalized(daemon, conn, view(daemon, tx), onearg(req.payload), XS_PERM_READ)
    if tx is not None:
        tx.set_read_lowpath(name)
    daemon.send_reply(conn, req, b"".join(s.encode() + b"\0" for s in perms_to_strings(node.perms)))


def do_write(daemon: Daemon, conn: Connection, req: Message, tx: Transaction | None) -> None:
    """do_write(): set the value (the bytes after the path's NUL), creating the node and its parents."""
    if b"\0" not in req.payload:
        raise XenstoreError(EINVAL, "WRITE without a path")
    raw, value = req.payload.split(b"\0", 1)
    v = view(daemon, tx)
    name = canonicalize(raw.decode("latin-1"), conn.domid)
    lowpath = name
    try:
        node = get_node(daemon, conn, v, name, XS_PERM_WRITE)
    except XenstoreError as e:
        if e.errno != ENOENT:
            raise
        node = create_node(daemon, conn, v, name, value)
        lowpath = get_parent(name)
    else:
        node = write_node(daemon, conn, v, name, Node(value, node.perms, node.children))
    if tx is not None:
        tx.add_wop(name, lowpath)
    daemon.fire_watches(tx, name, node, False)
    daemon.send_ack(conn, req)


def do_mkdir(daemon: Daemon, conn: Connection, req: Message, tx: Transaction | None) -> None:
    """do_mkdir(): create an empty node (and parents); an existing node is left alone."""
    v = view(daemon, tx)
    arg = onearg(req.payload)
    name = canonicalize(arg, conn.domid) if arg is not None else None
    try:
        get_node(daemon, conn, v, name, XS_PERM_WRITE)
    except XenstoreError as e:
        if e.errno != ENOENT or name is None:
            raise
        node = create_node(daemon, conn, v, name, b"")
        if tx is not None:
            tx.add_wop(name, get_parent(name))
        daemon.fire_watches(tx, name, node, False)
    daemon.send_ack(conn, req)


def do_rm(daemon: Daemon, conn: Connection, req: Message, tx: Transaction | None) -> None:
    """do_rm(): delete a subtree; a missing node is fine if its parent exists; ``/`` is EINVAL."""
    v = view(daemon, tx)
    arg = onearg(req.payload)
    name = canonicalize(arg, conn.domid) if arg is not None else None
    try:
        get_node(daemon, conn, v, name, XS_PERM_WRITE)
    except XenstoreError as e:
        if e.errno == ENOENT and name is not None:
            if v.read_node(get_parent(name)) is not None:
                daemon.send_ack(conn, req)
                return
        raise
    if name == "/":
        raise XenstoreError(EINVAL, "cannot remove /")
    rm_node(daemon, conn, v, name)
    if tx is not None:
        tx.add_wop(name, get_parent(name))
    daemon.send_ack(conn, req)


def do_set_perms(daemon: Daemon, conn: Connection, req: Message, tx: Transaction | None) -> None:
    """do_set_perms(): replace the list; owner or dom0 only; only dom0 may give the node away (EPERM)."""
    strings = get_strings(req.payload)
    if len(strings) < 2:
        raise XenstoreError(EINVAL, "SET_PERMS wants a path and at least one permission")
    if not conn.privileged and len(strings) - 1 > daemon.quotas.perms:
        raise QuotaError(ENOSPC, f"{len(strings) - 1} permissions")
    perms = xs_strings_to_perms(strings[1:])
    if perms is None:
        raise XenstoreError(EINVAL, f"bad permissions {strings[1:]}")
    if daemon.personality != "oxenstored":  # oxenstored takes the list as written
        perms = domain_alloc_permrefs(daemon, perms)
        if perms[0][0] & XS_PERM_IGNORE:
            raise XenstoreError(ENOENT, "owner ignored")
    if strings[0].startswith("@"):
        set_perms_special(daemon, conn, strings[0], perms)
        daemon.send_ack(conn, req)
        return
    v = view(daemon, tx)
    node, name = get_node_canonicalized(daemon, conn, v, strings[0], XS_PERM_WRITE | XS_PERM_OWNER)
    if not conn.privileged and perms[0][1] != node.owner:
        raise XenstoreError(EPERM, f"domain {conn.domid} may not give {name} away")
    old = node.perms
    node = write_node(daemon, conn, v, name, Node(node.value, perms, node.children))
    if tx is not None:
        tx.add_wop(name, name)
    daemon.fire_watches(tx, name, node, False, old)
    daemon.send_ack(conn, req)


def domain_alloc_permrefs(daemon: Daemon, perms: tuple) -> tuple:
    """domain_alloc_permrefs(): note the domains named; entries for one that does not exist are ignored."""
    out = []
    for bits, domid in perms:
        if domid not in daemon.domains:
            if daemon.domain_exists is not None and not daemon.domain_exists(domid):
                bits |= XS_PERM_IGNORE
            else:
                daemon.alloc_domain(domid)
        out.append((bits, domid))
    return tuple(out)


def set_perms_special(daemon: Daemon, conn: Connection, name: str, perms: tuple) -> None:
    """set_perms_special(): who may watch @introduceDomain / @releaseDomain (xenstored_domain.c)."""
    if name not in daemon.special_perms:
        raise XenstoreError(ENOENT, name)
    need = XS_PERM_WRITE | XS_PERM_OWNER
    if conn.perm(daemon.special_perms[name]) & need != need:
        raise XenstoreError(EACCES, name)
    initial = ",".join(perms_to_strings(((XS_PERM_NONE, 0),)))  # what setup gave every special path
    old, new = (",".join(perms_to_strings(p)) for p in (daemon.special_perms[name], perms))
    daemon.row("xenstored/perms", name, None if old == initial else old, None if new == initial else new)
    daemon.special_perms[name] = perms
    node = daemon.store.read_node("/" + name)
    if daemon.personality == "oxenstored" and node is not None:  # its special nodes hold them
        daemon.store.write_node("/" + name, Node(node.value, perms, node.children))


def do_transaction_start(daemon: Daemon, conn: Connection, req: Message, tx: Transaction | None) -> None:
    """do_transaction_start(): a new transaction id (decimal + NUL); no nesting (EBUSY)."""
    if tx is not None:
        raise XenstoreError(EBUSY, "a transaction is already running on this request")
    if not conn.privileged and conn.transaction_started > daemon.quotas.transactions:
        raise QuotaError(ENOSPC, f"domain {conn.domid} has {conn.transaction_started} transactions")
    store = daemon.store
    store.generation += 1
    # Pick an unused id; 0 means "no transaction", so the first one is 1.
    tid = conn.next_transaction_id
    conn.next_transaction_id = (tid + 1) & 0xFFFFFFFF
    while tid == 0 or tid in conn.transactions:
        tid = conn.next_transaction_id
        conn.next_transaction_id = (tid + 1) & 0xFFFFFFFF
    limit = None if conn.privileged else daemon.quotas.transaction_nodes
    kind = OcamlTransaction if daemon.personality == "oxenstored" else Transaction
    conn.transactions[tid] = kind(tid, store, store.generation, limit)
    conn.transaction_started += 1
    daemon.row("xenstored/transactions", f"{conn.name} {tid}", None, "open")
    daemon.send_reply(conn, req, str(tid).encode() + b"\0")


def do_transaction_end(daemon: Daemon, conn: Connection, req: Message, tx: Transaction | None) -> None:
    """do_transaction_end(): "T" commits (EAGAIN on conflict, then the queued watches fire), "F" aborts."""
    arg = onearg(req.payload)
    if arg not in ("T", "F"):
        raise XenstoreError(EINVAL, "TRANSACTION_END wants T or F")
    if tx is None:
        raise XenstoreError(ENOENT, "no transaction")
    del conn.transactions[tx.id]
    conn.transaction_started -= 1
    daemon.row("xenstored/transactions", f"{conn.name} {tx.id}", "open", None)
    try:
        if arg == "T":
            if tx.fail:
                raise XenstoreError(ENOMEM, f"transaction {tx.id} failed earlier")
            tx.fix_domains(daemon.quotas.nodes)
            if isinstance(tx, OcamlTransaction):
                # process.ml: a read-only transaction is not committed at all; else commit,
                # or replay its requests on the current tree (Connection.end_transaction)
                if not tx.is_read_only() and not tx.commit() and not transaction_replay(daemon, conn, tx):
                    raise XenstoreError(EAGAIN, f"transaction {tx.id}: tree changed, replay differs")
            else:
                tx.finalize()
            for path, exact, perms in tx.changed:
                daemon.fire_watches(None, path, None, exact, perms)
            daemon.store.generation += 1
    finally:
        tx.destroy()
    daemon.send_ack(conn, req)


#: function_of_type_simple_op (process.ml): the requests oxenstored can replay
REPLAYABLE = frozenset({
    T.XS_DIRECTORY, T.XS_READ, T.XS_GET_PERMS, T.XS_GET_DOMAIN_PATH, T.XS_WRITE, T.XS_MKDIR,
    T.XS_RM, T.XS_SET_PERMS, T.XS_DIRECTORY_PART,
})


def transaction_replay(daemon: Daemon, conn: Connection, tx: OcamlTransaction) -> bool:
    """transaction_replay() (process.ml): redo the requests on the tree of now; commit if no reply differs."""
    store = daemon.store
    store.generation += 1
    replay = OcamlTransaction(tx.id, store, store.generation, None)
    try:
        for request, response in tx.operations:
            if request.type in REPLAYABLE:
                again = daemon.perform(conn, request, replay)
            else:  # function_of_type_simple_op raises Invalid_argument: the reply is EINVAL
                again = Message(T.XS_ERROR, request.req_id, request.tx_id, b"EINVAL\0")
            if (again.type, again.payload) != (response.type, response.payload):
                return False
        return replay.commit()
    finally:
        replay.destroy()


__all__ = ["get_node", "create_node", "rm_node", "XS_PERM_READ"]

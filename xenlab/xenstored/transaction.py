"""Transactions of both daemons: C xenstored (xenstored_transaction.c) and oxenstored (transaction.ml).

Theory of operation
-------------------
A transaction is a private view of the tree: its writes and deletions go to its own
copy, so other connections see nothing until commit. The two daemons disagree on what
the transaction *reads* and on when a commit fails, and the lab keeps each one's rule.

**C xenstored 4.17** (``Transaction``). Every node a transaction touches is *accessed*
(struct accessed_node). The first access notes the node's generation count in the
committed tree and, for a read, copies the node into the transaction: later reads in
the transaction return that copy, whatever other connections write meanwhile (a node
absent at first read stays absent). At ``TRANSACTION_END "T"`` every node whose first
access was a read is checked: a different generation in the committed tree means someone
else changed it and the whole transaction fails with EAGAIN. A node first accessed by a
write is not checked (its value simply wins). Creating or deleting a node rewrites its
parent (read first), so two transactions adding siblings conflict.

**oxenstored 4.17** (``OcamlTransaction``). The transaction starts from a snapshot of the
whole tree (oxenstored's tree is immutable; ``Store.copy`` shares it) and every read sees
the snapshot plus its own writes. It remembers the common prefix of the paths READ,
DIRECTORY and GET_PERMS succeeded on (``read_lowpath``) and of the paths it changed
(``write_lowpath``), and every request with its reply. At commit:

1. a transaction with no write operation commits without any check;
2. if nobody changed the tree since it started, its tree becomes the tree;
3. else if the subtrees at both low paths are untouched (and no permission above them
   changed), its subtree at ``write_lowpath`` replaces the current one ("coalesce");
4. else its requests are replayed, in order, in a fresh transaction on the current tree;
   if every reply is the same as the first time, that replay commits; otherwise EAGAIN.

The snapshot is kept the other way round, as an undo log: while an oxenstored
transaction is open, ``Store.store_node`` / ``remove_node`` save the previous record of
each path they change into the transaction's ``saved`` (first change only). The
snapshot is the committed tree with ``saved`` laid over it; "untouched since start" is
"no saved path at or below".

Watches fire at commit (``changed``, which the daemon walks): C xenstored once per changed
node, in the order the nodes were first accessed (a non-exact change wins over an exact
one, the node's permissions at first access decide who may see it); oxenstored once per
write operation, in order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from xenlab.abi.errno import EAGAIN, ENOSPC
from xenlab.xenstored.paths import get_parent
from xenlab.xenstored.perms import Perms
from xenlab.xenstored.store import Node, QuotaError, Store, XenstoreError
from xenlab.xenstored.wire import Message

#: access_node()'s enum node_access_type
NODE_ACCESS_READ, NODE_ACCESS_WRITE, NODE_ACCESS_DELETE = range(3)


@dataclass
class AccessedNode:
    """struct accessed_node: one node a C transaction touched."""

    #: the committed generation at first access (None: NO_GENERATION, the node did not exist)
    generation: int | None
    #: the first access was a read, so the commit checks the generation
    check_gen: bool
    #: the transaction's copy of the node (ta_node), None if it has none (absent or deleted)
    node: Node | None
    modified: bool = False
    #: the node's permissions at first access (None: it did not exist), for its watch event
    perms: Perms | None = None
    #: a change here fires watches at commit; only exact ones if every change said exact
    fire_watch: bool = False
    watch_exact: bool = False


@dataclass
class Transaction:
    """One open transaction of one connection, as C xenstored keeps it."""

    id: int
    store: Store
    generation: int
    node_limit: int | None = None  # quota_trans_nodes for an unprivileged connection
    accessed: dict[str, AccessedNode] = field(default_factory=dict)
    changed: list[tuple[str, bool, Perms | None]] = field(default_factory=list)
    delta: Counter[int] = field(default_factory=Counter)
    fail: bool = False

    def access_node(self, path: str, kind: int) -> AccessedNode:
        """access_node(): on first access note the generation and, for a read, copy the node."""
        acc = self.accessed.get(path)
        if acc is None:
            if self.node_limit is not None and len(self.accessed) >= self.node_limit:
                self.fail = True
                raise QuotaError(ENOSPC, f"transaction {self.id} touched {self.node_limit} nodes")
            node = self.store.read_node(path)
            gen = node.generation if node is not None else None
            acc = AccessedNode(gen, kind == NODE_ACCESS_READ, node,
                               perms=node.perms if node is not None else None)
            self.accessed[path] = acc
        if kind != NODE_ACCESS_READ:
            acc.modified = True
        return acc

    def read_node(self, path: str) -> Node | None:
        """read_node() inside the transaction: its copy, taken at first access."""
        return self.access_node(path, NODE_ACCESS_READ).node

    def write_node(self, path: str, node: Node) -> Node:
        """write_node() inside the transaction: only the transaction's copy changes."""
        acc = self.access_node(path, NODE_ACCESS_WRITE)
        old = acc.node
        if old is None:
            self.delta[node.owner] += 1
        elif old.owner != node.owner:
            self.delta[old.owner] -= 1
            self.delta[node.owner] += 1
        self.store.generation += 1  # access_node(): node->generation = ++generation
        acc.node = Node(node.value, node.perms, node.children, self.store.generation)
        return acc.node

    def delete_node(self, path: str) -> None:
        """do_tdb_delete() inside the transaction: the copy goes."""
        acc = self.access_node(path, NODE_ACCESS_DELETE)
        if acc.node is not None:
            self.delta[acc.node.owner] -= 1
        self.store.generation += 1
        acc.node = None

    def entries_of(self, domid: int) -> int:
        """domain_entry(): the committed count; a transaction's own creations are checked at commit."""
        return self.store.entries_of(domid)

    def fix_domains(self, quota: int) -> None:
        """transaction_fix_domains(): ENOSPC if a guest touched here would own >= *quota* nodes."""
        for domid, delta in sorted(self.delta.items()):
            count = self.store.entries_of(domid) + delta
            if domid != 0 and count >= quota:
                raise QuotaError(ENOSPC, f"domain {domid} would own {count} nodes")

    def queue_watches(self, path: str, exact: bool, perms: Perms | None) -> None:
        """queue_watches(): mark the node's watches to fire at commit, once; non-exact wins over exact."""
        acc = self.accessed.get(path)
        if acc is None:
            self.fail = True
            return
        if not acc.fire_watch:
            acc.fire_watch, acc.watch_exact = True, exact
        elif not exact:
            acc.watch_exact = False

    def set_read_lowpath(self, path: str) -> None:
        """oxenstored notes the paths a transaction read; C xenstored did in access_node(): nothing here."""

    def add_wop(self, path: str, lowpath: str) -> None:
        """oxenstored notes each write operation; C xenstored marked the nodes modified: nothing here."""

    def conflicts(self) -> list[str]:
        """The nodes first read here whose committed generation moved since."""
        out = []
        for path, acc in self.accessed.items():
            if not acc.check_gen:
                continue
            node = self.store.read_node(path)
            if (node.generation if node is not None else None) != acc.generation:
                out.append(path)
        return out

    def finalize(self) -> None:
        """finalize_transaction(): EAGAIN on any conflict, else copy every modified node to the tree."""
        bad = self.conflicts()
        if bad:
            raise XenstoreError(EAGAIN, f"transaction {self.id}: {bad[0]} changed meanwhile")
        for path, acc in self.accessed.items():
            if acc.modified:
                if acc.node is None:
                    self.store.remove_node(path)
                else:
                    self.store.generation += 1  # hdr->generation = ++generation
                    self.store.store_node(path, acc.node, self.store.generation)
            if acc.fire_watch:  # fired by the daemon once all are written, in this order
                self.changed.append((path, acc.watch_exact, acc.perms))

    def destroy(self) -> None:
        """destroy_transaction(): the transaction's copies go (they were never in the tree)."""
        self.accessed.clear()


def get_common_prefix(a: str, b: str) -> str:
    """Store.Path.get_common_prefix (store.ml): the deepest path both lie at or below."""
    pa, pb = [c for c in a.split("/") if c], [c for c in b.split("/") if c]
    common: list[str] = []
    for x, y in zip(pa, pb, strict=False):
        if x != y:
            break
        common.append(x)
    return "/" + "/".join(common)


@dataclass
class OcamlTransaction(Transaction):
    """One open transaction as oxenstored keeps it (transaction.ml): a snapshot, low paths, replay."""

    #: the undo log: path -> its record when the transaction started (None: absent), for the
    #: paths the committed tree changed since; Store fills it while the transaction is open
    saved: dict[str, Node | None] = field(default_factory=dict)
    overlay: dict[str, Node | None] = field(default_factory=dict)
    read_lowpath: str | None = None
    write_lowpath: str | None = None
    #: t.paths: the write operations, newest last (empty: a read-only transaction)
    paths: list[str] = field(default_factory=list)
    #: t.operations: every request of the transaction and the reply it got, for the replay
    operations: list[tuple[Message, Message]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.store.snapshots.append(self.saved)

    def snapshot_node(self, path: str) -> Node | None:
        """The record of *path* in the tree as it was when the transaction started."""
        if path in self.saved:
            return self.saved[path]
        return self.store.read_node(path)

    def read_node(self, path: str) -> Node | None:
        """Store.get_node on the transaction's tree: its own writes, else the snapshot."""
        if path in self.overlay:
            return self.overlay[path]
        return self.snapshot_node(path)

    def write_node(self, path: str, node: Node) -> Node:
        """A write into the transaction's tree."""
        old = self.read_node(path)
        if old is None:
            self.delta[node.owner] += 1
        elif old.owner != node.owner:
            self.delta[old.owner] -= 1
            self.delta[node.owner] += 1
        self.store.generation += 1
        node = Node(node.value, node.perms, node.children, self.store.generation)
        self.overlay[path] = node
        return node

    def delete_node(self, path: str) -> None:
        """A deletion in the transaction's tree."""
        old = self.read_node(path)
        if old is not None:
            self.delta[old.owner] -= 1
        self.store.generation += 1
        self.overlay[path] = None

    def set_read_lowpath(self, path: str) -> None:
        """set_read_lowpath(): READ, DIRECTORY or GET_PERMS of *path* succeeded."""
        self.read_lowpath = path if self.read_lowpath is None else get_common_prefix(path, self.read_lowpath)

    def add_wop(self, path: str, lowpath: str) -> None:
        """set_write_lowpath() and add_wop(): a write operation on *path* changed the tree at *lowpath*."""
        self.write_lowpath = (lowpath if self.write_lowpath is None
                              else get_common_prefix(lowpath, self.write_lowpath))
        self.paths.append(path)

    def queue_watches(self, path: str, exact: bool, perms: Perms | None) -> None:
        """process_watch() fires the transaction's paths at commit: one event per operation."""
        self.changed.append((path, exact, perms))

    def add_operation(self, request: Message, response: Message) -> None:
        """add_operation(): remember a request and its reply in case the commit replays them."""
        self.operations.append((request, response))

    def is_read_only(self) -> bool:
        """is_read_only(): no write operation was made."""
        return not self.paths

    def untouched(self, path: str) -> bool:
        """``oldnode == currentnode``: nothing at or below *path* changed since the start."""
        if path == "/":
            return not self.saved
        below = path + "/"
        return not any(p == path or p.startswith(below) for p in self.saved)

    def parents_perms_identical(self, path: str) -> bool:
        """check_parents_perms_identical(): every node from / to *path* has the same permissions."""
        chain = [path]
        while chain[-1] != "/":
            chain.append(get_parent(chain[-1]))
        for p in chain:
            old, cur = self.snapshot_node(p), self.store.read_node(p)
            if old is None or cur is None or old.perms != cur.perms:
                return False
        return True

    def test_coalesce(self, path: str | None) -> bool:
        """test_coalesce(): may the transaction's work at *path* be merged into the changed tree?"""
        if path is None:
            return True
        old, cur = self.snapshot_node(path), self.store.read_node(path)
        if old is not None and cur is not None:
            return self.untouched(path) and self.parents_perms_identical(path)
        if old is None and cur is None:  # new on both sides: fine if its parent is there
            return path != "/" and self.store.read_node(get_parent(path)) is not None
        return False

    def commit(self) -> bool:
        """commit(): take the whole tree if nobody changed it, else coalesce; False if neither works."""
        self.destroy()
        if not self.saved:  # oldroot == Store.get_root cstore
            self.apply()
            return True
        if self.test_coalesce(self.read_lowpath) and self.test_coalesce(self.write_lowpath):
            self.apply()
            return True
        return False

    def apply(self) -> None:
        """Store.set_root / Store.set_node: the transaction's changes become the tree."""
        for path, node in self.overlay.items():
            if node is None:
                self.store.remove_node(path)
            else:
                self.store.generation += 1
                self.store.store_node(path, node, self.store.generation)

    def finalize(self) -> None:
        """Connection.end_transaction's first try (the replay is the daemon's, see ops)."""
        if not self.commit():
            raise XenstoreError(EAGAIN, f"transaction {self.id}: the tree changed meanwhile")

    def destroy(self) -> None:
        """The transaction is over: the store stops saving records for its snapshot."""
        snaps = self.store.snapshots
        for i, s in enumerate(snaps):
            if s is self.saved:
                del snaps[i]
                break

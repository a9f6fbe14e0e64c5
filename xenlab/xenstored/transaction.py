"""Transactions: a private view of the tree, committed if nothing it read changed (xenstored_transaction.c).

Theory of operation
-------------------
Inside a transaction every node read or written is *accessed*: the first access records
the node's generation count in the committed tree (None if the node did not exist).
Writes and deletions go to the transaction's own copy, so other connections see nothing
until commit. At ``TRANSACTION_END "T"`` the daemon compares each accessed node's
generation with the committed tree; any difference means someone else changed it and the
whole transaction fails with EAGAIN (the client retries). Creating or deleting a node also
rewrites its parent (the children list), so two transactions adding siblings conflict,
exactly as with C xenstored. Watches touched inside a transaction are queued and fire
at commit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from xenlab.abi.errno import EAGAIN, ENOSPC
from xenlab.xenstored.perms import Perms
from xenlab.xenstored.store import Node, QuotaError, Store, XenstoreError


@dataclass
class Transaction:
    """One open transaction of one connection."""

    id: int
    store: Store
    generation: int
    node_limit: int | None = None  # quota_trans_nodes for an unprivileged connection
    overlay: dict[str, Node | None] = field(default_factory=dict)
    accessed: dict[str, int | None] = field(default_factory=dict)
    changed: list[tuple[str, bool, Perms | None]] = field(default_factory=list)
    delta: Counter[int] = field(default_factory=Counter)
    fail: bool = False

    def access_node(self, path: str) -> Node | None:
        """access_node(): note the committed generation on first access (xenstored_transaction.c)."""
        if path not in self.accessed:
            if self.node_limit is not None and len(self.accessed) >= self.node_limit:
                raise QuotaError(ENOSPC, f"transaction {self.id} touched {self.node_limit} nodes")
            node = self.store.read_node(path)
            self.accessed[path] = node.generation if node else None
        if path in self.overlay:
            return self.overlay[path]
        return self.store.read_node(path)

    def read_node(self, path: str) -> Node | None:
        """read_node() inside the transaction: its own copy if it wrote the node, else the committed one."""
        return self.access_node(path)

    def write_node(self, path: str, node: Node) -> Node:
        """write_node() inside the transaction: only the private copy changes."""
        old = self.access_node(path)
        if old is None:
            self.delta[node.owner] += 1
        elif old.owner != node.owner:
            self.delta[old.owner] -= 1
            self.delta[node.owner] += 1
        node = Node(node.value, node.perms, node.children, self.store.generation)
        self.store.generation += 1  # access_node(): generation++ for every write, also in a transaction
        self.overlay[path] = node
        return node

    def delete_node(self, path: str) -> None:
        """do_tdb_delete() inside the transaction."""
        old = self.access_node(path)
        if old is not None:
            self.delta[old.owner] -= 1
        self.store.generation += 1
        self.overlay[path] = None

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
        """queue_watches(): remember a change whose watches fire at commit (xenstored_transaction.c)."""
        self.changed.append((path, exact, perms))

    def conflicts(self) -> list[str]:
        """The accessed nodes whose committed generation moved since first access."""
        out = []
        for path, gen in self.accessed.items():
            node = self.store.read_node(path)
            if (node.generation if node else None) != gen:
                out.append(path)
        return out

    def finalize(self) -> None:
        """finalize_transaction(): EAGAIN on any conflict, else copy every changed node to the tree."""
        bad = self.conflicts()
        if bad:
            raise XenstoreError(EAGAIN, f"transaction {self.id}: {bad[0]} changed meanwhile")
        for path, node in self.overlay.items():
            if node is None:
                self.store.remove_node(path)
            else:
                self.store.generation += 1  # hdr->generation = ++generation
                self.store.store_node(path, node, self.store.generation)

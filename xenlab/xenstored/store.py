"""The tree of nodes C xenstored keeps in its TDB (tools/xenstore/xenstored_core.c).

Theory of operation
-------------------
Every node has a value (bytes, possibly empty), a permission list, the names of its
children in creation order, and a generation count (a global counter stamped on each
write, used by transactions and DIRECTORY_PART). The tree is stored flat, keyed by the
full name, like the TDB: ``/local/domain/0`` is one record whose children field lists
``control``, ``domid``... A node exists only if its parent exists and lists it.

``Store`` is the committed tree. A ``Transaction`` (transaction.py) offers the same
``read_node`` / ``write_node`` / ``delete_node`` methods over a private copy, so the
request handlers work on either. While an oxenstored transaction is open, every change
here first saves the record it replaces into that transaction's undo log (its snapshot).
Every committed change is queued as trace rows (``xenstored/tree``: path -> value text;
``xenstored/perms``: path -> ``n0,r1``) that the daemon attaches to the step recording
the request.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from xenlab.abi.errno import EINVAL, ENOENT, errno_name
from xenlab.xenstored.paths import basename, child_name, get_parent
from xenlab.xenstored.perms import XS_PERM_NONE, Perms, parse_perms, perms_text, perms_to_strings
from xenlab.xenstored.quota import node_record_size

TREE = "xenstored/tree"
PERMS = "xenstored/perms"


class XenstoreError(Exception):
    """A Python-facing store operation failed; ``errno`` holds the value, the text names it and the path."""

    def __init__(self, errno: int, what: str) -> None:
        super().__init__(f"{errno_name(errno)}: {what}")
        self.errno = errno
        self.name = errno_name(errno)


class QuotaError(XenstoreError):
    """A per-domain quota was hit (C xenstored answers the errno; oxenstored says EQUOTA)."""


class Children(Sequence[str]):
    """A node's child names: an immutable view of the first n names of a list it may share.

    Adding a name to the newest view of a list extends that list in place, O(1); every
    older view (a record a transaction or a snapshot still holds) keeps seeing its own n
    names. Removing one copies, O(n). A *sorted* view (oxenstored's children are a sorted
    map) keeps the names as they came and shows them sorted, sorting once per view when
    first read, so a create never re-sorts and never copies.
    """

    __slots__ = ("_names", "_n", "_sorted", "_order")

    def __init__(self, names: Iterable[str] = (), n: int | None = None, *, ordered: bool = False) -> None:
        if n is not None and isinstance(names, list):
            self._names, self._n = names, n
        else:
            self._names = list(names)
            self._n = len(self._names)
        self._order = ordered
        self._sorted: list[str] | None = None

    def _view(self) -> list[str]:
        if not self._order:
            return self._names[:self._n] if self._n != len(self._names) else self._names
        if self._sorted is None:
            self._sorted = sorted(itertools.islice(self._names, self._n))
        return self._sorted

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int | slice) -> str | tuple[str, ...]:  # type: ignore[override]
        if isinstance(i, slice):
            return tuple(self._view()[i])
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(i)
        return self._view()[i] if self._order else self._names[i]

    def __iter__(self) -> Iterator[str]:
        return iter(self._view()) if self._order else itertools.islice(self._names, self._n)

    def __contains__(self, name: object) -> bool:
        try:
            self._names.index(name, 0, self._n)  # type: ignore[arg-type]
        except ValueError:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Children):
            return self._n == other._n and list(self) == list(other)
        if isinstance(other, tuple | list):
            return list(self) == list(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"Children({list(self)!r})"

    def added(self, name: str, *, ordered: bool = False) -> Children:
        """A view with *name* added: at the end, or (``ordered``) in sorted place."""
        if self._order == ordered and self._n and len(self._names) == self._n:
            self._names.append(name)  # in place: older views still see their first n
            return Children(self._names, self._n + 1, ordered=ordered)
        names = list(self) if ordered else self._names[:self._n]
        names.append(name)
        return Children(names, len(names), ordered=ordered)

    def without(self, name: str) -> Children:
        """A copy without *name*."""
        names = self._names[:self._n]
        names.remove(name)
        return Children(names, len(names), ordered=self._order)


@dataclass(frozen=True)
class Node:
    """One TDB record: value, permissions (owner first), child names, generation."""

    value: bytes = b""
    perms: Perms = ((XS_PERM_NONE, 0),)
    children: Children = Children()
    generation: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.children, Children):  # a tuple or list given by hand
            object.__setattr__(self, "children", Children(self.children))

    @property
    def owner(self) -> int:
        """The domid in the first permission entry."""
        return self.perms[0][1]

    @property
    def childlen(self) -> int:
        """Bytes of the NUL-separated children field."""
        return sum(len(c) + 1 for c in self.children)

    def children_bytes(self) -> bytes:
        """The children field as stored: each name followed by NUL."""
        return b"".join(c.encode("latin-1") + b"\0" for c in self.children)

    def record_size(self) -> int:
        """Bytes of the record write_node_raw() stores (what the node-size quota limits)."""
        return node_record_size(len(self.perms), len(self.value), self.childlen)


def value_text(value: bytes | None) -> str | None:
    """A value as a trace/table string (None stays None)."""
    return None if value is None else value.decode("utf-8", "backslashreplace")


@dataclass
class Store:
    """The committed tree, its global generation counter and per-domain node counts."""

    nodes: dict[str, Node] = field(default_factory=dict)
    generation: int = 0
    entries: Counter[int] = field(default_factory=Counter)
    pending: list[tuple[str, str, object, object]] = field(default_factory=list)
    #: oxenstored keeps children in a sorted map; C xenstored in creation order
    sorted_children: bool = False
    #: the undo logs of open oxenstored transactions (transaction.py): each gets the old
    #: record of every path changed while it is open, on the path's first change
    snapshots: list[dict[str, Node | None]] = field(default_factory=list)

    #: bytes of the records (and keys) each unprivileged owner's nodes take (do_tdb_write accounting)
    memory: Counter[int] = field(default_factory=Counter)

    def add_child(self, children: Sequence[str], name: str) -> Children:
        """add_child(): *children* with *name* appended (oxenstored: in sorted place), O(1).

        C xenstored appends; oxenstored's children are a sorted map, shown sorted here
        (sorted once when next read), never re-sorted or copied per create.
        """
        kids = children if isinstance(children, Children) else Children(children)
        return kids.added(name, ordered=self.sorted_children)

    # -- the interface shared with Transaction ------------------------------------------
    def read_node(self, path: str) -> Node | None:
        """read_node(): the record of *path*, or None (xenstored_core.c)."""
        return self.nodes.get(path)

    def write_node(self, path: str, node: Node) -> Node:
        """write_node(): access_node() stamps ``generation++``, then stores the record (xenstored_core.c)."""
        stamped = self.store_node(path, node, self.generation)
        self.generation += 1
        return stamped

    def store_node(self, path: str, node: Node, generation: int) -> Node:
        """do_tdb_write(): store the record with the given generation count."""
        old = self.nodes.get(path)
        for saved in self.snapshots:
            saved.setdefault(path, old)
        node = Node(node.value, node.perms, node.children, generation)
        self.nodes[path] = node
        if old is not None and old.owner:
            self.memory[old.owner] -= old.record_size() + len(path)
        if node.owner:  # dom0's nodes are never checked, so never summed (a 100k-child /local is cheap)
            self.memory[node.owner] += node.record_size() + len(path)
        if old is None:
            self.entries[node.owner] += 1
        elif old.owner != node.owner:
            self.entries[old.owner] -= 1
            self.entries[node.owner] += 1
        if old is None or old.value != node.value:
            self.pending.append((TREE, path, value_text(old.value) if old else None, value_text(node.value)))
        if old is None or old.perms != node.perms:
            self.pending.append((PERMS, path, perms_text(old.perms) if old else None, perms_text(node.perms)))
        return node

    def delete_node(self, path: str) -> None:
        """delnode_sub(): access_node() for a delete also takes a generation number, then the record goes."""
        self.generation += 1
        self.remove_node(path)

    def remove_node(self, path: str) -> None:
        """do_tdb_delete(): drop the record of *path* (its parent's children field is the caller's job)."""
        old = self.nodes.pop(path, None)
        if old is not None:
            for saved in self.snapshots:
                saved.setdefault(path, old)
            self.entries[old.owner] -= 1
            if old.owner:
                self.memory[old.owner] -= old.record_size() + len(path)
            self.pending.append((TREE, path, value_text(old.value), None))
            self.pending.append((PERMS, path, perms_text(old.perms), None))

    def entries_of(self, domid: int) -> int:
        """domain_entry(): how many nodes *domid* owns."""
        return self.entries[domid]

    def take_changes(self) -> list[tuple[str, str, object, object]]:
        """The trace rows queued since the last call."""
        rows, self.pending = self.pending, []
        return rows

    # -- Python-facing reading (dom0's view, no permission checks) ----------------------
    def _get(self, path: str) -> Node:
        node = self.nodes.get(path)
        if node is None:
            raise XenstoreError(ENOENT, f"no node {path!r} in the store")
        return node

    def exists(self, path: str) -> bool:
        """True if *path* is a node."""
        return path in self.nodes

    def read(self, path: str) -> bytes:
        """The value of *path* (XenstoreError ENOENT if absent)."""
        return self._get(path).value

    def directory(self, path: str) -> list[str]:
        """The child names of *path* in creation order."""
        return list(self._get(path).children)

    def get_perms(self, path: str) -> list[str]:
        """The permission strings of *path*, owner first (``["n0", "r1"]``)."""
        return perms_to_strings(self._get(path).perms)

    def generation_of(self, path: str) -> int:
        """The generation count of *path*."""
        return self._get(path).generation

    def write(self, path: str, value: bytes | str, perms: Perms | str | None = None) -> None:
        """Write as dom0 would, straight into the tree: parents made, no watches, no quotas.

        For set-up and tests; the trace rows join the daemon's next step. ``Daemon.write``
        goes through a dom0 connection instead (watches fire, the step is recorded).
        """
        if not path.startswith("/") or path.endswith("/") and path != "/" or "//" in path:
            raise XenstoreError(EINVAL, f"invalid node name {path!r}")
        data = value.encode() if isinstance(value, str) else bytes(value)
        if path not in self.nodes:
            missing = [path]
            while get_parent(missing[-1]) not in self.nodes:
                missing.append(get_parent(missing[-1]))
            for name in reversed(missing):  # top down, each new node inheriting its parent's list
                parent_name = get_parent(name)
                parent = self.nodes[parent_name]
                self.write_node(name, Node(data if name == path else b"", parent.perms))
                self.write_node(parent_name, Node(parent.value, parent.perms,
                                                  self.add_child(parent.children, basename(name))))
        else:
            cur = self.nodes[path]
            self.write_node(path, Node(data, cur.perms, cur.children))
        if perms is not None:
            cur = self.nodes[path]
            new = parse_perms(perms) if isinstance(perms, str) else perms
            self.write_node(path, Node(cur.value, new, cur.children))

    def walk(self, path: str = "/") -> Iterator[tuple[str, bytes, Perms]]:
        """(path, value, perms) below *path*, depth first in child order (``xenstore-ls -f``)."""
        stack = [child_name(path, c) for c in reversed(self._get(path).children)]
        while stack:
            name = stack.pop()
            node = self.nodes.get(name)
            if node is None:
                continue
            yield name, node.value, node.perms
            stack.extend(child_name(name, c) for c in reversed(node.children))

    def ls(self, path: str = "/", *, perms: bool = False) -> str:
        """Text like ``xenstore-ls -f`` (``-p`` with *perms*) prints for *path*."""
        lines = []
        for name, value, p in self.walk(path):
            text = value.decode("latin-1")
            line = f'{name} = "{text}"'
            if perms:
                line += f"   ({perms_text(p)})"
            lines.append(line)
        return "\n".join(lines) + ("\n" if lines else "")

    def check(self) -> list[str]:
        """check_store(): every problem found (missing or unlisted parent, dangling child, ...)."""
        problems = []
        if "/" not in self.nodes:
            problems.append("no root node")
        for name, node in self.nodes.items():
            if not node.perms:
                problems.append(f"{name}: empty permission list")
            if len(set(node.children)) != len(node.children):
                problems.append(f"{name}: duplicate child names")
            for c in node.children:
                if child_name(name, c) not in self.nodes:
                    problems.append(f"{name}: child {c!r} not found")
            if name == "/":
                continue
            parent = self.nodes.get(get_parent(name))
            if parent is None:
                problems.append(f"{name}: parent missing")
            elif name.rsplit("/", 1)[1] not in parent.children:
                problems.append(f"{name}: not listed by its parent")
        counted = Counter(n.owner for n in self.nodes.values())
        if +counted != +self.entries:
            problems.append(f"node counts {dict(+self.entries)} differ from owners {dict(counted)}")
        used: Counter[int] = Counter()
        for name, node in self.nodes.items():
            if node.owner:
                used[node.owner] += node.record_size() + len(name)
        if +used != +self.memory:
            problems.append(f"node memory {dict(+self.memory)} differs from the records {dict(used)}")
        return sorted(problems)


def initial_store(personality: str = "cxenstored") -> Store:
    """setup_structure(): the tree a fresh daemon starts with.

    C xenstored 4.17: ``/``, ``/tool``, ``/tool/xenstored`` (its special watch paths are not
    nodes). oxenstored: ``/`` with the special nodes ``/@introduceDomain`` and
    ``/@releaseDomain`` (whose permissions say who may watch them), children sorted.
    """
    if personality == "oxenstored":
        store = Store(sorted_children=True)
        store.write_node("/@introduceDomain", Node())
        store.write_node("/@releaseDomain", Node())
        store.write_node("/", Node(children=("@introduceDomain", "@releaseDomain")))
        return store
    store = Store()
    store.write_node("/", Node(children=("tool",)))
    store.write_node("/tool", Node(children=("xenstored",)))
    store.write_node("/tool/xenstored", Node())
    return store


__all__ = ["Node", "Store", "XenstoreError", "initial_store", "parse_perms", "TREE", "PERMS"]

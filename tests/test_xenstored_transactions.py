"""Transaction isolation and commit rules, each personality as its real daemon does it.

C xenstored 4.17 copies a node into the transaction on first access and fails the commit
(EAGAIN) if any node first *read* there changed since. oxenstored 4.17 reads a snapshot
taken at TRANSACTION_START; a read-only transaction always commits, and one that wrote
commits if nobody changed the tree, or nobody changed the subtrees it used, or else if
replaying its requests on the current tree gives the same replies.
"""

from __future__ import annotations

import pytest
from xs_client import Client, introduce

from xenlab.abi.xs_wire import xsd_sockmsg_type as T
from xenlab.xenstored.daemon import Daemon
from xenlab.xenstored.quota import Quotas

PERSONALITIES = ["xenstored", "oxenstored"]


def pair(name: str) -> tuple[Client, Client]:
    daemon = Daemon(name=name)
    return Client(daemon), Client(daemon)


@pytest.mark.parametrize("name", PERSONALITIES)
def test_a_read_inside_a_transaction_does_not_see_a_later_write(name: str) -> None:
    # test-xenstore's "ta err": read A ("a") in the transaction, another write makes it "b",
    # the transaction still reads "a", writes "c", and the commit fails with EAGAIN
    # (failed before: the second read returned "b")
    me, other = pair(name)
    me.write("/A", "a")
    tx = me.start()
    assert me.read("/A", tx=tx) == b"a"
    other.write("/A", "b")
    assert me.read("/A", tx=tx) == b"a"
    me.write("/A", "c", tx=tx)
    assert me.read("/A", tx=tx) == b"c"
    assert me.error(T.XS_TRANSACTION_END, "T", tx=tx) == "EAGAIN"
    assert me.read("/A") == b"b"
    assert me.daemon.store.snapshots == [] and me.daemon.store.check() == []


@pytest.mark.parametrize(("name", "seen"), [("xenstored", b"b"), ("oxenstored", b"a")])
def test_what_a_transaction_reads_first_after_another_write(name: str, seen: bytes) -> None:
    # C copies the node when the transaction first touches it (after the write: "b");
    # oxenstored reads the tree as it was at TRANSACTION_START ("a")
    me, other = pair(name)
    me.write("/A", "a")
    tx = me.start()
    other.write("/A", "b")
    assert me.read("/A", tx=tx) == seen
    other.write("/B", "new")
    # a node made after the start: C reads it (first access now), oxenstored does not see it
    if name == "xenstored":
        assert me.read("/B", tx=tx) == b"new"
    else:
        assert me.error(T.XS_READ, "/B", tx=tx) == "ENOENT"
        assert me.ls("/", tx=tx) == ["@introduceDomain", "@releaseDomain", "A"]
    me.end(tx, commit=False)


@pytest.mark.parametrize("name", PERSONALITIES)
def test_a_node_absent_at_first_read_stays_absent(name: str) -> None:
    me, other = pair(name)
    tx = me.start()
    assert me.error(T.XS_READ, "/late", tx=tx) == "ENOENT"
    other.write("/late", "1")
    assert me.error(T.XS_READ, "/late", tx=tx) == "ENOENT"
    me.end(tx, commit=False)


@pytest.mark.parametrize(("name", "reply"), [("xenstored", "EAGAIN"), ("oxenstored", "OK")])
def test_a_read_only_transaction_whose_read_changed(name: str, reply: str) -> None:
    # C checks every node first read; oxenstored does not commit a transaction without writes
    me, other = pair(name)
    me.write("/A", "a")
    tx = me.start()
    me.read("/A", tx=tx)
    other.write("/A", "b")
    if reply == "OK":
        me.end(tx)
    else:
        assert me.error(T.XS_TRANSACTION_END, "T", tx=tx) == reply


@pytest.mark.parametrize(("name", "commits"), [("xenstored", False), ("oxenstored", True)])
def test_rewriting_the_same_value_meanwhile(name: str, commits: bool) -> None:
    # the other write changes the generation (C: EAGAIN), but replaying the transaction's
    # requests on the new tree gives the same replies (oxenstored: commits)
    me, other = pair(name)
    me.write("/y", "1")
    tx = me.start()
    assert me.read("/y", tx=tx) == b"1"
    me.write("/x", "from tx", tx=tx)
    other.write("/y", "1")
    if commits:
        me.end(tx)
        assert me.read("/x") == b"from tx"
    else:
        assert me.error(T.XS_TRANSACTION_END, "T", tx=tx) == "EAGAIN"
        assert me.error(T.XS_READ, "/x") == "ENOENT"


@pytest.mark.parametrize("name", PERSONALITIES)
def test_a_changed_read_fails_the_replay_too(name: str) -> None:
    me, other = pair(name)
    me.write("/y", "1")
    tx = me.start()
    me.read("/y", tx=tx)
    me.write("/x", "from tx", tx=tx)
    other.write("/y", "2")
    assert me.error(T.XS_TRANSACTION_END, "T", tx=tx) == "EAGAIN"
    assert me.error(T.XS_READ, "/x") == "ENOENT"


@pytest.mark.parametrize(("name", "children"), [("xenstored", ["a"]), ("oxenstored", ["a", "b"])])
def test_siblings_made_in_two_transactions(name: str, children: list[str]) -> None:
    # both rewrite the parent's children list: C's generation check fails the second;
    # oxenstored cannot coalesce (the parent changed) but its replay writes b fine
    me, other = pair(name)
    me.mkdir("/dir")
    t1, t2 = me.start(), other.start()
    me.write("/dir/a", "", tx=t1)
    other.write("/dir/b", "", tx=t2)
    me.end(t1)
    if name == "xenstored":
        assert other.error(T.XS_TRANSACTION_END, "T", tx=t2) == "EAGAIN"
    else:
        other.end(t2)
    assert me.ls("/dir") == children
    assert me.daemon.store.check() == []


@pytest.mark.parametrize("name", PERSONALITIES)
def test_changes_elsewhere_do_not_conflict(name: str) -> None:
    # C: nothing the transaction read moved; oxenstored: both low paths untouched (coalesce)
    me, other = pair(name)
    me.write("/mine/v", "0")
    tx = me.start()
    assert me.read("/mine/v", tx=tx) == b"0"
    me.write("/mine/v", "1", tx=tx)
    other.write("/theirs", "x")
    me.end(tx)
    assert (me.read("/mine/v"), me.read("/theirs")) == (b"1", b"x")


def test_oxenstored_coalesce_fails_when_a_parent_permission_changed() -> None:
    # check_parents_perms_identical(): the guest's subtree /p/q is untouched, but /p's
    # permissions changed, so no coalesce; the replay's read of /p/none now says EACCES
    # where the first run said ENOENT: EAGAIN
    dom0 = Client(Daemon(name="oxenstored"))
    guest = introduce(dom0, 5)
    dom0.write("/p/q", "0")
    dom0.set_perms("/p", "n0", "r5")
    dom0.set_perms("/p/q", "n5")
    tx = guest.start()
    assert guest.error(T.XS_READ, "/p/none", tx=tx) == "ENOENT"
    assert guest.read("/p/q", tx=tx) == b"0"
    guest.write("/p/q", "1", tx=tx)
    dom0.set_perms("/p", "n0")
    assert guest.error(T.XS_TRANSACTION_END, "T", tx=tx) == "EAGAIN"
    assert dom0.read("/p/q") == b"0"


def test_oxenstored_replays_errors_too() -> None:
    # a request that failed must fail the same way in the replay
    me, other = pair("oxenstored")
    tx = me.start()
    assert me.error(T.XS_READ, "/nothing", tx=tx) == "ENOENT"
    me.write("/x", "1", tx=tx)
    other.write("/nothing", "now here")
    assert me.error(T.XS_TRANSACTION_END, "T", tx=tx) == "EAGAIN"


def test_oxenstored_limits_the_requests_of_a_guest_transaction() -> None:
    # check_quota_exn: quota-maxrequests requests per transaction, then EQUOTA (dom0 unlimited)
    daemon = Daemon(name="oxenstored", quotas=Quotas(transaction_nodes=3))
    dom0 = Client(daemon)
    guest = introduce(dom0, 1)
    dom0.write("/local/domain/1", "")
    dom0.set_perms("/local/domain/1", "n1")
    tx = guest.start()
    for i in range(3):
        guest.write(f"v{i}", "", tx=tx)
    assert guest.error(T.XS_WRITE, "v3", tx=tx, value=b"") == "EQUOTA"
    guest.end(tx)
    assert dom0.ls("/local/domain/1") == ["v0", "v1", "v2"]


@pytest.mark.parametrize("name", PERSONALITIES)
def test_no_snapshot_outlives_its_transaction(name: str) -> None:
    me, other = pair(name)
    for _ in range(3):
        me.start()
    tx = other.start()
    other.write("/w", "1", tx=tx)
    other.end(tx, commit=False)
    me.daemon.close_connection(me.conn)
    assert me.daemon.store.snapshots == []


@pytest.mark.parametrize(("name", "events"),
                         [("xenstored", ["/b", "/a"]), ("oxenstored", ["/a", "/b", "/a"])])
def test_watches_fired_by_a_commit(name: str, events: list[str]) -> None:
    # C: once per changed node, in the order the transaction first accessed them (/b was read
    # first); oxenstored: once per write operation, in order
    me, other = pair(name)
    me.write("/a", "0")
    me.write("/b", "0")
    other.watch("/", "w")
    other.take_events()
    tx = me.start()
    me.read("/b", tx=tx)
    me.write("/a", "1", tx=tx)
    me.write("/b", "1", tx=tx)
    me.write("/a", "2", tx=tx)
    assert other.take_events() == []
    me.end(tx)
    assert other.take_events() == [(path, "w") for path in events]

"""The lab xenstored's dispatcher: watches, transactions, domains, errors, and the trace it records."""

from __future__ import annotations

import ast
import re

import pytest
from real_captures import CAPTURES
from xs_client import Client, XsError, introduce

from xenlab.abi.xs_wire import xsd_sockmsg_type as T
from xenlab.base.trace import Trace
from xenlab.xenstored.daemon import Daemon
from xenlab.xenstored.quota import Quotas
from xenlab.xenstored.wire import Message


@pytest.fixture
def dom0() -> Client:
    return Client(Daemon())


# -- the message layer ------------------------------------------------------------------------------
def test_replies_copy_type_req_id_and_tx_id(dom0: Client) -> None:
    tx = dom0.start()
    dom0.daemon.handle(dom0.conn, Message(T.XS_WRITE, 77, tx, b"/x\0v"))
    [reply] = dom0.conn.take_output()
    assert reply == Message(T.XS_WRITE, 77, tx, b"OK\0")


@pytest.mark.parametrize("type", [15, 16, 20, 23, 24, 25, 26, 27, 0xFFFF, 1000])
def test_unknown_and_server_only_types_are_enosys(dom0: Client, type: int) -> None:
    # 4.17 knows types up to DIRECTORY_PART (22); WATCH_EVENT/ERROR are never requests
    reply = dom0.request(type, b"x\0")
    assert (reply.type, reply.payload) == (T.XS_ERROR, b"ENOSYS\0")


@pytest.mark.parametrize("type", [T.XS_CONTROL, T.XS_INTRODUCE, T.XS_RELEASE, T.XS_IS_DOMAIN_INTRODUCED,
                                  T.XS_RESUME, T.XS_SET_TARGET])
def test_privileged_types_from_a_guest_are_eacces(dom0: Client, type: int) -> None:
    guest = introduce(dom0, 1)
    assert guest.error(type, "1", "2", "3") == "EACCES"


def test_unknown_transaction_id_is_enoent(dom0: Client) -> None:
    assert dom0.error(T.XS_READ, "/tool", tx=42) == "ENOENT"


def test_the_on_output_callback_runs_after_a_request(dom0: Client) -> None:
    seen = []
    dom0.conn.on_output = lambda c: seen.append(len(c.out))
    dom0.daemon.handle(dom0.conn, Message(T.XS_READ, 1, 0, b"/tool\0"))
    assert seen == [1]


def test_a_garbage_request_gets_an_error_and_the_tree_survives(dom0: Client) -> None:
    dom0.write("/keep", "me")
    for payload in [b"", b"\0", b"\xff\xfe", b"\0/keep\0\0", b"\0" * 4096]:
        for type in range(0, 27):
            dom0.daemon.handle(dom0.conn, Message(type, 1, 0, payload))
            dom0.conn.take_output()
    assert dom0.daemon.bugs == []
    assert dom0.read("/keep") == b"me"
    assert dom0.daemon.store.check() == []


def test_get_domain_path(dom0: Client) -> None:
    assert dom0.call(T.XS_GET_DOMAIN_PATH, "7") == b"/local/domain/7\0"
    assert dom0.error(T.XS_GET_DOMAIN_PATH) == "EINVAL"


# -- watches ----------------------------------------------------------------------------------------
def test_watch_acks_then_fires_once_at_once(dom0: Client) -> None:
    dom0.daemon.handle(dom0.conn, Message(T.XS_WATCH, 5, 0, b"/tool\0tok\0"))
    out = dom0.conn.take_output()
    assert out == [Message(T.XS_WATCH, 5, 0, b"OK\0"), Message(T.XS_WATCH_EVENT, 0, 0, b"/tool\0tok\0")]


def test_watch_fires_for_the_subtree_but_not_siblings(dom0: Client) -> None:
    dom0.watch("/a", "t")
    dom0.take_events()
    dom0.write("/a/b/c", "1")
    dom0.write("/ab", "2")  # a sibling whose name starts the same
    dom0.write("/a", "3")
    assert dom0.take_events() == [("/a/b/c", "t"), ("/a", "t")]


def test_removing_an_ancestor_reports_the_watched_path(dom0: Client) -> None:
    dom0.write("/a/b/c", "1")
    dom0.watch("/a/b/c", "deep")
    dom0.watch("/a", "top")
    dom0.take_events()
    dom0.rm("/a")
    assert dom0.take_events() == [("/a/b/c", "deep"), ("/a", "top")]


def test_duplicate_watch_is_eexist_and_unwatch_stops_events(dom0: Client) -> None:
    dom0.watch("/w", "t")
    assert dom0.error(T.XS_WATCH, "/w", "t") == "EEXIST"
    dom0.watch("/w", "other-token")
    dom0.unwatch("/w", "t")
    assert dom0.error(T.XS_UNWATCH, "/w", "t") == "ENOENT"
    dom0.take_events()
    dom0.write("/w", "")
    assert dom0.take_events() == [("/w", "other-token")]


def test_relative_watch_gets_relative_event_paths(dom0: Client) -> None:
    dom0.watch("device", "rel")
    assert dom0.take_events() == [("device", "rel")]
    dom0.write("/local/domain/0/device/vbd/768", "")
    assert dom0.take_events() == [("device/vbd/768", "rel")]


def test_watch_list(dom0: Client) -> None:
    dom0.watch("/a", "t1")
    dom0.watch("rel", "t2")
    assert dom0.daemon.watch_list() == [("socket(d0)", "/a", "t1"),
                                        ("socket(d0)", "/local/domain/0/rel", "t2")]


def test_watch_with_a_depth_argument_is_einval_in_4_17(dom0: Client) -> None:
    assert dom0.error(T.XS_WATCH, "/a", "t", "1") == "EINVAL"


def test_events_respect_permissions(dom0: Client) -> None:
    guest = introduce(dom0, 1)
    guest.watch("/secret", "g")
    assert guest.take_events() == [("/secret", "g")]  # the first event is unconditional
    dom0.write("/secret", "s")  # n0 (inherited from /): the guest may not know
    assert guest.take_events() == []
    dom0.set_perms("/secret", "n0", "r1")
    assert guest.take_events() == [("/secret", "g")]
    dom0.set_perms("/secret", "n0")  # losing access still tells (old permissions)
    assert guest.take_events() == [("/secret", "g")]


def test_watch_events_go_to_every_connection(dom0: Client) -> None:
    other = Client(dom0.daemon)
    other.watch("/x", "o")
    other.take_events()
    dom0.write("/x", "1")
    assert other.take_events() == [("/x", "o")]


def test_an_event_still_queued_is_not_queued_twice(dom0: Client) -> None:
    dom0.watch("/q", "t")
    dom0.take_events()
    for _ in range(3):
        dom0.daemon.handle(dom0.conn, Message(T.XS_WRITE, 1, 0, b"/q\0v"))
    events = [m for m in dom0.conn.take_output() if m.type == T.XS_WATCH_EVENT]
    assert len(events) == 1


def test_watch_quota_is_e2big_after_129(dom0: Client) -> None:
    guest = introduce(dom0, 1)
    for i in range(129):  # CXS checks "more than 128 already" before adding
        guest.watch(f"/w{i}", "t")
    assert guest.error(T.XS_WATCH, "/w129", "t") == "E2BIG"


def test_special_watches_need_privilege_or_a_grant(dom0: Client) -> None:
    guest = introduce(dom0, 1)
    dom0.watch("@introduceDomain", "intro")
    guest.watch("@introduceDomain", "g")
    assert dom0.take_events() == [("@introduceDomain", "intro")]
    assert guest.take_events() == [("@introduceDomain", "g")]
    introduce(dom0, 2)
    assert dom0.take_events() == [("@introduceDomain", "intro")]
    assert guest.take_events() == []
    dom0.set_perms("@introduceDomain", "n0", "r1")
    introduce(dom0, 3)
    assert guest.take_events() == [("@introduceDomain", "g")]
    assert guest.error(T.XS_SET_PERMS, "@introduceDomain", "n1") == "EACCES"
    assert dom0.error(T.XS_SET_PERMS, "@other", "n0") == "ENOENT"


def test_reset_watches_drops_watches_and_transactions(dom0: Client) -> None:
    dom0.watch("/a", "t")
    tx = dom0.start()
    dom0.call(T.XS_RESET_WATCHES, "")
    dom0.take_events()
    dom0.write("/a", "")
    assert dom0.take_events() == []
    assert dom0.error(T.XS_READ, "/tool", tx=tx) == "ENOENT"


# -- transactions -----------------------------------------------------------------------------------
def test_transaction_ids_start_at_one_per_connection(dom0: Client) -> None:
    other = Client(dom0.daemon)
    assert [dom0.start(), dom0.start(), other.start()] == [1, 2, 1]


def test_transaction_start_inside_a_transaction_is_ebusy(dom0: Client) -> None:
    tx = dom0.start()
    assert dom0.error(T.XS_TRANSACTION_START, "", tx=tx) == "EBUSY"


def test_writes_are_private_until_commit_and_watches_fire_then(dom0: Client) -> None:
    other = Client(dom0.daemon)
    other.watch("/t", "w")
    other.take_events()
    tx = dom0.start()
    dom0.write("/t/x", "1", tx=tx)
    assert dom0.read("/t/x", tx=tx) == b"1"
    assert other.error(T.XS_READ, "/t/x") == "ENOENT"
    assert other.take_events() == []
    dom0.end(tx)
    assert other.read("/t/x") == b"1"
    assert other.take_events() == [("/t/x", "w")]


def test_abort_discards(dom0: Client) -> None:
    tx = dom0.start()
    dom0.write("/gone", "1", tx=tx)
    dom0.end(tx, commit=False)
    assert dom0.error(T.XS_READ, "/gone") == "ENOENT"
    assert dom0.error(T.XS_TRANSACTION_END, "T", tx=tx) == "ENOENT"


def test_a_conflicting_change_makes_commit_fail_with_eagain(dom0: Client) -> None:
    other = Client(dom0.daemon)
    dom0.write("/counter", "0")
    tx = dom0.start()
    value = int(dom0.read("/counter", tx=tx))
    other.write("/counter", "10")  # someone else changes what we read
    dom0.write("/counter", str(value + 1), tx=tx)
    assert dom0.error(T.XS_TRANSACTION_END, "T", tx=tx) == "EAGAIN"
    assert dom0.read("/counter") == b"10"  # nothing of ours was applied
    # the client retries, as Linux does on EAGAIN
    tx = dom0.start()
    dom0.write("/counter", str(int(dom0.read("/counter", tx=tx)) + 1), tx=tx)
    dom0.end(tx)
    assert dom0.read("/counter") == b"11"


def test_creating_siblings_in_two_transactions_conflicts(dom0: Client) -> None:
    # both rewrite the parent's children list, as in C xenstored
    other = Client(dom0.daemon)
    dom0.mkdir("/dir")
    t1, t2 = dom0.start(), other.start()
    dom0.write("/dir/a", "", tx=t1)
    other.write("/dir/b", "", tx=t2)
    dom0.end(t1)
    assert other.error(T.XS_TRANSACTION_END, "T", tx=t2) == "EAGAIN"
    assert dom0.ls("/dir") == ["a"]


def test_transaction_end_wants_t_or_f(dom0: Client) -> None:
    tx = dom0.start()
    assert dom0.error(T.XS_TRANSACTION_END, "X", tx=tx) == "EINVAL"
    dom0.end(tx)  # still open after the bad request


def test_rm_inside_a_transaction(dom0: Client) -> None:
    dom0.write("/r/a/b", "1")
    tx = dom0.start()
    dom0.rm("/r", tx=tx)
    assert dom0.read("/r/a/b") == b"1"
    assert dom0.error(T.XS_READ, "/r/a", tx=tx) == "ENOENT"
    dom0.end(tx)
    assert dom0.error(T.XS_READ, "/r") == "ENOENT"
    assert dom0.daemon.store.check() == []


def test_transaction_quota_is_enospc_for_guests(dom0: Client) -> None:
    guest = introduce(dom0, 1)
    for _ in range(11):  # "more than 10 started" is refused
        guest.start()
    assert guest.error(T.XS_TRANSACTION_START, "") == "ENOSPC"
    for _ in range(20):
        dom0.start()


# -- domains ----------------------------------------------------------------------------------------
def test_introduce_calls_the_transport_hook_and_fires_the_watch() -> None:
    calls = []
    daemon = Daemon(on_introduce=lambda d, m, p: calls.append((d, m, p)) or 0)
    dom0 = Client(daemon)
    dom0.watch("@introduceDomain", "i")
    dom0.take_events()
    dom0.call(T.XS_INTRODUCE, "3", "4660", "7")
    assert calls == [(3, 4660, 7)]
    assert dom0.take_events() == [("@introduceDomain", "i")]
    assert dom0.call(T.XS_IS_DOMAIN_INTRODUCED, "3") == b"T\0"
    assert dom0.call(T.XS_IS_DOMAIN_INTRODUCED, "4") == b"F\0"


def test_introduce_hook_error_is_the_reply() -> None:
    daemon = Daemon(on_introduce=lambda d, m, p: -12)
    dom0 = Client(daemon)
    assert dom0.error(T.XS_INTRODUCE, "3", "1", "7") == "ENOMEM"
    assert dom0.error(T.XS_INTRODUCE, "3", "1", "0") == "EINVAL"  # port must be > 0
    # an errno the wire table has no name for goes out as EINVAL (send_error)
    daemon.on_introduce = lambda d, m, p: -19  # ENODEV
    assert dom0.error(T.XS_INTRODUCE, "3", "1", "7") == "EINVAL"


def test_release_deletes_the_guests_nodes_and_fires_release_domain(dom0: Client) -> None:
    guest = introduce(dom0, 1)
    dom0.mkdir("/local/domain/1")
    dom0.set_perms("/local/domain/1", "n1")
    guest.write("data", "x")
    dom0.watch("@releaseDomain", "r")
    dom0.take_events()
    dom0.call(T.XS_RELEASE, "1")
    assert dom0.take_events() == [("@releaseDomain", "r")]
    assert not dom0.daemon.store.exists("/local/domain/1")  # XSA-417: nothing left for a new domain 1
    assert dom0.call(T.XS_IS_DOMAIN_INTRODUCED, "1") == b"F\0"
    assert dom0.error(T.XS_RELEASE, "1") == "ENOENT"
    assert dom0.error(T.XS_RELEASE, "0") == "EINVAL"


def test_fire_release_domain_from_the_transport(dom0: Client) -> None:
    introduce(dom0, 2)
    dom0.watch("@releaseDomain", "r")
    dom0.take_events()
    dom0.daemon.fire_release_domain(2)
    assert dom0.take_events() == [("@releaseDomain", "r")]


def test_set_target_lets_a_device_model_act_for_its_guest(dom0: Client) -> None:
    guest, dm = introduce(dom0, 1), introduce(dom0, 2)
    dom0.write("/g", "")
    dom0.set_perms("/g", "n1")
    assert dm.error(T.XS_READ, "/g") == "EACCES"
    dom0.call(T.XS_SET_TARGET, "2", "1")
    assert dm.read("/g") == b""
    assert guest.read("/g") == b""


def test_outstanding_replies_stop_reading_a_guest() -> None:
    daemon = Daemon(quotas=Quotas(outstanding=2))
    dom0 = Client(daemon)
    guest = introduce(dom0, 1)
    for i in range(2):
        daemon.handle(guest.conn, Message(T.XS_GET_DOMAIN_PATH, i, 0, b"1\0"))
    assert not daemon.can_read(guest.conn)
    guest.conn.take_output()
    assert daemon.can_read(guest.conn)


# -- CONTROL ----------------------------------------------------------------------------------------
def test_control_commands(dom0: Client) -> None:
    assert dom0.call(T.XS_CONTROL, "check") == b"OK\0"
    assert b"quota" in dom0.call(T.XS_CONTROL, "help")
    quota = dom0.call(T.XS_CONTROL, "quota").decode()
    assert "nodes            :     1000 Nodes per domain" in quota
    assert dom0.error(T.XS_CONTROL, "frobnicate") == "EINVAL"


# -- the trace --------------------------------------------------------------------------------------
def test_each_request_is_a_trace_step_with_its_changes() -> None:
    trace = Trace()
    dom0 = Client(Daemon(trace=trace))
    start = len(trace)
    dom0.write("/a", "1")
    dom0.watch("/a", "t")
    steps = trace.steps[start:]
    assert [s.function for s in steps] == ["do_write", "do_watch"]
    assert steps[0].source == "tools/xenstore/xenstored_core.c"
    rows = [(c.table, c.key, c.before, c.after) for c in steps[0].changes]
    assert ("xenstored/tree", "/a", None, "1") in rows
    assert trace.state_at(len(trace) - 1)["xenstored/tree"]["/a"] == "1"
    assert "socket(d0) /a t" in trace.state_at(len(trace) - 1)["xenstored/watches"]
    assert "WRITE '/a 1' -> OK" in steps[0].summary


def test_close_connection_drops_watches_and_keeps_serving_others(dom0: Client) -> None:
    other = Client(dom0.daemon)
    other.watch("/c", "t")
    dom0.daemon.close_connection(other.conn)
    dom0.write("/c", "1")
    assert other.take_events() == [("/c", "t")]  # only the first event, from before the close
    with pytest.raises(XsError):
        dom0.call(T.XS_READ, "/nothing")


def test_introducing_a_known_domain_again_resets_its_connection(dom0: Client) -> None:
    # XS_INTRODUCE of a live domain (kexec, soft reset): its watches and transactions go
    guest = introduce(dom0, 1)
    guest.watch("/w", "t")
    tx = guest.start()
    guest.take_events()
    resets = []
    guest.conn.on_reset = resets.append  # where the ring transport zeroes the indices
    dom0.call(T.XS_INTRODUCE, "1", "4660", "9")
    assert resets == [guest.conn]
    dom0.write("/w", "")
    assert guest.take_events() == []
    assert guest.error(T.XS_READ, "/tool", tx=tx) == "ENOENT"
    assert dom0.daemon.domains[1].port == 9


def test_introduce_fires_for_watchers_of_slash_too_but_not_for_dom0_itself(dom0: Client) -> None:
    # 4.17 fires @introduceDomain non-exact, and "/" is everybody's ancestor
    dom0.watch("/", "root")
    dom0.take_events()
    introduce(dom0, 4)
    assert dom0.take_events() == [("@introduceDomain", "root")]
    dom0.call(T.XS_INTRODUCE, "0", "1", "1")  # the master domain: no event
    assert dom0.take_events() == []


def test_shutdown_fires_release_domain_once_until_resume(dom0: Client) -> None:
    introduce(dom0, 3)
    dom0.watch("@releaseDomain", "r")
    dom0.take_events()
    assert dom0.daemon.fire_domain_shutdown(3)
    assert not dom0.daemon.fire_domain_shutdown(3)
    assert dom0.take_events() == [("@releaseDomain", "r")]
    dom0.call(T.XS_RESUME, "3")
    assert dom0.daemon.fire_domain_shutdown(3)
    assert dom0.take_events() == [("@releaseDomain", "r")]


def test_node_quota_inside_a_transaction_is_checked_at_commit() -> None:
    # 4.17 counts a transaction's new nodes only at TRANSACTION_END, with ">= quota"
    dom0 = Client(Daemon(quotas=Quotas(nodes=4)))
    guest = introduce(dom0, 1)
    dom0.mkdir("/local/domain/1")
    dom0.set_perms("/local/domain/1", "n1")
    guest.write("a", "")  # owns 2 nodes now
    tx = guest.start()
    guest.write("b", "", tx=tx)
    guest.write("c", "", tx=tx)  # 4 inside the transaction: each single write was allowed
    assert guest.error(T.XS_TRANSACTION_END, "T", tx=tx) == "ENOSPC"
    assert dom0.ls("/local/domain/1") == ["a"]
    guest.write("b", "")
    guest.write("c", "")  # outside a transaction 4 is fine


# -- against the real daemons ------------------------------------------------------------------------
LINE = re.compile(r"^\s+(\w+)\s+req_id=(\d+)\s+tx_id=(\d+)\s+len=(\d+)\s+payload=(b'.*')$")


def ring_sections(kind: str) -> dict[str, dict[str, list[Message]]]:
    """ring-decoded.txt: snapshot name -> {"req": [...], "rsp": [...]} messages."""
    sections: dict[str, dict[str, list[Message]]] = {}
    current: dict[str, list[Message]] = {}
    side = "req"
    for line in (CAPTURES / kind / "ring-decoded.txt").read_text().splitlines():
        if line.startswith("== "):
            current = sections.setdefault(line[3:].split(":")[0], {"req": [], "rsp": []})
        elif "req ring bytes" in line:
            side = "req"
        elif "rsp ring bytes" in line:
            side = "rsp"
        elif m := LINE.match(line):
            payload = ast.literal_eval(m.group(5))
            assert len(payload) == int(m.group(4))
            current[side].append(Message(T[f"XS_{m.group(1)}"], int(m.group(2)), int(m.group(3)), payload))
    return sections


@pytest.mark.parametrize("kind", ["cxenstored", "oxenstored"])
def test_the_real_dom0_ring_conversation_replays_byte_for_byte(kind: str) -> None:
    sections = ring_sections(kind)
    daemon = Daemon(name="oxenstored" if kind == "oxenstored" else "xenstored")
    ring = daemon.new_connection(0, "domain0")  # the dom0 kernel's xenbus, through its ring
    tools = Client(daemon)  # xen-init-dom0 and the capture script, through the socket

    def replay(name: str) -> None:
        got: list[Message] = []
        for req in sections[name]["req"]:
            daemon.handle(ring, req)
            got += ring.take_output()
        assert got == sections[name]["rsp"], name

    replay("after-xenstored")  # the kernel's boot-time probe, before anything else wrote
    for key, value in [("/local/domain/0/domid", "0"), ("/local/domain/0/name", "Domain-0"),
                       ("/local/pool/0/name", "Pool-0"), ("/xenlab/sock-a", "hello")]:
        tools.write(key, value)
    for name in ["k1-after-write-a", "k2-after-write-b", "k3-after-read-b", "k4-after-rm-a", "k5-after-ls"]:
        replay(name)


def test_oxenstored_answers_quota_errors_with_equota_a_name_linux_does_not_know() -> None:
    dom0 = Client(Daemon(name="oxenstored"))
    guest = introduce(dom0, 1)
    for i in range(101):  # quota-maxwatch 100 (shipped oxenstored.conf); the lab compares as CXS does
        guest.watch(f"/w{i}", "t")
    assert guest.error(T.XS_WATCH, "/w101", "t") == "EQUOTA"


def test_a_new_domain_reusing_a_domid_does_not_inherit_old_permissions(dom0: Client) -> None:
    # XSA-322: permission entries name a domain as xenstored knew it when the node was written
    old = introduce(dom0, 1)
    dom0.write("/data", "old guest's")
    dom0.set_perms("/data", "n0", "r1")
    assert old.read("/data") == b"old guest's"
    dom0.daemon.fire_release_domain(1)  # domain 1 dies
    new = introduce(dom0, 1)  # a new domain gets the same domid
    assert new.error(T.XS_READ, "/data") == "EACCES"
    assert dom0.get_perms("/data") == ["n0", "r1"]  # the entry is still there, just ignored
    dom0.set_perms("/data", "n0", "r1")  # written again now: it names the new domain 1
    assert new.read("/data") == b"old guest's"


def test_a_trace_handed_over_later_starts_with_the_tree_as_it_stands() -> None:
    daemon = Daemon()
    daemon.write("/a", "1")
    trace = Trace()
    daemon.trace = trace  # as the Machine does after making the daemon
    state = trace.state_at(len(trace) - 1)
    assert state["xenstored/tree"] == {"/": "", "/tool": "", "/tool/xenstored": "", "/a": "1"}
    assert state["xenstored/perms"]["/a"] == "n0"


def test_control_quota_of_a_domain(dom0: Client) -> None:
    guest = introduce(dom0, 1)
    guest.watch("/w", "t")
    # domain_get_quota()'s "%-16s: %8d" rows; memory: the watch's path and token (3 bytes)
    assert dom0.call(T.XS_CONTROL, "quota", "1").decode() == (
        "Domain 1:\nnodes           :        0\nwatches         :        1\n"
        "transactions    :        0\noutstanding     :        0\nmemory          :        3\n\0")
    assert dom0.call(T.XS_CONTROL, "quota", "set", "watches", "5") == b"OK\0"
    assert dom0.daemon.quotas.watches == 5
    assert dom0.error(T.XS_CONTROL, "quota", "9") == "ENOENT"


def test_introduce_fires_before_it_acks(dom0: Client) -> None:
    # introduce_domain() fires @introduceDomain; do_introduce() acks afterwards
    dom0.watch("@introduceDomain", "i")
    dom0.take_events()
    dom0.daemon.handle(dom0.conn, Message(T.XS_INTRODUCE, 9, 0, b"5\x00100\x003\x00"))
    assert dom0.conn.take_output() == [Message(T.XS_WATCH_EVENT, 0, 0, b"@introduceDomain\0i\0"),
                                       Message(T.XS_INTRODUCE, 9, 0, b"OK\0")]

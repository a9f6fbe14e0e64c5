"""The lab xenstored's tree: what each node operation does and which errno a bad one gets.

Every test talks to the daemon with whole wire messages, as a real client would, and
checks the answers C xenstored 4.17 gives.
"""

from __future__ import annotations

import pytest
from xs_client import Client, XsError, introduce

from xenlab.abi.xs_wire import xsd_sockmsg_type as T
from xenlab.xenstored.daemon import Daemon
from xenlab.xenstored.paths import canonicalize, get_parent, is_child, is_valid_nodename
from xenlab.xenstored.perms import parse_perms, perms_text
from xenlab.xenstored.quota import Quotas
from xenlab.xenstored.store import XenstoreError


@pytest.fixture
def dom0() -> Client:
    return Client(Daemon())


# -- the fresh daemon ---------------------------------------------------------------------------
def test_fresh_daemon_has_the_tree_setup_structure_makes(dom0: Client) -> None:
    # C xenstored starts with /, /tool and /tool/xenstored, all owned by dom0 with no access
    # for others; /local/... is written later by the init scripts, not the daemon.
    assert dom0.ls("/") == ["tool"]
    assert dom0.ls("/tool") == ["xenstored"]
    assert dom0.read("/tool/xenstored") == b""
    assert dom0.get_perms("/tool/xenstored") == ["n0"]
    assert dom0.daemon.store.ls(perms=True) == '/tool = ""   (n0)\n/tool/xenstored = ""   (n0)\n'
    assert dom0.daemon.store.check() == []


# -- paths -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/a", "/a-b_c/@x/09", "/local/domain/1/" + "x" * 2048])
def test_valid_node_names(path: str) -> None:
    assert is_valid_nodename(path)


@pytest.mark.parametrize("path", ["", "a", "/a/", "/a//b", "/a b", "/a\x00", "/é", "/a.b",
                                  "/" + "x" * 2048, "/local/domain/1/" + "x" * 2049])
def test_invalid_node_names(path: str) -> None:
    assert not is_valid_nodename(path)


def test_path_max_counts_only_the_part_below_the_domain_home() -> None:
    # 2048 characters are allowed below /local/domain/<id>/, but the same length elsewhere is too long
    assert is_valid_nodename("/local/domain/12345/" + "y" * 2048)
    assert not is_valid_nodename("/local/domain/123456/" + "y" * 2048)


def test_path_helpers() -> None:
    assert canonicalize("name", 3) == "/local/domain/3/name"
    assert canonicalize("/abs", 3) == "/abs"
    assert canonicalize("@releaseDomain", 3) == "@releaseDomain"
    assert get_parent("/a/b") == "/a" and get_parent("/a") == "/"
    assert is_child("/a/b", "/a") and is_child("/a", "/a") and not is_child("/ab", "/a")
    assert is_child("/anything", "/")


@pytest.mark.parametrize("bad", ["a/", "/a//b", "/a b", "/a:b"])
def test_bad_paths_are_einval_on_the_wire(dom0: Client, bad: str) -> None:
    assert dom0.error(T.XS_WRITE, bad, value=b"x") == "EINVAL"
    assert dom0.error(T.XS_READ, bad) == "EINVAL"


def test_relative_paths_are_under_the_connections_home(dom0: Client) -> None:
    dom0.write("name", "Domain-0")  # a socket client is dom0
    assert dom0.read("/local/domain/0/name") == b"Domain-0"
    guest = introduce(dom0, 5)
    dom0.mkdir("/local/domain/5")
    dom0.set_perms("/local/domain/5", "n5")
    guest.write("device/vif", "1")
    assert dom0.read("/local/domain/5/device/vif") == b"1"


# -- READ / WRITE / MKDIR ------------------------------------------------------------------------
def test_write_creates_missing_parents_with_empty_values(dom0: Client) -> None:
    dom0.write("/a/b/c", "v")
    assert dom0.read("/a") == b"" and dom0.read("/a/b") == b""
    assert dom0.read("/a/b/c") == b"v"
    assert dom0.ls("/") == ["tool", "a"]  # children keep creation order


def test_values_are_bytes_without_a_trailing_nul(dom0: Client) -> None:
    for value in [b"", b"with spaces", b"\x00\x01binary\xff", b"x" * 4000]:
        dom0.write("/v", value)
        assert dom0.read("/v") == value


def test_read_missing_is_enoent(dom0: Client) -> None:
    assert dom0.error(T.XS_READ, "/nope") == "ENOENT"


def test_read_with_two_strings_is_einval(dom0: Client) -> None:
    # onearg(): exactly one NUL, at the end
    assert dom0.error(T.XS_READ, "/tool", "/tool") == "EINVAL"
    assert dom0.request(T.XS_READ, b"/tool").payload == b"EINVAL\0"


def test_write_without_nul_is_einval(dom0: Client) -> None:
    assert dom0.request(T.XS_WRITE, b"/x").payload == b"EINVAL\0"


def test_mkdir_leaves_an_existing_node_alone(dom0: Client) -> None:
    dom0.write("/d", "keep")
    dom0.mkdir("/d")
    assert dom0.read("/d") == b"keep"
    dom0.mkdir("/e/f")
    assert dom0.read("/e/f") == b""


# -- RM ---------------------------------------------------------------------------------------------
def test_rm_is_recursive(dom0: Client) -> None:
    dom0.write("/a/b/c", "1")
    dom0.write("/a/d", "2")
    dom0.rm("/a")
    assert dom0.ls("/") == ["tool"]
    assert not dom0.daemon.store.exists("/a/b/c")
    assert dom0.daemon.store.check() == []


def test_rm_of_a_missing_node_is_ok_if_its_parent_exists(dom0: Client) -> None:
    dom0.rm("/tool/nothing")
    assert dom0.error(T.XS_RM, "/no/such") == "ENOENT"


def test_rm_of_root_is_einval(dom0: Client) -> None:
    assert dom0.error(T.XS_RM, "/") == "EINVAL"
    assert dom0.ls("/") == ["tool"]


# -- DIRECTORY / DIRECTORY_PART ------------------------------------------------------------------
def test_directory_too_big_for_one_reply_is_e2big(dom0: Client) -> None:
    # 250 names of 16 bytes + NUL = 4250 bytes > 4096
    for i in range(250):
        dom0.write(f"/big/{i:016d}", "")
    assert dom0.error(T.XS_DIRECTORY, "/big") == "E2BIG"


def test_directory_part_pages_through_a_big_directory(dom0: Client) -> None:
    names = [f"{i:016d}" for i in range(250)]
    for n in names:
        dom0.write(f"/big/{n}", "")
    gen = dom0.daemon.store.generation_of("/big")
    got: list[str] = []
    offset = 0
    pages = 0
    while True:
        reply = dom0.call(T.XS_DIRECTORY_PART, "/big", str(offset))
        pages += 1
        gencnt, rest = reply.split(b"\0", 1)
        assert int(gencnt) == gen  # the same generation on every page: nothing changed meanwhile
        assert len(reply) <= 4096
        if rest.endswith(b"\0\0") or rest == b"\0":  # the extra NUL ends the list
            got += [c.decode() for c in rest[:-1].split(b"\0")[:-1]]
            break
        page = [c.decode() for c in rest.split(b"\0")[:-1]]
        got += page
        offset += len(rest)
    assert got == names
    assert pages == 2


def test_directory_part_past_the_end_is_an_empty_list(dom0: Client) -> None:
    dom0.write("/p/a", "")
    gen = dom0.daemon.store.generation_of("/p")
    assert dom0.call(T.XS_DIRECTORY_PART, "/p", "100") == f"{gen}".encode() + b"\0\0"
    assert dom0.error(T.XS_DIRECTORY_PART, "/p") == "EINVAL"


# -- permissions -----------------------------------------------------------------------------------
def test_perm_strings_round_trip() -> None:
    assert perms_text(parse_perms("n0,r1,w2,b3")) == "n0,r1,w2,b3"
    assert perms_text(parse_perms(["b0x10"])) == "b16"  # strtol base 0
    with pytest.raises(ValueError, match="bad permission"):
        parse_perms("x1")


def test_guest_sees_only_what_permissions_allow(dom0: Client) -> None:
    guest = introduce(dom0, 1)
    dom0.write("/secret", "s")
    assert guest.error(T.XS_READ, "/secret") == "EACCES"  # n0: others get nothing
    dom0.set_perms("/secret", "n0", "r1")
    assert guest.read("/secret") == b"s"
    assert guest.error(T.XS_WRITE, "/secret", value=b"x") == "EACCES"
    # a missing node under an unreadable parent is EACCES, not ENOENT: nothing leaks
    assert guest.error(T.XS_READ, "/tool/missing") == "EACCES"


def test_unlisted_domains_get_the_owners_letter(dom0: Client) -> None:
    guest = introduce(dom0, 2)
    dom0.write("/pub", "p")
    dom0.set_perms("/pub", "r0")
    assert guest.read("/pub") == b"p"


def test_new_nodes_inherit_the_parent_list_and_a_guest_owns_what_it_creates(dom0: Client) -> None:
    guest = introduce(dom0, 3)
    dom0.mkdir("/local/domain/3")
    dom0.set_perms("/local/domain/3", "n0", "b3")
    guest.write("data/x", "1")
    assert dom0.get_perms("/local/domain/3/data") == ["n3", "b3"]
    assert dom0.get_perms("/local/domain/3/data/x") == ["n3", "b3"]
    dom0.write("/local/domain/3/by-dom0", "")
    assert dom0.get_perms("/local/domain/3/by-dom0") == ["n0", "b3"]


def test_only_the_owner_or_dom0_sets_perms_and_only_dom0_changes_the_owner(dom0: Client) -> None:
    a, b = introduce(dom0, 4), introduce(dom0, 5)
    dom0.write("/shared", "")
    dom0.set_perms("/shared", "n4", "b5")
    assert b.error(T.XS_SET_PERMS, "/shared", "n4", "r5") == "EACCES"  # writable, but not the owner
    a.set_perms("/shared", "n4", "r5")
    assert a.error(T.XS_SET_PERMS, "/shared", "n5") == "EPERM"  # giving it away: EPERM on the wire in 4.17
    dom0.set_perms("/shared", "n5")
    assert dom0.get_perms("/shared") == ["n5"]


def test_set_perms_argument_errors(dom0: Client) -> None:
    dom0.write("/p", "")
    assert dom0.error(T.XS_SET_PERMS, "/p") == "EINVAL"
    assert dom0.error(T.XS_SET_PERMS, "/p", "q0") == "EINVAL"
    assert dom0.error(T.XS_SET_PERMS, "/p", "r") == "EINVAL"


# -- quotas ------------------------------------------------------------------------------------------
def guest_with_home(dom0: Client, domid: int) -> Client:
    g = introduce(dom0, domid)
    dom0.mkdir(f"/local/domain/{domid}")
    dom0.set_perms(f"/local/domain/{domid}", f"n{domid}")
    return g


def test_node_quota_is_enospc_and_never_applies_to_dom0() -> None:
    dom0 = Client(Daemon(quotas=Quotas(nodes=5)))
    g = guest_with_home(dom0, 1)  # owns its home: 1 node
    for i in range(4):
        g.write(f"n{i}", "")
    assert g.error(T.XS_WRITE, "n4", value=b"") == "ENOSPC"
    assert g.error(T.XS_WRITE, "deep/er", value=b"") == "ENOSPC"
    assert not dom0.daemon.store.exists("/local/domain/1/deep")  # nothing half-made
    for i in range(10):
        dom0.write(f"/dom0/{i}", "")


def test_a_guest_directory_is_limited_by_the_node_size_quota(dom0: Client) -> None:
    g = guest_with_home(dom0, 1)
    # each child name costs its length + NUL in the parent's record
    n = 0
    while True:
        try:
            g.write(f"{n:07d}", "")
        except XsError as e:
            assert e.args[0] == "ENOSPC"
            break
        n += 1
    assert 24 + 8 + 8 * n < 2048 <= 24 + 8 + 8 * (n + 1)
    assert dom0.daemon.store.check() == []


def test_default_node_quota_is_1000_nodes() -> None:
    dom0 = Client(Daemon())
    g = guest_with_home(dom0, 1)
    # (spread over directories: a guest's directory record is limited to 2048 bytes too)
    for k in range(9):
        for j in range(110):
            g.write(f"d{k}/{j}", "")
    assert dom0.daemon.store.entries_of(1) == 1000
    assert g.error(T.XS_WRITE, "one-more", value=b"") == "ENOSPC"


def test_node_size_quota_counts_the_whole_record(dom0: Client) -> None:
    g = guest_with_home(dom0, 1)
    # record = 24 header + 8 per permission + value + children; >= 2048 is refused
    g.write("v", b"x" * (2048 - 24 - 8 - 1))
    assert g.error(T.XS_WRITE, "v", value=b"x" * (2048 - 24 - 8)) == "ENOSPC"
    assert g.read("v") == b"x" * 2015
    dom0.write("/local/domain/1/v", b"x" * 4000)  # dom0 is never limited


def test_perms_quota_is_five_entries(dom0: Client) -> None:
    g = guest_with_home(dom0, 1)
    g.write("p", "")
    g.set_perms("p", "n1", "r2", "r3", "r4", "r5")
    assert g.error(T.XS_SET_PERMS, "p", "n1", "r2", "r3", "r4", "r5", "r6") == "ENOSPC"
    dom0.set_perms("/local/domain/1/p", "n1", "r2", "r3", "r4", "r5", "r6")


def test_path_max_is_einval_for_everyone(dom0: Client) -> None:
    assert dom0.error(T.XS_WRITE, "/" + "x" * 2048, value=b"") == "EINVAL"
    dom0.write("/local/domain/0/" + "x" * 2048, "")


# -- the Python-facing store API ---------------------------------------------------------------------
def test_store_api_raises_naming_the_errno_and_path(dom0: Client) -> None:
    with pytest.raises(XenstoreError, match="ENOENT.*'/missing'"):
        dom0.daemon.store.read("/missing")
    dom0.write("/a/b", "1")
    assert [p for p, _, _ in dom0.daemon.store.walk()] == ["/tool", "/tool/xenstored", "/a", "/a/b"]


def test_generation_counts_come_from_one_global_counter(dom0: Client) -> None:
    store = dom0.daemon.store
    # setup_structure() wrote /, /tool, /tool/xenstored: generations 0, 1, 2
    assert [store.generation_of(p) for p in ("/", "/tool", "/tool/xenstored")] == [0, 1, 2]
    dom0.write("/a", "1")  # written bottom up: the new node, then its parent with the new child
    assert store.generation_of("/a") == 3 and store.generation_of("/") == 4
    assert dom0.call(T.XS_DIRECTORY_PART, "/", "0") == b"4\0tool\0a\0\0"
    tx = dom0.start()  # a transaction start takes a number too
    dom0.write("/a", "2", tx=tx)
    dom0.end(tx)  # the committed copy is stamped with a fresh number
    assert store.generation_of("/a") == 8


def test_oxenstored_personality_lists_children_sorted_with_its_special_nodes() -> None:
    dom0 = Client(Daemon(name="oxenstored"))
    dom0.write("/tool/xenstored", "")
    dom0.write("/local/domain/0/name", "Domain-0")
    # oxenstored keeps the special watch paths as nodes below / and children in a sorted map
    assert dom0.ls("/") == ["@introduceDomain", "@releaseDomain", "local", "tool"]
    dom0.set_perms("@releaseDomain", "n0", "r5")
    assert dom0.get_perms("/@releaseDomain") == ["n0", "r5"]
    assert dom0.daemon.quotas == Quotas.oxenstored()


def test_python_facing_writes() -> None:
    daemon = Daemon()
    watcher = Client(daemon)
    watcher.watch("/vm", "w")
    watcher.take_events()
    # through the daemon: a dom0 request, so watches fire and the step is traced
    daemon.write("/vm/1/name", "guest")
    daemon.set_perms("/vm/1", "n0", "r1")
    assert watcher.take_events() == [("/vm/1/name", "w"), ("/vm/1", "w")]
    with pytest.raises(XenstoreError, match="EINVAL"):
        daemon.rm("/")
    # straight into the tree: set-up without requests
    daemon.store.write("/setup/a", "1", perms="n0,r2")
    assert daemon.store.get_perms("/setup/a") == ["n0", "r2"]
    assert daemon.store.directory("/setup") == ["a"]
    assert daemon.store.check() == []


def test_set_perms_naming_a_domain_that_does_not_exist(dom0: Client) -> None:
    # XSA-322: with the hypervisor's answer wired in, such entries are ignored, and an owner
    # that does not exist makes SET_PERMS fail with ENOENT
    dom0.daemon.domain_exists = lambda domid: domid in (0, 1)
    guest = introduce(dom0, 2)
    dom0.write("/p", "")
    dom0.set_perms("/p", "n0", "r2", "r7")
    assert dom0.get_perms("/p") == ["n0", "r2", "r7"]  # still listed
    assert dom0.error(T.XS_SET_PERMS, "/p", "n9") == "ENOENT"
    assert guest.read("/p") == b""
    # a domain 7 made later does not inherit the entry that was written before it existed
    dom0.daemon.domain_exists = lambda domid: domid in (0, 1, 7)
    assert introduce(dom0, 7).error(T.XS_READ, "/p") == "EACCES"


def test_a_tree_as_deep_as_path_max_allows_can_be_made_and_removed(dom0: Client) -> None:
    # XSA-418: deleting deep trees exhausted C xenstored's stack; the walks here do not recurse
    deep = "/local/domain/0/" + "/".join(["d"] * 1000)  # 1999 characters below the home
    dom0.write(deep, "bottom")
    assert dom0.read(deep) == b"bottom"
    dom0.rm("/local")
    assert dom0.daemon.store.check() == []
    assert len(dom0.daemon.store.nodes) == 3

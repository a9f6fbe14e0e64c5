"""Real Xen tools against `xenlab serve`: Debian's xenstore-utils (libxenstore) and pyxs.

Every tool is pointed at the lab daemon with XENSTORED_PATH; what they print is the
tools' own formatting of what the daemon answered, so a wrong reply shows up as wrong
text here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_deb
from real_captures import capture_set
from test_serve import running_server

pytestmark = pytest.mark.realtools


@pytest.fixture(scope="module")
def xs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_deb("xenstore-utils")
    sock = tmp_path_factory.mktemp("realxs") / "socket"
    with running_server(sock):
        yield sock


def tool(sock: Path, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run one xenstore-* tool against the lab daemon (never the host's /dev/xen/xenbus)."""
    env = dict(os.environ, XENSTORED_PATH=str(sock))
    out = subprocess.run(list(argv), env=env, capture_output=True, timeout=30)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {out.returncode}: {out.stderr.decode()}")
    return out


def text(out: subprocess.CompletedProcess) -> str:
    return out.stdout.decode()


def test_write_then_read_values_with_spaces_and_empty(xs: Path) -> None:
    tool(xs, "xenstore-write", "/rt/spaces", "a value with  two spaces", "/rt/empty", "")
    assert text(tool(xs, "xenstore-read", "/rt/spaces")) == "a value with  two spaces\n"
    assert text(tool(xs, "xenstore-read", "/rt/empty")) == "\n"


def test_ls_f_lists_full_paths_in_creation_order(xs: Path) -> None:
    tool(xs, "xenstore-write", "/lsf/b", "2", "/lsf/a", "1", "/lsf/a/deep", "x")
    assert text(tool(xs, "xenstore-ls", "-f", "/lsf")) == (
        '/lsf/b = "2"\n'
        '/lsf/a = "1"\n'
        '/lsf/a/deep = "x"\n'
    )


def test_ls_tree_indents_children_under_parents(xs: Path) -> None:
    tool(xs, "xenstore-write", "/tree/vm/name", "hello world", "/tree/other", "")
    assert text(tool(xs, "xenstore-ls", "/tree")) == (
        'vm = ""\n'
        ' name = "hello world"\n'
        'other = ""\n'
    )


def test_ls_p_shows_permissions_set_with_chmod(xs: Path) -> None:
    tool(xs, "xenstore-write", "/perm/node", "v")
    tool(xs, "xenstore-chmod", "/perm/node", "n0", "r1")
    out = text(tool(xs, "xenstore-ls", "-f", "-p", "/perm"))
    assert out == '/perm/node = "v"   (n0,r1)\n'
    # A child created later inherits its parent's permissions.
    tool(xs, "xenstore-write", "/perm/node/child", "c")
    assert "(n0,r1)" in text(tool(xs, "xenstore-ls", "-f", "-p", "/perm/node"))


def test_list_exists_and_rm(xs: Path) -> None:
    tool(xs, "xenstore-write", "/lx/one", "1", "/lx/two", "2")
    assert text(tool(xs, "xenstore-list", "/lx")) == "one\ntwo\n"
    assert tool(xs, "xenstore-exists", "/lx/one").returncode == 0
    tool(xs, "xenstore-rm", "/lx/one")
    assert tool(xs, "xenstore-exists", "/lx/one", check=False).returncode != 0
    assert text(tool(xs, "xenstore-list", "/lx")) == "two\n"


def test_binary_value_round_trips_through_escapes(xs: Path) -> None:
    # xenstore-write turns \x escapes into bytes; xenstore-read -R prints them raw (no newline),
    # without -R the tool escapes them again, octal below 0x20, hex above 0x7e.
    tool(xs, "xenstore-write", "/bin/v", "\\x01\\x02bin\\xff")
    assert tool(xs, "xenstore-read", "-R", "/bin/v").stdout == b"\x01\x02bin\xff"
    assert text(tool(xs, "xenstore-read", "/bin/v")) == "\\001\\002bin\\xff\n"


def test_value_near_the_payload_limit(xs: Path) -> None:
    # WRITE payload = path + NUL + value must fit in 4096 bytes.
    path = "/big/v"
    value = "y" * (4096 - len(path) - 1)
    tool(xs, "xenstore-write", path, value)
    assert text(tool(xs, "xenstore-read", path)) == value + "\n"
    too_big = tool(xs, "xenstore-write", path, value + "y", check=False)
    assert too_big.returncode != 0


@pytest.mark.parametrize("bad", ["/bad//path", "/trailing/", "/sp ace", "/semi;colon"])
def test_invalid_paths_are_refused(xs: Path, bad: str) -> None:
    out = tool(xs, "xenstore-write", bad, "v", check=False)
    assert out.returncode != 0
    assert out.stderr.decode() == f"xenstore-write: could not write path {bad}\n"
    assert tool(xs, "xenstore-exists", bad, check=False).returncode != 0


def test_relative_paths_from_dom0_sockets_live_under_its_home(xs: Path) -> None:
    # get_implicit_path(): a socket connection has no domain, so its home is /local/domain/0.
    tool(xs, "xenstore-write", "relative/x", "v")
    assert text(tool(xs, "xenstore-read", "/local/domain/0/relative/x")) == "v\n"


def test_watch_reports_the_initial_event_then_changes(xs: Path) -> None:
    tool(xs, "xenstore-write", "/w/node", "0")
    env = dict(os.environ, XENSTORED_PATH=str(xs))
    proc = subprocess.Popen(["xenstore-watch", "-n", "3", "/w"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the event every WATCH gets at once
        tool(xs, "xenstore-write", "/w/node", "1")
        second = proc.stdout.readline()
        tool(xs, "xenstore-rm", "/w/node")
        third = proc.stdout.readline()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [first, second, third] == ["/w\n", "/w/node\n", "/w/node\n"]


@pytest.mark.threads  # pyxs's Client reads replies on a thread of its own
def test_pyxs_reads_writes_and_perms(xs: Path) -> None:
    from pyxs import Client

    with Client(unix_socket_path=str(xs)) as c:
        c.write(b"/pyxs/a", b"hello world")
        assert c.read(b"/pyxs/a") == b"hello world"
        c.mkdir(b"/pyxs/dir")
        assert sorted(c.list(b"/pyxs")) == [b"a", b"dir"]
        c.set_perms(b"/pyxs/a", [b"b0", b"r3"])
        assert c.get_perms(b"/pyxs/a") == [b"b0", b"r3"]
        assert c.get_domain_path(0) == b"/local/domain/0"
        c.delete(b"/pyxs/a")
        assert not c.exists(b"/pyxs/a")


@pytest.mark.threads  # pyxs's Client reads replies on a thread of its own
def test_pyxs_error_names_become_errnos(xs: Path) -> None:
    from pyxs import Client, PyXSError

    with Client(unix_socket_path=str(xs)) as c:
        with pytest.raises(PyXSError) as exc:
            c.read(b"/no/such/node")
        assert exc.value.args[0] == 2  # ENOENT
        with pytest.raises(PyXSError) as exc:
            c.delete(b"/")  # pyxs checks path syntax itself; removing the root is the daemon's EINVAL
        assert exc.value.args[0] == 22
        m = c.monitor()
        m.watch(b"/dup", b"tok")
        with pytest.raises(PyXSError) as exc:
            m.watch(b"/dup", b"tok")
        assert exc.value.args[0] == 17  # EEXIST: same path and token twice
        m.unwatch(b"/dup", b"tok")


@pytest.mark.threads  # pyxs's Client reads replies on a thread of its own
def test_pyxs_transaction_conflict_is_eagain(xs: Path) -> None:
    from pyxs import Client

    with Client(unix_socket_path=str(xs)) as a, Client(unix_socket_path=str(xs)) as b:
        a.write(b"/tx/counter", b"0")
        a.transaction()
        seen = a.read(b"/tx/counter")
        a.write(b"/tx/counter", str(int(seen) + 1).encode())
        b.write(b"/tx/counter", b"100")  # someone else changes what the transaction read
        assert a.commit() is False  # EAGAIN: the transaction's write is thrown away
        assert b.read(b"/tx/counter") == b"100"
        a.transaction()
        a.write(b"/tx/counter", b"101")
        assert a.commit() is True
        assert b.read(b"/tx/counter") == b"101"


@pytest.mark.threads  # pyxs's Client reads replies on a thread of its own
def test_pyxs_monitor_sees_watch_events(xs: Path) -> None:
    from pyxs import Client

    with Client(unix_socket_path=str(xs)) as c:
        m = c.monitor()
        m.watch(b"/mon", b"tok")
        c.write(b"/mon/x", b"1")
        # Read the queue directly: pyxs 0.4.1's wait() can spin when an event beats watch().
        got = [m.events.get(timeout=10) for _ in range(2)]
        m.unwatch(b"/mon", b"tok")
    assert got == [(b"/mon", b"tok"), (b"/mon/x", b"tok")]


WRITER = """
import os, subprocess, sys
n, count = sys.argv[1], int(sys.argv[2])
for i in range(count):
    subprocess.run(["xenstore-write", f"/conc/w{n}/k{i}", f"{n}-{i}"], check=True)
"""


@pytest.mark.threads  # the test reaps its eight writer processes from threads
def test_eight_concurrent_writers_lose_nothing(xs: Path) -> None:
    env = dict(os.environ, XENSTORED_PATH=str(xs))
    count = 15
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(n), str(count)], env=env) for n in range(8)]
    errors: list[str] = []

    def reap(p: subprocess.Popen) -> None:
        if p.wait(120) != 0:
            errors.append(f"writer exited {p.returncode}")

    threads = [threading.Thread(target=reap, args=(p,)) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    lines = text(tool(xs, "xenstore-ls", "-f", "/conc")).splitlines()
    values = sorted(line for line in lines if "/k" in line)
    expected = sorted(f'/conc/w{n}/k{i} = "{n}-{i}"' for n in range(8) for i in range(count))
    assert values == expected


CAPTURES = capture_set("cxenstored")


def captured_output(name: str) -> str:
    """A capture's output: the lines between its `$ command` line and its `[rc=N]` line."""
    lines = (CAPTURES / name).read_text().splitlines()
    return "\n".join(lines[1:-1]) + "\n"


def test_a_booted_dom0_lists_exactly_as_the_real_one(tmp_path: Path) -> None:
    require_deb("xenstore-utils")
    sock = tmp_path / "socket"
    with running_server(sock, "--personality", "cxenstored"):
        # What reaches C xenstored while a real dom0 boots (captures/cxenstored/ring-decoded.txt,
        # README "Writing a custom xenstored"): the kernel's relative writes on its ring, then
        # xen-init-dom0's three writes on the socket.
        for key in ("control/feature-poweroff", "control/feature-reboot", "control/feature-suspend"):
            tool(sock, "xenstore-write", key, "1")
        tool(sock, "xenstore-write", "/local/domain/0/domid", "0", "/local/domain/0/name", "Domain-0")
        tool(sock, "xenstore-write", "/local/pool/0/name", "Pool-0")
        assert text(tool(sock, "xenstore-ls", "-f")) == captured_output("17-xenstore-ls-f.txt")
        assert text(tool(sock, "xenstore-ls", "-f", "-p")) == captured_output("18-xenstore-ls-fp.txt")

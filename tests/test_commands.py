"""The lab's command-line tools print what the real ones print (formats from xenstore_client.c, xl, ls)."""

from __future__ import annotations

import pytest

from xenlab.abi.xs_wire import (
    XS_DIRECTORY,
    XS_ERROR,
    XS_GET_PERMS,
    XS_READ,
    XS_RM,
    XS_TRANSACTION_END,
    XS_TRANSACTION_START,
    XS_WRITE,
)
from xenlab.sim.commands import ls_columns
from xenlab.sim.toolstack import (
    libxl__device_disk_dev_number,
    libxl_random_mac,
    libxl_uuid_generate,
    xvd_name,
)
from xenlab.sim.xsclient import Perm, XsClient, XsError, format_perms, perms
from xenlab.sim.xsring import xsring_line
from xenlab.sim.xstools import ToolError, do_ls, sanitise_value, unsanitise_value, xenstore_tool


class TinyStore:
    """A dict-backed stand-in for xenstored: just enough to drive the tools' request sequences."""

    def __init__(self, nodes: dict[str, tuple[bytes, str]]) -> None:
        self.nodes = dict(nodes)
        self.seen: list[int] = []

    def talk(self, mtype: int, tx: int, payload: bytes) -> tuple[int, bytes]:
        self.seen.append(mtype)
        if mtype == XS_TRANSACTION_START:
            return mtype, b"7\0"  # (no isolation: enough to see the tools bracket their requests)
        if mtype == XS_TRANSACTION_END:
            return mtype, b"OK\0"
        path = payload.split(b"\0")[0].decode()
        if mtype == XS_WRITE:
            self.nodes[path] = (payload[len(path) + 1:], "n0")
            return mtype, b"OK\0"
        if path not in self.nodes:
            return XS_ERROR, b"ENOENT\0"
        if mtype == XS_READ:
            return mtype, self.nodes[path][0]
        if mtype == XS_GET_PERMS:
            return mtype, b"".join(p.encode() + b"\0" for p in self.nodes[path][1].split(","))
        if mtype == XS_RM:
            del self.nodes[path]
            return mtype, b"OK\0"
        if mtype == XS_DIRECTORY:
            pre = path.rstrip("/") + "/"
            kids = sorted({p[len(pre):].split("/")[0] for p in self.nodes if p.startswith(pre) and p != pre})
            return mtype, b"".join(k.encode() + b"\0" for k in kids)
        raise AssertionError(mtype)


TREE = {
    "/": (b"", "n0"),
    "/local": (b"", "n0"),
    "/local/domain": (b"", "n0"),
    "/local/domain/1": (b"", "n0,r1"),
    "/local/domain/1/name": (b"xenlab-domu", "n0,r1"),
    "/local/domain/1/cmd": (b'a "b"\n\\', "n1"),
}


def client() -> XsClient:
    return XsClient(TinyStore(TREE).talk)


def test_xenstore_ls_flat_prints_whole_paths_and_quoted_values() -> None:
    out = xenstore_tool(client(), ["xenstore-ls", "-f"])
    assert out.splitlines() == [
        '/local = ""',
        '/local/domain = ""',
        '/local/domain/1 = ""',
        '/local/domain/1/cmd = "a "b"\\n\\\\"',
        '/local/domain/1/name = "xenlab-domu"',
    ]


def test_xenstore_ls_fp_puts_three_spaces_before_the_permissions() -> None:
    """With -f the padding width is 0, so -p adds ' ' then '  (' as the real tool does: `= "1"   (n0)`."""
    out = xenstore_tool(client(), ["xenstore-ls", "-f", "-p"])
    assert '/local/domain/1 = ""   (n0,r1)' in out.splitlines()
    assert '/local/domain/1/name = "xenlab-domu"   (n0,r1)' in out.splitlines()


def test_xenstore_ls_without_f_indents_and_pads_permissions_with_dots() -> None:
    lines = do_ls(client(), "/local/domain", flat=False, show_perms=True)
    assert lines[0].startswith('1 = "" . . . ') and lines[0].endswith("  (n0,r1)")
    assert lines[2].startswith(' name = "xenlab-domu"')
    assert len(lines[2].split("  (")[0]) == 60  # padded to desired_width 60


def test_xenstore_ls_cuts_long_values_at_80_columns_without_f() -> None:
    store = TinyStore({"/": (b"", "n0"), "/k": (b"x" * 200, "n0")})
    (line,) = do_ls(XsClient(store.talk), "/", flat=False, show_perms=False)
    # printf(" = \"%.*s\\...\"", max_width - TAG_LEN - linewid, ...): 1 + 4 + 71 + 5 columns
    assert line.endswith('\\..."') and line.count("x") == 71 and len(line) == 81


def test_sanitise_value_escapes_like_the_real_tool() -> None:
    assert sanitise_value(b"tab\there") == "tab\\there"
    assert sanitise_value(b"\x01\x7f\\") == "\\001\\x7f\\\\"
    assert unsanitise_value("a\\tb\\x41\\101\\\\") == b"a\tbAA\\"


def test_xenstore_read_of_a_missing_path_fails_with_the_real_message() -> None:
    with pytest.raises(ToolError) as e:
        xenstore_tool(client(), ["xenstore-read", "/local/domain/0/vm"])
    assert e.value.text == "xenstore-read: couldn't read path /local/domain/0/vm"


def test_xenstore_write_then_read_and_list_with_prefix() -> None:
    xs = client()
    xenstore_tool(xs, ["xenstore-write", "/local/domain/1/x", "1"])
    assert xenstore_tool(xs, ["xenstore-read", "/local/domain/1/x"]) == "1"
    assert "/local/domain/1/x" in xenstore_tool(xs, ["xenstore-list", "-p", "/local/domain/1"]).splitlines()


def test_rm_and_list_run_in_a_transaction_single_read_and_write_do_not() -> None:
    store = TinyStore(TREE)
    xs = XsClient(store.talk)
    xenstore_tool(xs, ["xenstore-read", "/local/domain/1/name"])
    xenstore_tool(xs, ["xenstore-rm", "/local/domain/1/cmd"])
    assert store.seen == [XS_READ, XS_TRANSACTION_START, XS_RM, XS_TRANSACTION_END]


def test_errors_from_xenstored_become_xserror_with_the_name() -> None:
    with pytest.raises(XsError) as e:
        client().read("/nope")
    assert e.value.name == "ENOENT"


def test_permissions_format_as_xenstore_ls_p_prints_them() -> None:
    assert format_perms(perms("n0", "r1")) == "(n0,r1)"
    assert Perm.parse("b3") == Perm("b", 3)
    with pytest.raises(ValueError, match="n/r/w/b"):
        Perm.parse("x1")


def test_disk_names_map_to_the_device_numbers_libxl_uses() -> None:
    assert libxl__device_disk_dev_number("xvda") == 51712
    assert libxl__device_disk_dev_number("xvdb") == 51728
    assert libxl__device_disk_dev_number("xvdq") == (1 << 28) | (16 << 8)
    assert [xvd_name(i) for i in (0, 1, 25, 26)] == ["xvda", "xvdb", "xvdz", "xvdaa"]


def test_uuid_and_mac_follow_the_seed() -> None:
    import random

    a, b = random.Random(7), random.Random(7)
    assert libxl_uuid_generate(a) == libxl_uuid_generate(b)
    u = libxl_uuid_generate(random.Random(1))
    assert u[14] == "4" and u[19] in "89ab"
    assert libxl_random_mac(random.Random(3)).startswith("00:16:3e:")


def test_ls_columns_like_gnu_ls() -> None:
    assert ls_columns(["vbd", "vif"]) == "vbd  vif"
    assert ls_columns([f"name{i:02d}" for i in range(20)]).count("\n") == 1


def test_xsring_line_format() -> None:
    class Intf:
        req_cons, req_prod, rsp_cons, rsp_prod = 630, 630, 645, 645
        server_features, connection, error = 1, 0, 0

    assert xsring_line("dom0", Intf()) == ("RING dom0: req_cons=630 req_prod=630 rsp_cons=645 rsp_prod=645 "
                                           "server_features=0x1 connection=0 error=0")


def test_pipes_are_refused_with_a_clear_message() -> None:
    from types import SimpleNamespace

    from xenlab.sim.commands import run_command

    res = run_command(SimpleNamespace(), 0, "cat /proc/interrupts | grep xenbus")  # type: ignore[arg-type]
    assert res.rc == 2 and "one command at a time" in res.text

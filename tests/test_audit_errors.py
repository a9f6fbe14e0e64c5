"""Bad input anywhere a learner can reach gives one clear line, the real tool's where there is one.

Where a real program exists (the xenstore-* clients, lsevtchn, cat, ls) the lab prints what
it prints; where the lab is the only program (Machine(...), `xenlab exec`, `xenlab serve`)
the message names what was wrong. Never a Python traceback at the command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from xenlab.abi.errno import EIO
from xenlab.abi.xs_wire import XENSTORE_PAYLOAD_MAX, XENSTORE_RING_SIZE
from xenlab.cli import main
from xenlab.linux.pvops import xenbus_comms as comms
from xenlab.sim.machine import Machine, MachineError
from xenlab.sim.scenarios import build


@pytest.fixture(scope="module")
def m() -> Iterator[Machine]:
    machine = build("domU")
    yield machine
    machine.shutdown()


def one_line(text: str) -> bool:
    return "\n" not in text.strip() and "Traceback" not in text


@pytest.mark.parametrize(("kw", "needle"), [
    ({"flavour": "bogus"}, "unknown kernel flavour 'bogus'"),
    ({"dom0_vcpus": -1}, "vcpus must be 1..32"),
    ({"dom0_vcpus": 0}, "not 0"),
    ({"faults": ["nope"]}, "unknown fault 'nope'"),
    ({"xenstored": "xenstored2"}, "unknown xenstored 'xenstored2'"),
    ({"dom0_mem_mb": -5}, "dom0_mem_mb must be at least 1"),
])
def test_a_bad_machine_is_refused_naming_the_value(kw: dict, needle: str) -> None:
    with pytest.raises((ValueError, MachineError), match=needle):
        Machine(**kw)


@pytest.mark.parametrize(("kw", "needle"), [
    ({"disks": -1}, "disks must be 0 or more, not -1"),
    ({"vifs": -2}, "vifs must be 0 or more, not -2"),
    ({"disks": ["sda"]}, "unsupported disk name 'sda'"),
    ({"name": ""}, "Domain name must be specified"),
    ({"vcpus": 0}, "vcpus must be 1..32"),
    ({"memory_mb": 0}, "memory_mb must be at least 1"),
])
def test_a_bad_guest_is_refused_naming_the_value(m: Machine, kw: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        m.create_domU(**kw)


@pytest.mark.parametrize(("cmd", "expected", "rc"), [
    ("frobnicate", "xenlab: unknown command 'frobnicate'; valid commands: cat,", 127),
    ("xenstore-read /bad//path", "xenstore-read: couldn't read path /bad//path", 1),
    ("xenstore-read /x", "xenstore-read: couldn't read path /x", 1),
    ("xenstore-list /nope", "xenstore-list: could not list path /nope", 1),
    ("xenstore-ls /nope", "xenstore-ls: xs_directory (/nope): No such file or directory", 1),
    ("cat /proc/nonexistent", "cat: /proc/nonexistent: No such file or directory", 1),
    ("cat /sys/bus", "cat: /sys/bus: Is a directory", 1),
    ("ls /sys/nope", "ls: cannot access '/sys/nope': No such file or directory", 2),
    ("ls -z /proc/xen", "ls: invalid option -- 'z'", 2),
    ('xenstore-read "unterminated', "sh: syntax error: No closing quotation", 2),
    ("cat /proc/interrupts | head", "xenlab: the lab runs one command at a time, without '|'", 2),
])
def test_a_bad_command_gets_the_real_tools_message(m: Machine, cmd: str, expected: str, rc: int) -> None:
    out = m.dom0.run(cmd)
    assert out.splitlines()[0].startswith(expected)
    assert m.dom0.last_rc == rc
    assert "Traceback" not in out


@pytest.mark.parametrize("how", ["socket", "kernel", "guest"])
def test_a_value_over_the_payload_limit_is_refused_by_the_client(m: Machine, how: str) -> None:
    """xs_talkv refuses a message over XENSTORE_PAYLOAD_MAX (E2BIG) before it sends anything."""
    value = "x" * (XENSTORE_PAYLOAD_MAX + 1)
    dom = m.domain(1) if how == "guest" else m.dom0
    prefix = "XENSTORED_PATH=/dev/xen/xenbus " if how == "kernel" else ""
    assert dom.run(f"{prefix}xenstore-write /local/domain/{dom.domid}/data/big {value}") == (
        f"xenstore-write: could not write path /local/domain/{dom.domid}/data/big")
    assert dom.last_rc == 1
    dom.run(f"{prefix}xenstore-write /local/domain/{dom.domid}/data/ok {'y' * 100}")
    assert dom.last_rc == 0  # the connection is still good


def test_lsevtchn_reads_its_domid_as_strtol(m: Machine) -> None:
    assert m.dom0.run("lsevtchn x") == m.dom0.run("lsevtchn 0")  # strtol("x") == 0
    assert m.dom0.run("lsevtchn 1abc") == m.dom0.run("lsevtchn 1")
    assert m.dom0.run("lsevtchn 99") == "" and m.dom0.last_rc == 0  # the first EVTCHNOP_status fails


REAL_USAGE_CASES = ["xenstore-read", "xenstore-write /a", "xenstore-rm", "xenstore-list", "xenstore-exists",
                    "xenstore-read -t /x", "xenstore-ls -t", "xenstore-read -z", "xenstore-exists -p /x",
                    "xenstore-read -f /x", "xenstore-read -h"]


@pytest.mark.skipif(shutil.which("xenstore-read") is None, reason="Debian xenstore-utils not installed")
@pytest.mark.parametrize("cmd", REAL_USAGE_CASES)
def test_usage_errors_match_the_installed_real_tools(m: Machine, cmd: str) -> None:
    """The real client fails these before it connects, so it runs here without any xenstored."""
    env = dict(os.environ, XENSTORED_PATH="/nonexistent/socket")
    real = subprocess.run(cmd.split(), capture_output=True, text=True, env=env, timeout=10)
    assert real.stdout == ""
    assert m.dom0.run(cmd) == real.stderr.rstrip("\n")
    assert m.dom0.last_rc == real.returncode


def test_comms_with_impossible_indices_return_eio_and_reset_them() -> None:
    """xb_write/xb_read: more than a ring's worth between cons and prod is corruption: -EIO, both 0."""
    machine = build("dom0-early")
    try:
        kernel = machine.dom0.kernel
        intf = kernel.xb.xen_store_interface
        intf.req_cons, intf.req_prod = 0, XENSTORE_RING_SIZE + 1
        assert comms.xb_write(kernel, b"abc") == -EIO
        assert (intf.req_cons, intf.req_prod) == (0, 0)
        intf.rsp_cons, intf.rsp_prod = XENSTORE_RING_SIZE + 1, 0
        assert comms.xb_read(kernel, 4) == -EIO
        assert (intf.rsp_cons, intf.rsp_prod) == (0, 0)
    finally:
        machine.shutdown()


@pytest.mark.parametrize(("argv", "needle", "rc"), [
    (["exec", "--scenario", "domU", "--disks", "-1", "ls /proc/xen"], "disks must be 0 or more, not -1", 1),
    (["exec", "--dom0-vcpus", "-1", "ls /proc/xen"], "vcpus must be 1..32", 1),
    (["exec", "--domain", "5", "ls /proc/xen"], "no domain 5 in scenario dom0", 2),
    (["serve", "--socket", "/nonexistent/dir/sock"], "/nonexistent/dir/sock", 1),
    (["lab", "--copy-only", "/proc/nope"], "cannot copy the notebooks into /proc/nope", 1),
    (["serve", "--socket", "/tmp/never.sock", "--max-output", "-1"], "--max-output must be at least 1", 2),
])
def test_the_cli_says_what_was_wrong_in_one_line(capsys: pytest.CaptureFixture[str], argv: list[str],
                                                 needle: str, rc: int) -> None:
    assert main(argv) == rc
    err = capsys.readouterr().err
    assert needle in err and one_line(err)


def test_the_cli_turns_a_lab_bug_into_one_line(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from xenlab.sim import execcmd

    def broken(args: object) -> int:
        raise ZeroDivisionError("division by zero")

    monkeypatch.delenv("XENLAB_DEBUG", raising=False)
    monkeypatch.setattr(execcmd, "run", broken)
    assert main(["exec", "ls /proc/xen"]) == 70
    err = capsys.readouterr().err
    assert err.startswith("xenlab exec: internal error: ZeroDivisionError") and one_line(err)


def test_run_wants_a_command_line_string(m: Machine) -> None:
    with pytest.raises(TypeError, match="takes one command line as a string"):
        m.dom0.run(["ls", "/proc/xen"])  # type: ignore[arg-type]

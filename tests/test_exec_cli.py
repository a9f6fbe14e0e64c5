"""`xenlab exec` and `xenlab trace` from the command line."""

from __future__ import annotations

import pytest

from xenlab.cli import main


def test_exec_prints_a_transcript(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["exec", "--scenario", "dom0", "--", "cat /proc/xen/xsd_port", "xenstore-read name"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert out[0] == "$ cat /proc/xen/xsd_port"
    assert out[1].isdigit()
    assert out[2:] == ["$ xenstore-read name", "Domain-0"]


def test_exec_unknown_scenario_fault_or_command_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, needle in ((["exec", "--scenario", "dom1"], "valid scenarios: dom0-early, dom0, domU"),
                         (["exec", "--fault", "nope"], "valid faults:"),
                         (["exec", "--", "rm -rf /"], "valid commands: cat,")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1


def test_exec_list_shows_scenarios_faults_and_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["exec", "--list"]) == 0
    out = capsys.readouterr().out
    for word in ("scenarios:", "domU", "faults:", "ring-not-quiescent", "commands:", "xenstore-ls", "xsring"):
        assert word in out


def test_trace_prints_the_boot_steps(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "--scenario", "dom0-early"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("#0 [")
    assert "xenbus" in out


def test_exec_boots_an_hvm_guest(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["exec", "--scenario", "domU", "--guest-type", "hvm", "--domain", "0", "--",
               "xenstore-read /local/domain/1/store/ring-ref", "xenstore-read /libxl/1/type"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert out[1] == str(0xFF000 - 8 + 4)  # special_pfn(SPECIALPAGE_XENSTORE), not a machine frame
    assert out[3] == "hvm"
    with pytest.raises(SystemExit, match="2"):  # argparse: not one of pv, hvm
        main(["exec", "--guest-type", "pvh"])

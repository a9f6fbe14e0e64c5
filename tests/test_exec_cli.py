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


def test_exec_fifo_events_0_boots_the_2_level_abi(capsys: pytest.CaptureFixture[str]) -> None:
    """--fifo-events 0 is xen.fifo_events=0: no "Using FIFO-based ABI", a debug VIRQ per cpu."""
    assert main(["exec", "--fifo-events", "0", "--", "cat /proc/interrupts", "dmesg"]) == 0
    out = capsys.readouterr().out
    assert "debug0" in out and "Using FIFO-based ABI" not in out and "xen:events: Using 2-level ABI" in out
    assert main(["exec", "--", "cat /proc/interrupts", "dmesg"]) == 0
    out = capsys.readouterr().out
    assert "debug0" not in out and "xen:events: Using FIFO-based ABI" in out


def test_exec_refuses_fifo_events_for_2_6_18(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["exec", "--flavour", "2.6.18", "--fifo-events", "1"]) == 1
    assert "no FIFO event channels" in capsys.readouterr().err


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

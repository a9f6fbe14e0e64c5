"""Xen's own xenstore test program, ``test-xenstore`` (tools/tests/xenstore/test-xenstore.c,
Debian ``xen-utils-4.17``), against `xenlab serve` in both personalities.

It connects through libxenstore (``XENSTORED_PATH``), works below
``/local/domain/0/xenstore-test/<pid>`` and prints one line per test: the time taken, or
``failed (ret = <errno>, stage <stage>)``; it exits 3 on the first failure. ``-l`` lists
the tests, ``-r <seconds>`` runs randomly chosen ones until the time is up.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_deb
from test_serve import running_server

pytestmark = pytest.mark.realtools

TEST_XENSTORE = "/usr/lib/xen-4.17/bin/test-xenstore"
PERSONALITIES = ["cxenstored", "oxenstored"]
RANDOM_SECONDS = 30


def program(sock: Path, *argv: str) -> subprocess.Popen[str]:
    """test-xenstore with *argv*, talking to the lab daemon on *sock*."""
    env = dict(os.environ, XENSTORED_PATH=str(sock))
    return subprocess.Popen([TEST_XENSTORE, *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """One `xenlab serve` per personality."""
    require_deb("xen-utils-4.17")
    socks = {p: tmp_path_factory.mktemp(f"testxs-{p}") / "socket" for p in PERSONALITIES}
    with running_server(socks["cxenstored"]), \
            running_server(socks["oxenstored"], "--personality", "oxenstored"):
        yield socks


def listed_tests() -> list[str]:
    """The test names ``test-xenstore -l`` lists (``read 1``, ..., ``ta err``)."""
    require_deb("xen-utils-4.17")
    out = subprocess.run([TEST_XENSTORE, "-l"], capture_output=True, text=True, timeout=30, check=True)
    return [line.split(":")[0].rstrip() for line in out.stdout.splitlines() if ":" in line]


@pytest.mark.parametrize("personality", PERSONALITIES)
def test_every_test_passes(servers: dict[str, Path], personality: str) -> None:
    # "ta err" failed before the transactions read their own copy (C) or snapshot (oxenstored)
    proc = program(servers[personality])
    out, _ = proc.communicate(timeout=60)
    names = listed_tests()
    assert len(names) == 12
    results = {line.split(":")[0].rstrip(): line.split(":", 1)[1].strip()
               for line in out.splitlines() if ":" in line}
    assert [n for n in names if not results.get(n, "").endswith(" ns")] == [], out
    assert proc.returncode == 0, out


def test_random_mode_runs_30_seconds_on_both(servers: dict[str, Path]) -> None:
    # both personalities at once, so the two 30 s runs take 30 s of wall time
    procs = {p: program(servers[p], "-r", str(RANDOM_SECONDS)) for p in PERSONALITIES}
    outs = {p: proc.communicate(timeout=RANDOM_SECONDS + 60)[0] for p, proc in procs.items()}
    for p, proc in procs.items():
        assert "failed" not in outs[p], f"{p}: {outs[p]}"
        assert proc.returncode == 0, f"{p}: exit {proc.returncode}: {outs[p]}"

"""Shared test helpers: no OS threads (as in Pyodide); every test fails on an illegal xenbus state
switch; skipping that names a missing Debian package."""

from __future__ import annotations

import shutil
import subprocess
import threading
import warnings
from collections.abc import Iterator

import pytest

from xenlab.linux.xenbus_transitions import IllegalXenbusSwitch


@pytest.fixture(autouse=True)
def no_os_threads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test runs with threading.Thread unusable, as in Pyodide (JupyterLite).

    The simulated machine must never need an OS thread. A test whose own infrastructure
    needs one (a client hammering the Unix-socket server from threads) says so with
    ``@pytest.mark.threads``.
    """
    if request.node.get_closest_marker("threads") is None:
        def start(self: threading.Thread) -> None:
            raise RuntimeError("can't start new thread")

        monkeypatch.setattr(threading.Thread, "start", start)
    yield


def deb_installed(pkg: str) -> bool:
    """True if the Debian package *pkg* is installed."""
    if not shutil.which("dpkg-query"):
        return False
    out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
    return "install ok installed" in out.stdout


def require_deb(pkg: str) -> None:
    """Skip the calling test unless Debian package *pkg* is installed (make test installs it as root)."""
    if not deb_installed(pkg):
        pytest.skip(f"needs the Debian package {pkg} (make test installs it when run as root)")


@pytest.fixture(autouse=True)
def no_illegal_xenbus_switch() -> Iterator[None]:
    """Fail any test in which the lab made a xenbus state switch its kernel's table has no row for
    (xenlab.linux.xenbus_transitions). A test that makes one on purpose catches it with
    ``pytest.warns(IllegalXenbusSwitch)``, which keeps it from reaching this recorder."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IllegalXenbusSwitch)
        yield
    illegal = [str(w.message) for w in caught if issubclass(w.category, IllegalXenbusSwitch)]
    assert not illegal, "illegal xenbus state switches:\n" + "\n".join(illegal)

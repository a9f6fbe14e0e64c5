"""Shared test helpers: skipping with a message naming a missing Debian package."""

from __future__ import annotations

import shutil
import subprocess

import pytest


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

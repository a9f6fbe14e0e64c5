"""Where the tests find the captures of a real Xen 4.17 machine (tests/captures/, see its README.md).

The captures are data recorded on a real machine with `../shared/realxen/run`, kept in the
repository beside the tests, never generated. They are read by tests only, never by xenlab.
A missing capture file is a failure, not a skip.
"""

from __future__ import annotations

from pathlib import Path

CAPTURES: Path = Path(__file__).resolve().parent / "captures"
"""The folder holding one sub-folder per capture set (oxenstored/, cxenstored/, domU/, ...)."""


def capture_set(name: str) -> Path:
    """The folder of capture set *name*; FileNotFoundError if the repository lacks it."""
    path = CAPTURES / name
    if not path.is_dir():
        raise FileNotFoundError(f"capture set {name!r} missing: {path} (see tests/captures/README.md)")
    return path

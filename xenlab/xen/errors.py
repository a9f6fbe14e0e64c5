"""XenError: the Python-facing form of a hypercall's -errno (notebooks and tools raise it)."""

from __future__ import annotations

from xenlab.abi.errno import errno_name


class XenError(OSError):
    """A hypercall failed: carries the positive errno, its name and what was attempted."""

    def __init__(self, rc: int, what: str) -> None:
        self.rc = rc
        self.name = errno_name(rc)
        super().__init__(abs(rc), f"{what}: -{self.name}")


def xen_check(rc: int, what: str) -> int:
    """Return *rc* if it is not an error (>= 0), else raise XenError naming the errno and *what*."""
    if rc < 0:
        raise XenError(rc, what)
    return rc

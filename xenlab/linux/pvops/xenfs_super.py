"""drivers/xen/xenfs/super.c, Linux 6.1: `mount -t xenfs xenfs /proc/xen` (xenfs_fill_super).

Linux 6.1 leaves /proc/xen an empty mount point (xenbus_init) until user space mounts
xenfs: ``xenbus`` 0600, ``capabilities`` 0444, ``privcmd`` 0600, and in the initial domain
also ``xsd_kva`` 0600, ``xsd_port`` 0600, ``xensyms`` 0400. Entries go into
``kernel.proc`` ("xen/<name>" -> ProcEntry(mode, read)).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from xenlab.linux.pvops.xenfs_xenstored import xsd_kva_open, xsd_port_open

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel

SRC = "drivers/xen/xenfs/super.c"


def capabilities_read(kernel: PvopsKernel) -> str:
    """capabilities_read: "control_d" in the initial domain, else nothing."""
    return "control_d\n" if kernel.xen_initial_domain() else ""


def xenfs_fill_super(kernel: PvopsKernel) -> int:
    """xenfs_fill_super: the files of xenfs (dom0's extra ones in the initial domain) under /proc/xen."""
    kernel.proc_dirs.add("xen")
    files: list[tuple[str, int, Callable[[], str]]] = [
        ("xenbus", 0o600, lambda: ""),
        ("capabilities", 0o444, lambda: capabilities_read(kernel)),
        ("privcmd", 0o600, lambda: ""),
    ]
    if kernel.xen_initial_domain():
        files += [
            ("xsd_kva", 0o600, lambda: xsd_kva_open(kernel)),
            ("xsd_port", 0o600, lambda: xsd_port_open(kernel)),
            ("xensyms", 0o400, lambda: ""),
        ]
    for name, mode, read in files:
        kernel.proc_create(f"xen/{name}", mode, read)
    kernel.record("xenfs_fill_super", "xenfs mounted on /proc/xen: " + ", ".join(
        f"{n} {m:04o}" for n, m, _ in files), SRC,
        changes=[(kernel.table("proc"), f"xen/{n}", None, f"{m:04o}") for n, m, _ in files])
    return 0


def proc_xen_entries(kernel: PvopsKernel) -> list[tuple[str, int]]:
    """(name, mode) of each /proc/xen entry, sorted as `ls` lists them."""
    return sorted((path[4:], e.mode) for path, e in kernel.proc.items() if path.startswith("xen/"))

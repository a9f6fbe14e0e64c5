"""drivers/xen/core/xen_proc.c, XenLinux 2.6.18: /proc/xen and its entries.

2.6.18 has no xenfs: its /proc/xen entries are made by the kernel itself with
``create_xen_proc_entry``, which makes /proc/xen on first use -- xenbus_probe_init adds
``xsd_kva`` (0600) and ``xsd_port`` (0400) in dom0, xenbus_dev_init adds ``xenbus``
(0400). Entries go into ``kernel.proc`` ("xen/<name>" -> ProcEntry(mode, read)).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel

SRC = "drivers/xen/core/xen_proc.c"


def create_xen_proc_entry(kernel: XenLinuxKernel, name: str, mode: int, read: Callable[[], str]) -> None:
    """create_xen_proc_entry: /proc/xen/<name> with *mode* (proc_mkdir("xen") the first time)."""
    kernel.proc_dirs.add("xen")
    kernel.proc_create(f"xen/{name}", mode, read)
    kernel.record("create_xen_proc_entry", f"/proc/xen/{name} mode {mode:04o}", SRC,
                  changes=[(kernel.table("proc"), f"xen/{name}", None, f"{mode:04o}")])


def remove_xen_proc_entry(kernel: XenLinuxKernel, name: str) -> None:
    """remove_xen_proc_entry: /proc/xen/<name> goes away."""
    entry = kernel.proc.pop(f"xen/{name}", None)
    if entry is not None:
        kernel.record("remove_xen_proc_entry", f"/proc/xen/{name}", SRC,
                      changes=[(kernel.table("proc"), f"xen/{name}", f"{entry.mode:04o}", None)])


def proc_xen_entries(kernel: XenLinuxKernel) -> list[tuple[str, int]]:
    """(name, mode) of each /proc/xen entry, sorted as `ls` lists them (the lab's helper)."""
    return sorted((path[4:], e.mode) for path, e in kernel.proc.items() if path.startswith("xen/"))

"""fs/proc/generic.c, Linux 6.1: proc_create_mount_point, an empty /proc directory to mount on."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel


def proc_create_mount_point(kernel: PvopsKernel, name: str) -> None:
    """proc_create_mount_point: an empty /proc/<name> for a filesystem to be mounted on."""
    kernel.proc_dirs.add(name)
    kernel.record("proc_create_mount_point", f"/proc/{name} (empty until mounted)", "fs/proc/generic.c")

"""/proc/xen as each kernel flavour makes it.

2.6.18 (XenLinux) creates its entries itself with create_xen_proc_entry
(drivers/xen/core/xen_proc.c makes /proc/xen on first use): xenbus_probe_init adds
``xsd_kva`` (0600) and ``xsd_port`` (0400) in dom0, xenbus_dev_init adds ``xenbus``
(0400). Modern Linux leaves /proc/xen an empty mount point (xenbus_init) until user
space mounts xenfs (drivers/xen/xenfs/super.c): ``xenbus`` 0600, ``capabilities`` 0444,
``privcmd`` 0600, and in dom0 also ``xsd_kva`` 0600, ``xsd_port`` 0600, ``xensyms`` 0400.

Entries go into ``kernel.proc`` ("xen/<name>" -> ProcEntry(mode, read)); empty
directories that exist (the mount point) are listed in ``kernel.proc_dirs``.
"""

from __future__ import annotations

from typing import Any

from xenlab.abi.start_info import SIF_INITDOMAIN
from xenlab.linux.xenbus.globals import xb_globals

SRC_2618 = "drivers/xen/xenbus/xenbus_probe.c"
SRC_XENFS = "drivers/xen/xenfs/super.c"
PAGE_OFFSET_X86_64 = 0xFFFF880000000000  # the direct map of a 2.6.18 x86_64 kernel


def _proc_dirs(kernel: Any) -> set[str]:
    dirs = getattr(kernel, "proc_dirs", None)
    if dirs is None:
        dirs = set()
        kernel.proc_dirs = dirs
    return dirs


def proc_create_mount_point(kernel: Any, name: str) -> None:
    """proc_create_mount_point: an empty /proc/<name> for a filesystem to be mounted on (fs/proc)."""
    _proc_dirs(kernel).add(name)
    kernel.record("proc_create_mount_point", f"/proc/{name} (empty until mounted)", "fs/proc/generic.c")


def create_xen_proc_entry(kernel: Any, name: str, mode: int, read: Any) -> None:
    """create_xen_proc_entry: /proc/xen/<name> with *mode* (drivers/xen/core/xen_proc.c)."""
    _proc_dirs(kernel).add("xen")
    kernel.proc_create(f"xen/{name}", mode, read)
    kernel.record("create_xen_proc_entry", f"/proc/xen/{name} mode {mode:04o}", "drivers/xen/core/xen_proc.c",
                  changes=[(f"{kernel.name}/proc", f"xen/{name}", None, f"{mode:04o}")])


def _is_initial(kernel: Any) -> bool:
    d = kernel.hv.domains[kernel.domid]
    return bool(d.start_info.flags & SIF_INITDOMAIN) or bool(getattr(d, "initdomain", False))


def xsd_kva_text(kernel: Any) -> str:
    """What reading xsd_kva gives: "0x%p" of xen_store_interface (a stable stand-in address).

    2.6.18 prints the direct-map address of the page; modern %p prints a hashed value,
    for which the lab uses a fixed mixing of the page frame so runs stay identical.
    """
    xb = xb_globals(kernel)
    d = kernel.hv.domains[kernel.domid]
    pfn = d.mfn_to_pfn(xb.xen_store_mfn) if hasattr(d, "mfn_to_pfn") else xb.xen_store_mfn
    if kernel.flavour == "2.6.18":
        return f"0x{PAGE_OFFSET_X86_64 + (pfn << 12):x}"
    return f"0x{(pfn * 0x9E3779B1) & 0xFFFFFFFF:016x}"


def create_xen_proc_entries_2618(kernel: Any) -> None:
    """xenbus_probe_init's dom0 step: /proc/xen/xsd_kva (0600) and xsd_port (0400)."""
    create_xen_proc_entry(kernel, "xsd_kva", 0o600, lambda: xsd_kva_text(kernel))
    create_xen_proc_entry(kernel, "xsd_port", 0o400, lambda: f"{xb_globals(kernel).xen_store_evtchn}")


def xenbus_dev_init(kernel: Any) -> None:
    """xenbus_dev_init (2.6.18 xenbus_dev.c): /proc/xen/xenbus, user space's way to the store (0400)."""
    if kernel.flavour == "2.6.18":
        create_xen_proc_entry(kernel, "xenbus", 0o400, lambda: "")


def xenfs_mount(kernel: Any) -> int:
    """`mount -t xenfs xenfs /proc/xen` (modern): xenfs_fill_super's files, dom0's extra ones."""
    if kernel.flavour == "2.6.18":
        return 0  # 2.6.18 has no xenfs: its /proc/xen entries exist from boot
    _proc_dirs(kernel).add("xen")
    files: list[tuple[str, int, Any]] = [
        ("xenbus", 0o600, lambda: ""),
        ("capabilities", 0o444, lambda: "control_d\n" if _is_initial(kernel) else ""),
        ("privcmd", 0o600, lambda: ""),
    ]
    if _is_initial(kernel):
        files += [
            ("xsd_kva", 0o600, lambda: xsd_kva_text(kernel)),
            ("xsd_port", 0o600, lambda: f"{xb_globals(kernel).xen_store_evtchn}"),
            ("xensyms", 0o400, lambda: ""),
        ]
    for name, mode, read in files:
        kernel.proc_create(f"xen/{name}", mode, read)
    kernel.record("xenfs_fill_super", "xenfs mounted on /proc/xen: " + ", ".join(
        f"{n} {m:04o}" for n, m, _ in files), SRC_XENFS,
        changes=[(f"{kernel.name}/proc", f"xen/{n}", None, f"{m:04o}") for n, m, _ in files])
    return 0


def proc_xen_entries(kernel: Any) -> list[tuple[str, int]]:
    """(name, mode) of each /proc/xen entry, sorted as `ls` lists them."""
    return sorted((path[4:], e.mode) for path, e in kernel.proc.items() if path.startswith("xen/"))

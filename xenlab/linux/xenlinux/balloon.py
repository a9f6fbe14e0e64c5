"""drivers/xen/balloon/balloon.c, XenLinux 2.6.18: the balloon driver's memory/target watch.

``balloon_init`` (subsys_initcall) prints "xen_mem: Initialising balloon driver.", starts
its balloon_stats at the domain's start_info nr_pages, creates /proc/xen/balloon (0644,
``balloon_read``) and registers a xenstore notifier; when xenbus probes,
``balloon_init_watcher`` watches memory/target (the static target_watch), and the watch's
first event runs ``watch_target``: a READ of memory/target (ENOENT in dom0: "This is
ok"). The lab moves no pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from xenlab.linux.kernel import KERN_ERR, KERN_INFO
from xenlab.linux.xenlinux.xen_proc import create_xen_proc_entry
from xenlab.linux.xenlinux.xenbus_probe import register_xenstore_notifier
from xenlab.linux.xenlinux.xenbus_xs import (
    XBT_NIL,
    register_xenbus_watch,
    static_watch,
    xenbus_read,
    xenbus_watch,
)

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel

SRC = "drivers/xen/balloon/balloon.c"


@dataclass
class balloon_stats:
    """struct balloon_stats bs (in pages; hard_limit None for ~0UL, "no limit")."""

    current_pages: int
    target_pages: int
    balloon_low: int = 0
    balloon_high: int = 0
    driver_pages: int = 0
    hard_limit: int | None = None


def PAGES2KB(pages: int) -> int:
    """PAGES2KB: pages to KiB (PAGE_SHIFT 12)."""
    return pages << 2


def watch_target(kernel: XenLinuxKernel, watch: xenbus_watch, path: str, token: str) -> None:
    """watch_target: read memory/target (KiB); unreadable is fine (dom0 has no target)."""
    val = xenbus_read(kernel, XBT_NIL, "memory", "target")
    if isinstance(val, int):
        return
    kernel.record("watch_target", f"memory/target = {val} KiB: balloon target set", SRC)


def balloon_init_watcher(kernel: XenLinuxKernel) -> None:
    """balloon_init_watcher (the xenstore notifier): watch memory/target."""
    if register_xenbus_watch(kernel, static_watch(kernel, "target_watch", "memory/target", watch_target)):
        kernel.printk(KERN_ERR, "Failed to set balloon watcher")


def balloon_read(kernel: XenLinuxKernel) -> str:
    """balloon_read: /proc/xen/balloon, the balloon_stats in kB."""
    bs = kernel.balloon
    if bs is None:
        return ""
    limit = "     ??? kB" if bs.hard_limit is None else f"{PAGES2KB(bs.hard_limit):8d} kB"
    return (f"Current allocation: {PAGES2KB(bs.current_pages):8d} kB\n"
            f"Requested target:   {PAGES2KB(bs.target_pages):8d} kB\n"
            f"Low-mem balloon:    {PAGES2KB(bs.balloon_low):8d} kB\n"
            f"High-mem balloon:   {PAGES2KB(bs.balloon_high):8d} kB\n"
            f"Driver pages:       {PAGES2KB(bs.driver_pages):8d} kB\n"
            f"Xen hard limit:     {limit}\n")


def balloon_init(kernel: XenLinuxKernel) -> int:
    """balloon_init (subsys_initcall): the stats from start_info, /proc/xen/balloon, the xenstore notifier."""
    kernel.printk(KERN_INFO, "xen_mem: Initialising balloon driver.")
    nr_pages = int(kernel.hv.domains[kernel.domid].start_info.nr_pages)
    kernel.balloon = balloon_stats(current_pages=nr_pages, target_pages=nr_pages)  # min(nr_pages, max_pfn)
    kernel.record("balloon_init", f"bs.current_pages = bs.target_pages = {nr_pages} (nr_pages)", SRC)
    create_xen_proc_entry(kernel, "balloon", 0o644, lambda: balloon_read(kernel))
    return register_xenstore_notifier(kernel, balloon_init_watcher)

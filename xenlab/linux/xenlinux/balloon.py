"""drivers/xen/balloon/balloon.c, XenLinux 2.6.18: the balloon driver's memory/target watch.

``balloon_init`` (subsys_initcall) registers a xenstore notifier; when xenbus probes,
``balloon_init_watcher`` watches memory/target, and the watch's first event runs
``watch_target``: a READ of memory/target (ENOENT in dom0: "This is ok"). The lab
moves no pages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.linux.kernel import KERN_ERR
from xenlab.linux.xenlinux.xenbus_probe import register_xenstore_notifier
from xenlab.linux.xenlinux.xenbus_xs import (
    XBT_NIL,
    register_xenbus_watch,
    watch_callback,
    xenbus_read,
    xenbus_watch,
)

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel

SRC = "drivers/xen/balloon/balloon.c"


def watch_target(kernel: XenLinuxKernel, watch: xenbus_watch, path: str, token: str) -> None:
    """watch_target: read memory/target (KiB); unreadable is fine (dom0 has no target)."""
    val = xenbus_read(kernel, XBT_NIL, "memory", "target")
    if isinstance(val, int):
        return
    kernel.record("watch_target", f"memory/target = {val} KiB: balloon target set", SRC)


def balloon_init_watcher(kernel: XenLinuxKernel) -> None:
    """balloon_init_watcher (the xenstore notifier): watch memory/target."""
    if register_xenbus_watch(kernel, xenbus_watch("memory/target", watch_callback(kernel, watch_target))):
        kernel.printk(KERN_ERR, "Failed to set balloon watcher")


def balloon_init(kernel: XenLinuxKernel) -> int:
    """balloon_init (subsys_initcall): register the xenstore notifier."""
    return register_xenstore_notifier(kernel, balloon_init_watcher)

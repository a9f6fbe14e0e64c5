"""drivers/xen/xen-balloon.c, Linux 6.1: the balloon's sysfs bus "xen_memory" and its memory/target watch.

Its xenstore notifier registers the watch on memory/target; the watch's first event runs
``watch_target``, a READ of memory/target (ENOENT in dom0: fine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.linux.driver_model import bus_register, bus_type
from xenlab.linux.pvops.xenbus_probe import register_xenstore_notifier
from xenlab.linux.pvops.xenbus_xs import XBT_NIL, register_xenbus_watch, xenbus_scanf, xenbus_watch

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel

SRC = "drivers/xen/xen-balloon.c"


def watch_target(kernel: PvopsKernel, watch: xenbus_watch, path: str, token: str) -> None:
    """watch_target: read memory/target (KiB); a missing node is fine (dom0 has no target)."""
    err, new_target = xenbus_scanf(kernel, XBT_NIL, "memory", "target", "%llu")
    if err != 1:
        return
    kernel.record("watch_target", f"memory/target = {new_target} KiB: balloon target set", SRC)


def balloon_init_watcher(kernel: PvopsKernel) -> None:
    """balloon_init_watcher (the xenstore notifier): register target_watch on memory/target."""
    def watch_target_cb(watch: xenbus_watch, path: str, token: str) -> None:
        watch_target(kernel, watch, path, token)

    watch_target_cb.__name__ = "watch_target"
    register_xenbus_watch(kernel, xenbus_watch(node="memory/target", callback=watch_target_cb))


def register_balloon(kernel: PvopsKernel) -> int:
    """register_balloon: subsys_system_register(&balloon_subsys), the bus "xen_memory"."""
    return bus_register(kernel, bus_type("xen_memory"))


def xen_balloon_init(kernel: PvopsKernel) -> int:
    """xen_balloon_init: register the xenstore notifier that sets up the target watch."""
    return register_xenstore_notifier(kernel, balloon_init_watcher)

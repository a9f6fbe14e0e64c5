"""drivers/xen/cpu_hotplug.c, Linux 6.1: the "cpu" watch and each vcpu's availability.

Its xenstore notifier (``setup_cpu_watcher``) registers the watch on "cpu", then per
possible cpu ``vcpu_online`` reads cpu/N/availability. The watch's first event (path
"cpu") names no cpu: nothing happens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.linux.pvops.xenbus_probe import register_xenstore_notifier
from xenlab.linux.pvops.xenbus_xs import XBT_NIL, register_xenbus_watch, xenbus_scanf, xenbus_watch

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel


def vcpu_online(kernel: PvopsKernel, cpu: int) -> int:
    """vcpu_online: cpu/N/availability: 1 "online", 0 "offline", -1 unknown (the node is missing)."""
    err, state = xenbus_scanf(kernel, XBT_NIL, f"cpu/{cpu}", "availability", "%15s")
    if err != 1:
        return -1
    return 1 if state == "online" else 0 if state == "offline" else -1


def handle_vcpu_hotplug_event(kernel: PvopsKernel, watch: xenbus_watch, path: str, token: str) -> None:
    """handle_vcpu_hotplug_event: act on cpu/N/availability changes (the initial "cpu" event names none)."""
    if "cpu/" not in path:
        return
    cpu = path.split("cpu/")[1].split("/")[0]
    if cpu.isdigit():
        vcpu_online(kernel, int(cpu))


def setup_cpu_watcher(kernel: PvopsKernel) -> None:
    """setup_cpu_watcher (the xenstore notifier): watch "cpu", check every possible cpu."""
    def handle_vcpu_hotplug_event_cb(watch: xenbus_watch, path: str, token: str) -> None:
        handle_vcpu_hotplug_event(kernel, watch, path, token)

    handle_vcpu_hotplug_event_cb.__name__ = "handle_vcpu_hotplug_event"
    register_xenbus_watch(kernel, xenbus_watch(node="cpu", callback=handle_vcpu_hotplug_event_cb))
    for cpu in range(kernel.num_possible_cpus()):
        vcpu_online(kernel, cpu)


def setup_vcpu_hotplug_event(kernel: PvopsKernel) -> int:
    """setup_vcpu_hotplug_event: register the xenstore notifier (setup_cpu_watcher)."""
    return register_xenstore_notifier(kernel, setup_cpu_watcher)

"""drivers/xen/core/cpu_hotplug.c, XenLinux 2.6.18: the "cpu" watch (vcpu hotplug).

``setup_vcpu_hotplug_event`` registers a xenstore notifier; when xenbus probes,
``setup_cpu_watcher`` watches "cpu" and reads cpu/N/availability of every possible vcpu
(``vcpu_hotplug``). The watch's first event (path "cpu") names no cpu: nothing happens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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


def vcpu_hotplug(kernel: XenLinuxKernel, cpu: int) -> int:
    """vcpu_hotplug: read cpu/N/availability: 1 online, 0 offline, -1 unknown (the lab moves no cpu)."""
    val = xenbus_read(kernel, XBT_NIL, f"cpu/{cpu}", "availability")
    if isinstance(val, int):
        return -1
    return 1 if val == "online" else 0 if val == "offline" else -1


def handle_vcpu_hotplug_event(kernel: XenLinuxKernel, watch: xenbus_watch, path: str, token: str) -> None:
    """handle_vcpu_hotplug_event: act on cpu/N/... changes (the initial "cpu" event names none)."""
    if "cpu/" not in path:
        return
    cpu = path.split("cpu/")[1].split("/")[0]
    if cpu.isdigit():
        vcpu_hotplug(kernel, int(cpu))


def setup_cpu_watcher(kernel: XenLinuxKernel) -> None:
    """setup_cpu_watcher (the xenstore notifier): watch "cpu", check every possible vcpu."""
    register_xenbus_watch(kernel, xenbus_watch("cpu", watch_callback(kernel, handle_vcpu_hotplug_event)))
    for cpu in range(kernel.hv.domains[kernel.domid].max_vcpus):
        vcpu_hotplug(kernel, cpu)


def setup_vcpu_hotplug_event(kernel: XenLinuxKernel) -> int:
    """setup_vcpu_hotplug_event: register the xenstore notifier."""
    return register_xenstore_notifier(kernel, setup_cpu_watcher)

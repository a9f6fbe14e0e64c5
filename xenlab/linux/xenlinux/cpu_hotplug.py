"""drivers/xen/core/cpu_hotplug.c, XenLinux 2.6.18: the "cpu" watch (vcpu hotplug).

``setup_vcpu_hotplug_event`` (an arch_initcall) registers a xenstore notifier: a domU's
xenstore is ready by then (xenbus_probe_init, postcore, probed already), so it runs at
once; dom0's waits for xenbus_probe. ``setup_cpu_watcher`` watches "cpu" (a watch whose
callback runs on its own thread, XBWF_new_thread); a domU then reads cpu/N/availability
of every possible vcpu (``vcpu_hotplug``), bringing up each "online" one with cpu_up --
its secondary vcpus were left out of cpu_present_map at boot (smpboot.c) -- and prints
"Brought up N CPUs". dom0 reads none (``if (!is_initial_xendomain())``). The watch's
first event (path "cpu") names no cpu: nothing happens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.linux.kernel import KERN_ERR, KERN_INFO
from xenlab.linux.xenlinux.smpboot import NR_CPUS, cpu_possible_map
from xenlab.linux.xenlinux.xenbus_probe import register_xenstore_notifier
from xenlab.linux.xenlinux.xenbus_xs import (
    XBT_NIL,
    XBWF_new_thread,
    register_xenbus_watch,
    static_watch,
    xenbus_read,
    xenbus_watch,
)

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel

SRC = "drivers/xen/core/cpu_hotplug.c"


def vcpu_hotplug(kernel: XenLinuxKernel, cpu: int) -> None:
    """vcpu_hotplug: scan cpu/N/availability ("%s"): "online" -> cpu_up, "offline" -> cpu_down."""
    if cpu >= NR_CPUS or cpu not in cpu_possible_map(kernel):
        return
    val = xenbus_read(kernel, XBT_NIL, f"cpu/{cpu}", "availability")  # xenbus_scanf(..., "%s", state)
    words = val.split() if isinstance(val, str) else []
    if not words:
        kernel.printk(KERN_ERR, "XENBUS: Unable to read cpu state")
        return
    state = words[0]
    if state == "online":
        kernel.cpu_up(cpu)  # an online cpu: -EINVAL, ignored
    elif state == "offline":
        kernel.record("vcpu_hotplug", f"cpu{cpu}: offline (the lab takes no vcpu down)", SRC)
    else:
        kernel.printk(KERN_ERR, f"XENBUS: unknown state({state}) on CPU{cpu}")


def handle_vcpu_hotplug_event(kernel: XenLinuxKernel, watch: xenbus_watch, path: str, token: str) -> None:
    """handle_vcpu_hotplug_event: act on cpu/N/... changes (the initial "cpu" event names none)."""
    if "cpu/" not in path:
        return
    cpu = path.split("cpu/")[1].split("/")[0]
    if cpu.isdigit():
        vcpu_hotplug(kernel, int(cpu))


def setup_cpu_watcher(kernel: XenLinuxKernel) -> None:
    """setup_cpu_watcher (the xenstore notifier): watch "cpu" (its static cpu_watch, XBWF_new_thread);
    a domU checks every possible vcpu."""
    register_xenbus_watch(kernel, static_watch(kernel, "cpu_watch", "cpu", handle_vcpu_hotplug_event,
                                               XBWF_new_thread))
    if not kernel.hv.domains[kernel.domid].initdomain:
        for cpu in cpu_possible_map(kernel):
            vcpu_hotplug(kernel, cpu)
        kernel.printk(KERN_INFO, f"Brought up {len(kernel.cpu_online_map)} CPUs")


def setup_vcpu_hotplug_event(kernel: XenLinuxKernel) -> int:
    """setup_vcpu_hotplug_event (arch_initcall): register the xenstore notifier."""
    return register_xenstore_notifier(kernel, setup_cpu_watcher)

"""The kernel's other xenstore clients: shutdown/sysrq (manage.c), the balloon target, vcpu hotplug.

Each registers a xenstore notifier, so it runs when xenbus_probe calls the chain (at
once in a PV domU, when xenstored first kicks dom0). Together with the bus probe they
make the kernel's first requests on the store ring (a real 6.1 dom0: 19 requests,
630 bytes; 645 bytes of replies and watch events):

- xen-balloon (drivers/xen/xen-balloon.c ``balloon_init_watcher``): WATCH memory/target;
  its first event runs ``watch_target``, a READ of memory/target (ENOENT in dom0: fine).
- manage.c ``setup_shutdown_watcher``: WATCH control/shutdown and control/sysrq, then
  ``feature-poweroff``, ``feature-reboot``, ``feature-suspend`` = 1 under control (the
  handlers with their flag set; halt has none). The watches' first events run
  ``shutdown_handler`` / ``sysrq_handler``: a transaction, a READ that fails ENOENT, and
  the transaction aborted ("F").
- cpu_hotplug.c ``setup_cpu_watcher``: WATCH cpu, then per possible cpu ``vcpu_online``
  READs cpu/N/availability. The watch's first event (path "cpu") names no cpu: nothing.
"""

from __future__ import annotations

from typing import Any

from xenlab.abi.errno import ENOENT, ERANGE
from xenlab.linux.kernel import KERN_ERR
from xenlab.linux.xenbus.client import (
    register_xenbus_watch,
    xenbus_printf,
    xenbus_read,
    xenbus_transaction_end,
    xenbus_transaction_start,
    xenbus_watch,
)
from xenlab.linux.xenbus.probe import register_xenstore_notifier

SRC_MANAGE = "drivers/xen/manage.c"
SRC_BALLOON = "drivers/xen/xen-balloon.c"
SRC_CPU = "drivers/xen/cpu_hotplug.c"

#: shutdown_handlers[] of manage.c: (command, flag) -- a feature-<command> node for each flagged one.
SHUTDOWN_HANDLERS = (("poweroff", True), ("halt", False), ("reboot", True), ("suspend", True))


# -- xen-balloon ----------------------------------------------------------------------
def watch_target(kernel: Any, watch: Any, path: str, token: str) -> None:
    """watch_target: read memory/target (KiB); ENOENT is fine (dom0 has no target)."""
    val = xenbus_read(kernel, 0, "memory", "target")
    if isinstance(val, int):
        return
    kernel.record("watch_target", f"memory/target = {val} KiB: balloon target set", SRC_BALLOON)


def balloon_init_watcher(kernel: Any) -> None:
    """balloon_init_watcher (the balloon's xenstore notifier): watch memory/target."""
    register_xenbus_watch(kernel, xenbus_watch("memory/target",
                                               lambda w, p, t: watch_target(kernel, w, p, t)))


# -- manage.c -----------------------------------------------------------------------------
def shutdown_handler(kernel: Any, watch: Any, path: str, token: str) -> None:
    """shutdown_handler: in a transaction read control/shutdown; empty or missing -> abort and return."""
    err, xbt = xenbus_transaction_start(kernel)
    if err:
        return
    val = xenbus_read(kernel, xbt, "control", "shutdown")
    if isinstance(val, int) or val == "":
        xenbus_transaction_end(kernel, xbt, True)
        return
    xenbus_printf(kernel, xbt, "control", "shutdown", "")
    xenbus_transaction_end(kernel, xbt, False)
    kernel.record("shutdown_handler", f"control/shutdown = {val!r}: the lab does not shut down", SRC_MANAGE)


def sysrq_handler(kernel: Any, watch: Any, path: str, token: str) -> None:
    """sysrq_handler: in a transaction read control/sysrq; ENOENT/ERANGE are expected -> abort."""
    err, xbt = xenbus_transaction_start(kernel)
    if err:
        return
    val = xenbus_read(kernel, xbt, "control", "sysrq")
    if isinstance(val, int) or val == "":
        err = val if isinstance(val, int) else -ERANGE
        if err not in (-ENOENT, -ERANGE):
            kernel.printk(KERN_ERR, f"Error {err} reading sysrq code in control/sysrq")
        xenbus_transaction_end(kernel, xbt, True)
        return
    xenbus_printf(kernel, xbt, "control", "sysrq", "")
    xenbus_transaction_end(kernel, xbt, False)


def setup_shutdown_watcher(kernel: Any) -> None:
    """setup_shutdown_watcher (manage.c's xenstore notifier): two watches, then the feature nodes.

    2.6.18 (drivers/xen/core/reboot.c) first reads control/platform-feature-multiprocessor-suspend
    into fast_suspend and writes no feature nodes (those came with upstream manage.c); this
    2.6.18 shape is inferred from the XenLinux sources' structure, not held against a capture.
    """
    if kernel.flavour == "2.6.18":
        xenbus_read(kernel, 0, "control", "platform-feature-multiprocessor-suspend")
    register_xenbus_watch(kernel, xenbus_watch("control/shutdown",
                                               lambda w, p, t: shutdown_handler(kernel, w, p, t)))
    register_xenbus_watch(kernel, xenbus_watch("control/sysrq",
                                               lambda w, p, t: sysrq_handler(kernel, w, p, t)))
    for command, flag in SHUTDOWN_HANDLERS:
        if flag and kernel.flavour != "2.6.18":
            xenbus_printf(kernel, 0, "control", f"feature-{command}", 1)
    features = "" if kernel.flavour == "2.6.18" else "; control/feature-poweroff, -reboot, -suspend = 1"
    kernel.record("setup_shutdown_watcher", f"watching control/shutdown and control/sysrq{features}",
                  "drivers/xen/core/reboot.c" if kernel.flavour == "2.6.18" else SRC_MANAGE)


# -- cpu_hotplug.c ----------------------------------------------------------------------------
def handle_vcpu_hotplug_event(kernel: Any, watch: Any, path: str, token: str) -> None:
    """handle_vcpu_hotplug_event: act on cpu/N/availability changes (the initial "cpu" event names none)."""
    if "cpu/" not in path:
        return
    cpu = path.split("cpu/")[1].split("/")[0]
    if cpu.isdigit():
        vcpu_online(kernel, int(cpu))


def vcpu_online(kernel: Any, cpu: int) -> int:
    """vcpu_online: read cpu/N/availability: 1 online, 0 offline, -1 unknown (the node is missing)."""
    val = xenbus_read(kernel, 0, f"cpu/{cpu}", "availability")
    if isinstance(val, int):
        return -1
    return 1 if val == "online" else 0 if val == "offline" else -1


def setup_cpu_watcher(kernel: Any) -> None:
    """setup_cpu_watcher (cpu_hotplug.c's xenstore notifier): watch "cpu", check every possible cpu."""
    register_xenbus_watch(kernel, xenbus_watch("cpu",
                                               lambda w, p, t: handle_vcpu_hotplug_event(kernel, w, p, t)))
    nr = kernel.hv.domains[kernel.domid].max_vcpus
    for cpu in range(nr):
        vcpu_online(kernel, cpu)


def xen_control_init(kernel: Any) -> None:
    """The initcalls that register these notifiers: xen_balloon_init, xen_setup_shutdown_event,
    setup_vcpu_hotplug_event (2.6.18 has the same three clients: balloon, reboot.c, cpu_hotplug)."""
    register_xenstore_notifier(kernel, balloon_init_watcher)
    register_xenstore_notifier(kernel, setup_shutdown_watcher)
    register_xenstore_notifier(kernel, setup_cpu_watcher)

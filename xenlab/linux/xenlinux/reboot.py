"""drivers/xen/core/reboot.c, XenLinux 2.6.18: the shutdown and sysrq watches.

``setup_shutdown_event`` (subsys_initcall) registers a xenstore notifier; when xenbus
probes, ``setup_shutdown_watcher`` reads control/platform-feature-multiprocessor-suspend
(fast_suspend) and watches control/shutdown and control/sysrq (2.6.18 writes no
feature-* nodes: those came with upstream manage.c). Each watch fires once at
registration: ``shutdown_handler`` / ``sysrq_handler`` start a transaction, read their
node and find it missing: shutdown_handler aborts ("F"), sysrq_handler commits ("T": its
"%c" scan never counts as unreadable). The lab does not shut down.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.abi.errno import EAGAIN
from xenlab.linux.kernel import KERN_ERR
from xenlab.linux.xenlinux.xenbus_probe import register_xenstore_notifier
from xenlab.linux.xenlinux.xenbus_xs import (
    XBT_NIL,
    register_xenbus_watch,
    static_watch,
    xenbus_printf,
    xenbus_read,
    xenbus_transaction_end,
    xenbus_transaction_start,
    xenbus_watch,
)

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel

SRC = "drivers/xen/core/reboot.c"


def shutdown_handler(kernel: XenLinuxKernel, watch: xenbus_watch, path: str, token: str) -> None:
    """shutdown_handler: in a transaction read control/shutdown; empty or missing -> abort and return."""
    err, xbt = xenbus_transaction_start(kernel)
    if err:
        return
    val = xenbus_read(kernel, xbt, "control", "shutdown")
    if isinstance(val, int) or val == "":  # "Ignore read errors and empty reads."
        xenbus_transaction_end(kernel, xbt, 1)
        return
    xenbus_printf(kernel, xbt, "control", "shutdown", "")
    xenbus_transaction_end(kernel, xbt, 0)
    kernel.record("shutdown_handler", f"control/shutdown = {val!r}: the lab does not shut down", SRC)


def sysrq_handler(kernel: XenLinuxKernel, watch: xenbus_watch, path: str, token: str) -> None:
    """sysrq_handler: in a transaction scan control/sysrq with "%c"; a key -> write it back empty;
    commit (even when the node is missing: xenbus_scanf returns -errno or -ERANGE, never the 0 its
    "Unable to read sysrq code" test looks for)."""
    while True:  # again:
        err, xbt = xenbus_transaction_start(kernel)
        if err:
            return
        val = xenbus_read(kernel, xbt, "control", "sysrq")  # xenbus_scanf(xbt, ..., "%c", &sysrq_key)
        sysrq_key = val[0] if isinstance(val, str) and val else "\0"
        if sysrq_key != "\0":
            xenbus_printf(kernel, xbt, "control", "sysrq", "")  # "%c" of '\0': an empty string
        err = xenbus_transaction_end(kernel, xbt, 0)
        if err != -EAGAIN:
            break
    if sysrq_key != "\0":
        kernel.record("sysrq_handler", f"sysrq key {sysrq_key!r}: handle_sysrq (the lab does nothing)", SRC)


def setup_shutdown_watcher(kernel: XenLinuxKernel) -> int:
    """setup_shutdown_watcher: read fast_suspend, then watch control/shutdown and control/sysrq."""
    xenbus_read(kernel, XBT_NIL, "control", "platform-feature-multiprocessor-suspend")
    err = register_xenbus_watch(kernel, static_watch(kernel, "shutdown_watch", "control/shutdown",
                                                     shutdown_handler))
    if err:
        kernel.printk(KERN_ERR, "Failed to set shutdown watcher")
        return err
    err = register_xenbus_watch(kernel, static_watch(kernel, "sysrq_watch", "control/sysrq", sysrq_handler))
    if err:
        kernel.printk(KERN_ERR, "Failed to set sysrq watcher")
        return err
    kernel.record("setup_shutdown_watcher", "watching control/shutdown and control/sysrq", SRC)
    return 0


def shutdown_event(kernel: XenLinuxKernel) -> None:
    """shutdown_event: the xenstore notifier: setup_shutdown_watcher."""
    setup_shutdown_watcher(kernel)


def setup_shutdown_event(kernel: XenLinuxKernel) -> int:
    """setup_shutdown_event (subsys_initcall): register the xenstore notifier."""
    return register_xenstore_notifier(kernel, shutdown_event)

"""drivers/xen/manage.c, Linux 6.1: the control/shutdown and control/sysrq watches.

Its xenstore notifier (``setup_shutdown_watcher``) registers the two watches, then writes
``feature-poweroff``, ``feature-reboot``, ``feature-suspend`` = 1 under control (the
handlers with their flag set; halt has none). The watches' first events run
``shutdown_handler`` / ``sysrq_handler``: a transaction, a READ that fails ENOENT, and the
transaction aborted ("F").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.abi.errno import ENOENT, ERANGE
from xenlab.linux.kernel import KERN_ERR
from xenlab.linux.pvops.xenbus_probe import register_xenstore_notifier
from xenlab.linux.pvops.xenbus_xs import (
    XBT_NIL,
    register_xenbus_watch,
    xenbus_printf,
    xenbus_read,
    xenbus_transaction_end,
    xenbus_transaction_start,
    xenbus_watch,
    xenbus_write,
)

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel

SRC = "drivers/xen/manage.c"

#: shutdown_handlers[]: (command, flag) -- a feature-<command> node for each flagged one.
SHUTDOWN_HANDLERS = (("poweroff", True), ("halt", False), ("reboot", True), ("suspend", True))


def shutdown_handler(kernel: PvopsKernel, watch: xenbus_watch, path: str, token: str) -> None:
    """shutdown_handler: in a transaction read control/shutdown; empty or missing -> abort and return."""
    err, xbt = xenbus_transaction_start(kernel)
    if err:
        return
    val = xenbus_read(kernel, xbt, "control", "shutdown")
    if isinstance(val, int) or val == "":  # XENBUS_IS_ERR_READ: ignore read errors and empty reads
        xenbus_transaction_end(kernel, xbt, True)
        return
    xenbus_write(kernel, xbt, "control", "shutdown", "")
    xenbus_transaction_end(kernel, xbt, False)
    kernel.record("shutdown_handler", f"control/shutdown = {val!r}: the lab does not shut down", SRC)


def sysrq_handler(kernel: PvopsKernel, watch: xenbus_watch, path: str, token: str) -> None:
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
    xenbus_write(kernel, xbt, "control", "sysrq", "")
    xenbus_transaction_end(kernel, xbt, False)


def setup_shutdown_watcher(kernel: PvopsKernel) -> None:
    """setup_shutdown_watcher (the xenstore notifier): shutdown_watch, sysrq_watch, then the feature nodes."""
    def shutdown_handler_cb(watch: xenbus_watch, path: str, token: str) -> None:
        shutdown_handler(kernel, watch, path, token)

    def sysrq_handler_cb(watch: xenbus_watch, path: str, token: str) -> None:
        sysrq_handler(kernel, watch, path, token)

    shutdown_handler_cb.__name__ = "shutdown_handler"
    sysrq_handler_cb.__name__ = "sysrq_handler"
    register_xenbus_watch(kernel, xenbus_watch(node="control/shutdown", callback=shutdown_handler_cb))
    register_xenbus_watch(kernel, xenbus_watch(node="control/sysrq", callback=sysrq_handler_cb))
    for command, flag in SHUTDOWN_HANDLERS:
        if flag:
            xenbus_printf(kernel, XBT_NIL, "control", f"feature-{command}", "%u", 1)
    kernel.record("setup_shutdown_watcher", "watching control/shutdown and control/sysrq; "
                  "control/feature-poweroff, -reboot, -suspend = 1", SRC)


def xen_setup_shutdown_event(kernel: PvopsKernel) -> int:
    """xen_setup_shutdown_event: register the xenstore notifier (shutdown_event)."""
    return register_xenstore_notifier(kernel, setup_shutdown_watcher)

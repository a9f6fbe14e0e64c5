"""drivers/xen/xenbus/xenbus_client.c, Linux 6.1: what drivers call: states, errors, watches, rings, ports.

Kernel style (conventions: xenbus_xs.py): the Kernel first, 0 / a value or -errno, out
parameters returned as a tuple, the kernel's printk messages. The lab does not model the
grant mappings a backend makes; a ring is a granted page and a grant reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xenlab.abi.errno import EAGAIN, ERANGE
from xenlab.abi.event_channel import DOMID_SELF
from xenlab.abi.xenbus import XenbusStateClosed, XenbusStateClosing
from xenlab.abi.xenbus import xenbus_strstate as _strstate
from xenlab.linux.driver_model import dev_printk
from xenlab.linux.kernel import KERN_ERR
from xenlab.linux.mm import get_zeroed_page
from xenlab.linux.pvops.grant_table import gnttab_end_foreign_access, gnttab_grant_foreign_access
from xenlab.linux.pvops.xen_page import virt_to_gfn
from xenlab.linux.pvops.xenbus_xs import (
    XBT_NIL,
    register_xenbus_watch,
    xenbus_printf,
    xenbus_scanf,
    xenbus_transaction_end,
    xenbus_transaction_start,
    xenbus_watch,
    xenbus_write,
)
from xenlab.linux.xenbus_transitions import xenbus_check_switch

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel
    from xenlab.linux.pvops.xenbus_probe import xenbus_device
    from xenlab.xen.memory import Page

SRC = "drivers/xen/xenbus/xenbus_client.c"
WatchCallback = Callable[[xenbus_watch, str, str], None]
WillHandle = Callable[[xenbus_watch, str, str], bool]


def xenbus_strstate(state: int) -> str:
    """xenbus_strstate: the state's name ("Initialising" ... "Reconfigured"), INVALID past the table."""
    return _strstate(state)


def xenbus_watch_path(kernel: PvopsKernel, dev: xenbus_device, path: str, watch: xenbus_watch,
                      will_handle: WillHandle | None, callback: WatchCallback) -> int:
    """xenbus_watch_path: register *watch* on *path*; 0, or -errno after xenbus_dev_fatal."""
    watch.node = path
    watch.will_handle = will_handle
    watch.callback = callback
    err = register_xenbus_watch(kernel, watch)
    if err:
        watch.node = ""
        watch.will_handle = None
        watch.callback = None
        xenbus_dev_fatal(kernel, dev, err, f"adding watch on {path}")
    return err


def xenbus_watch_pathfmt(kernel: PvopsKernel, dev: xenbus_device, watch: xenbus_watch,
                         will_handle: WillHandle | None, callback: WatchCallback, fmt: str,
                         *args: Any) -> int:
    """xenbus_watch_pathfmt: xenbus_watch_path on the path fmt % args."""
    return xenbus_watch_path(kernel, dev, fmt % args if args else fmt, watch, will_handle, callback)


def _state_changed(kernel: PvopsKernel, dev: xenbus_device, state: int) -> None:
    old = dev.state
    dev.state = state
    kernel.record("xenbus_switch_state", f"{dev.nodename}: {xenbus_strstate(old)} -> "
                  f"{xenbus_strstate(state)}", SRC,
                  changes=[(kernel.table("xenbus_state"), dev.nodename, old, state)])


def xenbus_switch_state(kernel: PvopsKernel, dev: xenbus_device, state: int) -> int:
    """xenbus_switch_state: read and write <nodename>/state in one transaction (retried on -EAGAIN); 0."""
    if state == dev.state:
        return 0
    xenbus_check_switch(kernel, dev, state)  # the lab's transition table; the kernel itself checks nothing
    while True:
        err, xbt = xenbus_transaction_start(kernel)
        if err:
            xenbus_switch_fatal(kernel, dev, state, err, "starting transaction")
            return 0
        abort = True
        matched, _ = xenbus_scanf(kernel, xbt, dev.nodename, "state", "%d")
        if matched == 1:
            err = xenbus_printf(kernel, xbt, dev.nodename, "state", "%d", state)
            if err:
                xenbus_switch_fatal(kernel, dev, state, err, "writing new state")
            else:
                abort = False
        err = xenbus_transaction_end(kernel, xbt, abort)
        if err == -EAGAIN and not abort:
            continue
        if err:
            xenbus_switch_fatal(kernel, dev, state, err, "ending transaction")
        else:
            _state_changed(kernel, dev, state)
        return 0


def xenbus_frontend_closed(kernel: PvopsKernel, dev: xenbus_device) -> int:
    """xenbus_frontend_closed: switch to Closed and complete dev->down."""
    xenbus_switch_state(kernel, dev, XenbusStateClosed)
    return 0


def xenbus_va_dev_error(kernel: PvopsKernel, dev: xenbus_device, err: int, text: str) -> None:
    """xenbus_va_dev_error: log "<errno> <text>" and write it to error/<nodename>/error."""
    message = f"{-err} {text}"
    dev_printk(kernel, KERN_ERR, dev, message)
    kernel.record("xenbus_dev_error", f"{dev.nodename}: {message}", SRC)
    if xenbus_write(kernel, XBT_NIL, f"error/{dev.nodename}", "error", message):
        kernel.printk("<4>", f"xenbus: failed to write error node for {dev.nodename} ({message})")


def xenbus_dev_error(kernel: PvopsKernel, dev: xenbus_device, err: int, fmt: str, *args: Any) -> None:
    """xenbus_dev_error: report *err* with fmt % args in the log and in error/<nodename>/error."""
    xenbus_va_dev_error(kernel, dev, err, fmt % args if args else fmt)


def xenbus_dev_fatal(kernel: PvopsKernel, dev: xenbus_device, err: int, fmt: str, *args: Any) -> None:
    """xenbus_dev_fatal: xenbus_dev_error, then switch the device to Closing."""
    xenbus_va_dev_error(kernel, dev, err, fmt % args if args else fmt)
    xenbus_switch_state(kernel, dev, XenbusStateClosing)


def xenbus_switch_fatal(kernel: PvopsKernel, dev: xenbus_device, state: int, err: int, text: str) -> None:
    """xenbus_switch_fatal: report a failed switch; never recurse into switching to Closing again."""
    xenbus_va_dev_error(kernel, dev, err, text)
    if state != XenbusStateClosing:
        xenbus_switch_state(kernel, dev, XenbusStateClosing)


def xenbus_setup_ring(kernel: PvopsKernel, dev: xenbus_device,
                      nr_pages: int = 1) -> tuple[int, list[Page], list[int]]:
    """xenbus_setup_ring: zeroed ring pages granted to the other end: (0 or -errno, pages, grant refs)."""
    pages = [get_zeroed_page(kernel) for _ in range(nr_pages)]
    grefs: list[int] = []
    for page in pages:
        kernel.record("xenbus_setup_ring", f"{dev.nodename}: ring page mfn {page.mfn:#x}", SRC)
        ref = gnttab_grant_foreign_access(kernel, dev.otherend_id, virt_to_gfn(kernel, page), False)
        if ref < 0:
            xenbus_dev_fatal(kernel, dev, ref, "granting access to ring page")
            xenbus_teardown_ring(kernel, grefs)
            return ref, [], []
        grefs.append(ref)
    return 0, pages, grefs


def xenbus_teardown_ring(kernel: PvopsKernel, grefs: list[int]) -> None:
    """xenbus_teardown_ring: revoke each ring grant (the pages go back with them)."""
    for ref in grefs:
        if ref > 0:
            gnttab_end_foreign_access(kernel, ref)


def xenbus_alloc_evtchn(kernel: PvopsKernel, dev: xenbus_device) -> tuple[int, int]:
    """xenbus_alloc_evtchn: EVTCHNOP_alloc_unbound for the other end: (0, port) or (-errno, 0)."""
    port = kernel.hv.evtchn_alloc_unbound(kernel.domid, DOMID_SELF, dev.otherend_id)
    if port < 0:
        xenbus_dev_fatal(kernel, dev, port, "allocating event channel")
        return port, 0
    kernel.record("xenbus_alloc_evtchn", f"{dev.nodename}: port {port} for domain {dev.otherend_id}", SRC)
    return 0, port


def xenbus_free_evtchn(kernel: PvopsKernel, dev: xenbus_device, port: int) -> int:
    """xenbus_free_evtchn: EVTCHNOP_close on the port."""
    err = kernel.hv.evtchn_close(kernel.domid, port)
    if err:
        xenbus_dev_error(kernel, dev, err, f"freeing event channel {port}")
    return err


def xenbus_map_ring_valloc(kernel: PvopsKernel, dev: xenbus_device, gnt_refs: list[int]) -> int:
    """xenbus_map_ring_valloc: map the other end's granted ring pages; 0 or -errno."""
    if any(r <= 0 for r in gnt_refs):
        xenbus_dev_fatal(kernel, dev, -ERANGE,
                         f"mapping in shared page {gnt_refs[0]} from domain {dev.otherend_id}")
        return -ERANGE
    kernel.record("xenbus_map_ring_valloc", f"{dev.nodename}: mapped grant refs {gnt_refs} of domain "
                  f"{dev.otherend_id}", SRC)
    return 0


def xenbus_read_driver_state(kernel: PvopsKernel, path: str) -> int:
    """xenbus_read_driver_state: <path>/state as "%d", XenbusStateUnknown (0) if it cannot be read."""
    matched, result = xenbus_scanf(kernel, XBT_NIL, path, "state", "%d")
    return result if matched == 1 else 0

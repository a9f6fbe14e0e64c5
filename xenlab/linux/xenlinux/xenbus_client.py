"""drivers/xen/xenbus/xenbus_client.c, XenLinux 2.6.18: what xenbus drivers call.

State names and switching, watches on a device's paths, error reporting to the store
(error/<nodename>/error), granting a ring, allocating and freeing an event channel,
reading the other end's state. Functions take the Kernel first and return 0 / a value
or -errno (the package's conventions: see xenbus_xs.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xenlab.abi.event_channel import DOMID_SELF
from xenlab.abi.xenbus import XenbusStateClosed, XenbusStateClosing
from xenlab.linux.driver_model import dev_printk
from xenlab.linux.kernel import KERN_ERR, KERN_WARNING
from xenlab.linux.xenbus_transitions import xenbus_check_switch
from xenlab.linux.xenlinux.gnttab import gnttab_grant_foreign_access
from xenlab.linux.xenlinux.xenbus_xs import (
    XBT_NIL,
    register_xenbus_watch,
    xenbus_gather,
    xenbus_printf,
    xenbus_scanf,
    xenbus_watch,
    xenbus_write,
)

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel
    from xenlab.linux.xenlinux.xenbus_probe import xenbus_device

SRC = "drivers/xen/xenbus/xenbus_client.c"
XENBUS_STATE_NAMES = ("Unknown", "Initialising", "InitWait", "Initialised", "Connected", "Closing", "Closed")


def xenbus_strstate(state: int) -> str:
    """xenbus_strstate: the state's name; "INVALID" past Closed (2.6.18 knows no Reconfiguring)."""
    return XENBUS_STATE_NAMES[state] if 0 <= state < len(XENBUS_STATE_NAMES) else "INVALID"


def xenbus_watch_path(kernel: XenLinuxKernel, dev: xenbus_device, path: str, watch: xenbus_watch,
                      callback: Callable[[xenbus_watch, str, str], Any]) -> int:
    """xenbus_watch_path: register *watch* on *path* with *callback*; 0, or -errno after dev_fatal."""
    watch.node, watch.callback = path, callback
    err = register_xenbus_watch(kernel, watch)
    if err:
        watch.node = ""
        xenbus_dev_fatal(kernel, dev, err, f"adding watch on {path}")
    return err


def xenbus_watch_path2(kernel: XenLinuxKernel, dev: xenbus_device, path: str, path2: str,
                       watch: xenbus_watch, callback: Callable[[xenbus_watch, str, str], Any]) -> int:
    """xenbus_watch_path2: xenbus_watch_path on "<path>/<path2>"."""
    return xenbus_watch_path(kernel, dev, f"{path}/{path2}", watch, callback)


def xenbus_switch_state(kernel: XenLinuxKernel, dev: xenbus_device, state: int) -> int:
    """xenbus_switch_state: write <nodename>/state unless unchanged or the node is gone; 0 or -errno."""
    if state == dev.state:
        return 0
    xenbus_check_switch(kernel, dev, state)  # the lab's transition table; the kernel itself checks nothing
    err, _ = xenbus_scanf(kernel, XBT_NIL, dev.nodename, "state", "%d")
    if err != 1:
        return 0  # the device is being torn down: don't resurrect its directory
    err = xenbus_printf(kernel, XBT_NIL, dev.nodename, "state", "%d", state)
    if err:
        if state != XenbusStateClosing:  # avoid looping
            xenbus_dev_fatal(kernel, dev, err, "writing new state")
        return err
    old = dev.state
    dev.state = state
    kernel.record("xenbus_switch_state",
                  f"{dev.nodename}: {xenbus_strstate(old)} -> {xenbus_strstate(state)}", SRC,
                  changes=[(kernel.table("xenbus_state"), dev.nodename, old, state)])
    return 0


def xenbus_frontend_closed(kernel: XenLinuxKernel, dev: xenbus_device) -> int:
    """xenbus_frontend_closed: switch to Closed and complete dev->down."""
    xenbus_switch_state(kernel, dev, XenbusStateClosed)
    return 0


def error_path(dev: xenbus_device) -> str:
    """error_path: "error/<nodename>"."""
    return f"error/{dev.nodename}"


def _dev_error(kernel: XenLinuxKernel, dev: xenbus_device, err: int, text: str) -> None:
    """_dev_error: dev_err "<errno> <text>", and write it to error/<nodename>/error."""
    message = f"{-err} {text}"
    dev_printk(kernel, KERN_ERR, dev, message)
    kernel.record("xenbus_dev_error", f"{dev.nodename}: {message}", SRC)
    if xenbus_write(kernel, XBT_NIL, error_path(dev), "error", message):
        kernel.printk(KERN_WARNING, f"xenbus: failed to write error node for {dev.nodename} ({message})")


def xenbus_dev_error(kernel: XenLinuxKernel, dev: xenbus_device, err: int, text: str) -> None:
    """xenbus_dev_error: report the error (log and store)."""
    _dev_error(kernel, dev, err, text)


def xenbus_dev_fatal(kernel: XenLinuxKernel, dev: xenbus_device, err: int, text: str) -> None:
    """xenbus_dev_fatal: report the error, then switch the device to Closing."""
    _dev_error(kernel, dev, err, text)
    xenbus_switch_state(kernel, dev, XenbusStateClosing)


def xenbus_grant_ring(kernel: XenLinuxKernel, dev: xenbus_device, ring_mfn: int) -> int:
    """xenbus_grant_ring: grant the other end access to the ring page; the ref or -errno."""
    err = gnttab_grant_foreign_access(kernel, dev.otherend_id, ring_mfn, 0)
    if err < 0:
        xenbus_dev_fatal(kernel, dev, err, "granting access to ring page")
    return err


def xenbus_alloc_evtchn(kernel: XenLinuxKernel, dev: xenbus_device) -> tuple[int, int]:
    """xenbus_alloc_evtchn: EVTCHNOP_alloc_unbound for the other end; (0, port) or (-errno, 0)."""
    port = kernel.hv.evtchn_alloc_unbound(kernel.domid, DOMID_SELF, dev.otherend_id)
    if port < 0:
        xenbus_dev_fatal(kernel, dev, port, "allocating event channel")
        return port, 0
    kernel.record("xenbus_alloc_evtchn", f"{dev.nodename}: port {port} for domain {dev.otherend_id}", SRC)
    return 0, port


def xenbus_free_evtchn(kernel: XenLinuxKernel, dev: xenbus_device, port: int) -> int:
    """xenbus_free_evtchn: EVTCHNOP_close on the port."""
    err = kernel.hv.evtchn_close(kernel.domid, port)
    if err:
        xenbus_dev_error(kernel, dev, err, f"freeing event channel {port}")
    return err


def xenbus_read_driver_state(kernel: XenLinuxKernel, path: str) -> int:
    """xenbus_read_driver_state: <path>/state as a number, XenbusStateUnknown (0) if unreadable."""
    err, values = xenbus_gather(kernel, XBT_NIL, path, ("state", "%d"))
    return 0 if err else values[0]

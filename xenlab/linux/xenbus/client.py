"""What xenbus drivers call: state switching, errors, watches, rings, event channels.

Mirrors drivers/xen/xenbus/xenbus_client.c (2.6.18 and modern differ where noted) plus
the small helpers of xenbus_xs.c that drivers use (xenbus_scanf, xenbus_printf,
xenbus_gather). Kernel style: functions take the Kernel first, return 0 / a value or
-errno, and printk the kernel's messages.

xenstore access goes through ``xenlab.linux.xenbus.xs`` (the xs_talkv layer). All
calls to it are in the small adapter at the top of this file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xenlab.abi.errno import EAGAIN, ERANGE
from xenlab.abi.event_channel import DOMID_SELF
from xenlab.abi.xenbus import XenbusStateClosed, XenbusStateClosing
from xenlab.abi.xenbus import xenbus_strstate as _strstate
from xenlab.linux.driver_model import dev_printk
from xenlab.linux.gnttab import get_zeroed_page, gnttab_end_foreign_access, gnttab_grant_foreign_access
from xenlab.linux.kernel import KERN_ERR

SRC = "drivers/xen/xenbus/xenbus_client.c"
XBT_NIL = 0


# -- the xs layer (xenbus_xs.c) --------------------------------------------------------
def _xs(kernel: Any) -> Any:
    """The xs layer: xs.py (xenbus_xs.c)."""
    from xenlab.linux.xenbus import xs  # imported late: xs.py is written alongside
    return xs


def xenbus_read(kernel: Any, xbt: int, dir: str, node: str) -> str | int:
    """xenbus_read: the node's value, or -errno (xenbus_xs.c)."""
    return _xs(kernel).xenbus_read(kernel, xbt, dir, node)


def xenbus_write(kernel: Any, xbt: int, dir: str, node: str, value: str) -> int:
    """xenbus_write: write a node; 0 or -errno (xenbus_xs.c)."""
    return _xs(kernel).xenbus_write(kernel, xbt, dir, node, value)


def xenbus_exists(kernel: Any, xbt: int, dir: str, node: str) -> bool:
    """xenbus_exists: True if the node can be listed (xenbus_xs.c)."""
    return bool(_xs(kernel).xenbus_exists(kernel, xbt, dir, node))


def xenbus_directory(kernel: Any, xbt: int, dir: str, node: str) -> list[str] | int:
    """xenbus_directory: the node's children, or -errno (xenbus_xs.c)."""
    return _xs(kernel).xenbus_directory(kernel, xbt, dir, node)


def xenbus_transaction_start(kernel: Any) -> tuple[int, int]:
    """xenbus_transaction_start: (0, xbt) or (-errno, 0) (xenbus_xs.c)."""
    ret = _xs(kernel).xenbus_transaction_start(kernel)
    if isinstance(ret, tuple):
        return ret
    return (ret, 0) if ret < 0 else (0, ret)


def xenbus_transaction_end(kernel: Any, xbt: int, abort: bool) -> int:
    """xenbus_transaction_end: commit (or abort) the transaction; 0 or -errno, -EAGAIN to retry."""
    return _xs(kernel).xenbus_transaction_end(kernel, xbt, abort)


def register_xenbus_watch(kernel: Any, watch: Any) -> int:
    """register_xenbus_watch: watch watch.node; its callback runs on the xenwatch thread (xenbus_xs.c)."""
    return _xs(kernel).register_xenbus_watch(kernel, watch)


def unregister_xenbus_watch(kernel: Any, watch: Any) -> None:
    """unregister_xenbus_watch: stop watching and drop queued events (xenbus_xs.c)."""
    _xs(kernel).unregister_xenbus_watch(kernel, watch)


def xenbus_watch(node: str, callback: Callable[..., Any],
                 will_handle: Callable[..., bool] | None = None) -> Any:
    """A struct xenbus_watch for *node* whose callback(watch, path, token) runs on xenwatch."""
    return XenbusWatch(node=node, callback=callback, will_handle=will_handle)


@dataclass(eq=False)
class XenbusWatch:
    """struct xenbus_watch: a node, a callback(watch, path, token), and what xenbus_xs.c keeps in it."""

    node: str
    callback: Callable[..., Any]
    flags: int = 0
    addr: int = 0
    nr_pending: int = 0
    will_handle: Callable[..., bool] | None = None


def _join(dir: str, node: str) -> str:
    return dir if not node else (node if not dir else f"{dir}/{node}")


def xenbus_scanf_int(kernel: Any, xbt: int, dir: str, node: str) -> int | None:
    """xenbus_scanf(..., "%i"/"%d"): the node as an int, or None if absent or not a number."""
    val = xenbus_read(kernel, xbt, dir, node)
    if isinstance(val, int):
        return None
    try:
        return int(val.strip(), 0) if val.strip()[:2] in ("0x", "0X") else int(val.strip())
    except ValueError:
        return None


def xenbus_read_unsigned(kernel: Any, dir: str, node: str, default: int) -> int:
    """xenbus_read_unsigned: the node as an unsigned number, or *default* (xenbus_xs.c)."""
    val = xenbus_scanf_int(kernel, XBT_NIL, dir, node)
    return default if val is None or val < 0 else val


def xenbus_printf(kernel: Any, xbt: int, dir: str, node: str, value: object) -> int:
    """xenbus_printf: format and write a node; 0 or -errno (xenbus_xs.c)."""
    return xenbus_write(kernel, xbt, dir, node, str(value))


def xenbus_gather(kernel: Any, xbt: int, dir: str, *nodes: str) -> list[str] | int:
    """xenbus_gather: read several nodes under *dir*; their values or the first -errno (xenbus_xs.c)."""
    out: list[str] = []
    for node in nodes:
        val = xenbus_read(kernel, xbt, dir, node)
        if isinstance(val, int):
            return val
        out.append(val)
    return out


def xenbus_strstate(kernel: Any, state: int) -> str:
    """xenbus_strstate: the state's name as this kernel prints it (2.6.18: INVALID past Closed)."""
    return _strstate(state, kernel.flavour)


def xenbus_read_driver_state(kernel: Any, path: str) -> int:
    """xenbus_read_driver_state: <path>/state as a number, Unknown (0) if unreadable (xenbus_client.c)."""
    val = xenbus_scanf_int(kernel, XBT_NIL, path, "state")
    return 0 if val is None else val


# -- state ---------------------------------------------------------------------------
def _state_changed(kernel: Any, dev: Any, state: int) -> None:
    old = dev.state
    dev.state = state
    kernel.record("xenbus_switch_state", f"{dev.nodename}: {xenbus_strstate(kernel, old)} -> "
                  f"{xenbus_strstate(kernel, state)}", SRC,
                  changes=[(f"{kernel.name}/xenbus_state", dev.nodename, old, state)])


def xenbus_switch_state(kernel: Any, dev: Any, state: int) -> int:
    """xenbus_switch_state: write <nodename>/state unless unchanged or the node is gone (xenbus_client.c)."""
    if state == dev.state:
        return 0
    if kernel.flavour == "2.6.18":
        if xenbus_scanf_int(kernel, XBT_NIL, dev.nodename, "state") is None:
            return 0  # the device is being torn down: don't resurrect its directory
        err = xenbus_printf(kernel, XBT_NIL, dev.nodename, "state", int(state))
        if err:
            if state != XenbusStateClosing:  # avoid looping
                xenbus_dev_fatal(kernel, dev, err, "writing new state")
            return err
        _state_changed(kernel, dev, state)
        return 0
    # modern: read and write in one transaction, retried on -EAGAIN
    while True:
        err, xbt = xenbus_transaction_start(kernel)
        if err:
            _switch_fatal(kernel, dev, state, err, "starting transaction")
            return 0
        abort = True
        if xenbus_scanf_int(kernel, xbt, dev.nodename, "state") is not None:
            err = xenbus_printf(kernel, xbt, dev.nodename, "state", int(state))
            if err:
                _switch_fatal(kernel, dev, state, err, "writing new state")
            else:
                abort = False
        err = xenbus_transaction_end(kernel, xbt, abort)
        if err == -EAGAIN and not abort:
            continue
        if err:
            _switch_fatal(kernel, dev, state, err, "ending transaction")
        else:
            _state_changed(kernel, dev, state)
        return 0


def _switch_fatal(kernel: Any, dev: Any, state: int, err: int, what: str) -> None:
    # xenbus_switch_fatal: report, but never recurse into switching to Closing again
    if state == XenbusStateClosing:
        _dev_error(kernel, dev, err, what)
    else:
        xenbus_dev_fatal(kernel, dev, err, what)


def xenbus_frontend_closed(kernel: Any, dev: Any) -> int:
    """xenbus_frontend_closed: switch to Closed and complete dev->down (xenbus_client.c)."""
    xenbus_switch_state(kernel, dev, XenbusStateClosed)
    return 0


# -- errors --------------------------------------------------------------------------
def _dev_error(kernel: Any, dev: Any, err: int, text: str) -> None:
    message = f"{-err} {text}"
    dev_printk(kernel, KERN_ERR, dev, message)
    kernel.record("xenbus_dev_error", f"{dev.nodename}: {message}", SRC)
    path = f"error/{dev.nodename}"
    if xenbus_write(kernel, XBT_NIL, path, "error", message):
        kernel.printk("<4>", f"xenbus: failed to write error node for {dev.nodename} ({message})")


def xenbus_dev_error(kernel: Any, dev: Any, err: int, text: str) -> None:
    """xenbus_dev_error: log "<errno> <text>" and write it to error/<nodename>/error (xenbus_client.c)."""
    _dev_error(kernel, dev, err, text)


def xenbus_dev_fatal(kernel: Any, dev: Any, err: int, text: str) -> None:
    """xenbus_dev_fatal: xenbus_dev_error, then switch the device to Closing (xenbus_client.c)."""
    _dev_error(kernel, dev, err, text)
    xenbus_switch_state(kernel, dev, XenbusStateClosing)


# -- watches -------------------------------------------------------------------------
def xenbus_watch_path(kernel: Any, dev: Any, path: str, callback: Callable[..., Any],
                      will_handle: Callable[..., bool] | None = None) -> Any:
    """xenbus_watch_path: register a watch on *path* for *dev*; the watch, or -errno after dev_fatal."""
    watch = xenbus_watch(path, callback, will_handle)
    err = register_xenbus_watch(kernel, watch)
    if err:
        xenbus_dev_fatal(kernel, dev, err, f"adding watch on {path}")
        return err
    return watch


def xenbus_watch_pathfmt(kernel: Any, dev: Any, callback: Callable[..., Any], *parts: str,
                         will_handle: Callable[..., bool] | None = None) -> Any:
    """xenbus_watch_pathfmt / xenbus_watch_path2: watch "<part>/<part>..." (xenbus_client.c)."""
    return xenbus_watch_path(kernel, dev, "/".join(parts), callback, will_handle)


# -- rings and event channels -----------------------------------------------------------
def xenbus_grant_ring(kernel: Any, dev: Any, frame: int) -> int:
    """xenbus_grant_ring: grant the other end access to a ring page; the ref or -errno (xenbus_client.c)."""
    ref = gnttab_grant_foreign_access(kernel, dev.otherend_id, frame, False)
    if ref < 0:
        xenbus_dev_fatal(kernel, dev, ref, "granting access to ring page")
    return ref


def xenbus_setup_ring(kernel: Any, dev: Any) -> tuple[int, Any]:
    """xenbus_setup_ring: a zeroed ring page, granted: (ref or -errno, page) (xenbus_client.c)."""
    page = get_zeroed_page(kernel)
    kernel.record("xenbus_setup_ring", f"{dev.nodename}: ring page mfn {page.mfn:#x}", SRC)
    return xenbus_grant_ring(kernel, dev, page.mfn), page


def xenbus_teardown_ring(kernel: Any, ref: int) -> None:
    """xenbus_teardown_ring: revoke the ring's grant (the page goes back with it) (xenbus_client.c)."""
    if ref > 0:
        gnttab_end_foreign_access(kernel, ref)


def xenbus_alloc_evtchn(kernel: Any, dev: Any) -> int:
    """xenbus_alloc_evtchn: EVTCHNOP_alloc_unbound for the other end; the port or -errno (xenbus_client.c)."""
    port = kernel.hv.evtchn_alloc_unbound(kernel.domid, DOMID_SELF, dev.otherend_id)
    if port < 0:
        xenbus_dev_fatal(kernel, dev, port, "allocating event channel")
        return port
    kernel.record("xenbus_alloc_evtchn", f"{dev.nodename}: port {port} for domain {dev.otherend_id}", SRC)
    return port


def xenbus_free_evtchn(kernel: Any, dev: Any, port: int) -> int:
    """xenbus_free_evtchn: EVTCHNOP_close on the port (xenbus_client.c)."""
    err = kernel.hv.evtchn_close(kernel.domid, port)
    if err:
        xenbus_dev_error(kernel, dev, err, f"freeing event channel {port}")
    return err


def xenbus_map_ring_valloc(kernel: Any, dev: Any, refs: list[int]) -> int:
    """xenbus_map_ring_valloc: map the other end's granted ring pages; 0 or -errno (xenbus_client.c)."""
    if any(r <= 0 for r in refs):
        xenbus_dev_fatal(kernel, dev, -ERANGE,
                         f"mapping in shared page {refs[0]} from domain {dev.otherend_id}")
        return -ERANGE
    kernel.record("xenbus_map_ring_valloc", f"{dev.nodename}: mapped grant refs {refs} of domain "
                  f"{dev.otherend_id}", SRC)
    return 0


def xenbus_dev_is_online(kernel: Any, dev: Any) -> int:
    """xenbus_dev_is_online: the backend's "online" node (toolstack keeps 1 until unplug)."""
    return 1 if xenbus_read_unsigned(kernel, dev.nodename, "online", 0) else 0


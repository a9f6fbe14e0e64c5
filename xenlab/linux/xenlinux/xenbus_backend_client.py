"""drivers/xen/xenbus/xenbus_backend_client.c, XenLinux 2.6.18: what only backends call.

Mapping the frontend's granted ring page (the lab does not map it: the step records the
refs) and reading the toolstack's "online" node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.abi.errno import ERANGE
from xenlab.linux.xenlinux.xenbus_client import xenbus_dev_fatal
from xenlab.linux.xenlinux.xenbus_xs import XBT_NIL, xenbus_scanf

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel
    from xenlab.linux.xenlinux.xenbus_probe import xenbus_device

SRC = "drivers/xen/xenbus/xenbus_backend_client.c"


def xenbus_map_ring_valloc(kernel: XenLinuxKernel, dev: xenbus_device, gnt_refs: list[int]) -> int:
    """xenbus_map_ring_valloc: map the other end's granted ring page(s); 0 or -errno after dev_fatal."""
    if any(r <= 0 for r in gnt_refs):
        xenbus_dev_fatal(kernel, dev, -ERANGE,
                         f"mapping in shared page {gnt_refs[0]} from domain {dev.otherend_id}")
        return -ERANGE
    kernel.record("xenbus_map_ring_valloc", f"{dev.nodename}: mapped grant refs {gnt_refs} of domain "
                  f"{dev.otherend_id}", SRC)
    return 0


def xenbus_dev_is_online(kernel: XenLinuxKernel, dev: xenbus_device) -> int:
    """xenbus_dev_is_online: the backend's "online" node (the toolstack keeps 1 until unplug); 0 if absent."""
    rc, values = xenbus_scanf(kernel, XBT_NIL, dev.nodename, "online", "%d")
    return values[0] if rc == 1 else 0

"""drivers/xen/xenbus/xenbus_dev.c, XenLinux 2.6.18: /proc/xen/xenbus, user space's way to the store.

2.6.18 has no /dev/xen/xenbus: tools open /proc/xen/xenbus (made by ``xenbus_dev_init``,
mode 0400) and write whole xsd_sockmsg requests; ``xenbus_dev_write`` passes each one to
``xenbus_dev_request_and_reply`` (xenbus_xs.c), which writes it into the store ring in
one piece under the request mutex and queues the reply for ``read()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.linux.xenlinux.xen_proc import create_xen_proc_entry
from xenlab.linux.xenlinux.xenbus_xs import xenbus_dev_request_and_reply

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel


def xenbus_dev_write(kernel: XenLinuxKernel, mtype: int, tx_id: int, payload: bytes) -> tuple[int, bytes]:
    """xenbus_dev_write + xenbus_dev_read: one request from user space and its reply (type, body)."""
    return xenbus_dev_request_and_reply(kernel, mtype, tx_id, payload)


def xenbus_dev_init(kernel: XenLinuxKernel) -> int:
    """xenbus_dev_init: create /proc/xen/xenbus (0400)."""
    create_xen_proc_entry(kernel, "xenbus", 0o400, lambda: "")
    return 0

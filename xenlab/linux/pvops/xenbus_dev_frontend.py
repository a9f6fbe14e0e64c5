"""drivers/xen/xenbus/xenbus_dev_frontend.c, Linux 6.1: /dev/xen/xenbus, user space's way to the store.

A write() of one whole xsd_sockmsg becomes one request through the "xenbus" thread
(``xenbus_dev_request_and_reply``, xenbus_xs.c); the reply is what read() returns. The
per-file transaction and watch bookkeeping of the real file is not modelled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.linux.pvops.xenbus_xs import xenbus_dev_request_and_reply

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel


def xenbus_file_write(kernel: PvopsKernel, mtype: int, tx_id: int, payload: bytes) -> tuple[int, bytes]:
    """xenbus_file_write: one request (xenbus_write_transaction, xenbus_command_reply); (type, body)."""
    return xenbus_dev_request_and_reply(kernel, mtype, tx_id, payload)

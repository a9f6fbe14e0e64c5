"""include/xen/hvm.h, Linux 6.1: hvm_get_parameter, the wrapper around HVMOP_get_param.

An HVM guest has no start_info; what a PV guest reads there it reads from its HVM
parameters, one HYPERVISOR_hvm_op(HVMOP_get_param) per index on DOMID_SELF. A refusal is
printed with the parameter's name (``param_name``) and returned as -errno.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.abi.event_channel import DOMID_SELF
from xenlab.abi.hvm import HVM_PARAM_NAMES, HVMOP_get_param, xen_hvm_param
from xenlab.linux.kernel import KERN_ERR

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel

SRC = "include/xen/hvm.h"


def param_name(op: int) -> str:
    """param_name: the HVM_PARAM_ name without its prefix ("unknown" past the table, "reserved" in a hole)."""
    if op > max(HVM_PARAM_NAMES):
        return "unknown"
    return HVM_PARAM_NAMES.get(op, "reserved")


def hvm_get_parameter(kernel: PvopsKernel, idx: int) -> tuple[int, int]:
    """hvm_get_parameter: HVMOP_get_param of {DOMID_SELF, idx}: (0, value) or (-errno, 0)."""
    xhv = xen_hvm_param(domid=DOMID_SELF, index=idx)
    r = kernel.hv.hvm_op(kernel.domid, HVMOP_get_param, xhv)
    if r < 0:
        line = f"Cannot get hvm parameter {param_name(idx)} ({idx}): {r}!"
        kernel.printk(KERN_ERR, line)
        kernel.record("hvm_get_parameter", f"HVMOP_get_param {param_name(idx)}: {r}", SRC, printk=line)
        return r, 0
    kernel.record("hvm_get_parameter", f"HVMOP_get_param {param_name(idx)} = {int(xhv.value):#x}", SRC)
    return r, int(xhv.value)

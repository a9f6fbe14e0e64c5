"""include/xen/hvm.h, XenLinux 2.6.18: hvm_get_parameter, as the PV-on-HVM drivers use it.

In this kernel generation the wrapper returns the value itself: a refused HVMOP_get_param
is printed ("cannot get hvm parameter %d: %d.") and reads as 0, so the caller cannot tell
a refusal from a parameter nobody set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.abi.event_channel import DOMID_SELF
from xenlab.abi.hvm import HVM_PARAM_NAMES, HVMOP_get_param, xen_hvm_param
from xenlab.linux.kernel import KERN_ERR

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel

SRC = "include/xen/hvm.h"


def hvm_get_parameter(kernel: XenLinuxKernel, idx: int) -> int:
    """hvm_get_parameter: HYPERVISOR_hvm_op(HVMOP_get_param, {DOMID_SELF, idx}); the value, 0 on error."""
    xhv = xen_hvm_param(domid=DOMID_SELF, index=idx)
    r = kernel.hv.hvm_op(kernel.domid, HVMOP_get_param, xhv)
    name = HVM_PARAM_NAMES.get(idx, str(idx))
    if r < 0:
        line = f"cannot get hvm parameter {idx}: {r}."
        kernel.printk(KERN_ERR, line)
        kernel.record("hvm_get_parameter", f"HVMOP_get_param {name}: {r}; reads as 0", SRC, printk=line)
        return 0
    kernel.record("hvm_get_parameter", f"HVMOP_get_param {name} = {int(xhv.value):#x}", SRC)
    return int(xhv.value)

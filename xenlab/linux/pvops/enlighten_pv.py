"""arch/x86/xen/enlighten_pv.c, Linux 6.1: a secondary vcpu's IRQs at CPUHP_XEN_PREPARE."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.linux.pvops.smp import xen_smp_intr_init
from xenlab.linux.pvops.smp_pv import xen_smp_intr_init_pv
from xenlab.linux.pvops.time import xen_setup_timer

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel


def xen_cpu_up_prepare_pv(kernel: PvopsKernel, cpu: int) -> int:
    """xen_cpu_up_prepare_pv: timer<cpu>, then the cpu's IPIs (xen_smp_intr_init, _pv); 0 or -errno."""
    for fn in (xen_setup_timer, xen_smp_intr_init, xen_smp_intr_init_pv):
        rc = fn(kernel, cpu)
        if rc < 0:
            return rc
    return 0

"""arch/x86/xen/enlighten.c, Linux 6.1: a secondary vcpu's IRQ at CPUHP_AP_ONLINE_DYN."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.linux.pvops.spinlock import xen_init_lock_cpu

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel


def xen_cpu_up_online(kernel: PvopsKernel, cpu: int) -> int:
    """xen_cpu_up_online: the cpu's spinlock kicker (xen_init_lock_cpu)."""
    return xen_init_lock_cpu(kernel, cpu)

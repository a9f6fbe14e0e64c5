"""arch/x86/xen/enlighten_pv.c, Linux 6.1: the boot banner, a secondary vcpu's IRQs at CPUHP_XEN_PREPARE."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.abi.version import (
    XENFEAT_mmu_pt_update_preserve_ad,
    XENVER_extraversion,
    XENVER_get_features,
    XENVER_version,
)
from xenlab.linux.kernel import KERN_INFO
from xenlab.linux.pvops.smp import xen_smp_intr_init
from xenlab.linux.pvops.smp_pv import xen_smp_intr_init_pv
from xenlab.linux.pvops.time import xen_setup_timer

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel


SRC = "arch/x86/xen/enlighten_pv.c"


def xen_banner(kernel: PvopsKernel) -> None:
    """xen_banner: "Booting kernel on Xen" and the hypervisor's version (pr_info, from xen_start_kernel)."""
    hv = kernel.hv
    version = hv.xen_version(kernel.domid, XENVER_version)
    extra = hv.xen_version(kernel.domid, XENVER_extraversion)
    features = hv.xen_version(kernel.domid, XENVER_get_features)
    assert isinstance(version, int) and isinstance(extra, str) and isinstance(features, int)
    preserve_ad = features >= 0 and bool(features >> XENFEAT_mmu_pt_update_preserve_ad & 1)
    kernel.printk(KERN_INFO, "Booting kernel on Xen")
    line = f"Xen version: {version >> 16}.{version & 0xFFFF}{extra}{' (preserve-AD)' if preserve_ad else ''}"
    kernel.printk(KERN_INFO, line)
    kernel.record("xen_banner", f"HYPERVISOR_xen_version: {line}", SRC, printk=line)


def xen_cpu_up_prepare_pv(kernel: PvopsKernel, cpu: int) -> int:
    """xen_cpu_up_prepare_pv: timer<cpu>, then the cpu's IPIs (xen_smp_intr_init, _pv); 0 or -errno."""
    for fn in (xen_setup_timer, xen_smp_intr_init, xen_smp_intr_init_pv):
        rc = fn(kernel, cpu)
        if rc < 0:
            return rc
    return 0

"""arch/x86/xen/enlighten_hvm.c, Linux 6.1: a kernel that finds Xen under it as an HVM guest.

``xen_hvm_guest_init`` (x86_hyper_xen_hvm's init_platform) replaces a PV guest's
xen_start_kernel: the version comes from Xen's CPUID leaves (``init_hvm_pv_info``), the
domain type becomes XEN_HVM_DOMAIN, and xen_init_IRQ becomes the interrupt init, which
on HVM sets up the callback vector (events_base.c). Nothing reads start_info.

Not modelled: the hypercall page and CPUID probing themselves, mapping shared_info with
XENMEM_add_to_physmap (the lab's shared_info is Xen's own page), vcpu_info placement,
the PV clock and MMU ops, unplugging QEMU's emulated disks and NICs, and kexec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.abi.version import XENVER_version
from xenlab.linux.kernel import KERN_INFO

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel

SRC = "arch/x86/xen/enlighten_hvm.c"


def init_hvm_pv_info(kernel: PvopsKernel) -> None:
    """init_hvm_pv_info: "Xen version %d.%d." from CPUID leaf base+1; the domain is XEN_HVM_DOMAIN."""
    eax = kernel.hv.xen_version(kernel.domid, XENVER_version)  # the value CPUID base+1 reports
    assert isinstance(eax, int)
    line = f"Xen version {eax >> 16}.{eax & 0xFFFF}."
    kernel.printk(KERN_INFO, line)
    kernel.record("init_hvm_pv_info", f"cpuid(base + 1): {line} pv_info.name = \"Xen HVM\"", SRC, printk=line)


def xen_hvm_guest_init(kernel: PvopsKernel) -> None:
    """xen_hvm_guest_init: version and features, then x86_init.irqs.intr_init = xen_init_IRQ."""
    init_hvm_pv_info(kernel)
    kernel.record("xen_hvm_guest_init", "shared_info mapped, vcpu_info reset; intr_init = xen_init_IRQ", SRC)

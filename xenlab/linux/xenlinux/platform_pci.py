"""unmodified_drivers/linux-2.6/platform-pci/platform-pci.c (Xen 4.1): the PV-on-HVM drivers' start.

A 2.6.18 HVM guest runs a native kernel; its PV drivers come as modules, and
xen-platform-pci.ko binds QEMU's Xen platform PCI device (vendor 0x5853, 00:03.0 on the
xenfv machine). ``platform_pci_init`` finds Xen through CPUID and sets up the hypercall
page (``init_hypercall_stubs``), tells Xen how to deliver events (``set_callback_via``:
HVM_PARAM_CALLBACK_IRQ = the device's interrupt, as an ISA IRQ if below 16, else as a PCI
INTx line), and then calls ``xenbus_init`` -- xenbus_probe.c's ``xenbus_probe_init``
built as a MODULE, whose store comes from hvm_get_parameter + ioremap.

Not modelled: the PCI probe itself and the device's BARs, the platform magic check, the
shared_info and grant frames mapped into the MMIO BAR (init_xen_info, gnttab_init), and
platform-pci/evtchn.c: its own irq_evtchn[256] table and the "xen-platform-pci" interrupt
handler. The lab's guest binds its event channels through drivers/xen/core/evtchn.c as the
PV build does, so its IRQ numbers are those of the PV build, and the module loads at the
boot stage where the built-in xenbus would start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.abi.event_channel import DOMID_SELF
from xenlab.abi.hvm import (
    HVM_PARAM_CALLBACK_IRQ,
    HVM_PARAM_CALLBACK_TYPE_PCI_INTX,
    HVMOP_set_param,
    xen_hvm_param,
)
from xenlab.abi.version import XENVER_version
from xenlab.linux.kernel import KERN_INFO
from xenlab.linux.xenlinux.xenbus_probe import xenbus_probe_init

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel

SRC = "unmodified_drivers/linux-2.6/platform-pci/platform-pci.c"
#: QEMU's xenfv machine: the Xen platform device is the first free slot after the VGA card
XEN_PLATFORM_SLOT, XEN_PLATFORM_FUNC, XEN_PLATFORM_PIN = 3, 0, 1  # 00:03.0, INTA
#: cpuid(base + 2) EAX: how many hypercall pages Xen offers
HYPERCALL_PAGES = 1


def init_hypercall_stubs(kernel: XenLinuxKernel) -> int:
    """init_hypercall_stubs: "Xen version %d.%d." from CPUID base+1, then the hypercall pages."""
    eax = kernel.hv.xen_version(kernel.domid, XENVER_version)  # the value CPUID base+1 reports
    assert isinstance(eax, int)
    for line in (f"Xen version {eax >> 16}.{eax & 0xFFFF}.", f"Hypercall area is {HYPERCALL_PAGES} pages."):
        kernel.printk(KERN_INFO, line)
        kernel.record("init_hypercall_stubs", line, SRC, printk=line)
    return 0


def get_callback_via(kernel: XenLinuxKernel) -> int:
    """get_callback_via: the device's IRQ if an ISA one (< 16), else its PCI INTx line (domain, bus,
    devfn, pin - 1) with type 1 in the top byte."""
    irq = kernel.hv.hvm_pci_intx_gsi(XEN_PLATFORM_SLOT, XEN_PLATFORM_PIN - 1)  # pdev->irq: the ACPI GSI
    if irq < 16:
        return irq
    devfn = (XEN_PLATFORM_SLOT << 3) | XEN_PLATFORM_FUNC
    return (HVM_PARAM_CALLBACK_TYPE_PCI_INTX << 56) | (0 << 32) | (0 << 16) | (devfn << 8) | (
        (XEN_PLATFORM_PIN - 1) & 3)


def set_callback_via(kernel: XenLinuxKernel, via: int) -> int:
    """set_callback_via: HVMOP_set_param HVM_PARAM_CALLBACK_IRQ = via on DOMID_SELF; 0 or -errno."""
    a = xen_hvm_param(domid=DOMID_SELF, index=HVM_PARAM_CALLBACK_IRQ, value=via)
    rc = kernel.hv.hvm_op(kernel.domid, HVMOP_set_param, a)
    kernel.record("set_callback_via", f"HVM_PARAM_CALLBACK_IRQ = {via:#x}: {rc}", SRC)
    return rc


def platform_pci_init(kernel: XenLinuxKernel) -> int:
    """platform_pci_init: hypercall page, the callback via, then xenbus_init (xenbus_probe_init)."""
    callback_via = get_callback_via(kernel)
    ret = init_hypercall_stubs(kernel)
    if ret == 0:
        kernel.record("platform_pci_init", "init_xen_info, gnttab_init, xen_irq_init (not modelled)", SRC)
        ret = set_callback_via(kernel, callback_via)
    if ret == 0:
        ret = xenbus_probe_init(kernel)  # xenbus_init
    return ret

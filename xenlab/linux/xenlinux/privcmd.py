"""drivers/xen/privcmd/privcmd.c, XenLinux 2.6.18: /proc/xen/privcmd and /proc/xen/capabilities.

``privcmd_init`` (a device initcall; CONFIG_XEN_PRIVCMD=y in both the xen0 and the xenU
defconfig) creates ``privcmd`` (0400, the hypercall ioctl file: nothing to read) and
``capabilities`` (0400), which reads "control_d\\n" in dom0 and nothing in a domU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.linux.xenlinux.xen_proc import create_xen_proc_entry

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel


def capabilities_read(kernel: XenLinuxKernel) -> str:
    """capabilities_read: "control_d\\n" if this is the initial domain, else empty."""
    return "control_d\n" if kernel.hv.domains[kernel.domid].initdomain else ""


def privcmd_read(kernel: XenLinuxKernel) -> str:
    """privcmd has no read_proc (only ioctl and mmap): a read returns nothing."""
    return ""


def privcmd_init(kernel: XenLinuxKernel) -> int:
    """privcmd_init (__initcall): /proc/xen/privcmd (0400) and /proc/xen/capabilities (0400)."""
    create_xen_proc_entry(kernel, "privcmd", 0o400, lambda: privcmd_read(kernel))
    create_xen_proc_entry(kernel, "capabilities", 0o400, lambda: capabilities_read(kernel))
    return 0

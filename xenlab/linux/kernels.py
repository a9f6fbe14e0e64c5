"""The kernels the lab models, by flavour, and the one place a kernel is chosen."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.base.sched import Scheduler
from xenlab.base.trace import Trace
from xenlab.linux.kernel import FLAVOURS, Kernel
from xenlab.linux.pvops.kernel import PvopsKernel
from xenlab.linux.xenlinux.kernel import XenLinuxKernel

if TYPE_CHECKING:
    from xenlab.xen.hypervisor import Hypervisor

KERNELS: dict[str, type[Kernel]] = {"2.6.18": XenLinuxKernel, "modern": PvopsKernel}


def new_kernel(hv: Hypervisor, domid: int, flavour: str = "modern", *, sched: Scheduler | None = None,
               trace: Trace | None = None, name: str = "", cmdline: str = "") -> Kernel:
    """A kernel of *flavour* ("2.6.18": XenLinux 2.6.18, "modern": Linux 6.1) for domain *domid*.

    *cmdline* is its command line (each kernel reads the boot parameters it knows, e.g. 6.1's
    ``xen.fifo_events=0``).
    """
    if flavour not in KERNELS:
        raise ValueError(f"unknown kernel flavour {flavour!r}; choose one of {', '.join(FLAVOURS)}")
    return KERNELS[flavour](hv, domid, sched=Scheduler() if sched is None else sched,
                            trace=Trace() if trace is None else trace, name=name, cmdline=cmdline)

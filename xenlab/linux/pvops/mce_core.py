"""arch/x86/kernel/cpu/mce/core.c, Linux 6.1: the boot-time machine-check poll of each cpu."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.linux.pvops.x86_irq import inc_irq_stat

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel


def mcheck_cpu_init(kernel: PvopsKernel, cpu: int) -> None:
    """mcheck_cpu_init: the cpu's first machine_check_poll, counted in MCP."""
    inc_irq_stat(kernel, "MCP", cpu)

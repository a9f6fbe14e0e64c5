"""Linux 6.1 as one object: its subsystems as typed fields, its boot order, its /init.

The boot order is Linux 6.1's initcall order (``boot_stages``); each stage calls the
mirrored functions of this package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from xenlab.linux.kernel import BootStage, Kernel

if TYPE_CHECKING:
    from xenlab.xen.memory import Page


@dataclass
class PvopsKernel(Kernel):
    """A Linux 6.1 kernel as Debian 12 ships it, running as a Xen PV dom0 or domU."""

    flavour: ClassVar[str] = "modern"
    release: ClassVar[str] = "6.1.0"
    KOBJ_BIND_UEVENTS: ClassVar[bool] = True

    def irq_flags_mismatch(self, irq: int, irqflags: int, devname: str, old_flags: int,
                           old_name: str) -> str:
        """__setup_irq's message (kernel/irq/manage.c, 6.1)."""
        return (f"genirq: Flags mismatch irq {irq}. {irqflags:08x} ({devname}) vs. "
                f"{old_flags:08x} ({old_name})")

    # -- what the machine asks of a kernel ------------------------------------------------------
    def boot_stages(self, *, initdomain: bool) -> list[BootStage]:
        """early IRQs, xenbus_init + the bus inits, late IRQs, built-in drivers + xenbus_probe_initcall."""
        from xenlab.linux import boot_irqs
        from xenlab.linux.drivers import console, control
        from xenlab.linux.interrupts import register_proc_interrupts
        from xenlab.linux.xenbus import probe

        def early() -> None:
            boot_irqs.boot_early_irqs(self)
            register_proc_interrupts(self)

        def xenbus() -> None:
            probe.xenbus_init(self)
            probe.xenbus_probe_backend_init(self)
            probe.xenbus_probe_frontend_init(self)

        def drivers() -> None:
            console.xen_subsys_init(self)
            control.xen_control_init(self)
            console.console_init(self)
            probe.xenbus_probe_initcall(self)
            if not initdomain:
                probe.boot_wait_for_devices(self)

        return [("early IRQs", early), ("xenbus init", xenbus),
                ("late IRQs", lambda: boot_irqs.boot_late_irqs(self)), ("drivers", drivers)]

    def init_process(self, *, initdomain: bool) -> None:
        """dom0: mount xenfs on /proc/xen, modprobe xen-blkback, xen-netback; a domU: the frontends."""
        if initdomain:
            from xenlab.linux.drivers.blkback import blkback_init
            from xenlab.linux.drivers.netback import netback_init
            from xenlab.linux.procfs_xen import xenfs_mount

            xenfs_mount(self)
            blkback_init(self)
            netback_init(self)
        else:
            from xenlab.linux.drivers.blkfront import blkfront_init
            from xenlab.linux.drivers.netfront import netfront_init

            blkfront_init(self)
            netfront_init(self)

    def xenbus_dev_request(self, mtype: int, tx_id: int, payload: bytes) -> tuple[int, bytes]:
        """/dev/xen/xenbus (xenbus_dev_frontend.c): one request through the xenbus thread."""
        from xenlab.linux.xenbus import xs

        return xs.xenbus_dev_request(self, mtype, tx_id, payload)

    def xen_store_page(self) -> Page | None:
        """The page behind xen_store_interface (drivers/xen/xenbus/xenbus_probe.c, 6.1)."""
        from xenlab.linux.xenbus.globals import xb_globals

        page: Page | None = xb_globals(self).xen_store_page
        return page

    def evtchn_open(self, comm: str) -> Any:
        """open("/dev/xen/evtchn") (drivers/xen/evtchn.c)."""
        from xenlab.linux import evtchn_dev

        return evtchn_dev.evtchn_open(self, comm=comm)

    def show_interrupts(self) -> str:
        """/proc/interrupts as kernel/irq/proc.c + arch/x86/kernel/irq.c print it."""
        from xenlab.linux.interrupts import show_interrupts

        return show_interrupts(self)

    def exhaust_irqs(self) -> str:
        """irq_alloc_descs fails from now on (no IRQ descriptor left)."""
        self.faults.add("xen_allocate_irq")
        self.record("fault exhaust-irqs", "irq_alloc_descs fails from now on (no IRQ descriptor left)",
                    "xenlab/sim/faults.py")
        return "irq_alloc_descs fails"

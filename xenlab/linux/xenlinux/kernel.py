"""XenLinux 2.6.18 as one object: its subsystems as typed fields, its boot order, its /init.

The boot order is the initcall order of the linux-2.6.18-xen tree (``boot_stages``); each
stage calls the mirrored functions of this package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from xenlab.linux.kernel import BootStage, Kernel

if TYPE_CHECKING:
    from xenlab.xen.memory import Page


@dataclass
class XenLinuxKernel(Kernel):
    """A XenLinux 2.6.18 kernel (x86_64, the xen0/xenU configs of the 2.6.18 tree)."""

    flavour: ClassVar[str] = "2.6.18"
    release: ClassVar[str] = "2.6.18-xen"

    def irq_ranges(self) -> dict[str, tuple[int, int]]:
        """PIRQ and DYNIRQ windows of include/asm-x86_64/mach-xen/irq_vectors.h ({} before xen_init_IRQ)."""
        from xenlab.linux import evtchn

        if self.irq_core is None:
            return {}
        sp = evtchn._state(self).space
        return {"PIRQ": (sp.PIRQ_BASE, sp.NR_PIRQS), "DYNIRQ": (sp.DYNIRQ_BASE, sp.NR_DYNIRQS)}

    def irq_flags_mismatch(self, irq: int, irqflags: int, devname: str, old_flags: int,
                           old_name: str) -> str:
        """setup_irq's message (kernel/irq/manage.c, 2.6.18)."""
        return f"IRQ handler type mismatch for IRQ {irq}"

    # -- what the machine asks of a kernel ------------------------------------------------------
    def boot_stages(self, *, initdomain: bool) -> list[BootStage]:
        """early IRQs (xen_init_IRQ, timer, IPIs), xenbus_probe_init, late IRQs, built-in drivers."""
        from xenlab.linux import boot_irqs
        from xenlab.linux.drivers import console, control
        from xenlab.linux.interrupts import register_proc_interrupts
        from xenlab.linux.xenbus import probe

        def early() -> None:
            boot_irqs.boot_early_irqs(self)
            register_proc_interrupts(self)

        def drivers() -> None:
            console.xen_subsys_init(self)
            control.xen_control_init(self)
            console.console_init(self)
            if not initdomain:
                probe.boot_wait_for_devices(self)

        return [("early IRQs", early), ("xenbus init", lambda: probe.xenbus_probe_init(self)),
                ("late IRQs", lambda: boot_irqs.boot_late_irqs(self)), ("drivers", drivers)]

    def init_process(self, *, initdomain: bool) -> None:
        """dom0: modprobe blkback, netback (no xenfs in 2.6.18); a domU: insmod blkfront, netfront."""
        if initdomain:
            from xenlab.linux.drivers.blkback import blkback_init
            from xenlab.linux.drivers.netback import netback_init

            blkback_init(self)
            netback_init(self)
        else:
            from xenlab.linux.drivers.blkfront import blkfront_init
            from xenlab.linux.drivers.netfront import netfront_init

            blkfront_init(self)
            netfront_init(self)

    def xenbus_dev_request(self, mtype: int, tx_id: int, payload: bytes) -> tuple[int, bytes]:
        """/proc/xen/xenbus (xenbus_dev.c): one request through xs_talkv."""
        from xenlab.linux.xenbus import xs

        return xs.xenbus_dev_request(self, mtype, tx_id, payload)

    def xen_store_page(self) -> Page | None:
        """The page behind xen_store_interface (drivers/xen/xenbus/xenbus_probe.c, 2.6.18)."""
        from xenlab.linux.xenbus.globals import xb_globals

        page: Page | None = xb_globals(self).xen_store_page
        return page

    def evtchn_open(self, comm: str) -> Any:
        """open("/dev/xen/evtchn") (drivers/xen/evtchn/evtchn.c)."""
        from xenlab.linux import evtchn_dev

        return evtchn_dev.evtchn_open(self, comm=comm)

    def show_interrupts(self) -> str:
        """/proc/interrupts as arch/x86_64/kernel/irq-xen.c prints it."""
        from xenlab.linux.interrupts import show_interrupts

        return show_interrupts(self)

    def exhaust_irqs(self) -> str:
        """Mark every free dynamic IRQ bound (irq_bindcount 1), so find_unbound_irq finds none."""
        from xenlab.linux import evtchn

        st = evtchn._state(self)
        sp = st.space
        first = sp.DYNIRQ_BASE
        last = sp.DYNIRQ_BASE + sp.NR_DYNIRQS if st.variant == "L18" else sp.NR_IRQS
        taken = [irq for irq in range(first, last) if st.irq_bindcount[irq] == 0]
        for irq in taken:
            st.irq_bindcount[irq] = 1
        self.record("fault exhaust-irqs", f"{len(taken)} free dynamic IRQs ({taken[0]}..{taken[-1]}) "
                    "taken by other bindings", "xenlab/sim/faults.py",
                    changes=[(self.table("irq_bindcount"), str(i), 0, 1) for i in taken])
        return f"{len(taken)} dynamic IRQs taken"

"""drivers/xen/evtchn.c, Linux 6.1: /dev/xen/evtchn, event channels for user space (as xenstored uses it).

Theory of operation
-------------------
Each ``open()`` gets a ``per_user_data`` named ``"evtchn:<comm>"``. Binding a port
(IOCTL_EVTCHN_BIND_INTERDOMAIN / BIND_VIRQ / BIND_UNBOUND_PORT) makes the hypercall,
then ``evtchn_bind_to_user`` gives the port an IRQ of its own with
``bind_evtchn_to_irqhandler_lateeoi(port, evtchn_interrupt, IRQF_SHARED, u->name)`` --
which is why a real dom0's /proc/interrupts shows ``xen-dyn-lateeoi -event
evtchn:oxenstored``. When the port fires, ``evtchn_interrupt`` marks it disabled and
appends it to the user's ring, waking readers; the lateeoi chip left the port masked.
``read()`` returns the ring's ports; ``write()`` of a port back re-enables it with
``xen_irq_lateeoi`` (the late EOI unmasks it). ``IOCTL_EVTCHN_UNBIND`` unbinds the
IRQ, which closes the port. Every port stays on vcpu 0: the round-robin spreading of
interdomain ports over vcpus (``evtchn_bind_interdom_next_vcpu``) left Linux in 5.11.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xenlab.abi.errno import EINVAL, ENOTCONN
from xenlab.abi.event_channel import DOMID_SELF
from xenlab.base.sched import WaitQueue
from xenlab.linux.irq import IRQ_HANDLED, IRQF_SHARED
from xenlab.linux.kernel import KERN_INFO
from xenlab.linux.pvops.events_base import (
    bind_evtchn_to_irqhandler_lateeoi,
    evtchn_make_refcounted,
    unbind_from_irqhandler,
    xen_irq_lateeoi,
)

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel

SRC = "drivers/xen/evtchn.c"


@dataclass(eq=False)
class user_evtchn:
    """struct user_evtchn: one bound port of an open file, its IRQ and enabled flag."""

    port: int
    irq: int = -1
    enabled: bool = True


@dataclass(eq=False)
class per_user_data:
    """struct per_user_data: one open /dev/xen/evtchn -- its ports, ring of fired ports, wait queue."""

    kernel: PvopsKernel
    comm: str
    name: str
    evtchns: dict[int, user_evtchn] = field(default_factory=dict)
    ring: deque[int] = field(default_factory=deque)
    ring_overflow: bool = False
    waitq: WaitQueue = field(default_factory=lambda: WaitQueue("evtchn_wait"))  # u->evtchn_wait

    @property
    def ring_size(self) -> int:
        """evtchn_resize_ring: a power of two at least as big as the number of bound ports (min 64)."""
        size = 64
        while size < len(self.evtchns):
            size *= 2
        return size

    def _rec(self, fn: str, summary: str) -> None:
        self.kernel.record(fn, f"{self.name}: {summary}", SRC)

    def evtchn_interrupt(self, irq: int, dev_id: Any) -> int:
        """evtchn_interrupt: mark the port disabled, append it to the ring, wake readers."""
        evtchn: user_evtchn = dev_id
        evtchn.enabled = False
        was_empty = not self.ring
        if len(self.ring) < self.ring_size:
            self.ring.append(evtchn.port)
        else:
            self.ring_overflow = True
        self._rec("evtchn_interrupt",
                  f"port {evtchn.port} queued for read()" + (", waking readers" if was_empty else ""))
        if was_empty:
            self.kernel.sched.wake_up(self.waitq)
        return IRQ_HANDLED

    def evtchn_bind_to_user(self, port: int) -> int:
        """evtchn_bind_to_user: own the port; give it a lateeoi IRQ named u->name, refcounted."""
        evtchn = user_evtchn(port)
        self.evtchns[port] = evtchn
        k = self.kernel
        irq = bind_evtchn_to_irqhandler_lateeoi(k, port, self.evtchn_interrupt, IRQF_SHARED, self.name,
                                                evtchn)
        if irq < 0:
            del self.evtchns[port]
            k.hv.evtchn_close(k.domid, port)
            return irq
        evtchn.irq = irq
        evtchn_make_refcounted(k, port)
        self._rec("evtchn_bind_to_user", f"port {port} bound on IRQ {irq}")
        return port

    # -- ioctls -----------------------------------------------------------------------------
    def bind_interdomain(self, remote_dom: int, remote_port: int) -> int:
        """IOCTL_EVTCHN_BIND_INTERDOMAIN: a local port connected to (remote_dom, remote_port)."""
        port = self.kernel.hv.evtchn_bind_interdomain(self.kernel.domid, remote_dom, remote_port)
        self._rec("evtchn_ioctl", f"BIND_INTERDOMAIN(dom {remote_dom}, port {remote_port}) -> {port}")
        return port if port < 0 else self.evtchn_bind_to_user(port)

    def bind_virq(self, virq: int) -> int:
        """IOCTL_EVTCHN_BIND_VIRQ: a port for *virq* on vcpu 0; port or -errno."""
        port = self.kernel.hv.evtchn_bind_virq(self.kernel.domid, virq, 0)
        self._rec("evtchn_ioctl", f"BIND_VIRQ({virq}) -> {port}")
        return port if port < 0 else self.evtchn_bind_to_user(port)

    def bind_unbound_port(self, remote_dom: int) -> int:
        """IOCTL_EVTCHN_BIND_UNBOUND_PORT: alloc_unbound for *remote_dom*; port or -errno."""
        port = self.kernel.hv.evtchn_alloc_unbound(self.kernel.domid, DOMID_SELF, remote_dom)
        self._rec("evtchn_ioctl", f"BIND_UNBOUND_PORT(dom {remote_dom}) -> {port}")
        return port if port < 0 else self.evtchn_bind_to_user(port)

    def notify(self, port: int) -> int:
        """IOCTL_EVTCHN_NOTIFY: send on one of our ports; 0 or -ENOTCONN."""
        if port not in self.evtchns:
            return -ENOTCONN
        return self.kernel.hv.evtchn_send(self.kernel.domid, port)

    def unbind(self, port: int) -> int:
        """IOCTL_EVTCHN_UNBIND: drop the port (evtchn_unbind_from_user: its IRQ goes, closing it)."""
        evtchn = self.evtchns.pop(port, None)
        if evtchn is None:
            return -ENOTCONN
        unbind_from_irqhandler(self.kernel, evtchn.irq, evtchn)
        self._rec("evtchn_ioctl", f"UNBIND({port})")
        return 0

    # -- read / write ------------------------------------------------------------------------
    def has_pending(self) -> bool:
        """Would read() return something now?"""
        return bool(self.ring)

    def read_pending(self) -> list[int]:
        """evtchn_read without blocking: the fired ports, oldest first (empty list = -EAGAIN)."""
        ports = list(self.ring)
        self.ring.clear()
        return ports

    pending = read_pending

    def write_ports(self, ports: list[int]) -> int:
        """evtchn_write: re-enable each port with xen_irq_lateeoi; bytes written or -EINVAL."""
        for port in ports:
            evtchn = self.evtchns.get(port)
            if evtchn is None:
                return -EINVAL
            if not evtchn.enabled:
                evtchn.enabled = True
                xen_irq_lateeoi(self.kernel, evtchn.irq)
        return 4 * len(ports)

    def unmask(self, port: int) -> int:
        """The write-back of one port."""
        return self.write_ports([port])

    def release(self) -> None:
        """evtchn_release: close(): unbind every port."""
        for port in sorted(self.evtchns):
            self.unbind(port)


def evtchn_open(kernel: PvopsKernel, comm: str) -> per_user_data:
    """evtchn_open: a new per-user context named "evtchn:<comm>" (what /proc/interrupts shows)."""
    if kernel.irq is None:
        raise RuntimeError(f"{kernel.name}: /dev/xen/evtchn needs the IRQ layer (boot the kernel first)")
    user = per_user_data(kernel, comm, f"evtchn:{comm}")
    kernel.evtchn_users.append(user)
    kernel.record("evtchn_open", f"/dev/xen/evtchn opened by {comm}", SRC)
    return user


def evtchn_init(kernel: PvopsKernel) -> int:
    """evtchn_init: module_init of xen-evtchn: misc_register /dev/xen/evtchn and say so."""
    text = "xen:xen_evtchn: Event-channel device installed"  # pr_fmt "xen:" KBUILD_MODNAME ": "
    kernel.printk(KERN_INFO, text)
    kernel.record("evtchn_init", "misc_register(/dev/xen/evtchn)", SRC, printk=text)
    return 0

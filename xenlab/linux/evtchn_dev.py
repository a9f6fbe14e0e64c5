"""/dev/xen/evtchn: event channels for user space (drivers/xen/evtchn.c), as xenstored uses it.

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

2.6.18 (drivers/xen/evtchn/evtchn.c) has no per-port IRQ: ports of the device stay out
of ``evtchn_to_irq`` and the upcall hands them to ``evtchn_device_upcall``, which masks,
clears and queues them; ``write()`` unmasks. The same Python API covers both.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from xenlab.abi.errno import EINVAL, ENOTCONN
from xenlab.abi.event_channel import DOMID_SELF
from xenlab.base.sched import WaitQueue
from xenlab.linux import events as ev
from xenlab.linux.irq import IRQ_HANDLED, IRQF_SHARED, mask_and_clear_evtchn

SRC = "drivers/xen/evtchn.c"
SRC_2618 = "drivers/xen/evtchn/evtchn.c"


@dataclass(eq=False)
class UserEvtchn:
    """struct user_evtchn: one bound port of an open file, its IRQ (modern) and enabled flag."""

    port: int
    irq: int = -1
    enabled: bool = True


@dataclass(eq=False)
class EvtchnUser:
    """struct per_user_data: one open /dev/xen/evtchn -- its ports, ring of fired ports, wait queue."""

    kernel: Any
    comm: str
    name: str
    evtchns: dict[int, UserEvtchn] = field(default_factory=dict)
    ring: deque[int] = field(default_factory=deque)
    ring_overflow: bool = False
    waitq: WaitQueue = field(default_factory=lambda: WaitQueue("evtchn_wait"))

    @property
    def ring_size(self) -> int:
        """evtchn_resize_ring: a power of two at least as big as the number of bound ports (min 64)."""
        size = 64
        while size < len(self.evtchns):
            size *= 2
        return size

    def _rec(self, fn: str, summary: str) -> None:
        self.kernel.record(
            fn, f"{self.name}: {summary}", SRC if self.kernel.flavour == "modern" else SRC_2618
        )

    # -- fired ports -------------------------------------------------------------------
    def _queue(self, port: int) -> None:
        was_empty = not self.ring
        if len(self.ring) < self.ring_size:
            self.ring.append(port)
        else:
            self.ring_overflow = True
        self._rec(
            "evtchn_interrupt", f"port {port} queued for read()" + (", waking readers" if was_empty else "")
        )
        if was_empty:
            self.kernel.sched.wake_up(self.waitq)

    def evtchn_interrupt(self, irq: int, dev_id: Any) -> int:
        """evtchn_interrupt: mark the port disabled, append it to the ring, wake readers."""
        evtchn: UserEvtchn = dev_id
        evtchn.enabled = False
        self._queue(evtchn.port)
        return IRQ_HANDLED

    # -- ioctls ----------------------------------------------------------------------------
    def _bind_to_user(self, port: int) -> int:
        """evtchn_bind_to_user: own the port; modern kernels give it a lateeoi IRQ named u->name."""
        evtchn = UserEvtchn(port)
        self.evtchns[port] = evtchn
        k = self.kernel
        if k.flavour == "modern":
            irq = ev.bind_evtchn_to_irqhandler_lateeoi(
                k, port, self.evtchn_interrupt, IRQF_SHARED, self.name, evtchn
            )
            if irq < 0:
                del self.evtchns[port]
                k.hv.evtchn_close(k.domid, port)
                return irq
            evtchn.irq = irq
            ev.evtchn_make_refcounted(k, port)
        else:
            from xenlab.linux import evtchn as l18

            k.irq.device_ports[port] = self
            l18.unmask_evtchn(k, port)  # re-raises an event that is already pending
        self._rec(
            "evtchn_bind_to_user", f"port {port} bound" + (f" on IRQ {evtchn.irq}" if evtchn.irq >= 0 else "")
        )
        return port

    def bind_interdomain(self, remote_dom: int, remote_port: int) -> int:
        """IOCTL_EVTCHN_BIND_INTERDOMAIN: a local port connected to (remote_dom, remote_port)."""
        port = self.kernel.hv.evtchn_bind_interdomain(self.kernel.domid, remote_dom, remote_port)
        self._rec("evtchn_ioctl", f"BIND_INTERDOMAIN(dom {remote_dom}, port {remote_port}) -> {port}")
        return port if port < 0 else self._bind_to_user(port)

    def bind_virq(self, virq: int) -> int:
        """IOCTL_EVTCHN_BIND_VIRQ: a port for *virq* on vcpu 0; port or -errno."""
        port = self.kernel.hv.evtchn_bind_virq(self.kernel.domid, virq, 0)
        self._rec("evtchn_ioctl", f"BIND_VIRQ({virq}) -> {port}")
        return port if port < 0 else self._bind_to_user(port)

    def bind_unbound_port(self, remote_dom: int) -> int:
        """IOCTL_EVTCHN_BIND_UNBOUND_PORT: alloc_unbound for *remote_dom*; port or -errno."""
        port = self.kernel.hv.evtchn_alloc_unbound(self.kernel.domid, DOMID_SELF, remote_dom)
        self._rec("evtchn_ioctl", f"BIND_UNBOUND_PORT(dom {remote_dom}) -> {port}")
        return port if port < 0 else self._bind_to_user(port)

    def notify(self, port: int) -> int:
        """IOCTL_EVTCHN_NOTIFY: send on one of our ports; 0 or -ENOTCONN."""
        if port not in self.evtchns:
            return -ENOTCONN
        return self.kernel.hv.evtchn_send(self.kernel.domid, port)

    def unbind(self, port: int) -> int:
        """IOCTL_EVTCHN_UNBIND: drop the port (its IRQ is unbound, which closes it); 0 or -ENOTCONN."""
        evtchn = self.evtchns.pop(port, None)
        if evtchn is None:
            return -ENOTCONN
        k = self.kernel
        if evtchn.irq >= 0:
            ev.unbind_from_irqhandler(k, evtchn.irq, evtchn)
        else:
            k.irq.device_ports.pop(port, None)
            from xenlab.linux import evtchn as l18

            l18.mask_evtchn(k, port)
            k.hv.evtchn_close(k.domid, port)
        self._rec("evtchn_ioctl", f"UNBIND({port})")
        return 0

    # -- read / write ------------------------------------------------------------------------
    def has_pending(self) -> bool:
        """Would read() return something now?"""
        return bool(self.ring)

    def read_pending(self) -> list[int]:
        """read() without blocking: the fired ports, oldest first (empty list = -EAGAIN)."""
        ports = list(self.ring)
        self.ring.clear()
        return ports

    pending = read_pending

    def write_ports(self, ports: list[int]) -> int:
        """write(): re-enable each port (modern: xen_irq_lateeoi; 2.6.18: unmask); bytes or -EINVAL."""
        k = self.kernel
        for port in ports:
            evtchn = self.evtchns.get(port)
            if evtchn is None:
                return -EINVAL
            if evtchn.irq >= 0:
                if not evtchn.enabled:
                    evtchn.enabled = True
                    ev.xen_irq_lateeoi(k, evtchn.irq)
            else:
                from xenlab.linux import evtchn as l18

                l18.unmask_evtchn(k, port)
        return 4 * len(ports)

    def unmask(self, port: int) -> int:
        """The write-back of one port."""
        return self.write_ports([port])

    def release(self) -> None:
        """evtchn_release: close(): unbind every port."""
        for port in sorted(self.evtchns):
            self.unbind(port)


def evtchn_device_upcall(kernel: Any, port: int) -> bool:
    """2.6.18 evtchn_device_upcall: a port with no IRQ: mask, clear, queue to its owner; False if unowned."""
    user = kernel.irq.device_ports.get(port)
    mask_and_clear_evtchn(kernel, kernel.irq.shared, port, "evtchn_device_upcall",
                          "no IRQ: queued to user space", SRC_2618)
    if user is None:
        return False
    user._queue(port)
    return True


def evtchn_open(kernel: Any, comm: str) -> EvtchnUser:
    """evtchn_open: a new per-user context named "evtchn:<comm>" (what /proc/interrupts shows)."""
    if getattr(kernel, "irq", None) is None:
        raise RuntimeError(f"{kernel.name}: /dev/xen/evtchn needs the IRQ layer (boot the kernel first)")
    users = getattr(kernel, "evtchn_dev", None)
    if users is None:
        users = kernel.evtchn_dev = []
    user = EvtchnUser(kernel, comm, f"evtchn:{comm}")
    users.append(user)
    kernel.record("evtchn_open", f"/dev/xen/evtchn opened by {comm}", SRC)
    return user

"""drivers/xen/evtchn/evtchn.c, XenLinux 2.6.18: /dev/xen/evtchn, event channels for user space.

Theory of operation
-------------------
Each ``open()`` gets a ``per_user_data`` (named ``"evtchn:<comm>"`` in the lab, for the
trace). Binding a port (IOCTL_EVTCHN_BIND_INTERDOMAIN / BIND_VIRQ / BIND_UNBOUND_PORT)
makes the hypercall, then ``evtchn_bind_to_user`` records the owner in ``port_user[]``
and unmasks the port (re-raising an event already pending). The port gets no IRQ: it
stays out of ``evtchn_to_irq``, so the upcall (drivers/xen/core/evtchn.c) hands it to
``evtchn_device_upcall``, which masks it, clears it and queues it on its owner's ring,
waking readers. ``read()`` returns the ring's ports; ``write()`` of a port back unmasks
it. ``IOCTL_EVTCHN_UNBIND`` masks and closes the port.

``EvtchnDev`` (``kernel.evtchn_dev``) holds ``port_user[]`` and the open files.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xenlab.abi.errno import EINVAL, ENOTCONN
from xenlab.abi.event_channel import DOMID_SELF
from xenlab.base.sched import WaitQueue
from xenlab.linux.kernel import KERN_WARNING, ChangeRow
from xenlab.linux.xenlinux.evtchn import evtchn_state, mask_evtchn, unmask_evtchn

if TYPE_CHECKING:
    from xenlab.linux.xenlinux.kernel import XenLinuxKernel

SRC = "drivers/xen/evtchn/evtchn.c"
EVTCHN_RING_SIZE = 4096 // 4  # PAGE_SIZE / sizeof(evtchn_port_t)


@dataclass(eq=False)
class per_user_data:
    """struct per_user_data: one open /dev/xen/evtchn -- its ports, the ring of fired ports, the waitq."""

    kernel: XenLinuxKernel
    comm: str
    name: str
    evtchns: set[int] = field(default_factory=set)  # the ports port_user[] gives to this file
    ring: deque[int] = field(default_factory=deque)
    ring_overflow: bool = False
    waitq: WaitQueue = field(default_factory=lambda: WaitQueue("evtchn_wait"))

    def _rec(self, fn: str, summary: str) -> None:
        self.kernel.record(fn, f"{self.name}: {summary}", SRC)

    def queue(self, port: int) -> None:
        """The ring half of evtchn_device_upcall: append the port, wake readers if the ring was empty."""
        was_empty = not self.ring
        if len(self.ring) < EVTCHN_RING_SIZE:
            self.ring.append(port)
        else:
            self.ring_overflow = True
        self._rec("evtchn_interrupt",
                  f"port {port} queued for read()" + (", waking readers" if was_empty else ""))
        if was_empty:
            self.kernel.sched.wake_up(self.waitq)

    # -- evtchn_ioctl ------------------------------------------------------------------------------
    def bind_interdomain(self, remote_dom: int, remote_port: int) -> int:
        """IOCTL_EVTCHN_BIND_INTERDOMAIN: a local port connected to (remote_dom, remote_port)."""
        port = self.kernel.hv.evtchn_bind_interdomain(self.kernel.domid, remote_dom, remote_port)
        self._rec("evtchn_ioctl", f"BIND_INTERDOMAIN(dom {remote_dom}, port {remote_port}) -> {port}")
        return port if port < 0 else evtchn_bind_to_user(self, port)

    def bind_virq(self, virq: int) -> int:
        """IOCTL_EVTCHN_BIND_VIRQ: a port for *virq* on vcpu 0; port or -errno."""
        port = self.kernel.hv.evtchn_bind_virq(self.kernel.domid, virq, 0)
        self._rec("evtchn_ioctl", f"BIND_VIRQ({virq}) -> {port}")
        return port if port < 0 else evtchn_bind_to_user(self, port)

    def bind_unbound_port(self, remote_dom: int) -> int:
        """IOCTL_EVTCHN_BIND_UNBOUND_PORT: alloc_unbound for *remote_dom*; port or -errno."""
        port = self.kernel.hv.evtchn_alloc_unbound(self.kernel.domid, DOMID_SELF, remote_dom)
        self._rec("evtchn_ioctl", f"BIND_UNBOUND_PORT(dom {remote_dom}) -> {port}")
        return port if port < 0 else evtchn_bind_to_user(self, port)

    def notify(self, port: int) -> int:
        """IOCTL_EVTCHN_NOTIFY: send on one of our ports; 0 or -ENOTCONN."""
        if port not in self.evtchns:
            return -ENOTCONN
        return self.kernel.hv.evtchn_send(self.kernel.domid, port)

    def unbind(self, port: int) -> int:
        """IOCTL_EVTCHN_UNBIND: port_user[port] = NULL, mask the port, EVTCHNOP_close; 0 or -ENOTCONN."""
        if port not in self.evtchns:
            return -ENOTCONN
        k = self.kernel
        self.evtchns.discard(port)
        evtchn_dev(k).port_user.pop(port, None)
        mask_evtchn(k, port)
        k.hv.evtchn_close(k.domid, port)
        self._rec("evtchn_ioctl", f"UNBIND({port})")
        return 0

    # -- read / write ------------------------------------------------------------------------------
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
        """evtchn_write: unmask each of our ports written back; the bytes written, or -EINVAL."""
        for port in ports:
            if port not in self.evtchns:
                return -EINVAL
            unmask_evtchn(self.kernel, port)
        return 4 * len(ports)

    def unmask(self, port: int) -> int:
        """The write-back of one port."""
        return self.write_ports([port])

    def release(self) -> None:
        """evtchn_release: close(): give back every port of this file."""
        for port in sorted(self.evtchns):
            self.unbind(port)


@dataclass
class EvtchnDev:
    """The file-scope state of evtchn/evtchn.c: port_user[] and (for the lab) the open files."""

    port_user: dict[int, per_user_data] = field(default_factory=dict)
    users: list[per_user_data] = field(default_factory=list)


def evtchn_dev(kernel: XenLinuxKernel) -> EvtchnDev:
    """kernel.evtchn_dev, which evtchn_init made (an error before it ran)."""
    if kernel.evtchn_dev is None:
        raise RuntimeError(f"{kernel.name}: /dev/xen/evtchn is not registered (evtchn_init has not run)")
    return kernel.evtchn_dev


def evtchn_device_upcall(kernel: XenLinuxKernel, port: int) -> bool:
    """evtchn_device_upcall: a port with no IRQ: mask, clear, queue to its owner; False if unowned."""
    sb = evtchn_state(kernel).shared  # mask_evtchn(port); clear_evtchn(port), as one step
    rows: list[ChangeRow] = []
    sb.set_mask(port, rows)
    sb.clear_pending(port, rows)
    if rows:
        kernel.record("evtchn_device_upcall",
                      f"port {port} masked, pending cleared (no IRQ: queued to user space)", SRC,
                      changes=rows)
    user = kernel.evtchn_dev.port_user.get(port) if kernel.evtchn_dev is not None else None
    if user is None:
        return False
    user.queue(port)
    return True


def evtchn_bind_to_user(u: per_user_data, port: int) -> int:
    """evtchn_bind_to_user: port_user[port] = u, then unmask (re-raising an event already pending)."""
    k = u.kernel
    u.evtchns.add(port)
    evtchn_dev(k).port_user[port] = u
    unmask_evtchn(k, port)
    u._rec("evtchn_bind_to_user", f"port {port} bound")
    return port


def evtchn_open(kernel: XenLinuxKernel, comm: str) -> per_user_data:
    """evtchn_open: a new per-user context (named "evtchn:<comm>" in the lab)."""
    evtchn_state(kernel)  # the device works on the IRQ layer's bits: boot the kernel first
    dev = evtchn_init(kernel)
    user = per_user_data(kernel, comm, f"evtchn:{comm}")
    dev.users.append(user)
    kernel.record("evtchn_open", f"/dev/xen/evtchn opened by {comm}", SRC)
    return user


def evtchn_init(kernel: XenLinuxKernel) -> EvtchnDev:
    """evtchn_init (module_init): clear port_user[], register the misc device "evtchn", say so."""
    if kernel.evtchn_dev is None:
        kernel.evtchn_dev = EvtchnDev()
        kernel.printk(KERN_WARNING, "Event-channel device installed.")  # no level: default_message_loglevel 4
    return kernel.evtchn_dev

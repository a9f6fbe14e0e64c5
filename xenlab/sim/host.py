"""The xenstored host of the simulated machine: dom0's /dev/xen/evtchn and its store page.

Theory of operation
-------------------
A real oxenstored / C xenstored reaches event channels through libxenevtchn, i.e. ioctls
on ``/dev/xen/evtchn`` (drivers/xen/evtchn.c): BIND_INTERDOMAIN / BIND_VIRQ / NOTIFY /
UNBIND, ``read()`` for the ports that fired, ``write()`` of the same ports to re-enable
them. Each bound port becomes an IRQ of the dom0 kernel named ``evtchn:<comm>``
(``xen-dyn-lateeoi``), which is why /proc/interrupts shows ``evtchn:oxenstored``.
``EvtchnDevHost`` is that user: it opens the dom0 kernel's evtchn device model
(``xenlab.linux.evtchn_dev``) and offers what xenstored's RingServer needs (the host
contract in DEVELOPERS.md). dom0's own store page comes from ``/proc/xen/xsd_kva``
(mmap of the page the kernel allocated); a guest's page is mapped by mfn (the real
daemon maps grant ref 1 through gntdev; the frame is the same).
"""

from __future__ import annotations

from typing import Any

from xenlab.base.sched import WaitQueue


class EvtchnDevHost:
    """libxenevtchn over the dom0 kernel's /dev/xen/evtchn, for one process (*comm*)."""

    def __init__(self, kernel: Any, comm: str) -> None:
        from xenlab.linux import evtchn_dev

        self.kernel = kernel
        self.comm = comm
        self.dev = evtchn_dev.evtchn_open(kernel, comm=comm)
        self.mapped: dict[int, Any] = {}

    # -- event channels (IOCTL_EVTCHN_*) ------------------------------------------
    def evtchn_bind_interdomain(self, remote_dom: int, remote_port: int) -> int:
        """IOCTL_EVTCHN_BIND_INTERDOMAIN: a local port bound to (remote_dom, remote_port)."""
        return self._ok(self.dev.bind_interdomain(remote_dom, remote_port),
                        f"bind_interdomain({remote_dom}, {remote_port})")

    def evtchn_bind_virq(self, virq: int) -> int:
        """IOCTL_EVTCHN_BIND_VIRQ: a local port for *virq*."""
        return self._ok(self.dev.bind_virq(virq), f"bind_virq({virq})")

    def evtchn_notify(self, port: int) -> None:
        """IOCTL_EVTCHN_NOTIFY: send an event on a local port."""
        self._ok(self.dev.notify(port), f"notify({port})")

    def evtchn_unbind(self, port: int) -> None:
        """IOCTL_EVTCHN_UNBIND: give the port back."""
        self._ok(self.dev.unbind(port), f"unbind({port})")

    def evtchn_pending(self) -> list[int]:
        """read() on /dev/xen/evtchn without blocking: the ports that fired."""
        return list(self.dev.read_pending())

    def evtchn_unmask(self, port: int) -> None:
        """write() of the port back to /dev/xen/evtchn: re-enable it (late EOI)."""
        self.dev.write_ports([port])

    def wait(self) -> None:
        """Sleep until a port of ours fires (a blocking read)."""
        wq: WaitQueue = self.dev.waitq
        self.kernel.sched.wait_event(wq, self.dev.has_pending)

    # -- store pages -----------------------------------------------------------------
    def map_local_store_page(self) -> Any:
        """mmap of /proc/xen/xsd_kva: dom0's own store page, as the dom0 kernel allocated it."""
        xb = getattr(self.kernel, "xb", None)
        page = getattr(xb, "xen_store_page", None)
        if page is None:
            raise OSError(6, "/proc/xen/xsd_kva: No such device or address (no store page in this kernel)")
        self.mapped[0] = page.buf
        return page.buf

    def map_store_page(self, domid: int, mfn: int) -> Any:
        """Map guest *domid*'s store page (grant ref 1 / its mfn) into the daemon."""
        page = self.kernel.hv.memory.page(mfn)
        if page is None or getattr(page, "owner", domid) != domid:
            raise OSError(22, f"map store page of d{domid} (mfn {mfn:#x}): Invalid argument")
        self.mapped[domid] = page.buf
        return page.buf

    def unmap_store_page(self, domid: int) -> None:
        """munmap + IOCTL_GNTDEV_UNMAP_GRANT_REF."""
        self.mapped.pop(domid, None)

    @staticmethod
    def _ok(rc: int, what: str) -> int:
        if rc < 0:
            raise OSError(-rc, f"/dev/xen/evtchn {what} failed: {rc}")
        return rc

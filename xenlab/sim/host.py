"""The xenstored host of the simulated machine: dom0's /dev/xen/evtchn and its store page.

Theory of operation
-------------------
A real oxenstored / C xenstored reaches event channels through libxenevtchn, i.e. ioctls
on ``/dev/xen/evtchn`` (drivers/xen/evtchn.c): BIND_INTERDOMAIN / BIND_VIRQ / NOTIFY /
UNBIND, ``read()`` for the ports that fired, ``write()`` of the same ports to re-enable
them. Each bound port becomes an IRQ of the dom0 kernel named ``evtchn:<comm>``
(``xen-dyn-lateeoi``), which is why /proc/interrupts shows ``evtchn:oxenstored``.
``EvtchnDevHost`` is that user: it opens the dom0 kernel's evtchn device model
(``Kernel.evtchn_open``: drivers/xen/evtchn.c of each kernel) and offers what xenstored's
RingServer needs (the host contract in DEVELOPERS.md). dom0's own store page comes from
``/proc/xen/xsd_kva`` (mmap of the page the kernel allocated); a guest's page is mapped the
way the real daemon maps it: grant ref 1 (GNTTAB_RESERVED_XENSTORE, seeded by the domain
builder) through /dev/xen/gntdev, i.e. GNTTABOP_map_grant_ref by dom0; the mfn INTRODUCE
names is not used for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from xenlab.abi.grant_table import GNTST_NAMES, GNTTAB_RESERVED_XENSTORE, GNTST_okay
from xenlab.base.sched import WaitQueue

if TYPE_CHECKING:
    from xenlab.linux.kernel import Kernel
    from xenlab.xen.memory import PageBuffer


class EvtchnDevHost:
    """libxenevtchn over the dom0 kernel's /dev/xen/evtchn, for one process (*comm*)."""

    def __init__(self, kernel: Kernel, comm: str) -> None:
        self.kernel = kernel
        self.comm = comm
        self.dev = kernel.evtchn_open(comm)
        self.mapped: dict[int, PageBuffer] = {}
        self.grant_handles: dict[int, int] = {}  # domid -> gntdev handle of its mapped ref

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
        self.kernel.sched.wait_event(*self.wake_condition())

    def wake_condition(self) -> tuple[WaitQueue, Callable[[], bool]]:
        """What wait() sleeps on, for a main loop run as a scheduler handler (kthread_run(wait=...))."""
        return self.dev.waitq, self.dev.has_pending

    # -- store pages -----------------------------------------------------------------
    def map_local_store_page(self) -> PageBuffer:
        """mmap of /proc/xen/xsd_kva: dom0's own store page, as the dom0 kernel allocated it."""
        page = self.kernel.xen_store_page()
        if page is None:
            raise OSError(6, "/proc/xen/xsd_kva: No such device or address (no store page in this kernel)")
        self.mapped[0] = page.buf
        return page.buf

    def map_store_page(self, domid: int, mfn: int) -> PageBuffer:
        """xengnttab_map_grant_ref(domid, GNTTAB_RESERVED_XENSTORE): guest *domid*'s store page."""
        return self.map_grant(domid, GNTTAB_RESERVED_XENSTORE, "store page")

    def unmap_store_page(self, domid: int) -> None:
        """xengnttab_unmap: munmap + IOCTL_GNTDEV_UNMAP_GRANT_REF (the grant's pin goes)."""
        self.mapped.pop(domid, None)
        self.unmap_grant(domid)

    def map_grant(self, domid: int, ref: int, what: str) -> PageBuffer:
        """IOCTL_GNTDEV_MAP_GRANT_REF + mmap: GNTTABOP_map_grant_ref by dom0, writable."""
        status, handle, page = self.kernel.hv.gnttab_map_grant_ref(self.kernel.domid, domid, ref)
        if status != GNTST_okay or page is None:
            raise OSError(22, f"map {what} of d{domid} (grant ref {ref}): {GNTST_NAMES.get(status, status)}")
        self.grant_handles[domid] = handle
        if ref == GNTTAB_RESERVED_XENSTORE:
            self.mapped[domid] = page.buf
        return page.buf

    def unmap_grant(self, domid: int) -> None:
        """IOCTL_GNTDEV_UNMAP_GRANT_REF: GNTTABOP_unmap_grant_ref of the handle held for *domid*."""
        handle = self.grant_handles.pop(domid, None)
        if handle is not None and self.kernel.domid in self.kernel.hv.domains:
            self.kernel.hv.gnttab_unmap_grant_ref(self.kernel.domid, handle)

    @staticmethod
    def _ok(rc: int, what: str) -> int:
        if rc < 0:
            raise OSError(-rc, f"/dev/xen/evtchn {what} failed: {rc}")
        return rc

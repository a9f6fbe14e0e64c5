"""What the daemon needs from the machine it runs on: event channels and store pages.

Theory of operation
-------------------
xenstored never touches a kernel or a device directly; the ring transport is handed a
*host* (see DEVELOPERS.md, "What xenstored needs from its host"). A real dom0 daemon
does these through ioctls on ``/dev/xen/evtchn`` and ``/dev/xen/gntdev`` (libxenevtchn,
libxengnttab); the simulated machine does them through the dom0 kernel's
``/dev/xen/evtchn`` model, so /proc/interrupts shows the ``evtchn:xenstored`` IRQs.

``HypervisorHost`` below is the third kind: it talks to ``xenlab.xen``'s Hypervisor
directly, acting for a dom0 that has no kernel, so the daemon can be tested alone. It
does what the Linux evtchn driver does for a user: when an event arrives on one of its
ports it masks the port and remembers it; ``evtchn_pending()`` hands the ports over and
``evtchn_unmask()`` (the write-back to /dev/xen/evtchn) re-enables them.
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from xenlab.abi.errno import errno_name
from xenlab.base.sched import Scheduler, WaitQueue

if TYPE_CHECKING:
    from xenlab.xen.domain import Domain
    from xenlab.xen.hypervisor import Hypervisor


class HostError(OSError):
    """A host operation failed; ``errno`` holds the (positive) errno, as libxenevtchn sets it."""

    def __init__(self, err: int, what: str) -> None:
        super().__init__(abs(err), f"{what}: {errno_name(err)}")


@runtime_checkable
class XenstoredHost(Protocol):
    """The operations the ring transport uses (libxenevtchn + foreign mapping)."""

    def evtchn_bind_interdomain(self, remote_dom: int, remote_port: int) -> int:
        """xenevtchn_bind_interdomain: a local port connected to (remote_dom, remote_port)."""
        ...

    def evtchn_bind_virq(self, virq: int) -> int:
        """xenevtchn_bind_virq: a local port for a VIRQ (VIRQ_DOM_EXC for @releaseDomain)."""
        ...

    def evtchn_notify(self, port: int) -> None:
        """xenevtchn_notify: send an event on a local port."""
        ...

    def evtchn_unbind(self, port: int) -> None:
        """xenevtchn_unbind: close a local port."""
        ...

    def evtchn_pending(self) -> list[int]:
        """xenevtchn_pending, non-blocking: every port that fired since the last call."""
        ...

    def evtchn_unmask(self, port: int) -> None:
        """xenevtchn_unmask: re-enable a fired port (the write-back to /dev/xen/evtchn)."""
        ...

    def map_store_page(self, domid: int, mfn: int) -> Any:
        """A writable 4096-byte buffer over domain *domid*'s store page."""
        ...

    def unmap_store_page(self, domid: int) -> None:
        """Undo map_store_page."""
        ...

    def wait(self) -> None:
        """Block until an event arrives."""
        ...


class HypervisorHost:
    """A host made directly on xenlab.xen's Hypervisor, acting as a kernel-less dom0 (tests, benches)."""

    def __init__(self, hv: Hypervisor, domid: int = 0, *, sched: Scheduler | None = None) -> None:
        self.hv = hv
        self.domid = domid
        self.sched = sched
        self.ports: set[int] = set()
        self.fired: list[int] = []
        self.mapped: dict[int, Any] = {}
        self.notifies = 0
        self._wq: WaitQueue | None = None
        if sched is not None:
            self._wq = WaitQueue("xenstored-host")
        self.domain.upcall = self._upcall

    @property
    def domain(self) -> Domain:
        """The Domain this host acts for."""
        return self.hv.domains[self.domid]

    def _check(self, rc: int, what: str) -> int:
        if rc < 0:
            raise HostError(rc, what)
        return rc

    def evtchn_bind_interdomain(self, remote_dom: int, remote_port: int) -> int:
        """EVTCHNOP_bind_interdomain for this dom0; the new local port."""
        port = self._check(self.hv.evtchn_bind_interdomain(self.domid, remote_dom, remote_port),
                           f"bind_interdomain({remote_dom}, {remote_port})")
        self.ports.add(port)
        self._collect()  # binding may mark the new local port pending at once
        return port

    def evtchn_bind_virq(self, virq: int) -> int:
        """EVTCHNOP_bind_virq on vcpu 0; the new local port."""
        port = self._check(self.hv.evtchn_bind_virq(self.domid, virq, 0), f"bind_virq({virq})")
        self.ports.add(port)
        return port

    def evtchn_notify(self, port: int) -> None:
        """EVTCHNOP_send on a local port."""
        self.notifies += 1
        self._check(self.hv.evtchn_send(self.domid, port), f"send({port})")

    def evtchn_unbind(self, port: int) -> None:
        """EVTCHNOP_close on a local port."""
        self.ports.discard(port)
        self.fired = [p for p in self.fired if p != port]
        self._check(self.hv.evtchn_close(self.domid, port), f"close({port})")

    def evtchn_pending(self) -> list[int]:
        """The ports that fired since the last call (each once), oldest first."""
        self._collect()
        fired, self.fired = self.fired, []
        return fired

    def evtchn_unmask(self, port: int) -> None:
        """EVTCHNOP_unmask: the port may fire again (a pending event is redelivered)."""
        self._check(self.hv.evtchn_unmask(self.domid, port), f"unmask({port})")
        self._collect()

    def map_store_page(self, domid: int, mfn: int) -> Any:
        """The buffer of machine frame *mfn*, which must belong to *domid* (else EINVAL)."""
        page = self.hv.memory.page(mfn)
        if page is None or page.owner != domid:
            raise HostError(_errno.EINVAL, f"map mfn {mfn:#x} of d{domid}")
        self.mapped[domid] = page.buf
        return page.buf

    def unmap_store_page(self, domid: int) -> None:
        """Forget the mapping of *domid*'s store page."""
        self.mapped.pop(domid, None)

    def wait(self) -> None:
        """Block (on the Scheduler) until one of our ports fires."""
        wq, cond = self.wake_condition()
        assert self.sched is not None
        self.sched.wait_event(wq, cond)

    def wake_condition(self) -> tuple[WaitQueue, Callable[[], bool]]:
        """What wait() sleeps on, for a main loop run as a scheduler handler (kthread_run(wait=...))."""
        if self._wq is None or self.sched is None:
            raise RuntimeError("HypervisorHost.wait needs a Scheduler (HypervisorHost(hv, sched=...))")
        return self._wq, lambda: bool(self.fired) or self._collect()

    # The "kernel" part: what Linux's evtchn driver does when the upcall arrives.

    def _upcall(self, vcpu: int) -> None:
        if self._collect() and self._wq is not None:
            self.sched.wake_up(self._wq)

    def _collect(self) -> bool:
        """Move pending, unmasked ports of ours into self.fired, masking them (evtchn_interrupt)."""
        si = self.domain.shared_info
        got = False
        t = f"xen/d{self.domid}"
        rows: list[tuple[str, Any, Any, Any]] = []  # Xen's tables: this "kernel" records its own writes
        masked = []
        for port in sorted(self.ports):
            if si.test_pending(port) and not si.test_mask(port):
                si.set_mask(port)
                si.clear_pending(port)
                rows += [(f"{t}/evtchn_mask", port, None, 1), (f"{t}/evtchn_pending", port, 1, None)]
                masked.append(port)
                if port not in self.fired:
                    self.fired.append(port)
                got = True
        vcpu = si.vcpu_info[0]
        for field in ("evtchn_upcall_pending", "evtchn_pending_sel"):
            if getattr(vcpu, field):
                rows.append((f"{t}/vcpu0", field, int(getattr(vcpu, field)), None))
                setattr(vcpu, field, 0)
        if rows:
            self.hv.trace.record("evtchn_interrupt", f"ports {masked} masked, pending cleared, queued",
                                 actor=f"dom{self.domid}", source="drivers/xen/evtchn.c", changes=rows)
        return got

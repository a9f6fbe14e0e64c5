"""Domain information flags (xen/include/public/domctl.h) and shutdown reasons (sched.h).

What ``XEN_DOMCTL_getdomaininfo`` reports about a domain, as ``xl list`` and xenstored's
domain_cleanup read it: dying, shut down (with the guest's reason in bits 16..23),
paused, HVM, and so on.
"""

from __future__ import annotations

from dataclasses import dataclass

XEN_DOMINF_dying = 1 << 0
XEN_DOMINF_hvm_guest = 1 << 1
XEN_DOMINF_shutdown = 1 << 2
XEN_DOMINF_paused = 1 << 3
XEN_DOMINF_blocked = 1 << 4
XEN_DOMINF_running = 1 << 5
XEN_DOMINF_debugged = 1 << 6
XEN_DOMINF_xs_domain = 1 << 7
XEN_DOMINF_hap = 1 << 8
XEN_DOMINF_shutdownmask = 255
XEN_DOMINF_shutdownshift = 16

# SCHEDOP_shutdown reasons (xen/include/public/sched.h).
SHUTDOWN_poweroff = 0
SHUTDOWN_reboot = 1
SHUTDOWN_suspend = 2
SHUTDOWN_crash = 3
SHUTDOWN_watchdog = 4
SHUTDOWN_soft_reset = 5
SHUTDOWN_MAX = 5

SHUTDOWN_NAMES: dict[int, str] = {
    v: k[len("SHUTDOWN_"):] for k, v in dict(globals()).items()
    if k.startswith("SHUTDOWN_") and k != "SHUTDOWN_MAX"
}


@dataclass(frozen=True)
class DomainInfoFlags:
    """struct xen_domctl_getdomaininfo's domid and flags, and what the flags say."""

    domid: int
    flags: int

    @property
    def dying(self) -> bool:
        """XEN_DOMINF_dying."""
        return bool(self.flags & XEN_DOMINF_dying)

    @property
    def shutdown(self) -> bool:
        """XEN_DOMINF_shutdown (crashed guests are shut down with code SHUTDOWN_crash)."""
        return bool(self.flags & XEN_DOMINF_shutdown)

    @property
    def shutdown_reason(self) -> int:
        """The guest's SHUTDOWN_* code, bits 16..23 of flags."""
        return self.flags >> XEN_DOMINF_shutdownshift & XEN_DOMINF_shutdownmask

"""The XenbusState handshake as data: which switch each kernel's xenbus drivers make, from where.

Theory of operation
-------------------
Each end of a xenbus device (a frontend in the guest, a backend in the driver domain)
publishes its XenbusState in ``<nodename>/state``. A kernel changes it only through
xenbus_switch_state (drivers/xen/xenbus/xenbus_client.c), and that function validates
nothing: it skips a switch to the state the device is already in and a write to a node
that is gone, and writes anything else. Which switches happen is decided by the drivers
(their probe, their ``otherend_changed`` reaction to the peer's state, connect and close
paths) and by the xenbus core (errors, removal, shutdown).

This module writes those decisions down, read from the drivers of each kernel, as
tables kept the way python-hyper/h11 keeps its state machine (``h11/_state.py``):
plain data, one ``Rule`` row per switch with the function and file that makes it, and
a lookup that raises on a switch with no row (``XenbusRules.transition``), leaving
everything unchanged. ``from_state`` None means "from any state" (the core's
xenbus_dev_fatal -> Closing and xenbus_dev_remove -> Closed).

Every ``xenbus_switch_state`` in the lab calls ``xenbus_check_switch`` first, and the
toolstack checks the ``state`` it writes at device creation. An illegal switch is not
stopped, because the real kernel writes it anyway: it is recorded as its own trace step
("<driver> <nodename>: <from> -> <to>: illegal") and issued as an
``IllegalXenbusSwitch`` warning, which the test suite turns into a failure
(``tests/conftest.py``). ``handshake_edges`` / ``handshake_text`` / ``handshake_dot``
draw the tables.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from xenlab.abi.xenbus import (
    XenbusState,
    XenbusStateClosed,
    XenbusStateClosing,
    XenbusStateConnected,
    XenbusStateInitialised,
    XenbusStateInitialising,
    XenbusStateInitWait,
    XenbusStateReconfigured,
    XenbusStateReconfiguring,
    XenbusStateUnknown,
)
from xenlab.base.trace import Step, Trace
from xenlab.linux.kernel import Kernel

FRONTEND = "frontend"
BACKEND = "backend"
TOOLSTACK = "toolstack"
ROLES = (FRONTEND, BACKEND, TOOLSTACK)
ANY = None  # from_state of a row that applies whatever the current state is
ILLEGAL = "illegal"
SRC = "drivers/xen/xenbus/xenbus_client.c"


class IllegalXenbusTransition(Exception):
    """A switch the kernel's table has no row for (h11's LocalProtocolError); nothing was changed."""


class IllegalXenbusSwitch(UserWarning):
    """The lab made a switch its kernel's drivers never make (recorded in the trace as well)."""


@dataclass(frozen=True)
class Rule:
    """One switch a driver (or the core, or the toolstack) makes: from_state -> to_state, by whom."""

    from_state: XenbusState | None
    to_state: XenbusState
    function: str
    source: str

    def allows(self, from_state: int, to_state: int) -> bool:
        """True if this row covers the switch from_state -> to_state."""
        return to_state == self.to_state and self.from_state in (ANY, from_state)


@dataclass(frozen=True)
class DriverRules:
    """The switches of one driver, named as its kernel names it (module / file)."""

    name: str
    role: str
    devicetype: str
    source: str
    rules: tuple[Rule, ...]


@dataclass(frozen=True, eq=False)
class XenbusRules:
    """One kernel's xenbus handshake: each driver's rows, then the rows every device of a role has."""

    kernel: str
    drivers: tuple[DriverRules, ...]
    core: dict[str, tuple[Rule, ...]] = field(default_factory=dict)

    def driver(self, role: str, devicetype: str) -> DriverRules | None:
        """The driver that binds *devicetype* devices on *role*'s bus, if this kernel has one."""
        return next((d for d in self.drivers if d.role == role and d.devicetype == devicetype), None)

    def driver_name(self, role: str, devicetype: str) -> str:
        """The driver's name; "libxl" for the toolstack, "<devicetype> <role>" for a device no
        tabled driver binds."""
        drv = self.driver(role, devicetype)
        if drv is not None:
            return drv.name
        return "libxl" if role == TOOLSTACK else f"{devicetype} {role}"

    def rules(self, role: str, devicetype: str) -> tuple[Rule, ...]:
        """Every row that applies to a *devicetype* device on *role*'s side: the driver's, then the core's."""
        drv = self.driver(role, devicetype)
        return (drv.rules if drv is not None else ()) + self.core.get(role, ())

    def find(self, role: str, devicetype: str, from_state: int, to_state: int) -> Rule | None:
        """The first row allowing from_state -> to_state, or None."""
        return next((r for r in self.rules(role, devicetype) if r.allows(from_state, to_state)), None)

    def transition(self, role: str, devicetype: str, from_state: int, to_state: int) -> Rule:
        """The row allowing the switch; raises IllegalXenbusTransition if there is none (h11 style)."""
        rule = self.find(role, devicetype, from_state, to_state)
        if rule is None:
            raise IllegalXenbusTransition(
                f"{self.driver_name(role, devicetype)}: {state_name(from_state)} -> {state_name(to_state)} "
                f"is no switch of {self.kernel}")
        return rule

    def next_states(self, role: str, devicetype: str, from_state: int) -> list[XenbusState]:
        """The states a *devicetype* device on *role*'s side may switch to from *from_state*."""
        return sorted({r.to_state for r in self.rules(role, devicetype)
                       if r.allows(from_state, r.to_state) and r.to_state != from_state})


def state_name(state: int | None) -> str:
    """A state's name without the XenbusState prefix ("*" for any, the number if out of range)."""
    if state is None:
        return "*"
    try:
        return XenbusState(state).name.removeprefix("XenbusState")
    except ValueError:
        return str(state)


def _rows(source: str, *rows: tuple[XenbusState | None, XenbusState, str]) -> tuple[Rule, ...]:
    return tuple(Rule(f, t, fn, source) for f, t, fn in rows)


def _driver(name: str, role: str, devicetype: str, source: str,
            *rows: tuple[XenbusState | None, XenbusState, str]) -> DriverRules:
    return DriverRules(name, role, devicetype, source, _rows(source, *rows))


# -- what every device has --------------------------------------------------------------------
# The toolstack creates both ends in Initialising (libxl__device_generic_add writes state 1 into
# the new frontend and backend directories); xenbus_probe_node only takes a device whose node
# reads Initialising, and gives its xenbus_device that state without a switch.
_LIBXL = _rows("tools/libs/light/libxl_device.c",
               (XenbusStateUnknown, XenbusStateInitialising, "libxl__device_generic_add"))


def _core(probe: str, frontend_probe: str, shutdown: str,
          extra: tuple[Rule, ...] = ()) -> dict[str, tuple[Rule, ...]]:
    # xenbus_dev_fatal (and 6.1's xenbus_switch_fatal): an error moves any device to Closing;
    # xenbus_dev_remove: an unbound device says Closed (6.1: a driver without allow_rebind, or
    # a node the toolstack forced to Closing). A frontend being shut down goes Connected ->
    # Closing (xenbus_dev_shutdown / xenbus_frontend_dev_shutdown) and, while the system goes
    # down, answers a backend's Closing with Closed (otherend_changed -> xenbus_frontend_closed).
    both = (_rows("drivers/xen/xenbus/xenbus_client.c", (ANY, XenbusStateClosing, "xenbus_dev_fatal"))
            + _rows(probe, (ANY, XenbusStateClosed, "xenbus_dev_remove")) + extra)
    front = (_rows(frontend_probe, (XenbusStateConnected, XenbusStateClosing, shutdown))
             + _rows(probe, (ANY, XenbusStateClosed, "otherend_changed")))
    return {FRONTEND: front + both, BACKEND: both, TOOLSTACK: _LIBXL}


# -- XenLinux 2.6.18 ---------------------------------------------------------------------------
_PROBE_2618 = "drivers/xen/xenbus/xenbus_probe.c"
# 2.6.18's xenbus_dev_probe also switches a device whose driver probe failed to Closed
_CORE_2618 = _core(_PROBE_2618, _PROBE_2618, "xenbus_dev_shutdown",
                   _rows(_PROBE_2618, (XenbusStateInitialising, XenbusStateClosed, "xenbus_dev_probe")))

XENLINUX_2_6_18 = XenbusRules("XenLinux 2.6.18", (
    _driver("blkfront", FRONTEND, "vbd", "drivers/xen/blkfront/blkfront.c",
            # blkfront_probe (and blkfront_resume) -> talk_to_backend: ring and port published
            (XenbusStateInitialising, XenbusStateInitialised, "talk_to_backend"),
            # backend_changed(Connected) -> connect: the disk is added (blkif_recover after resume)
            (XenbusStateInitialised, XenbusStateConnected, "connect"),
            # backend_changed(Closing) -> blkfront_closing -> xenbus_frontend_closed
            (XenbusStateInitialised, XenbusStateClosed, "blkfront_closing"),
            (XenbusStateConnected, XenbusStateClosed, "blkfront_closing"),
            (XenbusStateClosing, XenbusStateClosed, "blkfront_closing")),
    _driver("netfront", FRONTEND, "vif", "drivers/xen/netfront/netfront.c",
            # backend_changed(InitWait) while Initialising -> network_connect: no Initialised step
            (XenbusStateInitialising, XenbusStateConnected, "backend_changed"),
            # backend_changed(Closing) -> xenbus_frontend_closed
            (XenbusStateConnected, XenbusStateClosed, "backend_changed")),
    _driver("blkback", BACKEND, "vbd", "drivers/xen/blkback/xenbus.c",
            (XenbusStateInitialising, XenbusStateInitWait, "blkback_probe"),
            # update_blkif_status -> connect, once the frontend is Initialised and the disk known
            (XenbusStateInitWait, XenbusStateConnected, "connect"),
            # frontend_changed: follow the frontend to Closing and Closed; reconnect from Closed
            (XenbusStateInitWait, XenbusStateClosing, "frontend_changed"),
            (XenbusStateConnected, XenbusStateClosing, "frontend_changed"),
            (XenbusStateClosing, XenbusStateClosed, "frontend_changed"),
            (XenbusStateConnected, XenbusStateClosed, "frontend_changed"),
            (XenbusStateInitWait, XenbusStateClosed, "frontend_changed"),
            (XenbusStateClosed, XenbusStateInitWait, "frontend_changed")),
    _driver("netback", BACKEND, "vif", "drivers/xen/netback/xenbus.c",
            (XenbusStateInitialising, XenbusStateInitWait, "netback_probe"),
            # frontend_changed(Connected) -> connect
            (XenbusStateInitWait, XenbusStateConnected, "connect"),
            (XenbusStateInitWait, XenbusStateClosing, "frontend_changed"),
            (XenbusStateConnected, XenbusStateClosing, "frontend_changed"),
            (XenbusStateClosing, XenbusStateClosed, "frontend_changed"),
            (XenbusStateConnected, XenbusStateClosed, "frontend_changed"),
            (XenbusStateInitWait, XenbusStateClosed, "frontend_changed"),
            (XenbusStateClosed, XenbusStateInitWait, "frontend_changed")),
), _CORE_2618)


# -- Linux 6.1 ---------------------------------------------------------------------------------
_CORE_6_1 = _core("drivers/xen/xenbus/xenbus_probe.c", "drivers/xen/xenbus/xenbus_probe_frontend.c",
                  "xenbus_frontend_dev_shutdown")

LINUX_6_1 = XenbusRules("Linux 6.1", (
    _driver("xen-blkfront", FRONTEND, "vbd", "drivers/block/xen-blkfront.c",
            # blkback_changed(InitWait) while Initialising -> talk_to_blkback (also blkfront_resume)
            (XenbusStateInitialising, XenbusStateInitialised, "talk_to_blkback"),
            # blkback_changed(Connected) in any other state than Initialised/Connected talks first
            (XenbusStateClosing, XenbusStateInitialised, "talk_to_blkback"),
            (XenbusStateClosed, XenbusStateInitialised, "talk_to_blkback"),
            # blkback_changed(Connected) -> blkfront_connect (blkif_recover after resume)
            (XenbusStateInitialised, XenbusStateConnected, "blkfront_connect"),
            # blkback_changed(Closing / missed-Closing Closed) -> blkfront_closing, unless Closing
            (XenbusStateInitialising, XenbusStateClosed, "blkfront_closing"),
            (XenbusStateInitialised, XenbusStateClosed, "blkfront_closing"),
            (XenbusStateConnected, XenbusStateClosed, "blkfront_closing")),
    _driver("xen-netfront", FRONTEND, "vif", "drivers/net/xen-netfront.c",
            # netfront_probe -> xennet_create_dev: a device left Closed (rebind) restarts
            (XenbusStateClosed, XenbusStateInitialising, "xennet_create_dev"),
            # netback_changed(InitWait) while Initialising -> xennet_connect: no Initialised step
            (XenbusStateInitialising, XenbusStateConnected, "netback_changed"),
            # xennet_xdp_set: Reconfiguring while the backend adjusts the headroom, then back
            (XenbusStateConnected, XenbusStateReconfiguring, "xennet_xdp_set"),
            (XenbusStateReconfiguring, XenbusStateConnected, "xennet_xdp_set"),
            # xennet_remove -> xennet_bus_close: Closing, then Closed, waiting on the backend
            (XenbusStateConnected, XenbusStateClosing, "xennet_bus_close"),
            (XenbusStateClosing, XenbusStateClosed, "xennet_bus_close"),
            # netback_changed(Closing / missed-Closing Closed) -> xenbus_frontend_closed
            (XenbusStateConnected, XenbusStateClosed, "netback_changed")),
    _driver("xen-blkback", BACKEND, "vbd", "drivers/block/xen-blkback/xenbus.c",
            (XenbusStateInitialising, XenbusStateInitWait, "xen_blkbk_probe"),
            # xen_update_blkif_status -> connect, once the frontend is Initialised and the disk known
            (XenbusStateInitWait, XenbusStateConnected, "connect"),
            (XenbusStateInitWait, XenbusStateClosing, "frontend_changed"),
            (XenbusStateConnected, XenbusStateClosing, "frontend_changed"),
            (XenbusStateClosing, XenbusStateClosed, "frontend_changed"),
            (XenbusStateConnected, XenbusStateClosed, "frontend_changed"),
            (XenbusStateInitWait, XenbusStateClosed, "frontend_changed"),
            (XenbusStateClosed, XenbusStateInitWait, "frontend_changed")),
    _driver("xen-netback", BACKEND, "vif", "drivers/net/xen-netback/xenbus.c",
            # netback_probe -> backend_switch_state; afterwards set_backend_state walks the
            # shortest path of its own diagram, one backend_switch_state per edge
            (XenbusStateInitialising, XenbusStateInitWait, "netback_probe"),
            (XenbusStateInitialising, XenbusStateClosed, "set_backend_state"),
            (XenbusStateInitWait, XenbusStateConnected, "set_backend_state"),
            (XenbusStateInitWait, XenbusStateClosing, "set_backend_state"),
            (XenbusStateConnected, XenbusStateClosing, "set_backend_state"),
            (XenbusStateClosing, XenbusStateClosed, "set_backend_state"),
            (XenbusStateClosed, XenbusStateInitWait, "set_backend_state"),
            (XenbusStateClosed, XenbusStateClosing, "set_backend_state"),
            # hotplug_status_changed: the switch deferred until the hotplug script said connected
            (XenbusStateInitWait, XenbusStateConnected, "hotplug_status_changed"),
            # frontend_changed(Reconfiguring): XDP headroom read, Reconfigured; be->state stays
            # Connected, so the next set_backend_state leaves Reconfigured by a Connected edge
            (XenbusStateConnected, XenbusStateReconfigured, "frontend_changed"),
            (XenbusStateReconfigured, XenbusStateClosing, "set_backend_state")),
), _CORE_6_1)

XENBUS_RULES: dict[str, XenbusRules] = {"2.6.18": XENLINUX_2_6_18, "modern": LINUX_6_1}


# -- checking the lab's switches ---------------------------------------------------------------
class XenbusEnd(Protocol):
    """What the check reads of a struct xenbus_device."""

    nodename: str
    devicetype: str
    state: int
    xbus: Any


def illegal_summary(driver: str, nodename: str, from_state: int, to_state: int) -> str:
    """The trace summary of an illegal switch: driver, device, from-state, to-state, "illegal"."""
    return f"{driver} {nodename}: {state_name(from_state)} -> {state_name(to_state)}: {ILLEGAL}"


def check_state_write(rules: XenbusRules, record: Callable[[str, str, str], Any], *, role: str,
                      devicetype: str, nodename: str, from_state: int, to_state: int,
                      function: str, source: str, who: str) -> bool:
    """Check one state write against *rules*; an illegal one is recorded as a step of *function*
    (through *record*) and warned about (IllegalXenbusSwitch). True if legal."""
    try:
        rules.transition(role, devicetype, from_state, to_state)
    except IllegalXenbusTransition as err:
        summary = illegal_summary(rules.driver_name(role, devicetype), nodename, from_state, to_state)
        record(function, summary, source)
        warnings.warn(IllegalXenbusSwitch(f"{who}: {err} ({nodename})"), stacklevel=3)
        return False
    return True


def xenbus_role(dev: XenbusEnd) -> str:
    """FRONTEND for a device on bus "xen" (root "device"), BACKEND on "xen-backend" (root "backend")."""
    root = dev.xbus.root if dev.xbus is not None else dev.nodename.split("/", 1)[0]
    return BACKEND if root == "backend" else FRONTEND


def xenbus_check_switch(kernel: Kernel, dev: XenbusEnd, state: int) -> bool:
    """Check a xenbus_switch_state of *dev* to *state* (not its current one) against the table of
    *kernel*'s flavour; the kernel switches anyway, as the real one does. True if legal."""
    return check_state_write(XENBUS_RULES[kernel.flavour], kernel.record, role=xenbus_role(dev),
                             devicetype=dev.devicetype, nodename=dev.nodename, from_state=dev.state,
                             to_state=state, function="xenbus_switch_state", source=SRC, who=kernel.name)


def illegal_switches(trace: Trace) -> list[Step]:
    """The steps of *trace* that recorded an illegal xenbus state switch or write."""
    return [s for s in trace.steps if s.summary.endswith(f": {ILLEGAL}")]


# -- drawing -----------------------------------------------------------------------------------
def handshake_edges(flavour: str, role: str) -> list[tuple[str, str, str, str]]:
    """The edges of *role*'s side of the handshake in *flavour*'s kernel, in table order:
    (driver, from, to, function); the core's rows come last, as driver "xenbus"
    ("libxl" for the toolstack), from "*" when they apply in any state."""
    rules = XENBUS_RULES[flavour]
    out = [(d.name, state_name(r.from_state), state_name(r.to_state), r.function)
           for d in rules.drivers if d.role == role for r in d.rules]
    core = "libxl" if role == TOOLSTACK else "xenbus"
    out += [(core, state_name(r.from_state), state_name(r.to_state), r.function)
            for r in rules.core.get(role, ())]
    return out


def handshake_text(flavour: str, role: str) -> str:
    """handshake_edges as stable text: one "driver: from -> to (function)" line per edge."""
    return "\n".join(f"{drv}: {a} -> {b} ({fn})" for drv, a, b, fn in handshake_edges(flavour, role))


def handshake_dot(flavour: str, role: str) -> str:
    """handshake_edges as a Graphviz digraph: states as nodes, one labelled edge per row."""
    lines = [f'digraph "{XENBUS_RULES[flavour].kernel} {role}" {{', "  rankdir=LR;"]
    lines += [f'  "{a}" -> "{b}" [label="{drv}: {fn}"];' for drv, a, b, fn in handshake_edges(flavour, role)]
    return "\n".join([*lines, "}"])

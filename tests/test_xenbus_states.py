"""The handshake as data: every xenbus state switch the lab makes is checked against its kernel's table.

The tables (xenlab.linux.xenbus_transitions) say, per kernel and driver, which XenbusState
switches the real drivers make. A normal boot and `xl destroy` make only those; a switch
with no row is recorded in the trace as illegal and warned about, while the kernel writes
it anyway, as the real xenbus_switch_state (which checks nothing) does.
"""

from __future__ import annotations

from typing import Any

import pytest

from xenlab.abi.xenbus import (
    XENBUS_STATE_MEANING,
    XenbusState,
    XenbusStateClosed,
    XenbusStateClosing,
    XenbusStateConnected,
    XenbusStateInitialised,
    XenbusStateInitialising,
    XenbusStateInitWait,
    XenbusStateReconfiguring,
    XenbusStateUnknown,
)
from xenlab.linux.pvops import xenbus_client as pvops_client
from xenlab.linux.xenbus_transitions import (
    BACKEND,
    FRONTEND,
    LINUX_6_1,
    ROLES,
    TOOLSTACK,
    XENBUS_RULES,
    XENLINUX_2_6_18,
    IllegalXenbusSwitch,
    IllegalXenbusTransition,
    handshake_dot,
    handshake_edges,
    handshake_text,
    illegal_switches,
)
from xenlab.linux.xenlinux import xenbus_client as xl_client
from xenlab.sim.machine import Machine

#: each kernel's xenbus_client.c
CLIENT: dict[str, Any] = {"2.6.18": xl_client, "modern": pvops_client}


def xenbus_switch_state(k: Any, dev: Any, state: int) -> int:
    """xenbus_switch_state of *k*'s own kernel."""
    return int(CLIENT[k.flavour].xenbus_switch_state(k, dev, state))


def booted(flavour: str) -> tuple[Machine, int]:
    """xl create of a guest with two disks and two vifs, everything Connected."""
    m = Machine(flavour=flavour, seed=0)
    m.start_xenstored()
    return m, m.create_domU(disks=["xvda", "xvdb"], vifs=2).domid


def device(m: Machine, domid: int, bus: str, nodename: str) -> Any:
    return next(d for d in m.kernel(domid).buses[bus].devices if d.nodename == nodename)


def switches(m: Machine) -> list[tuple[str, str, str, XenbusState, XenbusState]]:
    """(actor, role, devicetype, from, to) of every state change xenbus_switch_state recorded."""
    out = []
    for step in m.trace.steps:
        if step.function != "xenbus_switch_state":
            continue
        for c in step.changes:
            role = BACKEND if c.key.startswith("backend/") else FRONTEND
            out.append((step.actor, role, c.key.split("/")[1], XenbusState(c.before), XenbusState(c.after)))
    return out


@pytest.mark.parametrize("flavour", ["modern", "2.6.18"])
def test_a_boot_and_xl_destroy_make_only_switches_in_the_table(flavour: str) -> None:
    m, domid = booted(flavour)
    m.destroy_domU(domid)
    rules = XENBUS_RULES[flavour]
    seen = switches(m)
    assert len(seen) >= 14  # 2 vbd + 2 vif; 2.6.18 makes no switch once xl destroy removed the nodes
    for actor, role, devicetype, a, b in seen:
        assert rules.find(role, devicetype, a, b) is not None, (actor, role, devicetype, a, b)
    assert illegal_switches(m.trace) == []
    # the forward handshake, per driver, as the tables name it
    fronts = {(t, a, b) for actor, role, t, a, b in seen if role == FRONTEND}
    assert ("vbd", XenbusStateInitialising, XenbusStateInitialised) in fronts
    assert ("vbd", XenbusStateInitialised, XenbusStateConnected) in fronts
    assert ("vif", XenbusStateInitialising, XenbusStateConnected) in fronts
    backs = {(t, a, b) for actor, role, t, a, b in seen if role == BACKEND}
    for t in ("vbd", "vif"):
        assert (t, XenbusStateInitialising, XenbusStateInitWait) in backs
        assert (t, XenbusStateInitWait, XenbusStateConnected) in backs


def test_a_switch_to_the_current_state_is_a_no_op_not_an_illegal_switch() -> None:
    m, domid = booted("modern")
    dev = device(m, domid, "xen", "device/vbd/51712")
    before = len(m.trace)
    assert xenbus_switch_state(m.kernel(domid), dev, XenbusStateConnected) == 0
    assert len(m.trace) == before


def test_an_illegal_frontend_switch_is_recorded_and_the_kernel_writes_it_anyway() -> None:
    m, domid = booted("modern")
    k = m.kernel(domid)
    dev = device(m, domid, "xen", "device/vbd/51712")
    with pytest.warns(IllegalXenbusSwitch, match="xen-blkfront: Connected -> InitWait is no switch of Linux"):
        xenbus_switch_state(k, dev, XenbusStateInitWait)
    (step,) = illegal_switches(m.trace)
    assert (step.actor, step.function) == ("domU1", "xenbus_switch_state")
    assert step.summary == "xen-blkfront device/vbd/51712: Connected -> InitWait: illegal"
    # xenbus_switch_state validates nothing: the state is written and cached all the same
    assert dev.state == XenbusStateInitWait
    assert m.xs_client(0).read(f"/local/domain/{domid}/device/vbd/51712/state") == "2"
    m.settle()  # blkback ignores a frontend in InitWait: nothing else is illegal
    assert len(illegal_switches(m.trace)) == 1


def test_an_illegal_backend_switch_is_recorded() -> None:
    m, domid = booted("modern")
    dev = device(m, 0, "xen-backend", f"backend/vif/{domid}/0")
    with pytest.warns(IllegalXenbusSwitch, match="xen-netback: Connected -> Initialised"):
        xenbus_switch_state(m.kernel(0), dev, XenbusStateInitialised)
    assert [s.summary for s in illegal_switches(m.trace)] == [
        f"xen-netback backend/vif/{domid}/0: Connected -> Initialised: illegal"]
    assert [s.actor for s in illegal_switches(m.trace)] == ["dom0"]


def test_a_state_2618_never_uses_is_illegal_there_and_the_peer_closes() -> None:
    m, domid = booted("2.6.18")
    dev = device(m, domid, "xen", "device/vif/0")
    with pytest.warns(IllegalXenbusSwitch, match="netfront: Connected -> Reconfiguring is no switch of Xen"):
        xenbus_switch_state(m.kernel(domid), dev, XenbusStateReconfiguring)
    m.settle()
    # netback answers state 7 with xenbus_dev_fatal (Closing), netfront with Closed, netback
    # follows to Closed: all legal
    assert [s.summary for s in illegal_switches(m.trace)] == [
        "netfront device/vif/0: Connected -> Reconfiguring: illegal"]
    assert "saw state 7 at frontend" in m.kernel(0).dmesg()
    assert dev.state == XenbusStateClosed
    assert device(m, 0, "xen-backend", f"backend/vif/{domid}/0").state == XenbusStateClosed
    # Linux 6.1's netfront does go there (XDP), from Connected
    assert LINUX_6_1.find(FRONTEND, "vif", XenbusStateConnected, XenbusStateReconfiguring) is not None


def test_the_toolstack_creating_a_device_in_another_state_than_initialising_is_illegal() -> None:
    m, domid = booted("modern")
    with pytest.warns(IllegalXenbusSwitch, match="libxl: Unknown -> Connected"):
        m.toolstack.libxl__device_generic_add(domid, "vbd", 51760, {"state": "4", "frontend-id": str(domid)},
                                              {"state": "1"}, {})
    (step,) = illegal_switches(m.trace)
    assert (step.actor, step.function) == ("toolstack", "libxl__device_generic_add")
    assert step.summary == f"libxl /local/domain/0/backend/vbd/{domid}/51760: Unknown -> Connected: illegal"
    assert m.xs_client(0).read(f"/local/domain/0/backend/vbd/{domid}/51760/state") == "4"  # written anyway


def test_the_table_raises_on_an_illegal_transition_h11_style() -> None:
    rule = LINUX_6_1.transition(FRONTEND, "vbd", XenbusStateInitialising, XenbusStateInitialised)
    assert (rule.function, rule.source) == ("talk_to_blkback", "drivers/block/xen-blkfront.c")
    with pytest.raises(IllegalXenbusTransition, match="xen-blkfront: Connected -> Initialising"):
        LINUX_6_1.transition(FRONTEND, "vbd", XenbusStateConnected, XenbusStateInitialising)
    # any state may go to Closing on an error (xenbus_dev_fatal), and to Closed on removal
    for s in XenbusState:
        for target in (XenbusStateClosing, XenbusStateClosed):
            assert XENLINUX_2_6_18.find(BACKEND, "vif", s, target) is not None
    assert LINUX_6_1.transition(BACKEND, "vbd", XenbusStateInitialising, XenbusStateClosing).function == (
        "xenbus_dev_fatal")
    assert LINUX_6_1.transition(FRONTEND, "console", XenbusStateInitialising, XenbusStateClosed).function == (
        "otherend_changed")


def test_what_each_driver_may_do_from_each_state() -> None:
    assert XENLINUX_2_6_18.next_states(FRONTEND, "vif", XenbusStateInitialising) == [
        XenbusStateConnected, XenbusStateClosing, XenbusStateClosed]
    assert XENLINUX_2_6_18.next_states(FRONTEND, "vbd", XenbusStateInitialising) == [
        XenbusStateInitialised, XenbusStateClosing, XenbusStateClosed]
    assert LINUX_6_1.next_states(BACKEND, "vbd", XenbusStateClosed) == [
        XenbusStateInitWait, XenbusStateClosing]
    assert LINUX_6_1.next_states(FRONTEND, "vif", XenbusStateClosed) == [
        XenbusStateInitialising, XenbusStateClosing]  # xennet_create_dev: rebind starts over
    assert XENLINUX_2_6_18.next_states(FRONTEND, "vif", XenbusStateClosed) == [XenbusStateClosing]
    # no driver ever writes Unknown; only the toolstack creates Initialising from nothing
    for rules in (XENLINUX_2_6_18, LINUX_6_1):
        for role in ROLES:
            for t in ("vbd", "vif", "console"):
                assert all(r.to_state != XenbusStateUnknown for r in rules.rules(role, t))
        assert rules.next_states(TOOLSTACK, "vif", XenbusStateUnknown) == [XenbusStateInitialising]
    assert set(XENBUS_STATE_MEANING) == set(XenbusState)


def test_the_diagram_text_is_stable() -> None:
    assert handshake_text("2.6.18", FRONTEND) == """\
blkfront: Initialising -> Initialised (talk_to_backend)
blkfront: Initialised -> Connected (connect)
blkfront: Initialised -> Closed (blkfront_closing)
blkfront: Connected -> Closed (blkfront_closing)
blkfront: Closing -> Closed (blkfront_closing)
netfront: Initialising -> Connected (backend_changed)
netfront: Connected -> Closed (backend_changed)
xenbus: Connected -> Closing (xenbus_dev_shutdown)
xenbus: * -> Closed (otherend_changed)
xenbus: * -> Closing (xenbus_dev_fatal)
xenbus: * -> Closed (xenbus_dev_remove)
xenbus: Initialising -> Closed (xenbus_dev_probe)"""
    assert handshake_text("modern", BACKEND).splitlines()[:3] == [
        "xen-blkback: Initialising -> InitWait (xen_blkbk_probe)",
        "xen-blkback: InitWait -> Connected (connect)",
        "xen-blkback: InitWait -> Closing (frontend_changed)"]
    assert handshake_edges("modern", TOOLSTACK) == [
        ("libxl", "Unknown", "Initialising", "libxl__device_generic_add")]
    dot = handshake_dot("modern", FRONTEND).splitlines()
    assert dot[:2] == ['digraph "Linux 6.1 frontend" {', "  rankdir=LR;"] and dot[-1] == "}"
    assert '  "Initialising" -> "Initialised" [label="xen-blkfront: talk_to_blkback"];' in dot
    assert len(dot) == 3 + len(handshake_edges("modern", FRONTEND))

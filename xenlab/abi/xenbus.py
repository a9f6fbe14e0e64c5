"""XenbusState (xen/include/public/io/xenbus.h) and how each kernel prints it."""

from __future__ import annotations

from enum import IntEnum


class XenbusState(IntEnum):
    """enum xenbus_state: the state a frontend or backend publishes in its `state` node."""

    XenbusStateUnknown = 0
    XenbusStateInitialising = 1
    XenbusStateInitWait = 2
    XenbusStateInitialised = 3
    XenbusStateConnected = 4
    XenbusStateClosing = 5
    XenbusStateClosed = 6
    XenbusStateReconfiguring = 7
    XenbusStateReconfigured = 8


globals().update({s.name: s for s in XenbusState})

_NAMES = ("Unknown", "Initialising", "InitWait", "Initialised", "Connected",
          "Closing", "Closed", "Reconfiguring", "Reconfigured")


def xenbus_strstate(state: int, flavour: str = "modern") -> str:
    """xenbus_strstate: the name a kernel prints for a state (2.6.18 says INVALID past Closed)."""
    limit = 7 if flavour == "2.6.18" else len(_NAMES)
    return _NAMES[state] if 0 <= state < limit else "INVALID"


# What each state says about an end, after the comments of xen/include/public/io/xenbus.h (our words).
XENBUS_STATE_MEANING: dict[XenbusState, str] = {
    XenbusState.XenbusStateUnknown: "no state (also what a reader gets when the node is missing)",
    XenbusState.XenbusStateInitialising: "being set up (the toolstack creates both ends in it)",
    XenbusState.XenbusStateInitWait: "early set-up done; waiting for the peer or the hotplug scripts",
    XenbusState.XenbusStateInitialised: "ready; waiting for the peer to connect",
    XenbusState.XenbusStateConnected: "connected to the peer",
    XenbusState.XenbusStateClosing: "shutting down after an error or an unplug",
    XenbusState.XenbusStateClosed: "closed",
    XenbusState.XenbusStateReconfiguring: "being reconfigured",
    XenbusState.XenbusStateReconfigured: "reconfiguration done",
}

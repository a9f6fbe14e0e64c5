"""Scenarios: ready-made machines, parameterised the way an xl config is.

``build("domU", flavour="modern", seed=0, dom0_vcpus=1, guest_vcpus=1, disks=1, vifs=1,
guest_type="pv")`` boots a Machine to the named point (``fifo_events=False``: Linux 6.1 on the
2-level ABI, ``xen.fifo_events=0``; the default is FIFO, as Xen 4.17 and Debian 12 run):

- ``dom0-early``: dom0 booted, xenstored not started (xenbus waits for its first event);
- ``dom0``: xenstored, xen-init-dom0 and xenconsoled running, dom0's probe done;
- ``domU``: plus one PV guest with *disks* vbds (xvda, xvdb, ...) and *vifs* vifs
  (0, 1, ...), all Connected on both ends;
- ``domU-early``: the same guest booted, before its /init loads the frontend modules
  (``machine.load_frontends(1)`` does that step).

*guest_type* "hvm" makes the guest an HVM guest running the PV drivers (xl's ``type =
"hvm"``): its kernel finds the store and console in HVM params, not in start_info.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from xenlab.base.trace import gc_paused
from xenlab.sim.machine import Machine
from xenlab.sim.toolstack import GUEST_TYPES


@dataclass(frozen=True)
class Scenario:
    """A named way to bring a machine up."""

    name: str
    what: str
    run: Callable[[Machine, dict[str, int | str]], None]


def _dom0_early(m: Machine, p: dict[str, int | str]) -> None:
    """Nothing more: dom0 booted, no xenstored."""


def _dom0(m: Machine, p: dict[str, int | str]) -> None:
    m.start_xenstored()


def _domU(m: Machine, p: dict[str, int | str], frontends: bool = True) -> None:
    m.start_xenstored()
    if m.daemon is None:  # a fault stopped xenstored: xl create would hang; the machine stays as it is
        m.errors.append("no guest created: xenstored is not running")
        return
    m.create_domU(vcpus=int(p.get("guest_vcpus", 1)), disks=int(p.get("disks", 1)),
                  vifs=int(p.get("vifs", 1)), guest_type=str(p.get("guest_type", "pv")), frontends=frontends)


def _domU_early(m: Machine, p: dict[str, int | str]) -> None:
    _domU(m, p, frontends=False)


SCENARIOS: dict[str, Scenario] = {
    "dom0-early": Scenario("dom0-early", "dom0 booted; xenstored not started yet", _dom0_early),
    "dom0": Scenario("dom0", "dom0 with xenstored, xen-init-dom0 and xenconsoled", _dom0),
    "domU": Scenario("domU", "dom0 + one PV domU with vbd(s) and vif(s), Connected", _domU),
    "domU-early": Scenario("domU-early", "the same guest before its /init loads xen-blkfront and "
                           "xen-netfront (devices Initialising)", _domU_early),
}


def check_scenario(name: str) -> Scenario:
    """The Scenario called *name*, or ValueError naming the valid ones."""
    if name in SCENARIOS:
        return SCENARIOS[name]
    raise ValueError(f"unknown scenario {name!r}; valid scenarios: {', '.join(SCENARIOS)}")


def build(name: str, *, flavour: str = "modern", seed: int = 0, dom0_vcpus: int = 1,
          guest_vcpus: int = 1, disks: int = 1, vifs: int = 1, faults: Iterable[str] = (),
          xenstored: str = "oxenstored", guest_type: str = "pv",
          fifo_events: bool | None = None) -> Machine:
    """A Machine brought up to scenario *name* (*guest_type*: "pv" or "hvm", for the guest;
    *fifo_events*: see ``Machine.fifo_events``)."""
    scen = check_scenario(name)
    if guest_type not in GUEST_TYPES:
        raise ValueError(f"unknown guest type {guest_type!r}; choose one of {', '.join(GUEST_TYPES)}")
    with gc_paused():  # the bring-up only grows the trace: collecting during it frees nothing
        m = Machine(flavour=flavour, seed=seed, dom0_vcpus=dom0_vcpus, faults=faults, xenstored=xenstored,
                    fifo_events=fifo_events)
        scen.run(m, {"guest_vcpus": guest_vcpus, "disks": disks, "vifs": vifs, "guest_type": guest_type})
    return m

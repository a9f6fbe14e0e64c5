"""xenlab: a teaching lab for the Xen split-driver model.

Everything a notebook needs is reachable from here; see README.md.
"""

from __future__ import annotations

__version__ = "0.1.0"

from xenlab.base.sched import Deadlock, Scheduler, WaitQueue
from xenlab.base.trace import Change, Step, Trace
from xenlab.sim.machine import Machine, MachineError
from xenlab.sim.scenarios import SCENARIOS
from xenlab.sim.scenarios import build as build_scenario

__all__ = ["Change", "Deadlock", "Machine", "MachineError", "SCENARIOS", "Scheduler", "Step", "Trace",
           "WaitQueue", "__version__", "build_scenario"]

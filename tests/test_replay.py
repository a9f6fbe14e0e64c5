"""The trace is the truth: replaying it gives exactly the state the machine had.

Each scenario boots once (module-scoped) and is checked two ways (Linux 6.1 both on FIFO, its
default, and on the 2-level ABI with ``xen.fifo_events=0``):

- step by step, every change row's *before* equals what replaying the steps before it
  gives (a write somebody forgot to record shows up as the next recorded write's wrong
  *before*, e.g. a guest clearing ``evtchn_upcall_pending`` that Xen sets again);
- at the end, ``state_at(last)`` equals the LIVE state read from the objects themselves
  (``tests/replay.py``) for every table.
"""

from __future__ import annotations

import pytest
from replay import FAMILIES, family, machine_state

from xenlab.base.trace import Trace
from xenlab.linux.pvops.kernel import PvopsKernel
from xenlab.linux.xenlinux.kernel import XenLinuxKernel
from xenlab.sim.machine import Machine
from xenlab.sim.scenarios import build

#: Trace tables with no live counterpart, and why.
EXEMPT = {
    # xs_talkv logs every request with its reply under a running number and never removes
    # a row: a history for the stepper, not a table the kernel keeps. What is live is the
    # count (xs_state.talks), checked below instead.
    "K/xs_requests": "a numbered log of requests, not kernel state",
}

#: Linux 6.1 runs FIFO event channels by default (Xen's queues, event words and READY bits
#: are trace tables) and the 2-level ABI with xen.fifo_events=0 (the shared_info bits);
#: XenLinux 2.6.18 has only the 2-level ABI.
SCENARIOS = [
    pytest.param((name, flavour, daemon, vcpus, fifo, "pv"),
                 id=f"{name}-{flavour}{'-2level' if fifo is False else ''}-{daemon}-{vcpus}vcpu")
    for name in ("dom0", "domU")
    for flavour, fifo in (("modern", None), ("modern", False), ("2.6.18", None))
    for daemon in ("oxenstored", "cxenstored")
    for vcpus in (1, 2)
] + [  # an HVM guest running the PV drivers: HVM params, the store by pfn (both kernels' HVM branch)
    pytest.param(("domU", flavour, "oxenstored", 1, None, "hvm"), id=f"domU-hvm-{flavour}-oxenstored-1vcpu")
    for flavour in ("modern", "2.6.18")
]


@pytest.fixture(scope="module", params=SCENARIOS)
def booted(request: pytest.FixtureRequest) -> Machine:
    name, flavour, daemon, vcpus, fifo, guest_type = request.param
    m = build(name, flavour=flavour, xenstored=daemon, dom0_vcpus=vcpus, guest_vcpus=vcpus, seed=0,
              fifo_events=fifo, guest_type=guest_type)
    abi = {d.domid: d.kernel.irq.evtchn_ops.name for d in m.domains.values()
           if isinstance(d.kernel, PvopsKernel)}
    assert set(abi.values()) <= {"2-level" if fifo is False else "FIFO"}, abi
    return m


def test_every_change_row_starts_from_the_replayed_value(booted: Machine) -> None:
    bad = booted.trace.mismatches()
    shown = "\n".join(str(b) for b in bad[:10])
    assert not bad, f"{len(bad)} rows disagree with the replay, the first:\n{shown}"


def test_the_replayed_end_state_is_the_live_state(booted: Machine) -> None:
    trace = booted.trace
    replayed = {t: rows for t, rows in trace.state_at(len(trace) - 1).items()
                if rows and family(t) not in EXEMPT}
    live = {t: rows for t, rows in machine_state(booted).items() if rows}
    diffs = []
    for table in sorted(set(replayed) | set(live)):
        r, v = replayed.get(table, {}), live.get(table, {})
        for key in sorted(set(r) | set(v)):
            if r.get(key) != v.get(key):
                diffs.append(f"{table}[{key}]: replay {r.get(key)!r}, live {v.get(key)!r}")
    assert not diffs, f"{len(diffs)} entries differ, the first:\n" + "\n".join(diffs[:10])


def test_every_table_the_trace_records_has_a_live_reader(booted: Machine) -> None:
    recorded = {family(c.table) for step in booted.trace for c in step.changes}
    unknown = sorted(recorded - set(FAMILIES) - set(EXEMPT))
    assert not unknown, f"no reader in tests/replay.py (add one, or exempt it with a reason): {unknown}"


def test_the_request_log_has_one_row_per_request(booted: Machine) -> None:
    state = booted.trace.state_at(len(booted.trace) - 1)
    for dom in booted.domains.values():
        k = dom.kernel
        talks = k.xs_state.talks if isinstance(k, XenLinuxKernel) else k.xs.talks
        assert len(state.get(f"{dom.kernel.name}/xs_requests", {})) == talks > 0


def _plain_replay_disagreements(trace: Trace) -> list[str]:
    """Rows whose before differs from a replay that knows no initial values (absent = None)."""
    state: dict[str, dict[str, object]] = {}
    bad = []
    for step in trace:
        for c in step.changes:
            table = state.setdefault(c.table, {})
            if table.get(c.key) != c.before:
                bad.append(f"#{step.index} {step.function}: {c} (plain replay has {table.get(c.key)!r})")
            if c.after is None:
                table.pop(c.key, None)
            else:
                table[c.key] = c.after
    return bad


@pytest.mark.parametrize(("flavour", "fifo"), [("modern", None), ("modern", False), ("2.6.18", None)])
def test_rows_agree_through_destroy_and_a_new_domU_also_without_initial_values(flavour: str,
                                                                               fifo: bool | None) -> None:
    # the owners record their tables' fill (-1, 0) where their code does it, so even a replay that
    # knows nothing of set_initial agrees; a freed IRQ takes its counters with it
    m = Machine(flavour=flavour, seed=0, fifo_events=fifo)
    m.start_xenstored()
    m.create_domU()
    m.destroy_domU(1)
    m.create_domU()
    bad = [str(b) for b in m.trace.mismatches()]
    assert not bad, f"{len(bad)} rows disagree with the replay, the first:\n" + "\n".join(bad[:10])
    plain = _plain_replay_disagreements(m.trace)
    assert not plain, f"{len(plain)} rows disagree with a plain replay, the first:\n" + "\n".join(plain[:10])

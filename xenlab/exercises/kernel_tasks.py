"""Implement the kernel: the student's function runs inside the lab in place of the model's.

``check_kernel(task, fn)`` runs the task's generated cases (``kernel_cases``) twice per
seed on fresh rigs, once with the model's function and once with *fn* swapped in
(``substitute``), and compares the observations in order. Where the task's function is on
the boot path it also boots a Machine (dom0 + a PV domU with a disk, on the function's kernel) both
ways and compares the two traces step by step (the function's own steps left out: the
student's code records nothing), and the disk's frontend must reach Connected.

A mismatch is reported at its first differing step: what was done, the steps before it
that matched, the rows that differ (expected vs got, never the whole table), and the hint
for the typical mistake the difference looks like. A student's function that raises, runs
past its line budget or returns the wrong kind of value is named as such; each run uses its
own rig, so the lab stays usable.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from xenlab.abi.errno import EIO
from xenlab.abi.xs_wire import XENSTORE_RING_SIZE
from xenlab.exercises import kernel_cases as kc
from xenlab.exercises.machine import state_sequence
from xenlab.exercises.substitute import Guard, substitute
from xenlab.linux.pvops import xenbus_comms as comms61
from xenlab.linux.xenlinux import evtchn as l18
from xenlab.linux.xenlinux import xenbus_comms as comms18
from xenlab.sim.machine import Machine

Case = Callable[[random.Random], list[kc.Obs]]
Diagnose = Callable[[dict[str, Any], dict[str, Any]], str | None]


@dataclass(frozen=True)
class KernelTask:
    """One function to write: where the model's lives, what it returns, how it is exercised."""

    name: str
    module: ModuleType
    function: str
    returns: tuple[type, ...]
    case: Case
    hint: str
    #: faults for the boot check; None: the function is not on the boot path checked here
    boot: tuple[str, ...] | None = None
    diagnose: tuple[Diagnose, ...] = ()
    #: said when the student's function never returns (a loop)
    loop_hint: str = ""
    #: the kernel the boot check runs (the function's own)
    flavour: str = "2.6.18"
    #: what a correct function earns (all or nothing: one step unlike the kernel's and it is not the kernel's)
    points: int = 4


@dataclass
class Verdict:
    """What a checker found: ok, the lines a student reads, and the points (earned of possible)."""

    task: str
    ok: bool
    lines: list[str] = field(default_factory=list)
    #: what the check is worth, and what the answer earned (the score line and nbgrader's grade)
    points: int = 0
    earned: int = 0

    @property
    def score(self) -> str:
        """`Score: N/M`, as `xenlab grade` prints it."""
        return f"Score: {self.earned}/{self.points}"

    @property
    def text(self) -> str:
        return "\n".join([*self.lines, self.score])

    def __repr__(self) -> str:
        return self.text


# -- hints for the typical mistakes ------------------------------------------------------------
WRAP = ("at the wrap: a chunk runs from the masked offset to the END of the ring (XENSTORE_RING_SIZE - "
        "offset bytes, no -1), and the next chunk starts at offset 0; a chunk of 0 bytes never moves on")
MASKED = ("the indices are free-running uint32 counters: store prod + len (mod 2^32) and mask only to find "
          "the offset in the ring (MASK_XENSTORE_IDX); a masked index looks like an empty or corrupt ring "
          "(check_indexes then fails: -EIO)")
KICK_2618 = ("XenLinux 2.6.18's xb_write and xb_read notify xenstored after EVERY chunk "
             "(notify_remote_via_evtchn inside the loop), so a copy across the ring's end kicks twice")
KICK_61 = ("Linux 6.1's xb_write kicks only if xenstored had caught up with the old producer "
           "(prod <= req_cons after the copy); otherwise xenstored is still reading and will see the bytes")
BINDCOUNT = ("every binding counts: irq_bindcount[irq]++ for a new IRQ AND for a port that already has one "
             "(sharing); find_unbound_irq looks for irq_bindcount == 0, not at irq_info")
REQ_LIKE_RSP = ("xb_init_comms only REPORTS a busy request ring (KERN_ERR, indices left alone: those "
                "requests are xenstored's to consume); it fixes up only the response ring "
                "(rsp_cons = rsp_prod)")
WARN_ONCE = ("the \"No available IRQ\" warning is printed once per boot, not on every exhausted scan: "
             "set st.warned the first time and only return -ENOSPC after that")
U32_HINT = "prod - cons is computed in uint32 ((prod - cons) & 0xFFFFFFFF): the counters wrap at 2^32"


def _index_masked(exp: dict[str, Any], got: dict[str, Any]) -> str | None:
    if got.get("return") == -EIO and exp.get("return") != -EIO:
        return MASKED  # the call's own second chunk found the index it had just stored insane
    for key in ("req_prod", "rsp_cons", "req_cons", "rsp_prod"):
        e, g = exp.get(key), got.get(key)
        if isinstance(e, int) and isinstance(g, int) and e != g and g == e % XENSTORE_RING_SIZE:
            return MASKED
    return None


def _kicks(rule: str) -> Diagnose:
    def diagnose(exp: dict[str, Any], got: dict[str, Any]) -> str | None:
        e, g = exp.get("kicks"), got.get("kicks")
        if isinstance(e, int) and isinstance(g, int) and e != g:
            return rule
        return None
    return diagnose


def _bindcount(exp: dict[str, Any], got: dict[str, Any]) -> str | None:
    if exp.get("irq_bindcount") != got.get("irq_bindcount") or exp.get("return") != got.get("return"):
        return BINDCOUNT
    return None


def _warns_again(exp: dict[str, Any], got: dict[str, Any]) -> str | None:
    if exp.get("printk") != got.get("printk") and exp.get("return") == got.get("return"):
        return WARN_ONCE
    return None


def _req_reset(exp: dict[str, Any], got: dict[str, Any]) -> str | None:
    if (exp.get("req_cons"), exp.get("req_prod")) != (got.get("req_cons"), got.get("req_prod")):
        return REQ_LIKE_RSP
    return None


def _u32(exp: dict[str, Any], got: dict[str, Any]) -> str | None:
    return U32_HINT if exp.get("return") != got.get("return") else None


TASKS: dict[str, KernelTask] = {t.name: t for t in (
    KernelTask("find_unbound_irq", l18, "find_unbound_irq", (int,), kc.evtchn_case,
               "the lowest dynamic IRQ with irq_bindcount 0; none left: printk the warning once, -ENOSPC",
               boot=(), diagnose=(_warns_again, _bindcount)),
    KernelTask("bind_caller_port_to_irq", l18, "bind_caller_port_to_irq", (int,), kc.evtchn_case,
               "a port already bound shares its IRQ; a new one takes find_unbound_irq's IRQ "
               "(irq_info = mk_irq_info(IRQT_CALLER_PORT, 0, port)); both count the binding",
               boot=(), diagnose=(_bindcount,)),
    KernelTask("check_indexes", comms18, "check_indexes", (bool,), kc.check_indexes_case,
               "sane when at most XENSTORE_RING_SIZE bytes are in flight", boot=(), diagnose=(_u32,),
               points=2),
    KernelTask("xb_write_2.6.18", comms18, "xb_write", (int,), lambda rng: kc.write_case("2.6.18", rng),
               "copy chunk by chunk, sleep while the ring is full, kick after every chunk; 0 or -EIO",
               boot=(), diagnose=(_index_masked, _kicks(KICK_2618)), loop_hint=WRAP),
    KernelTask("xb_write_6.1", comms61, "xb_write", (int,), lambda rng: kc.write_case("modern", rng),
               "copy chunk by chunk, never sleep (return the bytes written), kick by the 6.1 rule",
               boot=(), diagnose=(_index_masked, _kicks(KICK_61)), loop_hint=WRAP, flavour="modern"),
    KernelTask("xb_read", comms18, "xb_read", (bytes, int), kc.read_case,
               "sleep until bytes come, copy chunk by chunk, kick after every chunk; the bytes or -EIO",
               boot=(), diagnose=(_index_masked, _kicks(KICK_2618)), loop_hint=WRAP),
    KernelTask("xb_init_comms", comms18, "xb_init_comms", (int,), kc.init_comms_case,
               "report a busy request ring, fix up a stale response ring, bind the store port to \"xenbus\"",
               boot=("ring-not-quiescent",), diagnose=(_req_reset,)),
    KernelTask("wake_waiting", comms18, "wake_waiting", (int,), kc.wake_waiting_case,
               "the first interrupt sets xenstored_ready and runs probe_work; every one wakes xb_waitq's "
               "sleepers; IRQ_HANDLED", boot=()),
)}


# -- running and comparing -------------------------------------------------------------------------
def _rows(exp: dict[str, Any], got: dict[str, Any], limit: int = 6) -> list[str]:
    """The differing rows of two observations, as `name: expected X, got Y` lines."""
    out: list[str] = []
    for key in [*exp, *(k for k in got if k not in exp)]:
        e, g = exp.get(key), got.get(key)
        if e == g:
            continue
        if isinstance(e, dict) and isinstance(g, dict):
            for sub in sorted({*e, *g}):
                if e.get(sub) != g.get(sub):
                    out.append(f"{key}[{sub}]: expected {e.get(sub, 'none')}, got {g.get(sub, 'none')}")
        elif isinstance(e, bytes) and isinstance(g, bytes) and len(e) == len(g) and key in ("req", "rsp"):
            first = next(i for i in range(len(e)) if e[i] != g[i])
            last = max(i for i in range(len(e)) if e[i] != g[i])
            out.append(f"{key}[{first}..{last}]: bytes differ from {key}[{first}] "
                       f"(expected {e[first:first + 4].hex(' ')}, got {g[first:first + 4].hex(' ')})")
        else:
            out.append(f"{key}: expected {e!r}, got {g!r}")
    return out[:limit] + ([f"... and {len(out) - limit} more rows"] if len(out) > limit else [])


def _run_case(task: KernelTask, seed: int, guard: Guard | None) -> tuple[list[kc.Obs], str | None]:
    rng = random.Random(f"xenlab-kernel:{task.name}:{seed}")
    if guard is None:
        return task.case(rng), None
    try:
        with substitute(task.module, task.function, guard):
            return task.case(rng), guard.fault
    except Exception as e:  # the lab's reaction to a broken function: reported, not raised
        return [], guard.fault or f"the lab stopped: {type(e).__name__}: {e}"


def _compare(task: KernelTask, where: str, exp: list[kc.Obs], got: list[kc.Obs],
             fault: str | None) -> list[str] | None:
    """None if they agree; else the lines that say where and how they diverged."""
    for i, (e, g) in enumerate(zip(exp, got, strict=False)):
        if e != g:
            lines = [f"{where}: diverged at step {i + 1} of {len(exp)}: {e[0]}"]
            lines += [f"  matched: {j + 1}. {exp[j][0]}" for j in range(max(0, i - 2), i)]
            lines += [f"  {row}" for row in _rows(e[1], g[1])]
            hints = [h for d in task.diagnose if (h := d(e[1], g[1]))]
            lines.append(f"  hint: {hints[0] if hints else task.hint}")
            return lines
    if fault or len(got) < len(exp):
        step = len(got) + 1
        lines = [f"{where}: stopped at step {step} of {len(exp)}: {exp[min(step, len(exp)) - 1][0]}",
                 f"  {fault or 'the case ended early'}"]
        if fault and "without returning" in fault and task.loop_hint:
            lines.append(f"  hint: {task.loop_hint}")
        else:
            lines.append(f"  hint: {task.hint}")
        return lines
    return None


def boot_run(task: KernelTask, fn: Callable[..., Any] | None = None) -> tuple[list[kc.Obs], str | None]:
    """Boot dom0 + a domU with one disk (the task's kernel), the model's function or *fn* in place;
    the trace's steps (the task's function and irq_mapping_update_lock left out) and the disk
    frontend's states."""
    guard = Guard(fn, task.function, task.returns) if fn is not None else None
    obs: list[kc.Obs] = []
    error: str | None = None
    m = Machine(flavour=task.flavour, seed=0, faults=task.boot or ())
    try:
        if guard is not None:
            with substitute(task.module, task.function, guard):
                _boot(m)
        else:
            _boot(m)
    except Exception as e:
        error = f"the machine stopped: {type(e).__name__}: {e}"
    if guard is not None and guard.fault:
        error = guard.fault
    for s in m.trace.steps:
        # the task's own steps are left out, and so is irq_mapping_update_lock, which the model's
        # binders take around their body and a task's function (the body alone) does not
        if s.function != task.function and not s.summary.startswith("irq_mapping_update_lock:"):
            obs.append((f"[{s.actor}] {s.function}", {"summary": s.summary}))
    domu = next((d for d in sorted(m.domains) if d), None)
    states = state_sequence(m, f"{m.kernel(domu).name}/xenbus_state", "device/vbd/51712") if domu else "none"
    obs.append(("the disk's frontend (device/vbd/51712) states", {"states": states}))
    return obs, error


def _boot(m: Machine) -> None:
    m.start_xenstored()
    m.create_domU(disks=["xvda"], vifs=0)


def check_kernel(name: str, fn: Callable[..., Any], seeds: range | list[int] = range(3),
                 boot: bool = True) -> Verdict:
    """Run *fn* in place of the model's *name* on the generated cases of *seeds* (and the boot)."""
    task = TASKS[name]
    v = Verdict(name, True, points=task.points)
    for seed in seeds:
        exp, _ = _run_case(task, seed, None)
        guard = Guard(fn, task.function, task.returns)
        got, fault = _run_case(task, seed, guard)
        bad = _compare(task, f"{name}, case {seed}", exp, got, fault)
        if bad:
            v.ok = False
            v.lines += bad
            return v
        verb = "steps match" if len(exp) != 1 else "step matches"
        v.lines.append(f"{name}, case {seed}: {len(exp)} {verb} the kernel's")
    if boot and task.boot is not None:
        exp, _ = boot_run(task)
        got, fault = boot_run(task, fn)
        kernel = "XenLinux 2.6.18" if task.flavour == "2.6.18" else "Linux 6.1"
        where = f"boot dom0 + domU ({kernel}" + (f", fault {', '.join(task.boot)})" if task.boot else ")")
        bad = _compare(task, where, exp, got, fault)
        if bad:
            v.ok = False
            v.lines += bad
            return v
        v.lines.append(f"{where}: {len(exp)} steps match; the disk's frontend is "
                       f"{exp[-1][1]['states'].rsplit(' -> ', 1)[-1]}")
    v.lines.append(f"{name}: correct")
    v.earned = v.points
    return v

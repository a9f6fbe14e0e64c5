"""Predict and decode: problems whose answers the lab's model computes, and checkers that explain.

Each ``problem_*(seed)`` builds the situation with the lab's real parts (a store page written
by the guest's xb_write, a 2.6.18 IRQ layer, a booted Machine with or without a fault) and
returns a ``Problem``: the text a student reads and the expected parts read out of the
model. ``check_answer(problem, answer)`` compares a dict of parts: a right part is ticked, a
wrong one shows expected vs got with the relevant state table and the hint for the typical
mistake, a missing one is only named (an empty answer never returns the key).
"""

from __future__ import annotations

import ctypes
import random
from dataclasses import dataclass, field

from xenlab.abi.xs_wire import XENSTORE_RING_SIZE
from xenlab.exercises import kernel_cases as kc
from xenlab.exercises.common import same_answer
from xenlab.exercises.kernel_tasks import Verdict
from xenlab.exercises.ring import _random_message, guest_with_store_page, show_payload
from xenlab.linux.pvops import xenbus_comms as comms61
from xenlab.sim.machine import Machine
from xenlab.xenstored import wire

U32 = 0xFFFFFFFF


@dataclass
class Problem:
    """A predict-or-decode problem: its text, the expected parts, and what to show beside a wrong part."""

    kind: str
    seed: int
    text: str
    expected: dict[str, str] = field(default_factory=dict)
    #: part -> the state table (text lines) a wrong answer is shown with
    tables: dict[str, list[str]] = field(default_factory=dict)
    #: part -> the hint for the typical mistake on it
    hints: dict[str, str] = field(default_factory=dict)
    #: part -> its points (1 unless set): as in `xenlab quiz`, a number is worth 1, a list or a printk line 2
    points: dict[str, int] = field(default_factory=dict)

    def worth(self, part: str) -> int:
        """The points of *part*."""
        return self.points.get(part, 1)

    @property
    def max_points(self) -> int:
        """What every part right earns."""
        return sum(self.worth(part) for part in self.expected)

    def __repr__(self) -> str:
        return self.text + "\nParts: " + ", ".join(self.expected)


def _rng(kind: str, seed: int) -> random.Random:
    return random.Random(f"xenlab-predict:{kind}:{seed}")


# -- decode a ring page -------------------------------------------------------------------------------
def problem_decode_ring(seed: int) -> Problem:
    """A guest's store page after xb_write (Linux 6.1) wrote one or two requests, shown as raw bytes."""
    rng = _rng("decode_ring", seed)
    k, intf = guest_with_store_page()
    start = (rng.randint(1, 9) * XENSTORE_RING_SIZE + XENSTORE_RING_SIZE - rng.randint(4, 30)) & U32
    intf.req_cons = intf.req_prod = start
    msgs = [_random_message(rng) for _ in range(rng.randint(1, 2))]
    for m in msgs:
        comms61.xb_write(k, wire.encode(m))
    req = kc.ring_get(intf, "req", 0, XENSTORE_RING_SIZE)
    tail = ctypes.string_at(ctypes.addressof(intf) + 2 * XENSTORE_RING_SIZE, 16)
    first = msgs[0]
    lo, hi = intf.req_cons % XENSTORE_RING_SIZE, intf.req_prod % XENSTORE_RING_SIZE
    shown = ["page offset  bytes", *_dump(req, 0, hi + (16 - hi % 16) % 16), "  ...",
             *_dump(req, lo - lo % 16, XENSTORE_RING_SIZE), "  ...", *_dump(tail, 0, 16, base=0x800)]
    p = Problem("decode_ring", seed, "A guest's xenstore page (struct xenstore_domain_interface: "
                "req[1024] at 0, rsp[1024] at 0x400, then req_cons, req_prod, rsp_cons, rsp_prod "
                "as little-endian uint32 at 0x800). The bytes that matter:\n" + "\n".join(shown))
    table = [f"req_cons {intf.req_cons} (req[{lo}]), req_prod {intf.req_prod} (req[{hi}])"]
    p.expected = {"req_cons": str(intf.req_cons), "req_prod": str(intf.req_prod),
                  "unread": str((intf.req_prod - intf.req_cons) & U32),
                  "type": first.type_name, "payload": show_payload(first.payload)}
    p.tables = {"req_cons": table, "req_prod": table, "unread": table}
    p.hints = {
        "req_cons": "the indices are little-endian uint32 and free-running: do not mask them",
        "req_prod": "the indices are little-endian uint32 and free-running: do not mask them",
        "unread": "unread = (req_prod - req_cons) mod 2^32; the bytes run from req[req_cons % 1024] "
                  "across the end of req[] to req[0]",
        "type": "the first message starts at req[req_cons % 1024]; its header's first uint32 is the type "
                "(xsd_sockmsg_type), the header may wrap to req[0]",
        "payload": "the payload is the header's len bytes after the 16-byte header, NULs written \\0",
    }
    return p


def _dump(data: bytes, start: int, end: int, base: int = 0) -> list[str]:
    out = []
    for off in range(start, end, 16):
        row = data[off:min(off + 16, end)]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        out.append(f"  {base + off:#06x}   {row.hex(' '):<47}  {text}")
    return out


# -- predict ports and IRQs ---------------------------------------------------------------------------
def problem_predict_irqs(seed: int) -> Problem:
    """A 2.6.18 guest runs a sequence of binds and unbinds: the IRQ each returns."""
    rng = _rng("predict_irqs", seed)
    obs = kc.evtchn_case(rng)
    lines = [f"  op{i}. {_blind(obs, i)}" for i in range(1, len(obs) + 1)]
    p = Problem("predict_irqs", seed, "A XenLinux 2.6.18 domU (dynamic IRQs from 256, no ports bound yet; "
                "the store and console ports 1 and 2 were given by the toolstack) runs, in order:\n"
                + "\n".join(lines) + "\nWhat does each bind return? (an IRQ, or -28 for -ENOSPC)")
    for i, (what, o) in enumerate(obs, 1):
        if not what.startswith(("bind", "find")):
            continue
        part = f"op{i}"
        p.expected[part] = str(o["return"])
        p.tables[part] = [f"irq_bindcount before it: {_before(obs, i)}"]
        p.hints[part] = ("find_unbound_irq takes the LOWEST IRQ whose irq_bindcount is 0 (an unbind frees "
                         "it again); a caller port already bound shares its IRQ")
    return p


def _blind(obs: list[kc.Obs], i: int) -> str:
    """Op *i*'s text, an unbind naming the op that returned its IRQ instead of the number."""
    what = obs[i - 1][0]
    if what.startswith("unbind_from_irq("):
        irq = int(what.removeprefix("unbind_from_irq(").rstrip(")"))
        op = max(j for j in range(1, i) if obs[j - 1][1].get("return") == irq)
        return f"unbind_from_irq(the IRQ op{op} returned)"
    return what


def _before(obs: list[kc.Obs], i: int) -> str:
    prev: dict[int, int] = {}
    for _, o in obs[: i - 1]:
        prev = o.get("irq_bindcount", prev)
    return ", ".join(f"{irq}:{n}" for irq, n in sorted(prev.items())[:8]) or "all 0"


# -- order xenbus_probe_init's steps ----------------------------------------------------------------------
PROBE_STEPS = ("bus_register", "get_zeroed_page", "create_xen_proc_entry", "xs_init", "xb_init_comms",
               "xenbus_probe")


def problem_probe_order(seed: int) -> Problem:
    """XenLinux 2.6.18's xenbus_probe_init in dom0 and in a domU: which of these steps, in which order."""
    rng = _rng("probe_order", seed)
    m = Machine(flavour="2.6.18", seed=0)
    m.start_xenstored()
    m.create_domU(disks=["xvda"], vifs=0)
    p = Problem("probe_order", seed, "XenLinux 2.6.18 boots dom0, then a PV domU. During each one's "
                "xenbus_probe_init (stage 'xenbus init'), which of these functions run, in which order? "
                f"Candidates: {', '.join(sorted(PROBE_STEPS, key=lambda _: rng.random()))}. "
                "Answer each as a comma-separated list; leave out what that domain does not do.")
    for who in ("dom0", "domU1"):
        seen: list[str] = []
        for s in m.trace.steps:
            if s.stage == f"{who}: xenbus init" and s.actor == who and s.function in PROBE_STEPS \
                    and s.function not in seen:
                seen.append(s.function)
        p.expected[who] = ", ".join(seen)
        p.points[who] = 2
        p.hints[who] = ("dom0 allocates the store page itself (get_zeroed_page: no xenstored runs yet, "
                        "so it cannot probe); a domU finds its page in start_info, xenstored is already "
                        "there (xenstored_ready = 1), so it probes at once")
    return p


# -- name what a fault prints -----------------------------------------------------------------------
FAULTS = ("exhaust-irqs", "xs_init", "bus_register_backend", "ring-not-quiescent", "device_register")


def problem_fault_printk(seed: int) -> Problem:
    """An injected fault: the printk line it adds to a 2.6.18 kernel's log."""
    fault = FAULTS[seed % len(FAULTS)]
    plain, broken = Machine(flavour="2.6.18", seed=0), Machine(flavour="2.6.18", seed=0, faults=(fault,))
    domu = fault == "ring-not-quiescent"
    for m in (plain, broken):
        m.start_xenstored()
        if domu:
            m.create_domU(disks=["xvda"], vifs=0)
    who = 1 if domu else 0
    before = {line.text for line in plain.kernel(who).log}
    new = [line.text for line in broken.kernel(who).log if line.text not in before]
    p = Problem("fault_printk", seed, f"The lab boots XenLinux 2.6.18 with fault {fault!r} injected "
                f"({'in the domU' if domu else 'in dom0'}). Which kernel message (one line of dmesg) does it "
                "add? Quote the first one.")
    p.expected["printk"] = new[0] if new else "none"
    p.points["printk"] = 2
    p.hints["printk"] = "find the function that fails in the source the lab mirrors and its printk"
    return p


# -- checking ------------------------------------------------------------------------------------------------
def check_answer(problem: Problem, answer: dict[str, object]) -> Verdict:
    """Each part right, wrong (expected vs got, the table, a hint) or missing (named only)."""
    v = Verdict(problem.kind, True, points=problem.max_points)
    for part, expected in problem.expected.items():
        if part not in answer or answer[part] in (None, ""):
            v.ok = False
            v.lines.append(f"{part}: missing")
            continue
        got = str(answer[part])
        if same_answer(got, expected) or (problem.kind == "probe_order" and _same_list(got, expected)):
            v.lines.append(f"{part}: right")
            v.earned += problem.worth(part)
            continue
        v.ok = False
        v.lines.append(f"{part}: expected {expected}, got {got}")
        v.lines += [f"  {line}" for line in problem.tables.get(part, [])]
        if part in problem.hints:
            v.lines.append(f"  hint: {problem.hints[part]}")
    right = sum(1 for line in v.lines if line.endswith(": right"))
    v.lines.append(f"{problem.kind}: {right}/{len(problem.expected)} parts right")
    return v


def _same_list(got: str, expected: str) -> bool:
    return [x.strip() for x in got.split(",") if x.strip()] == [x.strip() for x in expected.split(",")]

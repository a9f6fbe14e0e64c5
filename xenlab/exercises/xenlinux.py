"""The seed's own XenLinux 2.6.18 exercises: xb_write's kick rule, quiescence, xenstored_ready,
/proc/xen, irq_info.

``gen_ring2618`` runs 2.6.18's xb_write (xenlab.linux.xenlinux.xenbus_comms) on a real store
page; ``gen_quiesce`` runs its xb_init_comms on a page with stale indices, or boots a
Machine with the ``ring-not-quiescent`` fault and reads the guest's dmesg; ``gen_ready``
and ``gen_procxen`` boot a Machine and read ``xenstored_ready``, the trace and ``ls -l
/proc/xen``; ``gen_irqinfo`` binds on a 2.6.18 IRQ layer and reads ``irq_info[]``. Every
answer is read out of the model after the setup ran.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping
from typing import Any

from xenlab.abi.errno import EIO
from xenlab.abi.event_channel import VIRQ_DEBUG, VIRQ_TIMER
from xenlab.abi.xs_wire import XENSTORE_RING_SIZE
from xenlab.exercises.common import NO_KNOBS, KnobError, Question, yes_no
from xenlab.exercises.machine import irq_of
from xenlab.exercises.ports import two_domains
from xenlab.exercises.ring import _write_steps
from xenlab.linux.xenlinux import evtchn as l18
from xenlab.linux.xenlinux import xenbus_comms as comms18
from xenlab.linux.xenlinux.kernel import XenLinuxKernel
from xenlab.sim.machine import Machine

U32 = 0xFFFFFFFF


def guest_2618_with_store_page(ports_in_use: int = 0) -> XenLinuxKernel:
    """A 2.6.18 domU (domid 1) after xen_init_IRQ, its store page mapped, its store port dom0's
    alloc_unbound; *ports_in_use* unbound ports of the guest taken before that."""
    hv = two_domains(1)
    for _ in range(ports_in_use):
        hv.evtchn_alloc_unbound(1, 1, 0)
    k = XenLinuxKernel(hv, 1, trace=hv.trace)
    l18.xen_init_IRQ(k)
    page = hv.memory.alloc_page(1)
    k.xb.xen_store_page = page
    k.xb.xen_store_interface = comms18.store_interface(page.buf)
    k.xb.xen_store_evtchn = hv.evtchn_alloc_unbound(0, 1, 0)  # what the toolstack made for xenstored
    return k


def _u32(knobs: Mapping[str, Any], name: str, drawn: int) -> int:
    value = knobs.get(name, drawn)
    if not 0 <= value <= U32:
        raise KnobError(f"--{name} must be a uint32, 0..0xffffffff (got {value})")
    return int(value)


# -- 2.6.18's xb_write: a kick after every chunk ------------------------------------------------------
def gen_ring2618(rng: random.Random, knobs: Mapping[str, Any] = NO_KNOBS) -> Question:
    """How XenLinux 2.6.18's xb_write copies N bytes into req[] and how often it kicks xenstored."""
    bad = rng.random() < 0.15
    fill = XENSTORE_RING_SIZE + rng.randint(1, 300) if bad else rng.randint(0, 900)
    lap = rng.choice([0, rng.randint(1, 5), (U32 + 1) // XENSTORE_RING_SIZE - 1])
    if rng.random() < 0.6:  # prod just before the end of req[]: the copy splits in two
        prod = (lap * XENSTORE_RING_SIZE + XENSTORE_RING_SIZE - rng.randint(1, 60)) & U32
    else:
        prod = (lap * XENSTORE_RING_SIZE + rng.randint(0, XENSTORE_RING_SIZE - 1)) & U32
    cons = (prod - fill) & U32
    free = XENSTORE_RING_SIZE - fill
    n = rng.randint(16, 200) if bad else rng.randint(min(16, free), min(free, 400))
    prod, cons = _u32(knobs, "prod", prod), _u32(knobs, "cons", cons)
    n = int(knobs.get("len", n))
    free = XENSTORE_RING_SIZE - ((prod - cons) & U32)
    if not 1 <= n <= 4096:
        raise KnobError(f"--len must be 1..4096 (got {n})")
    if comms18.check_indexes(cons, prod) and n > free:
        raise KnobError(f"--len {n} is more than the {free} free bytes between --cons {cons:#x} and "
                        f"--prod {prod:#x}: 2.6.18's xb_write would sleep until xenstored reads; "
                        f"pick --len <= {free}")
    k = guest_2618_with_store_page()
    intf = k.xb.xen_store_interface
    assert intf is not None
    intf.req_cons, intf.req_prod = cons, prod
    start = len(k.trace)
    rc = comms18.xb_write(k, bytes(rng.randrange(256) for _ in range(n)))
    chunks, kicks = _write_steps(k, start)
    q = Question("ring2618", (
        f"A XenLinux 2.6.18 guest's store page has req_cons = {cons:#010x} and req_prod = {prod:#010x} "
        f"(uint32, free-running). xenstored consumes nothing meanwhile. The guest calls xb_write() with a "
        f"{n}-byte message."))
    q.setup = {"cons": cons, "prod": prod, "n": n}
    q.expect("check_indexes", yes_no(comms18.check_indexes(cons, prod)), "yes/no: are the indices sane?")
    q.expect("chunks", ", ".join(f"{c[0]}+{c[1]}" for c in chunks) or "none",
             "each copy as OFFSET+LENGTH into req[], comma separated, or none", points=2)
    q.expect("return", rc, "what xb_write returns (0, or -5 for -EIO)")
    q.expect("req_prod", f"{intf.req_prod:#010x}", "req_prod afterwards", base="hex")
    q.expect("kicks", kicks, "how many EVTCHNOP_send notifications", points=2)
    w = [f"prod - cons = {(prod - cons) & U32} (mod 2^32); check_indexes wants <= {XENSTORE_RING_SIZE}."]
    if rc == -EIO:
        w.append("check_indexes fails: xb_write resets req_cons = req_prod = 0 and returns -EIO; nothing is "
                 "copied, nobody is kicked.")
    else:
        for off, ln, before, kicked in chunks:
            w.append(f"prod {before:#010x}: get_output_chunk gives offset {off}, copy {ln} bytes to "
                     f"req[{off}..{off + ln}), then notify_remote_via_evtchn: {'yes' if kicked else 'no'}.")
        w.append("2.6.18's xb_write kicks after every chunk, whatever req_cons is (Linux 6.1 kicks only "
                 "when xenstored had caught up: compare the ring topic).")
    w.append(f"The lab ran it: {kicks} EVTCHNOP_send, req_prod now {intf.req_prod:#010x}.")
    q.worked = w
    return q


# -- quiescence: xb_init_comms on a used page -----------------------------------------------------
def _stale(rng: random.Random) -> tuple[int, int]:
    """A (cons, prod) pair: equal half the time, else up to 200 bytes unread, sometimes across 2^32."""
    cons = rng.choice([0, rng.randint(0, 5000), U32 - rng.randint(0, 100)])
    gap = 0 if rng.random() < 0.5 else rng.randint(1, 200)
    return cons, (cons + gap) & U32


def gen_quiesce(rng: random.Random, knobs: Mapping[str, Any] = NO_KNOBS) -> Question:
    """xb_init_comms on a store page that was used before: what it prints, which indices it fixes up."""
    req_cons, req_prod = _stale(rng)
    rsp_cons, rsp_prod = _stale(rng)
    use_fault = rng.random() < 0.25 and not knobs
    if use_fault:
        return _quiesce_fault(rng)
    req_cons, req_prod = _u32(knobs, "cons", req_cons), _u32(knobs, "prod", req_prod)
    rsp_cons, rsp_prod = _u32(knobs, "rsp_cons", rsp_cons), _u32(knobs, "rsp_prod", rsp_prod)
    k = guest_2618_with_store_page()
    intf = k.xb.xen_store_interface
    assert intf is not None
    intf.req_cons, intf.req_prod, intf.rsp_cons, intf.rsp_prod = req_cons, req_prod, rsp_cons, rsp_prod
    logged = len(k.log)
    rc = comms18.xb_init_comms(k)
    printed = [line.text for line in k.log[logged:]]
    q = Question("quiesce", (
        f"A XenLinux 2.6.18 domU boots on a store page that was used before (a kexec, a resumed guest): "
        f"req_cons = {req_cons:#010x}, req_prod = {req_prod:#010x}, rsp_cons = {rsp_cons:#010x}, "
        f"rsp_prod = {rsp_prod:#010x}. xenbus_probe_init calls xb_init_comms()."))
    q.setup = {"req": (req_cons, req_prod), "rsp": (rsp_cons, rsp_prod)}
    q.expect("printk", " | ".join(printed) or "none",
             "each line xb_init_comms prints, ' | ' between lines, or none", points=2, base="text")
    q.expect("req_cons", f"{intf.req_cons:#010x}", "req_cons afterwards", base="hex")
    q.expect("req_prod", f"{intf.req_prod:#010x}", "req_prod afterwards", base="hex")
    q.expect("rsp_cons", f"{intf.rsp_cons:#010x}", "rsp_cons afterwards", base="hex")
    q.expect("return", rc, "what xb_init_comms returns")
    q.worked = [
        "xb_init_comms (xenbus_comms.c): if req_prod != req_cons it prints 'XENBUS request ring is not "
        "quiescent (cons:prod)!' and leaves the request ring alone (xenstored may still read it); if "
        "rsp_prod != rsp_cons it prints '... response ring is not quiescent (cons:prod): fixing up' and "
        "sets rsp_cons = rsp_prod, skipping the stale replies. Then it binds the store port to \"xenbus\".",
        "The lab ran it:", *(f"  {s.function}: {s.summary}" for s in k.trace.steps
                             if s.actor == k.name and s.function == "xb_init_comms"),
    ]
    return q


@functools.cache
def fault_boot(flavour: str) -> tuple[dict[str, int], tuple[str, ...], int]:
    """Boot a *flavour* machine with ring-not-quiescent and create a guest: the indices the fault left,
    the guest's dmesg lines about quiescence, the bytes its xb_init_comms skipped (cached: the same
    every time)."""
    m = Machine(flavour=flavour, seed=0, faults=["ring-not-quiescent"])
    m.start_xenstored()
    dom = m.create_domU(disks=["xvda"], vifs=0)
    lines = tuple(ln.split("] ", 1)[-1] for ln in m.domain(dom.domid).run("dmesg").splitlines()
                  if "quiescent" in ln)
    skipped = sum(c.after - c.before for s in m.trace.steps if s.actor == dom.kernel.name
                  and s.function == "xb_init_comms" for c in s.changes if c.key == "rsp_cons")
    fault = next(s for s in m.trace.steps if s.function == "fault ring-not-quiescent")
    return {c.key: c.after for c in fault.changes}, lines, skipped


def _quiesce_fault(rng: random.Random) -> Question:
    """The ring-not-quiescent machine fault on either flavour: what the guest prints, what it skips."""
    flavour = rng.choice(["2.6.18", "modern"])
    left, lines, skipped = fault_boot(flavour)
    kernel = "Linux 6.1" if flavour == "modern" else "XenLinux 2.6.18"
    q = Question("quiesce", (
        f"`xenlab exec --flavour {flavour} --fault ring-not-quiescent`: the toolstack leaves a stale "
        f"request and stale response bytes in a new guest's store page: an unread DIRECTORY request "
        f"(req_cons {left['req_cons']}, req_prod {left['req_prod']}) and unread response bytes "
        f"(rsp_cons {left['rsp_cons']}, rsp_prod {left['rsp_prod']}). "
        f"dom0's xenstored answers the request as soon as the domain is introduced; then the {kernel} guest "
        "boots and runs xb_init_comms()."))
    q.setup = {"flavour": flavour, "fault": True}
    q.expect("printk", " | ".join(lines) or "none",
             "each line about quiescence the guest's dmesg shows, ' | ' between lines, or none",
             points=2, base="text")
    q.expect("skipped", skipped, "how many response bytes xb_init_comms skipped (rsp_cons moved by)")
    q.worked = [
        "xenstored consumed the request (req_cons = req_prod again) and appended its reply after the "
        f"{left['rsp_prod'] - left['rsp_cons']} stale response bytes, so only the response ring is not "
        "quiescent when the guest looks: it prints the "
        "warning and sets rsp_cons = rsp_prod, skipping the stale bytes and the reply together.",
        "The guest's dmesg:", *(f"  {ln}" for ln in lines),
    ]
    return q


# -- wake_waiting and xenstored_ready ---------------------------------------------------------------
@functools.cache
def ready_boot(role: str, started: bool) -> tuple[int, str, int, int | None, tuple[str, ...]]:
    """Boot a 2.6.18 dom0 (start xenstored if *started*; create a guest if *role* is domU) and read that
    kernel's xenstored_ready, the function that set it, its xenbus_probe runs, its xenbus IRQ, the
    trace lines of both (cached: the same every time)."""
    m = Machine(flavour="2.6.18", seed=0)
    if started:
        m.start_xenstored()
    if role == "domU":
        dom = m.create_domU(disks=["xvda"], vifs=0)
        k, where = dom.kernel, m.domain(dom.domid)
    else:
        k, where = m.dom0.kernel, m.dom0
    assert isinstance(k, XenLinuxKernel)
    setter = [s.function for s in m.trace.steps if s.actor == k.name
              for c in s.changes if c.key == "xenstored_ready" and c.before == 0 and c.after == 1]
    probes = sum(1 for s in m.trace.steps if s.actor == k.name and s.function == "xenbus_probe")
    lines = tuple(f"  [{s.actor}] {s.function}: {s.summary}" for s in m.trace.steps
                  if s.actor == k.name and s.function in ("wake_waiting", "xenbus_probe"))
    return (k.xb.xenstored_ready, setter[0] if setter else "none", probes,
            irq_of(where.run("cat /proc/interrupts"), "xenbus"), lines)


def gen_ready(rng: random.Random, knobs: Mapping[str, Any] = NO_KNOBS) -> Question:
    """XenLinux 2.6.18's xenstored_ready in dom0 or a domU: its value, who set it, how often probe ran."""
    role = knobs.get("role", rng.choice(["dom0", "dom0", "domU"]))
    if role not in ("dom0", "domU"):
        raise KnobError(f"--role must be dom0 or domU (got {role!r})")
    started = role == "domU" or rng.random() < 0.6
    ready, setter, probes, irq, trace_lines = ready_boot(role, started)
    q = Question("ready", (
        "dom0 runs XenLinux 2.6.18 and has booted. "
        + ("xenstored has been started. " if started else "xenstored has not been started yet. ")
        + ("Then `xl create` made a XenLinux 2.6.18 guest, which booted. " if role == "domU" else "")
        + f"Look at {'the guest' if role == 'domU' else 'dom0'}'s xenbus (xenbus_probe.c, xenbus_comms.c)."))
    q.setup = {"role": role, "started": started}
    q.expect("xenstored_ready", ready, "its value now (0 or 1)")
    q.expect("set_by", setter,
             "the function that set it to 1 (xenbus_probe_init or wake_waiting), or none", base="text")
    q.expect("probe_runs", probes, "how many times xenbus_probe (probe_work) has run in that kernel")
    q.expect("xenbus_irq", irq,
             "the IRQ /proc/interrupts shows for 'xenbus'")
    q.worked = [
        "xenbus_probe_init: a domU gets its store page and port from start_info and sets xenstored_ready = 1 "
        "at once; dom0 makes the page and port itself and must wait for xenstored. xb_init_comms binds the "
        "store port (bind_caller_port_to_irqhandler) with handler wake_waiting; the first store interrupt "
        "finds xenstored_ready == 0, sets it to 1 and schedules probe_work (xenbus_probe), so the devices "
        "are probed once, after xenstored's first kick. In a domU xenbus_probe runs from xenbus_probe_init.",
        "The lab's trace:", *trace_lines,
    ]
    return q


# -- /proc/xen --------------------------------------------------------------------------------------
def _ls_l(text: str) -> dict[str, str]:
    """name -> mode string of each `ls -l` line."""
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 9 and f[0][0] in "-dlcb":
            out[f[-1]] = f[0]
    return out


@functools.cache
def proc_xen_listing(flavour: str, role: str) -> tuple[tuple[str, str], ...]:
    """(name, mode) of each entry of `ls -l /proc/xen` in dom0 or a new guest of a booted *flavour*
    machine (cached: the same every time)."""
    m = Machine(flavour=flavour, seed=0)
    where = m.dom0
    if role == "domU":
        m.start_xenstored()
        where = m.domain(m.create_domU(disks=["xvda"], vifs=0).domid)
    return tuple(sorted(_ls_l(where.run("ls -l /proc/xen")).items()))


def gen_procxen(rng: random.Random, knobs: Mapping[str, Any] = NO_KNOBS) -> Question:
    """ls -l /proc/xen in dom0 or a domU, on XenLinux 2.6.18 (xen_proc.c) or Linux 6.1 (xenfs)."""
    flavour = knobs.get("flavour", rng.choice(["2.6.18", "2.6.18", "modern"]))
    role = knobs.get("role", rng.choice(["dom0", "domU"]))
    if flavour not in ("2.6.18", "modern") or role not in ("dom0", "domU"):
        raise KnobError(f"--flavour must be 2.6.18 or modern and --role dom0 or domU "
                        f"(got {flavour!r}, {role!r})")
    modes = dict(proc_xen_listing(flavour, role))
    kernel = "Linux 6.1" if flavour == "modern" else "XenLinux 2.6.18"
    q = Question("procxen", (
        f"Every domain runs {kernel}. {'dom0 has booted' if role == 'dom0' else 'A PV guest has booted'} "
        "(as the lab boots it). What is in its /proc/xen?"))
    q.setup = {"flavour": flavour, "role": role}
    q.expect("entries", " ".join(sorted(modes)) or "none", "the names `ls /proc/xen` shows, or none",
             points=2, base="text")
    asked = sorted(modes)
    if asked:
        for name in rng.sample(asked, min(2, len(asked))):
            q.expect(f"mode[{name}]", modes[name], "its mode as ls -l prints it, e.g. -r--------",
                     base="text")
    q.worked = [
        "XenLinux 2.6.18 has no xenfs: the kernel makes /proc/xen itself (create_xen_proc_entry, "
        "xen_proc.c): xenbus_dev_init adds xenbus (0400) in every domain; xenbus_probe_init adds "
        "xsd_kva (0600) and xsd_port (0400) in dom0 only. Linux 6.1 makes no /proc/xen "
        "entries itself: they are xenfs (xenfs/super.c), when something mounts it on /proc/xen (the "
        "lab's dom0 does; its 6.1 guests do not): capabilities, privcmd, xenbus, and xsd_kva, xsd_port "
        "and xensyms in the initial domain.",
        "The lab's ls -l /proc/xen:", *(f"  {mode} {name}" for name, mode in sorted(modes.items())),
    ]
    return q


# -- irq_info ---------------------------------------------------------------------------------------
def gen_irqinfo(rng: random.Random, knobs: Mapping[str, Any] = NO_KNOBS) -> Question:
    """irq_info[] on XenLinux 2.6.18: encode the word of a binding, and decode a word back."""
    ports = int(knobs.get("ports", rng.choice([0, 0, rng.randint(1, 12)])))
    if not 0 <= ports <= 200:
        raise KnobError(f"--ports must be 0..200 (got {ports})")
    k = guest_2618_with_store_page(ports)
    st = l18.evtchn_state(k)
    store = k.xb.xen_store_evtchn
    binds: list[tuple[str, int]] = []
    order = ["caller", "virq", "ipi", "listening"]
    rng.shuffle(order)
    for kind in order[:rng.randint(2, 4)]:
        if kind == "caller":
            binds.append((f"bind_caller_port_to_irq(port {store})  [the xenstore port]",
                          l18.bind_caller_port_to_irq(k, store)))
        elif kind == "virq":
            virq = rng.choice([VIRQ_TIMER, VIRQ_DEBUG])
            name = "VIRQ_TIMER" if virq == VIRQ_TIMER else "VIRQ_DEBUG"
            binds.append((f"bind_virq_to_irq({name} = {virq}, cpu 0)", l18.bind_virq_to_irq(k, virq, 0)))
        elif kind == "ipi":
            ipi = rng.randint(0, 1)
            binds.append((f"bind_ipi_to_irq(ipi {ipi}, cpu 0)", l18.bind_ipi_to_irq(k, ipi, 0)))
        else:
            binds.append(("bind_listening_port_to_irq(remote_domain 0)",
                          l18.bind_listening_port_to_irq(k, 0)))
    (enc_text, enc_irq), (dec_text, dec_irq) = rng.sample(binds, 2)
    word = st.irq_info[dec_irq]
    q = Question("irqinfo", (
        f"A XenLinux 2.6.18 domU has just run xen_init_IRQ; {ports} of its event channels are already in use "
        f"(unbound, for other purposes) and dom0 made port {store} for xenstored. The guest then calls:\n"
        + "\n".join(f"  {t}" for t, _ in binds)
        + "\nevtchn.c keeps irq_info[irq] = mk_irq_info(type, index, evtchn) = type<<24 | index<<16 | "
        f"evtchn, types {', '.join(f'{st.type_name(t)} = {t}' for t in range(6))}."
        + f"\nThe IRQ that `{dec_text}` returned has irq_info {word:#010x}."))
    q.setup = {"ports": ports, "binds": [t for t, _ in binds], "encode": enc_irq, "decode": dec_irq}
    q.expect(f"irq_info[{enc_irq}]", f"{st.irq_info[enc_irq]:#010x}",
             f"the irq_info word of IRQ {enc_irq} (from `{enc_text}`)", points=2, base="hex")
    q.expect("decode.type", st.type_name(l18.type_from_irq_info(word)), "the IRQT_ name in that word",
             base="text")
    q.expect("decode.index", l18.index_from_irq_info(word),
             "its index field (the VIRQ or IPI number, else 0)")
    q.expect("decode.port", l18.evtchn_from_irq_info(word), "its event channel port")
    q.worked = [
        "bind_*_to_irq take the lowest free dynamic IRQ (find_unbound_irq) and the lowest free port Xen "
        "hands out (get_free_port), then store mk_irq_info(type, index, port). A caller port keeps the "
        "port the caller gave; a listening port is a new EVTCHNOP_alloc_unbound; a VIRQ and an IPI get new "
        "ports from EVTCHNOP_bind_virq / bind_ipi, and their number goes in the index field.",
        *(f"  IRQ {irq}: {st.irq_info[irq]:#010x} = {st.describe(irq)}" for _, irq in binds),
    ]
    return q

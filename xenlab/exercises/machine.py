"""Exercises that boot the lab's Machine: modern IRQ numbering, and what xenbus_probe creates.

The answers are what the booted machine shows: ``cat /proc/interrupts`` and
``cat /proc/xen/xsd_port`` in dom0, ``ls`` of the xen and xen-backend buses, and the
``xenbus_state`` rows the drivers recorded in the trace as they ran the handshake.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping
from typing import Any

from xenlab.exercises.common import NO_KNOBS, KnobError, Question
from xenlab.sim.machine import Machine


def irq_of(interrupts: str, name: str) -> int | None:
    """The IRQ number of the /proc/interrupts line whose last word is *name*."""
    for line in interrupts.splitlines():
        head, _, rest = line.partition(":")
        if head.strip().isdigit() and rest.split() and rest.split()[-1] == name:
            return int(head)
    return None


def gen_numbering(rng: random.Random, knobs: Mapping[str, Any] = NO_KNOBS) -> Question:
    """Linux 6.1 dom0 with V vcpus: the xenbus IRQ, the store port, the last vcpu's timer IRQ."""
    v = int(knobs.get("vcpus", rng.randint(1, 6)))
    if not 1 <= v <= 16:
        raise KnobError(f"--vcpus must be 1..16 (got {v})")
    m = Machine(flavour="modern", seed=0, dom0_vcpus=v)
    interrupts = m.dom0.run("cat /proc/interrupts")
    port = int(m.dom0.run("cat /proc/xen/xsd_port"))
    xenbus = irq_of(interrupts, "xenbus")
    timer = irq_of(interrupts, f"timer{v - 1}")
    q = Question("numbering", (
        f"A Xen 4.17 dom0 runs Linux 6.1 with dom0_max_vcpus={v}. It has booted as far as xenbus_init "
        "(xenstored not started yet)."))
    q.setup = {"vcpus": v}
    q.expect("xenbus_irq", xenbus, "the IRQ /proc/interrupts shows for 'xenbus'")
    q.expect("xsd_port", port, "what cat /proc/xen/xsd_port prints")
    q.expect(f"timer{v - 1}_irq", timer, f"the IRQ of 'timer{v - 1}'")
    first_dyn = irq_of(interrupts, "timer0")
    lines = [ln.rstrip() for ln in interrupts.splitlines()
             if ln.strip()[:1].isdigit() and int(ln.split(":")[0]) <= (xenbus or 0)]
    q.worked = [
        f"Modern Linux hands out IRQs from irq_alloc_desc in bind order above the GSIs' range "
        f"(xen-pirq; the first dynamic IRQ here is {first_dyn}), then per cpu the timer VIRQ and "
        "the IPIs as each vcpu comes up (xen_setup_timer, xen_smp_intr_init), then xenbus_init's "
        "bind_evtchn_to_irqhandler. "
        "Ports come from Xen's get_free_port in the same order: the VIRQ and IPI ports of every vcpu "
        "first, so the store port (xen_store_evtchn, alloc_unbound in xenbus_init) follows them.",
        "The lab booted it; /proc/interrupts up to xenbus:",
        *(f"  {ln}" for ln in lines),
        f"cat /proc/xen/xsd_port -> {port}",
    ]
    return q


def _state_name(value: object) -> str:
    name = getattr(value, "name", str(value))
    return name.removeprefix("XenbusState")


def state_sequence(m: Machine, table: str, path: str) -> str:
    """The xenbus states a device went through, from the trace's ``<kernel>/xenbus_state`` rows."""
    seq: list[str] = []
    for step in m.trace.steps:
        for c in step.changes:
            if c.table == table and c.key == path:
                if not seq and c.before is not None:
                    seq.append(_state_name(c.before))
                if c.after is not None:
                    seq.append(_state_name(c.after))
    return " -> ".join(seq) or "none"


@functools.cache
def xenbus_boot(flavour: str, disks: tuple[str, ...], vifs: int) -> dict[str, Any]:
    """xl create on a booted *flavour* machine: the guest's domid and kernel name, both buses' `ls`,
    the xenbus_state sequences and the handshake's trace lines (cached: the same every time)."""
    m = Machine(flavour=flavour, seed=0)
    m.start_xenstored()
    dom = m.create_domU(disks=list(disks), vifs=vifs)
    d = dom.domid
    front = " ".join(m.domain(d).run("ls /sys/bus/xen/devices").split())
    table = f"{dom.kernel.name}/xenbus_state"
    states = {dev: state_sequence(m, table, f"device/{dev.replace('-', '/')}") for dev in front.split()}
    states.update({dev: state_sequence(m, "dom0/xenbus_state", "backend/" + dev.replace("-", "/"))
                   for dev in m.dom0.run("ls /sys/bus/xen-backend/devices").split()})
    switches = [f"  [{step.actor}] {step.summary}" for step in m.trace.steps
                if step.function == "xenbus_switch_state" and (step.actor == dom.kernel.name
                                                                 or f"/{d}/" in step.summary)]
    back = " ".join(m.dom0.run("ls /sys/bus/xen-backend/devices").split())
    return {"domid": d, "front": front, "back": back, "states": states, "switches": switches}


def gen_xenbus(rng: random.Random, knobs: Mapping[str, Any] = NO_KNOBS) -> Question:
    """xl create with D disks and N vifs: which xen/xen-backend devices appear, which states they pass."""
    flavour = knobs.get("flavour", rng.choice(["modern", "2.6.18"]))
    disks = ["xvda", "xvdb", "xvdc"][: rng.randint(1, 3)]
    vifs = int(knobs.get("vifs", rng.randint(0, 2)))
    if flavour not in ("modern", "2.6.18"):
        raise KnobError(f"--flavour must be 2.6.18 or modern (got {flavour!r})")
    if not 0 <= vifs <= 4:
        raise KnobError(f"--vifs must be 0..4 (got {vifs})")
    boot = xenbus_boot(flavour, tuple(disks), vifs)
    d, front, back = boot["domid"], boot["front"], boot["back"]
    kernel = "Linux 6.1" if flavour == "modern" else "XenLinux 2.6.18"
    q = Question("xenbus", (
        f"dom0 and a PV guest both run {kernel}. `xl create` makes the guest (domid {d}) with "
        f"disk = [{', '.join(repr(x) for x in disks)}] and {vifs} vif(s); the guest boots and loads "
        "its frontend drivers."))
    q.setup = {"flavour": flavour, "disks": disks, "vifs": vifs}
    q.expect("frontends", front, "ls /sys/bus/xen/devices in the guest (bus ids, space separated)",
             base="text")
    q.expect("backends", back, "ls /sys/bus/xen-backend/devices in dom0", base="text")
    vbd = next(x for x in front.split() if x.startswith("vbd-"))
    devid = vbd.split("-")[1]
    q.expect(f"{vbd}.states", boot["states"][vbd],
             "the frontend's states, A -> B -> C (XenbusState names without the prefix)", base="text")
    q.expect(f"vbd-{d}-{devid}.states", boot["states"][f"vbd-{d}-{devid}"],
             "the backend's states, same form", base="text")
    if vifs:
        q.expect("vif-0.states", boot["states"]["vif-0"], "netfront's states, same form", base="text")
    q.worked = [
        "The toolstack writes /local/domain/<d>/device/<type>/<devid> (frontend) and "
        "/local/domain/0/backend/<type>/<d>/<devid> (backend); xenbus_probe_devices walks device/ in the "
        "guest and names each device <type>-<devid> (xenbus_probe_frontend.c; xenbus_probe.c in 2.6.18); "
        "dom0's backend bus walks backend/ and names them <type>-<domid>-<devid> (xenbus_probe_backend.c). "
        "A disk's devid is its Linux device number (major 202 << 8 | 16 minors per xvd disk); here "
        + ", ".join(f"{disk} = {dev.split('-')[1]}" for disk, dev in
                    zip(disks, [x for x in front.split() if x.startswith('vbd-')], strict=False))
        + "."
        + (f" dom0's console-{d}-0 is the console backend the toolstack also adds."
           if f"console-{d}-0" in back else ""),
        "The handshake as the lab's drivers ran it (xenbus_switch_state rows):",
        *boot["switches"],
    ]
    return q

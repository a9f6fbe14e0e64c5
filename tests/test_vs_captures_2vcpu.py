"""The modern lab with 2 vCPUs (dom0 and domU) against the real 2-vCPU runs in tests/captures/.

The sets were taken with ``run --vcpus 2 --domu --guest-vcpus 2`` (README.md there). What
varies between real runs is masked as in test_vs_captures.py: interrupt counts (the lab
delivers no timer ticks, IPIs or console/keyboard input; a channel's count depends on the
guest's timing), timestamps, grant refs, UUIDs, MACs; watch tokens are kernel addresses of
the watch structs (the lab's are its own model's) and are masked where payloads are compared.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from real_captures import CAPTURES
from test_vs_captures import decode, normalise, real_decoded, ring_fields

from xenlab.sim.machine import Machine
from xenlab.sim.scenarios import build
from xenlab.xen.keyhandler import dump_evtchn_info

Msg = tuple[str, int, bytes]


def capture(kind: str, name: str) -> list[str]:
    """The output lines of capture *name* (without its `$ command` line and `[rc=N]`)."""
    (path,) = (CAPTURES / kind).glob(f"{name}*.txt")
    return [ln for ln in path.read_text().splitlines()[1:] if not ln.startswith("[rc=")]


@pytest.fixture(scope="module")
def dom0_2v() -> Iterator[Machine]:
    m = build("dom0", flavour="modern", seed=0, dom0_vcpus=2)
    yield m
    m.shutdown()


@pytest.fixture(scope="module")
def cdom0_2v() -> Iterator[Machine]:
    m = build("dom0", flavour="modern", seed=0, dom0_vcpus=2, xenstored="cxenstored")
    yield m
    m.shutdown()


@pytest.fixture(scope="module")
def domu_2v() -> Iterator[Machine]:
    m = build("domU", flavour="modern", seed=0, dom0_vcpus=2, guest_vcpus=2)
    yield m
    m.shutdown()


@pytest.fixture(scope="module")
def domu_2v_2d2v() -> Iterator[Machine]:
    m = build("domU", flavour="modern", seed=0, dom0_vcpus=2, guest_vcpus=2, disks=2, vifs=2)
    yield m
    m.shutdown()


# -- the decoded boot requests ------------------------------------------------------------
def by_thread(msgs: list[Msg]) -> dict[str, list[Msg]]:
    """The boot requests split by the kernel thread that sends them.

    Two threads talk at once: the one running the xenstore notifiers (xenbus_probe:
    balloon's and manage's watches and writes, the backend/ and device/ probes, the cpu
    watch) and xenwatch (the callbacks those watches fire: balloon's read of memory/target,
    manage's transactions reading control/shutdown and control/sysrq). Each thread's own
    order is the kernel's program order; how the two interleave is the timing of two
    threads each with one request in flight, which the lab's one-stack scheduler does not
    model (a woken task runs its whole callback inside the other's wait).
    """
    def xenwatch(m: Msg) -> bool:
        t, tx, p = m
        return t.startswith("TRANSACTION_") or tx != 0 or (t, p) == ("READ", b"memory/target\x00")

    token = re.compile(rb"\x00[0-9A-Fa-f]{8,16}\x00")
    masked = [(t, tx, token.sub(b"\x00TOKEN\x00", p)) for t, tx, p in msgs]
    return {"xenbus_probe": [m for m in masked if not xenwatch(m)],
            "xenwatch": [m for m in masked if xenwatch(m)]}


def lab_ring(m: Machine) -> tuple[list[Msg], list[Msg]]:
    intf = m.store_interface(0)
    page = m.dom0.kernel.xen_store_page()
    assert page is not None
    data = bytes(page.buf[:2048])  # req[1024] then rsp[1024]
    return decode(data[: intf.req_prod]), decode(data[1024: 1024 + intf.rsp_prod])


@pytest.mark.parametrize("kind,vcpus,daemon", [
    ("oxenstored", 1, "oxenstored"), ("cxenstored", 1, "cxenstored"),
    ("oxenstored-2vcpu", 2, "oxenstored"), ("cxenstored-2vcpu", 2, "cxenstored")])
def test_boot_requests_come_in_initcall_order(kind: str, vcpus: int, daemon: str) -> None:
    """balloon.o and manage.o link before xenbus/ (subsys_initcall), cpu_hotplug is a late_initcall."""
    m = build("dom0", flavour="modern", seed=0, dom0_vcpus=vcpus, xenstored=daemon)
    try:
        lab_req, lab_rsp = lab_ring(m)
    finally:
        m.shutdown()
    real_req, real_rsp = real_decoded(kind, "after-xenstored")
    assert len(lab_req) == len(real_req) == 18 + vcpus
    assert by_thread(lab_req) == by_thread(real_req)
    assert normalise(lab_rsp) == normalise(real_rsp)
    first = [(t, p.split(b"\x00")[0]) for t, _tx, p in lab_req[:2]]
    assert first == [("WATCH", b"memory/target"), ("WATCH", b"control/shutdown")]


# -- /proc/xen/xsd_port and the ring indices ----------------------------------------------------
@pytest.mark.parametrize("kind", ["oxenstored-2vcpu", "cxenstored-2vcpu"])
def test_xsd_port_and_ring_indices(kind: str, dom0_2v: Machine, cdom0_2v: Machine) -> None:
    m = dom0_2v if kind.startswith("o") else cdom0_2v
    assert f"xsd_port: {m.dom0.run('cat /proc/xen/xsd_port')}" == capture(kind, "09-")[1]
    lab, real = ring_fields(m.dom0.run("xsring after")), ring_fields(capture(kind, "15-")[0])
    assert {k: lab[k] for k in ("req_cons", "req_prod", "rsp_cons", "rsp_prod")} == \
        {k: real[k] for k in ("req_cons", "req_prod", "rsp_cons", "rsp_prod")}


# -- the spinlock kicker IPIs are masked -------------------------------------------------------
def evtchn_dump(lines: list[str]) -> dict[int, list[tuple[int, str, str]]]:
    """`xl debug-keys e` as {domid: [(port, masked bit, the s=/n=/... fields)]}; timestamps dropped.

    The capture's `xl dmesg | grep -A40` repeats part of a domain's block: a port is kept once.

    The pending bit is left out: a spinlock port is pending only after a lock kick, which
    depends on lock contention (cxenstored-2vcpu's dom0 port 2 is [0/1], the others [1/1]).
    """
    row = re.compile(r"^\s*(?:\(XEN\) \[[\d. ]+\])?\s+(\d+) \[(\d)/(\d)/[^\]]*\]: (.*)$")
    out: dict[int, dict[int, tuple[int, str, str]]] = {}
    dom = -1
    for ln in lines:
        if (d := re.search(r"Event channel information for domain (\d+):", ln)):
            dom = int(d[1])
            out.setdefault(dom, {})
        elif (p := row.search(ln)) and dom >= 0:
            out[dom][int(p[1])] = (int(p[1]), p[3], p[4].strip())
    return {d: [ports[k] for k in sorted(ports)] for d, ports in out.items()}


def test_spinlock_ports_masked_in_xl_debug_keys_e(domu_2v: Machine) -> None:
    """xen_init_lock_cpu: disable_irq on the kicker; xen_percpu_chip's irq_disable masks the port."""
    lab = evtchn_dump(dump_evtchn_info(domu_2v.hv).splitlines())
    real = evtchn_dump(capture("oxenstored-2vcpu", "D08-"))
    masked = {d: [p for p, m, _ in ports if m == "1"] for d, ports in real.items()}
    assert masked == {0: [2, 12], 1: [4, 14]}
    assert {d: [p for p, m, _ in ports if m == "1"] for d, ports in lab.items()} == masked


def fifo_columns(lines: list[str]) -> dict[int, dict[int, str]]:
    """{domid: {port: the ABI's part of [p/m/s]}} of an `xl debug-keys e` dump."""
    row = re.compile(r"^\s*(?:\(XEN\) \[[\d. ]+\])?\s+(\d+) \[\d/\d/([^\]]*)\]:")
    out: dict[int, dict[int, str]] = {}
    dom = -1
    for ln in lines:
        if (d := re.search(r"Event channel information for domain (\d+):", ln)):
            dom = int(d[1])
        elif (p := row.search(ln)) and dom >= 0:
            out.setdefault(dom, {})[int(p[1])] = p[2]
    return out


@pytest.mark.parametrize("kind", ["oxenstored-2vcpu", "oxenstored-2vcpu-2disk-2vif"])
def test_xl_debug_keys_e_prints_the_fifo_column_of_every_port(kind: str, domu_2v: Machine,
                                                            domu_2v_2d2v: Machine) -> None:
    """evtchn_fifo_print_state on both vCPUs' ports: "  -   " (an event word, not LINKED on a
    queue), not 2-level's selector bit: both kernels registered a control block per vCPU."""
    m = domu_2v_2d2v if "2disk" in kind else domu_2v
    lab, real = fifo_columns(dump_evtchn_info(m.hv).splitlines()), fifo_columns(capture(kind, "D08-"))
    assert lab == real and {c for ports in real.values() for c in ports.values()} == {"  -   "}


# -- which vCPU each port is bound to (select_target_cpu) ---------------------------------------
SETS_2V = ["oxenstored-2vcpu", "cxenstored-2vcpu", "oxenstored-2vcpu-2disk-2vif"]


def machine_for(kind: str, scenario: str) -> Machine:
    two = "2disk" in kind
    return build(scenario, flavour="modern", seed=0, dom0_vcpus=2, guest_vcpus=2, disks=2 if two else 1,
                 vifs=2 if two else 1, xenstored="cxenstored" if kind.startswith("c") else "oxenstored")


@pytest.mark.parametrize("kind", SETS_2V)
def test_lsevtchn_before_and_after_xenstored(kind: str) -> None:
    """The xenbus port (13) goes to VCPU 1 when xenbus_init requests it: vcpu 0 counts one more
    channel then, the port itself (bind_evtchn_to_irq_chip binds it to vcpu 0 first)."""
    early, dom0 = machine_for(kind, "dom0-early"), machine_for(kind, "dom0")
    try:
        assert early.dom0.run("lsevtchn 0").splitlines() == capture(kind, "11-")
        assert dom0.dom0.run("lsevtchn 0").splitlines() == capture(kind, "16-")
    finally:
        early.shutdown()
        dom0.shutdown()


@pytest.mark.parametrize("kind", SETS_2V)
def test_lsevtchn_of_dom0_and_the_guest(kind: str, domu_2v: Machine, domu_2v_2d2v: Machine) -> None:
    """dom0's ports to the guest alternate VCPU 1, 0, ... (each goes where fewer channels are)."""
    m = domu_2v_2d2v if "2disk" in kind else domu_2v
    real = capture(kind, "D07-")
    i = real.index("== domU")
    assert m.dom0.run("lsevtchn 0").splitlines() == real[1:i]
    assert m.dom0.run("lsevtchn 1").splitlines() == real[i + 1:]


@pytest.mark.parametrize("kind", SETS_2V)
def test_xl_debug_keys_e_notify_vcpus_and_masks(kind: str, domu_2v: Machine, domu_2v_2d2v: Machine) -> None:
    """`n=` is Xen's notify_vcpu_id, the same fact as lsevtchn's VCPU; the masked bit too."""
    m = domu_2v_2d2v if "2disk" in kind else domu_2v
    assert evtchn_dump(dump_evtchn_info(m.hv).splitlines()) == evtchn_dump(capture(kind, "D08-"))


# -- the per-CPU columns of /proc/interrupts -----------------------------------------------------
UNMODELLED = re.compile(r"xen-percpu|xen-pirq|hvc_console|xenconsoled|blkif|vif")


def per_cpu(lines: list[str]) -> list[tuple[str, str, str]]:
    """Each IRQ row as (irq, name, which CPUs counted): '01' = only CPU1, '10' = only CPU0, ...

    The counts themselves are masked (the real ones depend on timing and load). Rows whose
    events the lab does not model are left out of the pattern ("--"): the per-cpu timers and
    IPIs, the i8042/rtc/acpi PIRQs, the consoles, and the block and net rings (the real
    counts follow the guest's I/O and packets: a partition scan, DHCP and IPv6 traffic; the
    same vif queue shows "1 0" in one real run and "0 1" in another). Their vCPUs are
    compared through lsevtchn and `xl debug-keys e` above.
    """
    rows = []
    for ln in lines:
        m = re.match(r"\s*(\d+):\s+(\d+)\s+(\d+)\s+(\S+)\s+-\S+\s+(.*)$", ln)
        if m:
            name = m[5].strip()
            cols = "".join("1" if int(c) else "0" for c in (m[2], m[3]))
            if UNMODELLED.search(ln):
                cols = "--"
            rows.append((m[1], name, cols))
    return rows


@pytest.mark.parametrize("kind", SETS_2V)
def test_proc_interrupts_per_cpu_columns(kind: str, domu_2v: Machine, domu_2v_2d2v: Machine) -> None:
    """xenbus counts on CPU1 only; xenstored's end of the guest's store port once on CPU0 (an event
    already pending when request_irq unmasked it), then on CPU1."""
    m = domu_2v_2d2v if "2disk" in kind else domu_2v if kind.startswith("o") else machine_for(kind, "domU")
    try:
        lab = per_cpu(m.dom0.run("cat /proc/interrupts").splitlines())
        assert lab == per_cpu(capture(kind, "D06-"))
        daemon = "evtchn:oxenstored" if kind.startswith("o") else "evtchn:xenstored"
        assert ("36", "xenbus", "01") in lab and ("42", daemon, "11") in lab
        guest = m.domain(1).run("cat /proc/interrupts").splitlines()
        assert per_cpu(guest) == per_cpu(capture(kind, "domU-06"))
    finally:
        if m not in (domu_2v, domu_2v_2d2v):
            m.shutdown()


# -- the IRQ space of a PV dom0 (arch_probe_nr_irqs, pci_xen_initial_domain) ----------------------
def dmesg_nr_irqs(kind: str, name: str) -> int:
    (line,) = [ln for ln in capture(kind, name) if "nr_irqs:" in ln]
    return int(re.search(r"nr_irqs: (\d+)", line)[1])  # type: ignore[index]


@pytest.mark.parametrize("kind", SETS_2V)
def test_nr_irqs_as_early_irq_init_prints_it(kind: str, domu_2v: Machine) -> None:
    """dom0: 24 GSIs + 16 legacy + 8/cpu + 16/GSI (440 with 2 cpus, capped at 256/cpu: 256 with
    one); the domU counts the 16 legacy IRQs too (its PIC probe fails only afterwards): 48."""
    assert domu_2v.dom0.kernel.irq.nr_irqs == dmesg_nr_irqs(kind, "26-")
    assert domu_2v.domain(1).kernel.irq.nr_irqs == dmesg_nr_irqs(kind, "domU-09")


def test_legacy_gsis_registered_before_timer0() -> None:
    """pci_xen_initial_domain runs at the end of xen_init_IRQ: GSIs 1..15 (2 is where ISA IRQ 0 is
    wired), before the timer VIRQ takes IRQ 24."""
    m = build("dom0-early", flavour="modern", seed=0)
    try:
        descs = m.dom0.kernel.irq.core.descs
        assert sorted(i for i in descs if i < 16) == list(range(1, 16))
        fns = [s.function for s in m.trace.steps]
        assert fns.index("pci_xen_initial_domain") < fns.index("bind_virq_to_irq")
    finally:
        m.shutdown()


# -- the boot lines of the steps the lab models ------------------------------------------------
MODELLED_LINES = ["xen:events: Using FIFO-based ABI",  # xen_init_IRQ -> xen_evtchn_fifo_init (init_IRQ)
                  "xen:grant_table: Grant tables using version 1 layout", "Grant table initialized",
                  "xen:xen_evtchn: Event-channel device installed",
                  "xenbus: xenbus_probe (xenbus_probe_thread:817) probing."]


def in_order(lines: list[str]) -> list[str]:
    """The MODELLED_LINES found in *lines* (timestamps dropped), in the order they were printed."""
    texts = [re.sub(r"^\[[\d. ]+\] ", "", ln).rstrip() for ln in lines]
    return [t for t in texts if t in MODELLED_LINES]


@pytest.mark.parametrize("kind", SETS_2V)
def test_dom0_and_domu_dmesg_lines_of_modelled_steps(kind: str, domu_2v: Machine) -> None:
    """The FIFO ABI in init_IRQ, long before the initcalls; gnttab_init (core_initcall_sync) before
    xenbus; xen-evtchn's module_init when /init loads it (dom0 only: the guest's /init does not);
    then xenstored starts and xenbus probes."""
    real = in_order(capture(kind, "26-"))
    assert in_order(domu_2v.dom0.run("dmesg").splitlines()) == real == MODELLED_LINES
    assert in_order(domu_2v.domain(1).run("dmesg").splitlines()) == in_order(capture(kind, "domU-09"))


# -- a vif joining xenbr0 (net/bridge/br_if.c) ------------------------------------------------------
BRIDGE = re.compile(r"xenbr0: |device vif\S+ entered promiscuous mode|: Guest Rx ready")


def bridge_lines(lines: list[str]) -> list[str]:
    """The bridge's messages and netback's "Guest Rx ready", timestamps dropped, up to the last
    "entered forwarding state" (what follows is xl destroy's teardown, which the lab does not print)."""
    texts = [re.sub(r"^\[[\d. ]+\] ", "", ln).rstrip() for ln in lines if BRIDGE.search(ln)]
    last = max(i for i, t in enumerate(texts) if t.endswith("entered forwarding state"))
    return texts[: last + 1]


@pytest.mark.parametrize("kind", ["domU", "oxenstored-2vcpu", "cxenstored-2vcpu"])
def test_vif_joins_the_bridge_then_forwards_once_connected(kind: str, domu_2v: Machine) -> None:
    """vif-bridge's `brctl addif` (blocking, disabled, promiscuous) at InitWait; the carrier at
    Connected: netback's Guest Rx ready, then blocking and forwarding (STP off)."""
    name = "D10-" if kind == "domU" else "26-"
    assert bridge_lines(domu_2v.dom0.run("dmesg").splitlines()) == bridge_lines(capture(kind, name))


def banner(lines: list[str]) -> list[str]:
    """xen_banner's two lines, without timestamps."""
    return [ln[15:] for ln in lines if ln[15:].startswith(("Booting kernel on Xen", "Xen version:"))]


def test_the_xen_banner_is_what_dom0_and_the_guest_print(domu_2v: Machine) -> None:
    """xen_banner (enlighten_pv.c) asks HYPERVISOR_xen_version for the version, the extraversion and
    the features: "4.17" from XENVER_version, ".7" from XENVER_extraversion, "(preserve-AD)" from
    XENFEAT_mmu_pt_update_preserve_ad."""
    want = banner(capture("oxenstored-2vcpu", "26-dmesg-full"))
    assert want == ["Booting kernel on Xen", "Xen version: 4.17.7 (preserve-AD)"]
    assert banner(domu_2v.dom0.run("dmesg").splitlines()) == want
    assert banner(domu_2v.domain(1).run("dmesg").splitlines()) == banner(
        capture("oxenstored-2vcpu", "domU-09-dmesg-full"))


# -- dom0 alone with 2 vCPUs: the files the 1-vCPU tests compare (test_vs_captures.py) -------------
@pytest.mark.parametrize("kind", ["oxenstored-2vcpu", "cxenstored-2vcpu"])
def test_dom0_tree_ring_before_and_irqs_after_xenstored(kind: str, dom0_2v: Machine,
                                                         cdom0_2v: Machine) -> None:
    """17/18 (the tree after xen-init-dom0), 10 (the ring before xenstored: all 0), 14 (the IRQ
    rows after xenstored, as per_cpu reads them: which CPU counted, the unmodelled rows masked)."""
    from test_vs_captures import tree

    m = dom0_2v if kind.startswith("o") else cdom0_2v
    assert tree(m.dom0.run("xenstore-ls -f").splitlines()) == tree(capture(kind, "17-"))
    assert tree(m.dom0.run("xenstore-ls -f -p").splitlines()) == tree(capture(kind, "18-"))
    assert per_cpu(m.dom0.run("cat /proc/interrupts").splitlines()) == per_cpu(capture(kind, "14-"))
    early = machine_for(kind, "dom0-early")
    try:
        lab_before = ring_fields(early.dom0.run("xsring before"))
        real_before = ring_fields(capture(kind, "10-")[0])
        assert {k: lab_before[k] for k in real_before} == real_before
    finally:
        early.shutdown()

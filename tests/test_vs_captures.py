"""The lab held against a real Xen 4.17 + Linux 6.1 machine (tests/captures/, real_captures.py).

Each test runs the same command in the lab (modern flavour, oxenstored, the dom0 and
domU scenarios) and compares with what the real machine printed, modulo what varies
from run to run on the real machine too: MFNs and grant refs, UUIDs, MACs, timestamps,
kernel-pointer watch tokens, interrupt counts, the probe's interleaving. The captures
are read here, in the test, never by xenlab itself: every number the lab prints comes
out of its model.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

import pytest
from real_captures import CAPTURES

from xenlab.abi.xs_wire import xsd_sockmsg_type
from xenlab.sim.machine import Machine
from xenlab.sim.scenarios import build


def capture(kind: str, name: str) -> list[str]:
    """The output lines of capture *name* (without its `$ command` line and `[rc=N]`)."""
    (path,) = (CAPTURES / kind).glob(f"{name}*.txt")
    lines = path.read_text().splitlines()
    return [ln for ln in lines[1:] if not ln.startswith("[rc=")]


@pytest.fixture(scope="module")
def dom0() -> Iterator[Machine]:
    m = build("dom0", flavour="modern", seed=0)
    yield m
    m.shutdown()


@pytest.fixture(scope="module")
def domu() -> Iterator[Machine]:
    m = build("domU", flavour="modern", seed=0)
    yield m
    m.shutdown()


@pytest.fixture(scope="module")
def early() -> Iterator[Machine]:
    m = build("dom0-early", flavour="modern", seed=0)
    yield m
    m.shutdown()


# -- /proc/xen and the store port ------------------------------------------------------
def test_xsd_port_is_the_port_dom0_allocated(dom0: Machine) -> None:
    real = capture("oxenstored", "09-")[1]  # "xsd_port: 6"
    assert f"xsd_port: {dom0.dom0.run('cat /proc/xen/xsd_port')}" == real


# -- /proc/interrupts ------------------------------------------------------------------
def irq_rows(lines: list[str], cpus: int = 1) -> list[tuple[str, ...]]:
    """The numbered IRQ rows of a *cpus*-CPU /proc/interrupts as (irq, chip, type, name), counts dropped."""
    rows = []
    counts = r"\s+\d+" * cpus
    for ln in lines:
        m = re.match(rf"\s*(\d+):{counts}\s+(\S+)\s+-(\S+)\s+(.*)$", ln)
        if m:
            rows.append((m[1], m[2], m[3], m[4].strip()))
    return rows


def test_xenbus_irq_line_before_xenstored(early: Machine) -> None:
    real = [r for r in irq_rows(capture("oxenstored", "02-")) if r[3] == "xenbus"]
    lab = [r for r in irq_rows(early.dom0.run("cat /proc/interrupts").splitlines()) if r[3] == "xenbus"]
    assert lab == real


def test_dom0_interrupts_after_xenstored_name_the_daemon(dom0: Machine) -> None:
    lab = irq_rows(dom0.dom0.run("cat /proc/interrupts").splitlines())
    assert lab == irq_rows(capture("oxenstored", "14-"))


def test_xenbus_irq_counted_events_once_xenstored_ran(dom0: Machine, early: Machine) -> None:
    def count(m: Machine) -> int:
        (line,) = [ln for ln in m.dom0.run("cat /proc/interrupts").splitlines() if ln.endswith("xenbus")]
        return int(line.split()[1])

    assert count(early) == 0 and count(dom0) > 0


def test_domu_and_dom0_interrupts_with_a_guest(domu: Machine) -> None:
    assert irq_rows(domu.dom0.run("cat /proc/interrupts").splitlines()) == irq_rows(capture("domU", "D06-"))
    guest = domu.domain(1).run("cat /proc/interrupts").splitlines()
    assert irq_rows(guest) == irq_rows(capture("domU", "domU-06"))


# -- event channels ----------------------------------------------------------------------
def test_lsevtchn_before_and_after_xenstored(early: Machine, dom0: Machine) -> None:
    assert early.dom0.run("lsevtchn 0").splitlines() == capture("oxenstored", "11-")
    assert dom0.dom0.run("lsevtchn 0").splitlines() == capture("oxenstored", "16-")


def test_lsevtchn_of_dom0_and_the_guest(domu: Machine) -> None:
    real = capture("domU", "D07-")
    i = real.index("== domU")
    assert domu.dom0.run("lsevtchn 0").splitlines() == real[1:i]
    assert domu.dom0.run("lsevtchn 1").splitlines() == real[i + 1:]


# -- the store ring ------------------------------------------------------------------------
RING_FIELDS = r"(req_cons|req_prod|rsp_cons|rsp_prod|server_features|connection|error)=(\S+)"


def ring_fields(line: str) -> dict[str, str]:
    return dict(re.findall(RING_FIELDS, line))


def test_ring_indices_after_xenstored_come_from_the_probe_requests(dom0: Machine, early: Machine) -> None:
    real_before = ring_fields(capture("oxenstored", "10-")[0])
    real_after = ring_fields(capture("oxenstored", "15-")[0])
    assert ring_fields(early.dom0.run("xsring before")) == real_before
    assert ring_fields(dom0.dom0.run("xsring after")) == real_after


def decode(data: bytes) -> list[tuple[str, int, bytes]]:
    out, i = [], 0
    while i + 16 <= len(data):
        mtype, _req, tx, ln = (int.from_bytes(data[i + k:i + k + 4], "little") for k in (0, 4, 8, 12))
        out.append((xsd_sockmsg_type(mtype).name.removeprefix("XS_"), tx, data[i + 16:i + 16 + ln]))
        i += 16 + ln
    return out


def normalise(msgs: list[tuple[str, int, bytes]]) -> Counter[tuple[str, bool, bytes]]:
    """Messages as a multiset: watch tokens (kernel pointers) masked, tx ids only as 'in a transaction'."""
    token = re.compile(rb"\x00[0-9A-Fa-f]{8,16}\x00")
    return Counter((t, tx != 0, token.sub(b"\x00TOKEN\x00", p)) for t, tx, p in msgs)


def real_decoded(kind: str, snapshot: str) -> tuple[list[tuple[str, int, bytes]], ...]:
    text = (CAPTURES / kind / "ring-decoded.txt").read_text()
    block = text.split(f"== {snapshot}:")[1].split("\n== ")[0]
    req, rsp = block.split("rsp ring bytes")
    pat = re.compile(r"^\s+(\w+)\s+req_id=\d+\s+tx_id=(\d+) len=\d+\s+payload=(b'.*'|b\".*\")$", re.M)

    def parse(part: str) -> list[tuple[str, int, bytes]]:
        return [(t, int(tx), eval(p)) for t, tx, p in pat.findall(part)]  # noqa: S307 - bytes literals

    return parse(req), parse(rsp)


def test_decoded_boot_requests_and_replies_match_the_real_ring(dom0: Machine) -> None:
    intf = dom0.store_interface(0)
    page = bytes(dom0.dom0.kernel.xb.xen_store_page.buf[:2048])  # req[1024] then rsp[1024]
    lab_req = decode(page[: intf.req_prod])
    lab_rsp = decode(page[1024: 1024 + intf.rsp_prod])
    real_req, real_rsp = real_decoded("oxenstored", "after-xenstored")
    assert len(lab_req) == 19
    assert normalise(lab_req) == normalise(real_req)
    assert normalise(lab_rsp) == normalise(real_rsp)


# -- the xenstore tree ---------------------------------------------------------------------------
VARYING = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "UUID"),
    (re.compile(r'(ring-ref|rx-ring-ref|tx-ring-ref) = "\d+"'), r'\1 = "REF"'),
    (re.compile(r'start_time = "[\d.]+"'), 'start_time = "T"'),
    (re.compile(r"00:16:3e:[0-9a-f:]{8}"), "MAC"),
]


def tree(lines: list[str]) -> list[str]:
    """xenstore-ls lines with the run-to-run values masked and the capture script's /xenlab nodes dropped."""
    out = []
    for ln in lines:
        if ln.startswith("/xenlab"):
            continue
        for pat, rep in VARYING:
            ln = pat.sub(rep, ln)
        out.append(ln)
    return out


def test_dom0_tree_after_xen_init_dom0(dom0: Machine) -> None:
    assert tree(dom0.dom0.run("xenstore-ls -f").splitlines()) == tree(capture("oxenstored", "17-"))
    assert tree(dom0.dom0.run("xenstore-ls -f -p").splitlines()) == tree(capture("oxenstored", "18-"))


def test_tree_with_a_connected_guest_keys_values_and_permissions(domu: Machine) -> None:
    assert tree(domu.dom0.run("xenstore-ls -f").splitlines()) == tree(capture("domU", "D03-"))
    assert tree(domu.dom0.run("xenstore-ls -f -p").splitlines()) == tree(capture("domU", "D04-"))


def test_the_guest_reads_its_own_subtree_through_its_ring(domu: Machine) -> None:
    real = capture("domU", "domU-07")
    assert domu.domain(1).run("xenstore-read domid") == real[0]
    assert domu.domain(1).run("xenstore-read name") == real[1]
    assert tree(domu.domain(1).run("xenstore-ls -f /local/domain/1").splitlines()) == tree(real[2:])


# -- sysfs -------------------------------------------------------------------------------------------
def sysfs_devices(m: Machine, domid: int, bus: str) -> list[str]:
    d = m.domain(domid)
    out = []
    for name in d.run(f"ls /sys/bus/{bus}/devices").split():
        base = f"/sys/bus/{bus}/devices/{name}"
        attrs = {a: d.run(f"cat {base}/{a}") for a in ("nodename", "devtype", "state")}
        out.append(f"{base}: nodename={attrs['nodename']} devtype={attrs['devtype']} state={attrs['state']}")
    return out


def test_dom0_backend_devices_and_states(domu: Machine) -> None:
    real = [ln.split(" driver=")[0] for ln in capture("domU", "D05-") if ln.startswith("/sys/bus")]
    assert sysfs_devices(domu, 0, "xen-backend") == real


def test_guest_frontend_devices_connected(domu: Machine) -> None:
    real = [ln.split(" driver=")[0] for ln in capture("domU", "domU-05") if ln.startswith("/sys/bus")]
    assert sysfs_devices(domu, 1, "xen") == real


def test_xl_list_columns(domu: Machine) -> None:
    def cols(line: str) -> list[str]:
        return line.split()[:-1]  # Time(s) varies

    real = capture("domU", "D02-")[:3]
    lab = domu.dom0.run("xl list").splitlines()
    assert lab[0] == real[0]
    assert [cols(ln) for ln in lab[1:]] == [cols(ln) for ln in real[1:]]
    assert [len(ln) for ln in lab[1:]] == [len(ln) for ln in real[1:]]


# -- /proc/xen and the driver lists -------------------------------------------------------------
def test_proc_xen_after_mounting_xenfs(early: Machine) -> None:
    def modes(lines: list[str]) -> list[tuple[str, str]]:
        return [(ln.split()[0], ln.split()[-1]) for ln in lines if ln.startswith("-")]

    real = capture("oxenstored", "08-")
    real = real[: real.index("")]  # the `ls -la /proc/xen` part
    assert modes(early.dom0.run("ls -l /proc/xen").splitlines()) == modes(real)


def test_bus_drivers_in_dom0(dom0: Machine) -> None:
    real = capture("oxenstored", "20-")
    assert dom0.dom0.run("ls /sys/bus/xen/drivers") == real[real.index("-- /sys/bus/xen/drivers:") + 1]
    assert dom0.dom0.run("ls /sys/bus/xen-backend/drivers") == real[-1]
    assert dom0.dom0.run("ls /sys/bus/xen/devices") == ""


# -- the C xenstored personality ------------------------------------------------------------------
@pytest.fixture(scope="module")
def cdom0() -> Iterator[Machine]:
    m = build("dom0", flavour="modern", seed=0, xenstored="cxenstored")
    yield m
    m.shutdown()


def test_c_xenstored_tree_in_insertion_order(cdom0: Machine) -> None:
    """C xenstored lists children in the order they were created, so the order itself is checked."""
    assert cdom0.dom0.run("xenstore-ls -f").splitlines() == capture("cxenstored", "17-")
    assert cdom0.dom0.run("xenstore-ls -f -p").splitlines() == capture("cxenstored", "18-")


def test_c_xenstored_ring_and_irqs(cdom0: Machine) -> None:
    assert ring_fields(cdom0.dom0.run("xsring after")) == ring_fields(capture("cxenstored", "15-")[0])
    lab = irq_rows(cdom0.dom0.run("cat /proc/interrupts").splitlines())
    assert lab == irq_rows(capture("cxenstored", "14-"))
    intf = cdom0.store_interface(0)
    page = bytes(cdom0.dom0.kernel.xb.xen_store_page.buf[:2048])
    real_req, real_rsp = real_decoded("cxenstored", "after-xenstored")
    assert normalise(decode(page[: intf.req_prod])) == normalise(real_req)
    assert normalise(decode(page[1024: 1024 + intf.rsp_prod])) == normalise(real_rsp)


# -- tools through the kernel: the ring moves --------------------------------------------------------
def test_tools_through_dev_xen_xenbus_move_dom0s_ring_like_the_real_one() -> None:
    """Capture 21/22: a socket write leaves the ring alone; the same tools with
    XENSTORED_PATH=/dev/xen/xenbus go through the kernel, and each step moves the indices
    by exactly the bytes of its requests and replies."""
    m = build("dom0", flavour="modern", seed=0)
    try:
        d0 = m.dom0
        real21 = [ln for ln in capture("oxenstored", "21-") if ln.startswith("RING ")]
        d0.run("xenstore-write /xenlab/sock-a hello")
        assert ring_fields(d0.run("xsring w1")) == ring_fields(real21[1])
        real = [ring_fields(ln) for ln in capture("oxenstored", "22-") if ln.startswith("RING ")]
        k = "XENSTORED_PATH=/dev/xen/xenbus"
        steps = [f"{k} xenstore-write /xenlab/a 1", f"{k} xenstore-write /xenlab/b hello-ring",
                 f"{k} xenstore-read /xenlab/b", f"{k} xenstore-rm /xenlab/a", f"{k} xenstore-ls -f /xenlab"]
        lab = [ring_fields(d0.run("xsring k0"))]
        outputs = []
        for cmd in steps:
            outputs.append(d0.run(cmd))
            lab.append(ring_fields(d0.run("xsring k")))
        assert lab == real
        assert outputs[2] == "hello-ring"
        assert outputs[4].splitlines() == ['/xenlab/b = "hello-ring"', '/xenlab/sock-a = "hello"']
    finally:
        m.shutdown()


# -- the guest's kernel log -------------------------------------------------------------------------
def log_text(lines: list[str]) -> list[str]:
    """dmesg lines without their timestamps."""
    return [re.sub(r"^\[\s*\d+\.\d+\] ", "", ln) for ln in lines if ln.startswith("[")]


def test_guest_xenbus_boot_messages(domu: Machine) -> None:
    """domU-01: what the guest's xenbus prints while it boots, before its frontends are loaded."""
    real = [ln for ln in log_text(capture("domU", "domU-01")) if ln.startswith("xenbus")]
    lab = [ln for ln in log_text(domu.domain(1).run("dmesg").splitlines()) if ln.startswith("xenbus")]
    assert lab[: len(real)] == real


def test_guest_frontend_handshake_messages(domu: Machine) -> None:
    """domU-04: insmod of blkfront and netfront, up to the vif's Connected, message for message."""
    real = log_text(capture("domU", "domU-04"))
    end = next(i for i, ln in enumerate(real) if ln.startswith("vif vif-0: xenbus: state is 4"))
    real = real[: end + 1]
    lab = log_text(domu.domain(1).run("dmesg").splitlines())
    start = lab.index(real[0])
    assert lab[start: start + len(real)] == real


def test_dom0_probe_runs_when_xenstored_first_kicks(dom0: Machine, early: Machine) -> None:
    """Captures 01/13: dom0's xenbus lines before xenstored, then the deferred probe's."""
    def xenbus_lines(lines: list[str]) -> list[str]:
        return [ln for ln in log_text(lines) if ln.startswith("xenbus")]

    assert xenbus_lines(early.dom0.run("dmesg").splitlines()) == xenbus_lines(capture("oxenstored", "01-"))
    assert xenbus_lines(dom0.dom0.run("dmesg").splitlines()) == xenbus_lines(capture("oxenstored", "13-"))


def test_dom0_and_guest_choose_fifo_in_init_irq(early: Machine, domu: Machine) -> None:
    """01 / domU-01: xen_init_IRQ's xen_evtchn_fifo_init prints "Using FIFO-based ABI" after
    xen_banner's "Xen version" and before gnttab_init's "Grant tables using version 1 layout"."""
    def order(lines: list[str]) -> list[str]:
        keys = ("Xen version", "xen:events: Using", "xen:grant_table: Grant tables using")
        return [ln for ln in log_text(lines) if ln.startswith(keys)]

    for lab_log, real_log in ((early.dom0.run("dmesg"), capture("oxenstored", "01-")),
                              (domu.domain(1).run("dmesg"), capture("domU", "domU-01"))):
        assert order(lab_log.splitlines()) == order(real_log)
        assert "xen:events: Using FIFO-based ABI" in order(real_log)


# -- the guest before and after it loads its frontends ------------------------------------------------
def test_guest_before_and_after_insmod_of_the_frontends() -> None:
    """domU-02/03: before insmod the devices exist in Initialising, no vbd/vif driver, no device
    IRQs; domU-05/06: after it, both Connected with their IRQs."""
    m = build("dom0", flavour="modern", seed=0)
    try:
        m.create_domU(frontends=False)
        guest = m.domain(1)
        def irqs() -> list[tuple[str, ...]]:
            return irq_rows(guest.run("cat /proc/interrupts").splitlines())

        assert irqs() == irq_rows(capture("domU", "domU-02"))
        real03 = capture("domU", "domU-03")
        assert sysfs_devices(m, 1, "xen") == [ln for ln in real03 if ln.startswith("/sys/bus")]
        assert f"drivers: {' '.join(guest.run('ls /sys/bus/xen/drivers').split())}" == real03[-1]
        m.load_frontends(1)
        assert irqs() == irq_rows(capture("domU", "domU-06"))
        real05 = capture("domU", "domU-05")
        devices = [ln.split(" driver=")[0] for ln in real05 if ln.startswith("/sys/bus")]
        assert sysfs_devices(m, 1, "xen") == devices
        assert f"drivers: {' '.join(guest.run('ls /sys/bus/xen/drivers').split())}" == real05[2]
    finally:
        m.shutdown()


# -- xl destroy ---------------------------------------------------------------------------------------
def test_xl_destroy_leaves_the_tree_and_buses_as_the_real_one() -> None:
    """D11: after `xl destroy` only dom0 is listed, the guest's paths are gone (empty /libxl and
    /vm stay), dom0's backend devices are unregistered and every port of the guest is closed."""
    m = build("domU", flavour="modern", seed=0)
    try:
        m.destroy_domU(1)
        real = capture("domU", "D11-")
        start = real.index("Name                                        ID   Mem VCPUs\tState\tTime(s)")
        rows = real[start:]
        tree_start = next(i for i, ln in enumerate(rows) if ln.startswith("/"))
        assert [ln.split()[:-1] for ln in m.dom0.run("xl list").splitlines()[1:]] == [
            ln.split()[:-1] for ln in rows[1:tree_start]]
        assert tree(m.dom0.run("xenstore-ls -f").splitlines()) == tree(rows[tree_start:])
        assert m.dom0.run("ls /sys/bus/xen-backend/devices") == ""
        assert "Remote Domain 1" not in m.dom0.run("lsevtchn 0")
        assert "evtchn:xenconsoled" not in m.dom0.run("cat /proc/interrupts")
    finally:
        m.shutdown()


def test_xenstore_read_and_list_in_dom0(dom0: Machine) -> None:
    """Capture 19: what dom0 has and has not got, and relative paths (domid, name)."""
    real = capture("oxenstored", "19-")
    lab = []
    for k in ("domid", "name", "vm", "memory/target", "memory/static-max",
              "control/platform-feature-multiprocessor-suspend", "device", "backend"):
        lab.append(f"/local/domain/0/{k} = {dom0.dom0.run(f'xenstore-read /local/domain/0/{k}')}")
    for k in ("/tool/xenstored", "/vm", "/local/domain/0/backend"):
        out = dom0.dom0.run(f"xenstore-list {k}")
        lab.append(f"{k} -> " + "".join(ln + " " for ln in out.splitlines()))
    lab += [dom0.dom0.run("xenstore-read domid"), dom0.dom0.run("xenstore-read name")]
    assert lab == real

"""The hypervisor's port tables held against the real Xen 4.17's `xl debug-keys e` dump.

The lab's machine (modern dom0 + one PV guest, as captured) boots, then Xen's own view
of every domain's event channels is printed in domain_dump_evtchn_info's format and
compared with tests/captures/domU/D08-xen-evtchn-dump.txt: the same ports,
states (s=), notify vcpus (n=), peers (d= p=), VIRQs (v=) and PIRQs (p= i=), and the
"[p/m/s]" column in its FIFO form: both the real Linux 6.1 and the lab's run the FIFO ABI,
so Xen prints each port's event word there (evtchn_fifo_print_state: PENDING, MASKED,
then BUSY and LINK, "-" when the word is not LINKED on a queue).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from real_captures import CAPTURES

from xenlab.sim.machine import Machine
from xenlab.sim.scenarios import build
from xenlab.xen import dump_evtchn_info

CAPTURE = CAPTURES / "domU" / "D08-xen-evtchn-dump.txt"


def without_pms(lines: list[str], keep_pm: bool = False, keep_pms: bool = False) -> list[str]:
    """Dump lines with the console prefix and the [p/m/s] column (or only its s part) taken out."""
    out = []
    for line in lines:
        line = re.sub(r"^\(XEN\) \[\s*[\d.]+\] ", "", line)
        if keep_pms:
            out.append(line)
        elif keep_pm:  # pending and masked mean the same in both ABIs; s is the 2-level selector / FIFO link
            out.append(re.sub(r"^(\s+\d+ \[\d/\d)/[^\]]*\]:", r"\1]:", line))
        else:
            out.append(re.sub(r"^(\s+\d+) \[[^\]]*\]:", r"\1:", line))
    return out


def real_dump(keep_pm: bool = False, path: Path = CAPTURE, keep_pms: bool = False) -> list[str]:
    """The first 'e' dump in a capture file, normalised like ours."""
    lines = path.read_text().splitlines()
    starts = [i for i, ln in enumerate(lines) if "'e' pressed" in ln]  # the file shows the dump twice
    dump = [ln for ln in lines[starts[0]: starts[1] if len(starts) > 1 else None]
            if ln.startswith("(XEN)")]
    # the 'q' key's output may follow in the same file: keep the event-channel part only
    stop = next((i for i, ln in enumerate(dump) if "'q' pressed" in ln), len(dump))
    dump = dump[:stop]
    return without_pms(dump, keep_pm, keep_pms)


@pytest.fixture(scope="module")
def domu() -> Iterator[Machine]:
    m = build("domU", flavour="modern", seed=0)
    yield m
    m.shutdown()


def test_xl_debug_keys_e_matches_the_real_machine(domu: Machine) -> None:
    ours = without_pms(dump_evtchn_info(domu.hv).splitlines())
    assert ours == real_dump()


def test_the_fifo_column_matches_too(domu: Machine) -> None:
    """Every line as the real Xen printed it (timestamps aside): "[0/0/  -   ]" is the FIFO
    form (2-level would print the selector bit, "[0/0/0]"): no port is left LINKED on a queue."""
    ours = without_pms(dump_evtchn_info(domu.hv).splitlines(), keep_pms=True)
    assert ours == real_dump(keep_pms=True)
    assert all(d.evtchn_port_ops.name == "FIFO" for d in domu.hv.domains.values())


def test_the_2_level_fallback_prints_the_selector_column() -> None:
    """xen.fifo_events=0: the same machine on the 2-level ABI, whose column is the selector bit."""
    m = build("domU", flavour="modern", seed=0, fifo_events=False)
    try:
        lines = without_pms(dump_evtchn_info(m.hv).splitlines(), keep_pms=True)
    finally:
        m.shutdown()
    ports = [ln for ln in lines if re.match(r"^\s+\d+ \[", ln)]
    assert ports and all(re.match(r"^\s+\d+ \[\d/\d/[01]\]:", ln) for ln in ports)


def test_pending_and_masked_bits_match_too(domu: Machine) -> None:
    """After boot every port of the real machine is unmasked and not pending.

    dom0's console (17) and backend ports (18-20) were set pending by bind_interdomain and
    masked by the lateeoi chip's ack; xenconsoled's write-back to /dev/xen/evtchn, blkback's
    ring thread and netback's spurious-event path each send the late EOI that unmasks them.
    """
    ours = without_pms(dump_evtchn_info(domu.hv).splitlines(), keep_pm=True)
    assert ours == real_dump(keep_pm=True)


def test_the_guests_xenstore_and_console_ports_came_from_the_toolstack(domu: Machine) -> None:
    """Ports 1 and 2 of the guest are the two alloc_unbound(dom=guest, remote=0) of the domain builder."""
    d1 = domu.hv.domains[1]
    assert [c.summary()[0] for c in d1.chns[1:3]] == ["interdomain", "interdomain"]
    assert d1.start_info.store_evtchn == 1 and d1.start_info.console.domU.evtchn == 2


@pytest.mark.parametrize("xenstored", ["oxenstored", "cxenstored"])
def test_dom0_ports_after_xenstored_match_including_pending_and_mask(xenstored: str) -> None:
    """dom0 alone, after xenstored started: every port, state and bit as on the real machine."""
    m = build("dom0", flavour="modern", seed=0, xenstored=xenstored)
    try:
        ours = without_pms(dump_evtchn_info(m.hv).splitlines(), keep_pms=True)
    finally:
        m.shutdown()
    assert ours == real_dump(keep_pms=True, path=CAPTURES / xenstored / "24-xl-debug-keys-e-q.txt")

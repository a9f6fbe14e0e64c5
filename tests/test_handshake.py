"""The split-driver handshake: a dom0 backend and a domU frontend meet through xenstore.

Both kernels run on the real hypervisor and talk to the lab xenstored over their store
rings (tests/xenbus_harness.py builds that small host); what is checked here is the
xenbus side: the probe, the otherend watches, the keys each driver writes, the event
channels and IRQs each end binds, and the states.
"""

from __future__ import annotations

import pytest
from xenbus_harness import BE, FE, Pair, irq_names, load_frontends, make_pair, port_irq_name

from xenlab.abi.xenbus import XenbusStateClosed, XenbusStateConnected
from xenlab.linux.sysfs import sysfs


def driver_irqs(names: list[str]) -> list[str]:
    """The IRQ names the block and net drivers requested (the boot's own IRQs left out)."""
    return [n for n in names if n.startswith(("blkif", "vif"))]


@pytest.fixture(scope="module")
def connected() -> Pair:
    pair = make_pair("modern")
    load_frontends(pair)
    return pair


def test_backends_wait_in_initwait_until_a_frontend_driver_comes(connected: Pair) -> None:
    pair = make_pair("modern")
    assert pair.read(f"{BE}/vbd/1/51712/state") == "2"
    assert pair.read(f"{BE}/vif/1/0/state") == "2"
    assert pair.read(f"{FE}/vbd/51712/state") == "1"  # no frontend driver yet
    names = sysfs(pair.domU).listdir("/sys/bus/xen/devices")
    assert names == ["vbd-51712", "vif-0"]
    assert sysfs(pair.domU).read("/sys/bus/xen/devices/vbd-51712/state") == "Initialising\n"


def test_vbd_and_vif_reach_connected_on_both_ends(connected: Pair) -> None:
    for path in (f"{FE}/vbd/51712", f"{BE}/vbd/1/51712", f"{FE}/vif/0", f"{BE}/vif/1/0"):
        assert connected.read(f"{path}/state") == str(int(XenbusStateConnected)), path
    s = sysfs(connected.domU)
    assert s.read("/sys/bus/xen/devices/vbd-51712/state") == "Connected\n"
    assert s.readlink("/sys/bus/xen/devices/vif-0/driver") == "../../bus/xen/drivers/vif"
    assert s.listdir("/sys/bus/xen/drivers") == ["vbd", "vfb", "vif", "vkbd", "xenconsole"]
    b = sysfs(connected.dom0)
    assert b.listdir("/sys/bus/xen-backend/devices") == ["vbd-1-51712", "vif-1-0"]
    assert b.read("/sys/bus/xen-backend/devices/vbd-1-51712/nodename") == "backend/vbd/1/51712\n"


def test_the_keys_each_side_writes_are_the_real_drivers_keys(connected: Pair) -> None:
    r = connected.read
    be = {k: r(f"{BE}/vbd/1/51712/{k}") for k in (
        "feature-max-indirect-segments", "multi-queue-max-queues", "max-ring-page-order",
        "feature-flush-cache",
        "discard-granularity", "discard-alignment", "discard-secure", "feature-discard", "feature-barrier",
        "feature-persistent", "sectors", "info", "sector-size", "physical-sector-size")}
    assert be == {"feature-max-indirect-segments": "256", "multi-queue-max-queues": "1",
                  "max-ring-page-order": "4", "feature-flush-cache": "1", "discard-granularity": "4096",
                  "discard-alignment": "0", "discard-secure": "0", "feature-discard": "1",
                  "feature-barrier": "1", "feature-persistent": "1", "sectors": "32768", "info": "0",
                  "sector-size": "512", "physical-sector-size": "512"}
    assert r(f"{FE}/vbd/51712/protocol") == "x86_64-abi"
    assert r(f"{FE}/vbd/51712/feature-persistent") == "1"
    assert r(f"{FE}/vbd/51712/ring-ref") == "8"  # the first free grant reference
    # netfront reserved 256 + 256 refs for its queue, after the disk's ring (8) and its first read (9)
    assert (r(f"{FE}/vif/0/tx-ring-ref"), r(f"{FE}/vif/0/rx-ring-ref")) == ("522", "523")
    for k in ("feature-sg", "feature-gso-tcpv4", "feature-gso-tcpv6", "feature-ipv6-csum-offload",
              "feature-rx-copy", "feature-xdp-headroom", "feature-multicast-control",
              "feature-dynamic-multicast-control", "feature-split-event-channels", "multi-queue-max-queues",
              "feature-ctrl-ring"):
        assert r(f"{BE}/vif/1/0/{k}") == "1", k
    assert r(f"{BE}/vif/1/0/feature-rx-flip") == "0"
    fe = {k: r(f"{FE}/vif/0/{k}") for k in ("request-rx-copy", "feature-rx-notify", "feature-sg",
                                            "multi-queue-num-queues", "xdp-headroom")}
    assert fe == {"request-rx-copy": "1", "feature-rx-notify": "1", "feature-sg": "1",
                  "multi-queue-num-queues": "1", "xdp-headroom": "0"}
    assert r(f"{FE}/vif/0/event-channel") is None  # split channels: -tx and -rx instead


def test_event_channels_are_bound_pairs_with_the_kernels_irq_names(connected: Pair) -> None:
    r = connected.read
    fe_ports = [int(r(f"{FE}/vbd/51712/event-channel") or 0), int(r(f"{FE}/vif/0/event-channel-tx") or 0),
                int(r(f"{FE}/vif/0/event-channel-rx") or 0)]
    assert fe_ports == sorted(fe_ports) and len(set(fe_ports)) == 3  # blkif first, then vif tx, rx
    d1, d0 = connected.hv.domains[1], connected.hv.domains[0]
    back = [d1.chns[p].summary() or () for p in fe_ports]
    assert all(s[:2] == ("interdomain", 0) for s in back)
    assert [port_irq_name(connected.dom0, b[2]) for b in back] == ["blkif-backend", "vif1.0-q0-tx",
                                                                   "vif1.0-q0-rx"]
    assert [port_irq_name(connected.domU, p) for p in fe_ports] == ["blkif", "vif0-q0-tx", "vif0-q0-rx"]
    assert driver_irqs(irq_names(connected.domU)) == ["blkif", "vif0-q0-tx", "vif0-q0-rx"]
    assert all(d0.chns[b[2]].summary() == ("interdomain", 1, p) for b, p in zip(back, fe_ports, strict=True))


def test_dmesg_shows_what_the_real_kernels_print(connected: Pair) -> None:
    text = connected.domU.dmesg()
    assert "Device with no driver: device/vbd/51712" in text
    assert "vbd vbd-51712: xenbus: state is 2, (InitWait), /local/domain/0/backend/vbd/1/51712/state" in text
    assert ("blkfront: xvda: flush diskcache: enabled; persistent grants: enabled; indirect descriptors: "
            "enabled; bounce buffer: enabled") in text
    assert "xen_netfront: backend supports XDP headroom" in text
    assert "xen-blkback: backend/vbd/1/51712: using 1 queues, protocol 1 (x86_64-abi) persistent grants" \
        in connected.dom0.dmesg()


def test_teardown_goes_through_closing_to_closed() -> None:
    pair = make_pair("modern")
    load_frontends(pair)
    pair.xs.tool_write(f"{BE}/vbd/1/51712/online", "0")
    pair.xs.tool_write(f"{BE}/vbd/1/51712/state", "5")  # xl block-detach: the toolstack asks for Closing
    pair.settle()
    assert pair.read(f"{FE}/vbd/51712/state") == str(int(XenbusStateClosed))
    assert pair.read(f"{BE}/vbd/1/51712/state") == str(int(XenbusStateClosed))
    assert "vbd-51712" in sysfs(pair.domU).listdir("/sys/bus/xen/devices")
    # the backend saw the frontend Closed with online = 0: it unregistered its device
    assert sysfs(pair.dom0).listdir("/sys/bus/xen-backend/devices") == ["vif-1-0"]
    # both ends gave their IRQs and ports back; the vif still has its own
    assert driver_irqs(irq_names(pair.domU)) == ["vif0-q0-tx", "vif0-q0-rx"]
    assert driver_irqs(irq_names(pair.dom0)) == ["vif1.0-q0-tx", "vif1.0-q0-rx"]
    ports = [int(pair.read(f"{FE}/vif/0/event-channel-{q}") or 0) for q in ("tx", "rx")]
    d1 = pair.hv.domains[1]
    assert [c.port for c in d1.chns if (c.summary() or ("",))[0] == "interdomain"] == [
        pair.rig.guests[1].store_port, *ports]  # the vbd's port is closed; the store's and the vif's stay


def test_the_2618_handshake_uses_its_own_keys() -> None:
    pair = make_pair("2.6.18")
    load_frontends(pair)
    r = pair.read
    for path in (f"{FE}/vbd/51712", f"{BE}/vbd/1/51712", f"{FE}/vif/0", f"{BE}/vif/1/0"):
        assert r(f"{path}/state") == "4", path
    assert r(f"{FE}/vbd/51712/feature-persistent") is None
    assert r(f"{BE}/vbd/1/51712/feature-barrier") == "1"
    assert r(f"{BE}/vbd/1/51712/feature-flush-cache") is None
    assert r(f"{FE}/vif/0/event-channel") is not None and r(f"{FE}/vif/0/event-channel-tx") is None
    assert r(f"{FE}/vif/0/feature-no-csum-offload") == "0"
    # 2.6.18 ends the partition read's grant (no persistent grants): ref 9 is reused by netfront's
    # 256 + 256 reservations made at probe, so its rings get 521 and 522
    assert (r(f"{FE}/vbd/51712/ring-ref"), r(f"{FE}/vif/0/tx-ring-ref"), r(f"{FE}/vif/0/rx-ring-ref")) == (
        "8", "521", "522")
    assert "state" not in sysfs(pair.domU).listdir("/sys/devices/xen/vbd-51712")
    port = r(f"{FE}/vbd/51712/event-channel")
    assert f"blkback: ring-ref 8, event-channel {port}, protocol 1 (x86_64-abi)" in pair.dom0.dmesg()
    assert "xenbus" not in pair.domU.dmesg()  # 2.6.18 builds its pr_debug lines out




def test_with_two_vcpus_each_side_negotiates_two_queues() -> None:
    pair = make_pair("modern", vcpus=2)
    load_frontends(pair)
    r = pair.read
    for path in (f"{FE}/vbd/51712", f"{BE}/vbd/1/51712", f"{FE}/vif/0", f"{BE}/vif/1/0"):
        assert r(f"{path}/state") == "4", path
    assert r(f"{BE}/vif/1/0/multi-queue-max-queues") == "2"
    assert r(f"{FE}/vif/0/multi-queue-num-queues") == "2"
    assert r(f"{FE}/vif/0/tx-ring-ref") is None  # per queue now
    assert sorted(pair.xs.tool_directory(f"{FE}/vif/0/queue-1")) == [
        "event-channel-rx", "event-channel-tx", "rx-ring-ref", "tx-ring-ref"]
    assert r(f"{FE}/vbd/51712/multi-queue-num-queues") == "2"
    assert r(f"{FE}/vbd/51712/queue-0/ring-ref") == "8"
    names = driver_irqs(irq_names(pair.dom0))
    assert names == ["blkif-backend", "blkif-backend", "vif1.0-q0-tx", "vif1.0-q0-rx", "vif1.0-q1-tx",
                     "vif1.0-q1-rx"]


def test_a_backend_left_online_goes_back_to_initwait_when_the_frontend_reinitialises() -> None:
    pair = make_pair("modern")
    load_frontends(pair)
    pair.xs.tool_write(f"{BE}/vif/1/0/state", "5")  # the backend side asks the frontend to close
    pair.settle()
    assert pair.read(f"{FE}/vif/0/state") == "6"
    assert pair.read(f"{BE}/vif/1/0/state") == "6"  # online is still 1: the device stays
    assert "vif-1-0" in sysfs(pair.dom0).listdir("/sys/bus/xen-backend/devices")
    pair.xs.tool_write(f"{FE}/vif/0/state", "1")  # a new frontend instance starts over
    pair.settle()
    assert pair.read(f"{BE}/vif/1/0/state") == "2"
    assert "xen_netback: backend/vif/1/0: prepare for reconnect" in pair.dom0.dmesg()


def test_the_trace_replays_the_handshake_states(connected: Pair) -> None:
    trace = connected.dom0.trace
    end = trace.state_at(len(trace) - 1)
    assert end["domU1/xenbus_state"] == {"device/vbd/51712": 4, "device/vif/0": 4}
    assert end["dom0/xenbus_state"] == {"backend/vbd/1/51712": 4, "backend/vif/1/0": 4}
    # step back to when the vbd frontend had just gone Initialised: the backend was still in InitWait
    i = next(s.index for s in trace if s.function == "xenbus_switch_state"
             and s.summary == "device/vbd/51712: Initialising -> Initialised")
    then = trace.state_at(i)
    assert then["domU1/xenbus_state"]["device/vbd/51712"] == 3
    assert then["dom0/xenbus_state"]["backend/vbd/1/51712"] == 2

"""Enumeration: which store nodes become devices, their bus ids, and what a failed probe leaves behind."""

from __future__ import annotations

import pytest
from xenbus_harness import Rig

from xenlab.linux.kernel import Kernel
from xenlab.linux.pvops import xenbus_client as pvops_client
from xenlab.linux.pvops import xenbus_probe as pvops_probe
from xenlab.linux.pvops import xenbus_probe_frontend as pvops_frontend
from xenlab.linux.sysfs import sysfs
from xenlab.linux.xenlinux import xenbus_client as xl_client

DEV = "/local/domain/1/device"


def domU(flavour: str, nodes: dict[str, str]) -> tuple[Kernel, Rig]:
    """A PV domU booted (no frontend drivers loaded) over a store already holding *nodes*."""
    xs = Rig(flavour)
    xs.tool_write("/local/domain/1", "")
    xs.tool_set_perms("/local/domain/1", "n1")
    for path, value in nodes.items():
        xs.tool_write(path, value)
    k = xs.create_domU(1)
    xs.boot(k)
    return k, xs


@pytest.mark.parametrize("flavour", ["2.6.18", "modern"])
def test_only_nodes_in_state_initialising_become_devices(flavour: str) -> None:
    k, _ = domU(flavour, {f"{DEV}/vbd/51712/state": "1", f"{DEV}/vbd/51728/state": "4",
                          f"{DEV}/vif/0/state": "1", f"{DEV}/suspend/event-channel": ""})
    assert sysfs(k).listdir("/sys/bus/xen/devices") == ["vbd-51712", "vif-0"]
    root = "/sys/devices/xen" if flavour == "2.6.18" else "/sys/devices"
    assert sysfs(k).read(f"{root}/vbd-51712/nodename") == "device/vbd/51712\n"
    assert sysfs(k).read(f"{root}/vbd-51712/devtype") == "vbd\n"


def test_a_node_appearing_later_is_found_by_the_device_watch_and_removal_unregisters_it() -> None:
    k, xs = domU("modern", {f"{DEV}/vif/0/state": "1"})
    xs.tool_write(f"{DEV}/vif/1/state", "1")
    k.sched.run()
    assert sysfs(k).listdir("/sys/bus/xen/devices") == ["vif-0", "vif-1"]
    xs.tool_rm(f"{DEV}/vif/1")
    k.sched.run()
    assert sysfs(k).listdir("/sys/bus/xen/devices") == ["vif-0"]


def test_a_bus_id_must_fit_in_twenty_characters() -> None:
    k, _ = domU("modern", {f"{DEV}/vbd/123456789012345678/state": "1"})
    assert sysfs(k).listdir("/sys/bus/xen/devices") == []
    assert "xenbus_probe_frontend: bad frontend device/vbd/123456789012345678" in k.dmesg()


def test_a_frontend_without_backend_details_fails_its_probe_and_says_why() -> None:
    k, xs = domU("modern", {f"{DEV}/vbd/51712/state": "1"})
    probed: list[str] = []
    drv = pvops_probe.xenbus_driver(name="vbd", ids=["vbd"],
                                    probe=lambda kernel, dev: probed.append(dev.nodename) or 0)
    assert pvops_frontend.xenbus_register_frontend(k, drv) == 0
    k.sched.run()
    assert probed == []  # talk_to_otherend failed first
    msg = "2 reading other end details from device/vbd/51712"
    assert f"vbd vbd-51712: {msg}" in k.dmesg()
    assert "vbd vbd-51712: talk_to_otherend on device/vbd/51712 failed." in k.dmesg()
    assert xs.tool_read("/local/domain/1/error/device/vbd/51712/error") == msg
    assert xs.tool_read(f"{DEV}/vbd/51712/state") == "5"  # xenbus_dev_fatal switched it to Closing
    assert sysfs(k).kind("/sys/bus/xen/devices/vbd-51712/driver") is None


def test_switch_state_skips_unchanged_and_vanished_nodes() -> None:
    k, xs = domU("2.6.18", {f"{DEV}/vif/0/state": "1"})
    dev = k.buses["xen"].devices[0]

    def writes() -> int:
        return len([s for s in xs.daemon.trace if ": WRITE " in s.summary])

    before = writes()
    assert xl_client.xenbus_switch_state(k, dev, 1) == 0  # same state: nothing written
    assert writes() == before
    assert xl_client.xenbus_switch_state(k, dev, 4) == 0  # netfront goes straight to Connected
    assert writes() == before + 1 and xs.tool_read(f"{DEV}/vif/0/state") == "4"
    xs.tool_rm(f"{DEV}/vif/0/state")
    assert xl_client.xenbus_switch_state(k, dev, 5) == 0  # node gone: not resurrected
    assert xs.tool_read(f"{DEV}/vif/0/state") is None and writes() == before + 1
    assert xl_client.xenbus_strstate(7) == "INVALID"  # 2.6.18 names states 0-6 only
    assert pvops_client.xenbus_strstate(7) == "Reconfiguring"


def test_uevent_files_carry_what_udev_and_the_hotplug_scripts_get() -> None:
    k, _ = domU("modern", {f"{DEV}/vif/0/state": "1"})
    assert sysfs(k).read("/sys/bus/xen/devices/vif-0/uevent") == "MODALIAS=xen:vif\n"
    k2, _ = domU("2.6.18", {f"{DEV}/vif/0/state": "1"})
    assert sysfs(k2).read("/sys/bus/xen/devices/vif-0/uevent") == (
        "XENBUS_TYPE=vif\nXENBUS_PATH=device/vif/0\nMODALIAS=xen:vif\n")


def test_a_driver_loaded_after_boot_waits_for_its_device_and_reports_the_timeout() -> None:
    k, xs = domU("modern", {f"{DEV}/vbd/51712/state": "1", f"{DEV}/vbd/51712/backend-id": "0",
                            f"{DEV}/vbd/51712/backend": "/local/domain/1/fake-backend",
                            "/local/domain/1/fake-backend/state": "1"})  # a backend that never moves
    pvops_frontend.boot_wait_for_devices(k)
    start = k.sched.now_ns
    drv = pvops_probe.xenbus_driver(name="vbd", ids=["vbd"], probe=lambda kernel, dev: 0)
    assert pvops_frontend.xenbus_register_frontend(k, drv) == 0
    assert (k.sched.now_ns - start) // 10**9 == 270  # 30 s for all devices, then up to 270 s in all
    lines = [line.text for line in k.log]
    wait = next(line for line in lines if "Waiting for devices" in line)
    assert wait.startswith("xenbus_probe_frontend: Waiting for devices to initialise: 25s...20s...")
    assert "...5s...0s...235s...230s..." in wait and wait.endswith("...5s...0s...")
    assert lines[-1] == ("xenbus_probe_frontend: Timeout connecting to device: device/vbd/51712 "
                         "(local state 1, remote state 1)")

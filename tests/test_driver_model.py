"""The driver model as the kernel's drivers/base does it: buses, devices, drivers, match, probe."""

from __future__ import annotations

import pytest

from xenlab.abi.errno import EBUSY, EEXIST, EIO, ENODEV, ENOMEM
from xenlab.linux.driver_model import (
    bus_register,
    bus_type,
    bus_unregister,
    device,
    device_driver,
    device_register,
    device_unregister,
    driver_register,
    driver_unregister,
)
from xenlab.linux.kernel import Kernel
from xenlab.linux.kernels import new_kernel
from xenlab.linux.sysfs import sysfs


def make_kernel() -> Kernel:
    return new_kernel(None, 1)  # type: ignore[arg-type]  # the driver model needs no hypervisor


def type_bus(probed: list[str]) -> bus_type:
    """A bus whose devices are named "<type>-<n>" and whose drivers match on <type>."""
    def match(dev: device, drv: device_driver) -> int:
        return dev.name.split("-")[0] == drv.name

    def probe(dev: device) -> int:
        probed.append(f"{dev.driver.name}:{dev.name}")
        return dev.driver.probe(dev) if dev.driver.probe else 0

    return bus_type("demo", match=match, probe=probe,
                    dev_attrs={"devtype": lambda d: d.name.split("-")[0] + "\n"})


def test_bus_register_makes_the_sysfs_directories() -> None:
    k = make_kernel()
    assert bus_register(k, bus_type("xen")) == 0
    assert sysfs(k).listdir("/sys/bus") == ["xen"]
    assert sysfs(k).listdir("/sys/bus/xen/devices") == []
    assert sysfs(k).listdir("/sys/bus/xen/drivers") == []
    # a second bus with the same name is refused, as kobject_add refuses duplicates
    assert bus_register(k, bus_type("xen")) == -EEXIST


def test_an_injected_fault_fails_the_call_and_changes_nothing() -> None:
    k = make_kernel()
    k.faults.add("bus_register_frontend")
    assert bus_register(k, bus_type("xen"), fault="bus_register_frontend") == -ENOMEM
    assert sysfs(k).listdir("/sys/bus") == []
    assert bus_register(k, bus_type("xen-backend"), fault="bus_register_backend") == 0


def test_device_first_then_driver_binds_on_driver_register() -> None:
    k = make_kernel()
    probed: list[str] = []
    bus = type_bus(probed)
    bus_register(k, bus)
    dev = device("vbd-51712", bus=bus)
    assert device_register(k, dev) == 0
    assert dev.driver is None and probed == []  # no driver yet: the device waits
    drv = device_driver("vbd", bus=bus)
    assert driver_register(k, drv) == 0
    assert dev.driver is drv and probed == ["vbd:vbd-51712"]
    assert sysfs(k).listdir("/sys/bus/demo/drivers/vbd") == ["bind", "uevent", "unbind", "vbd-51712"]
    assert sysfs(k).readlink("/sys/bus/demo/devices/vbd-51712/driver") == "../../bus/demo/drivers/vbd"


def test_driver_first_then_device_binds_on_device_register_and_only_when_matching() -> None:
    k = make_kernel()
    probed: list[str] = []
    bus = type_bus(probed)
    bus_register(k, bus)
    driver_register(k, device_driver("vif", bus=bus))
    vbd, vif = device("vbd-51712", bus=bus), device("vif-0", bus=bus)
    device_register(k, vbd)
    device_register(k, vif)
    assert probed == ["vif:vif-0"]
    assert vbd.driver is None and vif.driver is not None
    assert sysfs(k).read("/sys/bus/demo/devices/vif-0/devtype") == "vif\n"


def test_a_failing_probe_leaves_the_device_unbound_and_says_so() -> None:
    k = make_kernel()
    bus = type_bus([])
    bus_register(k, bus)
    driver_register(k, device_driver("vbd", bus=bus, probe=lambda d: -EIO))
    dev = device("vbd-1", bus=bus)
    assert device_register(k, dev) == 0  # registering succeeds; only the binding failed
    assert dev.driver is None
    assert k.log[-1].text == "vbd: probe of vbd-1 failed with error -5"
    # -ENODEV is the quiet "not mine" answer: no message
    driver_register(k, device_driver("vif", bus=bus, probe=lambda d: -ENODEV))
    before = len(k.log)
    device_register(k, device("vif-0", bus=bus))
    assert len(k.log) == before


def test_duplicates_are_refused() -> None:
    k = make_kernel()
    bus = type_bus([])
    bus_register(k, bus)
    assert device_register(k, device("vif-0", bus=bus)) == 0
    assert device_register(k, device("vif-0", bus=bus)) == -EEXIST
    assert driver_register(k, device_driver("vif", bus=bus)) == 0
    assert driver_register(k, device_driver("vif", bus=bus)) == -EBUSY
    assert "Error: Driver 'vif' is already registered, aborting..." in k.dmesg()


def test_unregister_calls_remove_and_cleans_sysfs() -> None:
    k = make_kernel()
    removed: list[str] = []
    bus = type_bus([])
    bus_register(k, bus)
    drv = device_driver("vif", bus=bus, remove=lambda d: removed.append(d.name))
    driver_register(k, drv)
    dev = device("vif-0", bus=bus)
    device_register(k, dev)
    driver_unregister(k, drv)
    assert removed == ["vif-0"] and dev.driver is None
    assert sysfs(k).listdir("/sys/bus/demo/drivers") == []
    device_unregister(k, dev)
    assert sysfs(k).listdir("/sys/bus/demo/devices") == []
    bus_unregister(k, bus)
    assert sysfs(k).listdir("/sys/bus") == []


def test_root_devices_and_parents_give_the_sysfs_device_paths() -> None:
    k = make_kernel()
    bus = type_bus([])
    bus_register(k, bus)
    root = device("xen")
    device_register(k, root)  # a bus root device: no bus, directly under /sys/devices
    device_register(k, device("vif-0", bus=bus, parent=root))
    assert sysfs(k).listdir("/sys/devices") == ["xen"]
    assert "vif-0" in sysfs(k).listdir("/sys/devices/xen")
    assert sysfs(k).readlink("/sys/bus/demo/devices/vif-0") == "../../../devices/xen/vif-0"
    with pytest.raises(FileNotFoundError):
        sysfs(k).read("/sys/bus/demo/devices/vif-0/state")
    with pytest.raises(IsADirectoryError):
        sysfs(k).read("/sys/bus/demo/devices/vif-0")


def test_each_step_is_traced_with_its_change_rows() -> None:
    k = make_kernel()
    bus = type_bus([])
    bus_register(k, bus)
    driver_register(k, device_driver("vif", bus=bus))
    device_register(k, device("vif-0", bus=bus))
    functions = [s.function for s in k.trace]
    assert functions == ["bus_register", "driver_register", "device_add", "kobject_uevent", "really_probe",
                         "kobject_uevent"]  # add, then bind (a modern kernel announces both)
    state = k.trace.state_at(len(k.trace) - 1)
    assert state["domU1/device_driver"] == {"demo/vif-0": "vif"}
    assert state["domU1/bus"] == {"demo": "registered"}

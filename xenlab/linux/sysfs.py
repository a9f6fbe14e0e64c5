"""The /sys tree the driver model implies, read the way `ls`, `cat` and `readlink` see it.

Theory of operation
-------------------
Nothing is stored here: every call rebuilds the small tree from ``kernel.buses`` and
``kernel.root_devices`` (xenlab.linux.driver_model), so /sys always shows the driver
model as it is now. The layout follows the kernel's (fs/sysfs, drivers/base):

- ``/sys/devices/<parent>/.../<dev>``: one directory per device with its attribute
  files (the bus's ``dev_attrs`` plus the device's own), ``uevent``, and the links
  ``subsystem`` (its bus) and ``driver`` (when bound). A device's parent is its
  directory's parent: 2.6.18 xenbus devices sit under the bus root device
  (/sys/devices/xen/vbd-51712), modern ones directly under /sys/devices.
- ``/sys/bus/<bus>/devices/<dev>``: links to those directories.
- ``/sys/bus/<bus>/drivers/<drv>/``: ``bind``, ``unbind``, ``uevent`` and a link per
  bound device.

Reading a ``uevent`` file runs the bus's uevent hook, as the kernel's uevent_show does (so
a modern xen-backend device logs its "xenbus_uevent_backend" dyndbg line then, too).

Python-facing: errors are raised as FileNotFoundError / NotADirectoryError /
IsADirectoryError naming the path, the way the shell would report them.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xenlab.linux.driver_model import bus_type, device

if TYPE_CHECKING:
    from xenlab.linux.kernel import Kernel

Node = tuple[str, Any]  # ("dir", None) | ("file", show) | ("link", absolute target)


def device_path(dev: device) -> str:
    """The device's directory under /sys/devices (its parents' names joined)."""
    parts = []
    d: device | None = dev
    while d is not None:
        parts.append(d.name)
        d = d.parent
    return "/sys/devices/" + "/".join(reversed(parts))


def _add_dir(tree: dict[str, Node], path: str) -> None:
    while path not in tree:
        tree[path] = ("dir", None)
        path = posixpath.dirname(path)


def _device_nodes(tree: dict[str, Node], dev: device) -> None:
    base = device_path(dev)
    _add_dir(tree, base)
    tree[base + "/uevent"] = ("file", lambda dev=dev: _uevent(dev))
    if dev.bus is not None:
        tree[base + "/subsystem"] = ("link", f"/sys/bus/{dev.bus.name}")
        for name, show in dev.bus.dev_attrs.items():
            tree[f"{base}/{name}"] = ("file", lambda show=show, dev=dev: show(dev))
    for name, show0 in dev.attrs.items():
        tree[f"{base}/{name}"] = ("file", show0)
    if dev.driver is not None and dev.bus is not None:
        tree[base + "/driver"] = ("link", f"/sys/bus/{dev.bus.name}/drivers/{dev.driver.name}")


def _uevent(dev: device) -> str:
    lines = []
    if dev.driver is not None:
        lines.append(f"DRIVER={dev.driver.name}")
    if dev.bus is not None and dev.bus.uevent is not None:
        lines += dev.bus.uevent(dev)
    return "".join(line + "\n" for line in lines)


def _bus_nodes(tree: dict[str, Node], bus: bus_type) -> None:
    base = f"/sys/bus/{bus.name}"
    for sub in ("devices", "drivers"):
        _add_dir(tree, f"{base}/{sub}")
    tree[base + "/drivers_autoprobe"] = ("file", lambda: "1\n")
    tree[base + "/drivers_probe"] = ("file", lambda: "")
    tree[base + "/uevent"] = ("file", lambda: "")
    for dev in bus.devices:
        tree[f"{base}/devices/{dev.name}"] = ("link", device_path(dev))
    for drv in bus.drivers:
        dbase = f"{base}/drivers/{drv.name}"
        _add_dir(tree, dbase)
        for name in ("bind", "unbind", "uevent"):
            tree[f"{dbase}/{name}"] = ("file", lambda: "")
        for dev in bus.devices:
            if dev.driver is drv:
                tree[f"{dbase}/{dev.name}"] = ("link", device_path(dev))


def sysfs_tree(kernel: Kernel) -> dict[str, Node]:
    """Every /sys path the driver model implies, mapped to its node."""
    tree: dict[str, Node] = {}
    _add_dir(tree, "/sys/bus")
    _add_dir(tree, "/sys/devices")
    for bus in kernel.buses.values():
        _bus_nodes(tree, bus)
        for dev in bus.devices:
            _device_nodes(tree, dev)
    for dev in kernel.root_devices:
        _device_nodes(tree, dev)
    return tree


class Sysfs:
    """A read-only view of one kernel's /sys (what `ls`, `cat`, `readlink` show)."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    def _resolve(self, path: str, tree: dict[str, Node], follow_last: bool = True) -> str:
        path = posixpath.normpath("/" + path.lstrip("/"))
        parts = path.strip("/").split("/")
        cur = ""
        for i, part in enumerate(parts):
            cur = posixpath.normpath(f"{cur}/{part}")
            node = tree.get(cur)
            if node is None:
                raise FileNotFoundError(f"{path}: No such file or directory")
            last = i == len(parts) - 1
            for _ in range(8):
                if node is None or node[0] != "link" or (last and not follow_last):
                    break
                cur = node[1]
                node = tree.get(cur)
            if node is None:
                raise FileNotFoundError(f"{path}: No such file or directory")
            if not last and node[0] == "file":
                raise NotADirectoryError(f"{path}: Not a directory")
        return cur

    def kind(self, path: str) -> str | None:
        """"dir", "file", "link" or None: what is at *path* (a link is not followed)."""
        tree = sysfs_tree(self.kernel)
        try:
            real = self._resolve(path, tree, follow_last=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return tree[real][0]

    def exists(self, path: str) -> bool:
        """True if *path* exists (following links)."""
        tree = sysfs_tree(self.kernel)
        try:
            self._resolve(path, tree)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    def listdir(self, path: str) -> list[str]:
        """The sorted names in directory *path* (links followed), as `ls` lists them."""
        tree = sysfs_tree(self.kernel)
        real = self._resolve(path, tree)
        if tree[real][0] != "dir":
            raise NotADirectoryError(f"{path}: Not a directory")
        prefix = real.rstrip("/") + "/"
        return sorted({p[len(prefix):] for p in tree if p.startswith(prefix) and "/" not in p[len(prefix):]})

    def read(self, path: str) -> str:
        """The text of attribute file *path*, as `cat` prints it."""
        tree = sysfs_tree(self.kernel)
        real = self._resolve(path, tree)
        node = tree[real]
        if node[0] == "dir":
            raise IsADirectoryError(f"{path}: Is a directory")
        show: Callable[[], str] = node[1]
        return show()

    def readlink(self, path: str) -> str:
        """The relative target of link *path*, as `readlink` prints it."""
        tree = sysfs_tree(self.kernel)
        real = self._resolve(path, tree, follow_last=False)
        node = tree[real]
        if node[0] != "link":
            raise OSError(f"{path}: not a symbolic link")
        return posixpath.relpath(node[1], posixpath.dirname(real))


def sysfs(kernel: Kernel) -> Sysfs:
    """The kernel's /sys view (``kernel.sysfs``)."""
    return kernel.sysfs

"""The toolstack: `xl create` of a domU the way libxl does it (tools/libs/light/).

Theory of operation
-------------------
libxl builds a PV guest in this order (libxl_create.c, libxl_dom.c, libxl_device.c):

1. ``xc_domain_create`` (the hypervisor makes the domain), then ``libxl__domain_make``
   writes the domain's skeleton in one transaction: ``/local/domain/<D>`` and
   ``/vm/<uuid>`` read-only for the guest (``roperm`` = n0,r<D>), ``/libxl/<D>`` private
   to dom0 (``noperm`` = n0), and the guest-writable nodes (``rwperm`` = n<D>):
   control/shutdown, control/feature-*, control/sysrq, device/suspend/event-channel,
   data, drivers, feature, attr, error.
2. The domain builder allocates the store and console event channels
   (``xc_evtchn_alloc_unbound(D, remote 0)``: ports 1 and 2 in a fresh domain), the
   start_info, xenstore and console pages (xc_dom_alloc_page) and fills start_info.
3. ``libxl__build_post`` writes memory/*, domid, store/port, store/ring-ref and
   cpu/N/availability, the /vm image keys and start_time, then ``xs_introduce_domain``.
4. Devices, each through ``libxl__device_generic_add``: the frontend directory owned by
   the guest (n<D>,r0; the console's read-only for it), the backend directory owned by
   dom0 (n0,r<D>), and a copy of the backend keys under /libxl/<D>/device.
5. When a backend reaches InitWait, libxl runs its hotplug script (block, vif-bridge),
   which writes ``physical-device`` / ``hotplug-status``; then the guest runs.

The devices come in libxl_create.c's order, each group a ``libxl__multidev`` that waits for
all of its devices: the disks (``domcreate_rebuild_done``: each disk's transaction, then a
watch on its backend's state), and only when every disk's block script has exited the
console (``domcreate_launch_dm``), then the vifs (``domcreate_attach_devices``, the
``device_type_tbl`` order). A device's script is forked from the watch callback that sees
its backend in InitWait (``libxl__wait_device_connection`` -> ``device_backend_callback``
-> ``device_hotplug``); ``xenlab.sim.libxl_event`` is the loop that delivers those events
and reaps the scripts.

An HVM guest (``type = "hvm"``) differs in step 2 and in what step 3 writes: see
``xenlab.sim.hvm_build`` (special pages and HVM params instead of start_info; ring-ref
and INTRODUCE name the store page's pfn).

Everything is written through an XsClient (a real xenstored connection from dom0), so
the permissions a learner sees with ``xenstore-ls -p`` are what xenstored stored.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xenlab.abi.xenbus import XenbusStateUnknown
from xenlab.linux.genhd import BlockDevice, add_disk, del_gendisk
from xenlab.linux.pvops.br_if import br_add_if
from xenlab.linux.pvops.kernel import PvopsKernel
from xenlab.linux.pvops.loop import loop_configure
from xenlab.linux.xenbus_transitions import TOOLSTACK, XENBUS_RULES, check_state_write
from xenlab.sim.hvm_build import libxl__build_hvm
from xenlab.sim.libxl_event import LibxlCtx, Multidev, XsWait
from xenlab.sim.xsclient import XsClient, XsError, perms

if TYPE_CHECKING:
    from xenlab.sim.daemons import SocketClient
    from xenlab.sim.machine import Machine

LIBXL_XENCONSOLE_LIMIT = 1048576
LIBXL_XENCONSOLE_PROTOCOL = "vt100"
LOOP_MAJOR = 7
XVD_MAJOR = 202
XVD_EXT = 1 << 28
XenbusStateInitWait = 2
ERROR_FAIL = -3  # libxl_types.idl
SCRIPTS = "/etc/xen/scripts"


def libxl__device_disk_dev_number(vdev: str) -> int:
    """libxl__device_disk_dev_number: 'xvda' -> 51712 (202<<8 | disk<<4 | partition)."""
    if not vdev.startswith("xvd") or not vdev[3:4].isalpha():
        raise ValueError(f"unsupported disk name {vdev!r}: use xvda, xvdb, ... (xvdaa after xvdz)")
    letters = "".join(ch for ch in vdev[3:] if ch.isalpha())
    part_s = vdev[3 + len(letters):]
    disk = -1
    for ch in letters:
        disk = (disk + 1) * 26 + (ord(ch) - ord("a"))
    part = int(part_s) if part_s else 0
    if disk <= 15 and part <= 15:
        return (XVD_MAJOR << 8) | (disk << 4) | part
    return XVD_EXT | (disk << 8) | part


def xvd_name(index: int) -> str:
    """encode_disk_name: disk index 0 -> 'xvda', 25 -> 'xvdz', 26 -> 'xvdaa'."""
    name = ""
    n = index
    while True:
        name = chr(ord("a") + n % 26) + name
        if n < 26:
            break
        n = n // 26 - 1
    return "xvd" + name


@dataclass
class DiskConfig:
    """One `disk = [...]` entry: format=raw,vdev=...,access=rw,target=..."""

    vdev: str
    target: str = ""
    sectors: int = 32768  # the image size in 512-byte sectors (16 MiB)

    def __post_init__(self) -> None:
        if not self.target:
            self.target = "/xenlab/disk.img" if self.vdev == "xvda" else f"/xenlab/disk-{self.vdev}.img"

    @property
    def devid(self) -> int:
        """The vbd device id (the virtual-device number)."""
        return libxl__device_disk_dev_number(self.vdev)


@dataclass
class NicConfig:
    """One `vif = [...]` entry: bridge=...,mac=..."""

    devid: int
    mac: str
    bridge: str = "xenbr0"


GUEST_TYPES = ("pv", "hvm")
LIBXL_EVENT_CHANNELS_DEFAULT = 1023  # libxl__domain_build_info_setdefault: event_channels unset -> 1023


@dataclass
class DomainConfig:
    """The parts of an xl config file the lab models."""

    name: str = "xenlab-domu"
    vcpus: int = 1
    memory_mb: int = 256
    kernel: str = "/xenlab/vmlinuz"
    ramdisk: str = "/xenlab/domu-initrd.cpio"
    cmdline: str = 'console=hvc0 rdinit=/init loglevel=8 dyndbg="file drivers/xen/xenbus/* +p"'
    disks: list[DiskConfig] = field(default_factory=list)
    nics: list[NicConfig] = field(default_factory=list)
    uuid: str = ""
    event_channels: int = LIBXL_EVENT_CHANNELS_DEFAULT  # max_event_channels = ... in the xl config
    type: str = "pv"  # type = "pv" | "hvm" (an HVM guest running PV drivers)

    def __post_init__(self) -> None:
        if self.type not in GUEST_TYPES:
            raise ValueError(f"unknown guest type {self.type!r}; choose one of {', '.join(GUEST_TYPES)}")


def libxl_uuid_generate(rng: random.Random) -> str:
    """libxl_uuid_generate: a random (version 4) UUID, here drawn from the machine's seed."""
    b = bytearray(rng.getrandbits(8) for _ in range(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def libxl_random_mac(rng: random.Random) -> str:
    """libxl__device_nic_setdefault: 00:16:3e (Xen's OUI) + three random bytes, the first < 0x80."""
    r = [rng.getrandbits(8) for _ in range(3)]
    return f"00:16:3e:{r[0] & 0x7F:02x}:{r[1]:02x}:{r[2]:02x}"


@dataclass
class AoDevice:
    """libxl__ao_device: one device add in flight, from its backend's InitWait to its script's exit."""

    kind: str
    domid: int
    devid: int
    what: str  # the hotplug script and its action, as libxl logs them ("/etc/xen/scripts/block add")
    script: Callable[[], int]  # what the forked script does; returns its exit status
    callback: Callable[[int], None]  # the multidev's one-callback
    num_exec: int = 0
    rc: int = 0

    @property
    def backend(self) -> str:
        """libxl__device_backend_path."""
        return f"/local/domain/0/backend/{self.kind}/{self.domid}/{self.devid}"


@dataclass
class BuiltDomain:
    """What libxl knows about a domain it created."""

    domid: int
    config: DomainConfig
    store_port: int = 0
    console_port: int = 0
    store_mfn: int = 0  # libxl's state->store_mfn: an HVM guest's store pfn (it is translated)
    console_mfn: int = 0
    store_page: Any = None
    console_page: Any = None
    start_time: str = ""


class Toolstack:
    """libxl in dom0: builds domains through the hypervisor and a xenstored connection."""

    def __init__(self, machine: Machine, xs: SocketClient) -> None:
        self.m = machine
        self.xs: XsClient = xs
        self.ctx = LibxlCtx(machine, xs)  # the event loop: watches, devstate waits, children
        self.built: dict[int, BuiltDomain] = {}
        self.loops: dict[tuple[int, int], int] = {}  # (domid, vbd devid) -> N of its /dev/loopN

    def losetup_find(self) -> int:
        """`losetup -f`: the lowest loop device number not in use (LOOP_CTL_GET_FREE)."""
        used = set(self.loops.values())
        return min(set(range(len(used) + 1)) - used)

    def record(self, function: str, summary: str, source: str, changes: Any = ()) -> None:
        """Record one toolstack step in the machine's trace."""
        self.m.trace.record(function, summary, actor="toolstack", source=source, changes=changes)

    # -- 1. the domain and its skeleton -----------------------------------------
    def xc_domain_create(self, domid: int, cfg: DomainConfig) -> None:
        """libxl__domain_make's xc_domain_create: max_vcpus and max_evtchn_port = event_channels.

        The domain builder (xg_dom_x86.c) starts every vcpu with evtchn_upcall_mask = 1;
        the guest clears it when it enables interrupts.
        """
        self.m.hv.domain_create(domid, cfg.name, vcpus=cfg.vcpus, hvm=cfg.type == "hvm",
                                max_evtchn_port=cfg.event_channels, upcalls_masked=True)

    def libxl__domain_make(self, domid: int, cfg: DomainConfig) -> None:
        """libxl__domain_make: the /local/domain, /vm and /libxl skeleton in one transaction."""
        xs = self.xs
        dom_path, vm_path, libxl_path = f"/local/domain/{domid}", f"/vm/{cfg.uuid}", f"/libxl/{domid}"
        noperm, roperm, rwperm = perms("n0"), perms("n0", f"r{domid}"), perms(f"n{domid}")
        t = xs.transaction_start()
        for path, p in ((dom_path, roperm), (vm_path, roperm), (libxl_path, noperm)):
            _rm_quiet(xs, path, t)
            xs.mknod(path, p, t)
        xs.mknod(f"{libxl_path}/device", noperm, t)
        xs.write(f"{dom_path}/vm", vm_path, t)
        xs.write(f"{dom_path}/name", cfg.name, t)  # libxl__domain_rename: the domain's name ...
        xs.write(f"{vm_path}/name", cfg.name, t)  # ... and /vm/<uuid>/name (read back through "vm")
        for sub in ("cpu", "memory", "device", "control"):
            xs.mknod(f"{dom_path}/{sub}", roperm, t)
        for sub in ("control/shutdown", "control/feature-poweroff", "control/feature-reboot",
                    "control/feature-suspend", "control/sysrq", "device/suspend/event-channel",
                    "data", "drivers", "feature", "attr", "error"):
            xs.mknod(f"{dom_path}/{sub}", rwperm, t)
        xs.write(f"{vm_path}/uuid", cfg.uuid, t)
        xs.write(f"{vm_path}/name", cfg.name, t)
        xs.write(f"{dom_path}/control/platform-feature-multiprocessor-suspend", "1", t)
        xs.write(f"{dom_path}/control/platform-feature-xs_reset_watches", "1", t)
        xs.write(f"{libxl_path}/type", cfg.type, t)
        xs.transaction_end(t)
        xs.write(f"{libxl_path}/dm-version", "qemu_xen")  # store_libxl_entry
        self.record("libxl__domain_make", f"wrote {dom_path}, {vm_path} and {libxl_path} with their "
                    "permissions in one transaction", "tools/libs/light/libxl_create.c")

    # -- 2. the domain builder --------------------------------------------------
    def xc_dom_build(self, domid: int, b: BuiltDomain) -> None:
        """libxl__build_pre's ports (alloc_unbound), then libxl__build_pv (store and console pages in
        start_info) or libxl__build_hvm (xenlab.sim.hvm_build)."""
        hv = self.m.hv
        for attr in ("store_port", "console_port"):
            port = hv.evtchn_alloc_unbound(0, domid, 0)
            if port < 0:
                raise RuntimeError(f"xc_evtchn_alloc_unbound(dom={domid}, remote=0) failed: {port}")
            setattr(b, attr, port)
        if b.config.type == "hvm":
            libxl__build_hvm(self, domid, b)
            return
        b.store_page = hv.memory.alloc_page(domid)
        b.console_page = hv.memory.alloc_page(domid)
        b.store_mfn, b.console_mfn = b.store_page.mfn, b.console_page.mfn
        si = hv.domains[domid].start_info
        si.store_mfn, si.store_evtchn = b.store_mfn, b.store_port
        si.console.domU.mfn, si.console.domU.evtchn = b.console_mfn, b.console_port
        si.nr_pages = b.config.memory_mb * 256
        hv.gnttab_seed(domid, b.console_mfn, b.store_mfn)  # xc_dom_gnttab_init: refs 0 and 1, for dom0
        self.record("xc_dom_build_image",
                    f"d{domid}: store page mfn {b.store_mfn:#x} port {b.store_port}, console page mfn "
                    f"{b.console_mfn:#x} port {b.console_port} in start_info",
                    "tools/libs/guest/xg_dom_core.c",
                    changes=[(f"xen/d{domid}/start_info", "store_evtchn", None, b.store_port),
                             (f"xen/d{domid}/start_info", "console.domU.evtchn", None, b.console_port)])

    def libxl__build_post(self, domid: int, b: BuiltDomain) -> None:
        """libxl__build_post: memory, domid, store, cpu and /vm keys, then xs_introduce_domain."""
        cfg, xs = b.config, self.xs
        dom_path, vm_path = f"/local/domain/{domid}", f"/vm/{cfg.uuid}"
        memkb = cfg.memory_mb * 1024
        ents = {"memory/static-max": str(memkb), "memory/target": str(memkb), "memory/videoram": "0",
                "domid": str(domid), "store/port": str(b.store_port), "store/ring-ref": str(b.store_mfn)}
        for v in range(cfg.vcpus):
            ents[f"cpu/{v}/availability"] = "online"
        secs, ns = divmod(self.m.sched.now_ns, 1_000_000_000)
        b.start_time = f"{secs}.{ns // 10_000_000:02d}"
        vm_ents = {"image/ostype": "linux", "image/kernel": cfg.kernel, "image/ramdisk": cfg.ramdisk,
                   "image/cmdline": cfg.cmdline, "start_time": b.start_time}
        if cfg.type == "hvm":  # libxl__domain_build: the HVM case's vments and localents
            vm_ents = {"rtc/timeoffset": "", "image/ostype": "hvm", "start_time": b.start_time}
            ents |= {"platform/acpi": "1", "platform/acpi_s3": "1", "platform/acpi_s4": "1",
                     "platform/acpi_laptop_slate": "0", "platform/device-model": "qemu_xen"}
        t = xs.transaction_start()
        for k, v in ents.items():
            xs.write(f"{dom_path}/{k}", v, t)
        for k, v in vm_ents.items():
            xs.write(f"{vm_path}/{k}", v, t)
        xs.transaction_end(t)
        xs.introduce_domain(domid, b.store_mfn, b.store_port)
        self.record("xs_introduce_domain", f"INTRODUCE d{domid} mfn {b.store_mfn:#x} port {b.store_port}: "
                    "xenstored maps the page and binds the port", "tools/libs/light/libxl_dom.c")

    # -- 4. devices ----------------------------------------------------------------
    def libxl__device_generic_add(self, domid: int, kind: str, devid: int, bents: dict[str, str],
                                  fents: dict[str, str], ro_fents: dict[str, str],
                                  frontend_path: str | None = None) -> None:
        """libxl__device_generic_add: frontend, backend and /libxl copy in one transaction."""
        xs = self.xs
        fe = frontend_path or f"/local/domain/{domid}/device/{kind}/{devid}"
        be = f"/local/domain/0/backend/{kind}/{domid}/{devid}"
        lx = f"/libxl/{domid}/device/{kind}/{devid}"
        frontend_perms = perms(f"n{domid}", "r0")
        ro_frontend_perms = backend_perms = perms("n0", f"r{domid}")
        t = xs.transaction_start()
        _rm_quiet(xs, lx, t)
        xs.write(f"{lx}/frontend", fe, t)
        xs.write(f"{lx}/backend", be, t)
        _rm_quiet(xs, fe, t)
        xs.mkdir(fe, t)
        xs.set_perms(fe, ro_frontend_perms if kind == "console" else frontend_perms, t)
        xs.write(f"{fe}/backend", be, t)
        for k, v in fents.items():
            xs.write(f"{fe}/{k}", v, t)
            xs.set_perms(f"{fe}/{k}", frontend_perms, t)
        for k, v in ro_fents.items():
            xs.write(f"{fe}/{k}", v, t)
            xs.set_perms(f"{fe}/{k}", ro_frontend_perms, t)
        _rm_quiet(xs, be, t)
        xs.mkdir(be, t)
        xs.set_perms(be, backend_perms, t)
        xs.write(f"{be}/frontend", fe, t)
        for k, v in bents.items():
            xs.write(f"{be}/{k}", v, t)
        for k, v in bents.items():
            xs.write(f"{lx}/{k}", v, t)
        xs.transaction_end(t)
        for path, ents in ((fe, fents | ro_fents), (be, bents)):  # a new node: from Unknown (absent)
            if "state" in ents:
                check_state_write(XENBUS_RULES[self.m.flavour], self.record, role=TOOLSTACK,
                                  devicetype=kind, nodename=path, from_state=XenbusStateUnknown,
                                  to_state=int(ents["state"]), function="libxl__device_generic_add",
                                  source="tools/libs/light/libxl_device.c", who="toolstack")
        self.record("libxl__device_generic_add", f"{kind} {devid}: frontend {fe}, backend {be} (state 1)",
                    "tools/libs/light/libxl_device.c")

    def libxl__device_console_add(self, domid: int, b: BuiltDomain) -> None:
        """libxl__device_console_add: console 0 lives at /local/domain/<D>/console."""
        bents = {"frontend-id": str(domid), "online": "1", "state": "1",
                 "protocol": LIBXL_XENCONSOLE_PROTOCOL}
        ro = {"limit": str(LIBXL_XENCONSOLE_LIMIT), "type": "xenconsoled", "output": "pty", "tty": "",
              "port": str(b.console_port), "ring-ref": str(b.console_mfn)}
        self.libxl__device_generic_add(domid, "console", 0, bents, {"backend-id": "0"}, ro,
                                       frontend_path=f"/local/domain/{domid}/console")

    def libxl__device_disk_add(self, domid: int, disk: DiskConfig) -> None:
        """libxl__device_disk_add: a phy vbd for a raw image (the block script sets up a loop device)."""
        # device_disk_add's flexarray order: params and script first
        bents = {"params": disk.target, "script": "/etc/xen/scripts/block",
                 "frontend-id": str(domid), "online": "1", "removable": "0", "bootable": "1", "state": "1",
                 "dev": disk.vdev, "type": "phy", "mode": "w", "device-type": "disk", "discard-enable": "1",
                 "specification": "xen"}
        fents = {"backend-id": "0", "state": "1", "virtual-device": str(disk.devid), "device-type": "disk",
                 "trusted": "1",
                 "protocol": "x86_64-abi"}  # PV: xc_domain_get_native_protocol (XEN_IO_PROTO_ABI_X86_64)
        self.libxl__device_generic_add(domid, "vbd", disk.devid, bents, fents, {})

    def libxl__device_nic_add(self, domid: int, nic: NicConfig) -> None:
        """libxl__device_nic_add (libxl_nic.c): a vif on a bridge, hotplug by vif-bridge."""
        bents = {"frontend-id": str(domid), "online": "1", "state": "1",
                 "script": "/etc/xen/scripts/vif-bridge",
                 "mac": nic.mac, "bridge": nic.bridge, "handle": str(nic.devid), "type": "vif",
                 "hotplug-status": ""}
        fents = {"backend-id": "0", "state": "1", "handle": str(nic.devid), "mac": nic.mac, "trusted": "1"}
        self.libxl__device_generic_add(domid, "vif", nic.devid, bents, fents, {"mtu": "1500"})

    # -- 4b. the device groups, each a multidev waiting for its hotplug scripts ----------------
    def domcreate_devices(self, domid: int, b: BuiltDomain) -> int:
        """domcreate_rebuild_done -> domcreate_launch_dm -> domcreate_attach_devices (libxl_create.c):
        the disks and their scripts, the console, then the vifs and theirs. 0 or the first error."""
        cfg = b.config
        md = Multidev(lambda rc: None)
        self.libxl__add_disks(domid, cfg.disks, md)
        md.libxl__multidev_prepared(0)
        self.ctx.libxl__ao_inprogress(lambda: md.done)
        if md.rc:
            self.record("domcreate_launch_dm", f"d{domid}: unable to add disk devices",
                        "tools/libs/light/libxl_create.c")
            return md.rc
        self.libxl__device_console_add(domid, b)
        if cfg.nics:  # domcreate_attach_devices skips a type with no devices
            md = Multidev(lambda rc: None)
            self.libxl__add_nics(domid, cfg.nics, md)
            md.libxl__multidev_prepared(0)
            self.ctx.libxl__ao_inprogress(lambda: md.done)
            if md.rc:
                self.record("domcreate_attach_devices", f"d{domid}: unable to add vif devices",
                            "tools/libs/light/libxl_create.c")
                return md.rc
        return self.console_xswait(domid)

    def console_xswait(self, domid: int) -> int:
        """domcreate_attach_devices' end: an xswait until xenconsoled wrote console/tty."""
        result: list[int] = []
        holder: list[XsWait] = []

        def console_xswait_callback(rc: int, tty: str | None) -> None:
            """console_xswait_callback: the tty is written (or the wait timed out): done."""
            if rc or tty:  # "domain %d console tty" timed out, or the pty is there
                self.ctx.libxl__xswait_stop(holder[0])
                result.append(rc)

        path = f"/local/domain/{domid}/console/tty"
        holder.append(self.ctx.libxl__xswait_start(path, console_xswait_callback))
        self.ctx.libxl__ao_inprogress(lambda: bool(result))
        return result[0] if result else 0

    def libxl__add_disks(self, domid: int, disks: list[DiskConfig], multidev: Multidev) -> None:
        """libxl__add_disks (LIBXL_DEFINE_DEVICES_ADD): each disk in config order, one aodev each."""
        for disk in disks:
            multidev.libxl__multidev_prepare()
            self.libxl__device_disk_add(domid, disk)
            self.libxl__wait_device_connection(AoDevice(
                "vbd", domid, disk.devid, f"{SCRIPTS}/block add",
                lambda disk=disk: self.hotplug_block(domid, disk, self.losetup_find()),
                multidev.multidev_one_callback))

    def libxl__add_nics(self, domid: int, nics: list[NicConfig], multidev: Multidev) -> None:
        """libxl__add_nics (LIBXL_DEFINE_DEVICES_ADD): each vif in config order, one aodev each."""
        for nic in nics:
            multidev.libxl__multidev_prepare()
            self.libxl__device_nic_add(domid, nic)
            self.libxl__wait_device_connection(AoDevice(
                "vif", domid, nic.devid, f"{SCRIPTS}/vif-bridge online",
                lambda nic=nic: self.hotplug_vif_bridge(domid, nic),
                multidev.multidev_one_callback))

    def libxl__wait_device_connection(self, aodev: AoDevice) -> None:
        """libxl__wait_device_connection: wait for the backend's InitWait (LIBXL_INIT_TIMEOUT)."""
        self.m.trace.record("libxl__wait_device_connection", f"{aodev.kind} {aodev.devid}: wait for "
                            f"{aodev.backend}/state = {XenbusStateInitWait}", actor="toolstack",
                            source="tools/libs/light/libxl_device.c")
        self.ctx.libxl__ev_devstate_wait(f"{aodev.backend}/state", XenbusStateInitWait,
                                         lambda rc: self.device_backend_callback(aodev, rc))

    def device_backend_callback(self, aodev: AoDevice, rc: int) -> None:
        """device_backend_callback: the backend is in InitWait (or the wait failed): on to the script."""
        if rc:
            self.record("device_backend_callback", f"unable to add device with path {aodev.backend}",
                        "tools/libs/light/libxl_device.c")
            aodev.rc = rc
            self.device_hotplug_done(aodev)
            return
        self.device_hotplug(aodev)

    def device_hotplug(self, aodev: AoDevice) -> None:
        """device_hotplug: libxl__get_hotplug_script_info says run the script (num_exec 0) or not; fork it."""
        if aodev.num_exec != 0:  # libxl_linux.c: "num_exec 1, not running hotplug scripts"
            self.device_hotplug_done(aodev)
            return
        self.ctx.libxl__ev_child_fork(f"{aodev.what} ({aodev.backend})", aodev.script,
                                      lambda status: self.device_hotplug_child_death_cb(aodev, status))

    def device_hotplug_child_death_cb(self, aodev: AoDevice, status: int) -> None:
        """device_hotplug_child_death_cb: a failed script fails the add; else ask device_hotplug again."""
        if status:
            aodev.rc = ERROR_FAIL
            self.device_hotplug_done(aodev)
            return
        aodev.num_exec += 1
        self.device_hotplug(aodev)

    def device_hotplug_done(self, aodev: AoDevice) -> None:
        """device_hotplug_done: the add is over; the multidev hears of it."""
        aodev.callback(aodev.rc)

    # -- teardown (xl destroy) ---------------------------------------------------------
    def libxl__device_destroy(self, domid: int, kind: str, devid: int, frontend_path: str | None) -> None:
        """libxl__device_destroy: remove the frontend, backend and /libxl paths (and empty parents)."""
        fe = frontend_path or f"/local/domain/{domid}/device/{kind}/{devid}"
        be = f"/local/domain/0/backend/{kind}/{domid}/{devid}"
        t = self.xs.transaction_start()
        for path in (fe, be, f"/libxl/{domid}/device/{kind}/{devid}"):
            libxl__xs_path_cleanup(self.xs, t, path)
        self.xs.transaction_end(t)
        self.record("libxl__device_destroy", f"{kind} {devid}: removed {fe} and {be}",
                    "tools/libs/light/libxl_device.c")

    def xc_domain_destroy(self, domid: int) -> None:
        """xc_domain_destroy: Xen kills the domain (its ports close; VIRQ_DOM_EXC to dom0)."""
        self.m.hv.domain_destroy(domid)

    def libxl__domain_destroy_paths(self, domid: int, uuid: str) -> None:
        """devices_destroy_cb / destroy_domid_cb: remove /local/domain/<D>, /vm/<uuid>, /libxl/<D>."""
        for path in (f"/local/domain/{domid}", f"/vm/{uuid}", f"/libxl/{domid}"):
            _rm_quiet(self.xs, path, 0)
        self.record("libxl__destroy_domid", f"d{domid}: removed /local/domain/{domid}, /vm/{uuid}, "
                    f"/libxl/{domid}", "tools/libs/light/libxl_domain.c")

    # -- 5. hotplug scripts ------------------------------------------------------------
    def hotplug_block(self, domid: int, disk: DiskConfig, loop_index: int) -> int:
        """/etc/xen/scripts/block add: losetup the image on /dev/loopN, then the script's xenstore writes."""
        be = f"/local/domain/0/backend/vbd/{domid}/{disk.devid}"
        dev = f"/dev/loop{loop_index}"
        bdev = BlockDevice(f"loop{loop_index}", disk.sectors)
        kernel = self.m.dom0.kernel
        if isinstance(kernel, PvopsKernel):  # `losetup`: LOOP_CONFIGURE
            loop_configure(kernel, loop_index, bdev)
        else:
            add_disk(kernel, LOOP_MAJOR, loop_index, bdev)
        self.loops[(domid, disk.devid)] = loop_index
        for key, value in block_hotplug_writes(LOOP_MAJOR, loop_index, dev):
            self.xs.write(f"{be}/{key}", value)
        self.record("hotplug block add", f"{disk.target} on {dev}: physical-device "
                    f"{LOOP_MAJOR:x}:{loop_index:x}, hotplug-status connected",
                    "tools/hotplug/Linux/block")
        return 0

    def hotplug_block_remove(self, domid: int, devid: int) -> None:
        """/etc/xen/scripts/block remove: `losetup -d` the vbd's loop device (its number is free again)."""
        loop_index = self.loops.pop((domid, devid), None)
        if loop_index is None:
            return
        del_gendisk(self.m.dom0.kernel, LOOP_MAJOR, loop_index)
        self.record("hotplug block remove", f"losetup -d /dev/loop{loop_index}", "tools/hotplug/Linux/block")

    def hotplug_vif_bridge(self, domid: int, nic: NicConfig) -> int:
        """/etc/xen/scripts/vif-bridge online: add vif<D>.<N> to the bridge, hotplug-status connected."""
        kernel = self.m.dom0.kernel
        if isinstance(kernel, PvopsKernel):  # setup_virtual_bridge_port + add_to_bridge: `ip link set master`
            br_add_if(kernel, nic.bridge, f"vif{domid}.{nic.devid}")
        for key, value in vif_hotplug_writes():
            self.xs.write(f"/local/domain/0/backend/vif/{domid}/{nic.devid}/{key}", value)
        self.record("hotplug vif-bridge online", f"vif{domid}.{nic.devid} added to {nic.bridge}",
                    "tools/hotplug/Linux/vif-bridge")
        return 0


def libxl__xs_path_cleanup(xs: XsClient, t: int, path: str) -> None:
    """libxl__xs_path_cleanup: rm *path*, then each parent that is left empty (valueless, no children)."""
    _rm_quiet(xs, path, t)
    while path.count("/") > 1:
        path = path.rsplit("/", 1)[0]
        try:
            if xs.read(path, t) or xs.directory(path, t):
                return
        except XsError:
            return
        _rm_quiet(xs, path, t)


def _rm_quiet(xs: XsClient, path: str, t: int) -> None:
    """xs_rm whose ENOENT libxl ignores."""
    try:
        xs.rm(path, t)
    except XsError as e:
        if e.name != "ENOENT":
            raise


def block_hotplug_writes(major: int, minor: int, node: str) -> list[tuple[str, str]]:
    """What /etc/xen/scripts/block writes under the backend for a file it attached to *node*.

    The loop "node" (right after `losetup`), then write_dev: physical-device ("%x:%x"),
    physical-device-path; then success: hotplug-status = connected. The toolstack (libxl runs
    the script once the backend is in InitWait) performs these writes through its xenstore
    client.
    """
    return [("node", node), ("physical-device", f"{major:x}:{minor:x}"), ("physical-device-path", node),
            ("hotplug-status", "connected")]


def vif_hotplug_writes() -> list[tuple[str, str]]:
    """What /etc/xen/scripts/vif-bridge writes under the backend when it is done: hotplug-status."""
    return [("hotplug-status", "connected")]

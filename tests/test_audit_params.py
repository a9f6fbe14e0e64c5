"""Vary the machine and the numbers follow the real system's rules, not the captured machine's values.

The captures come from one configuration (dom0 and the guest with 1 vcpu, one disk, one
vif). Each test here picks another configuration and computes what a real Xen 4.17 +
Linux 6.1 (or XenLinux 2.6.18) shows *from the rule*, never from a captured number:

* Linux 6.1 PV, per vcpu: the timer VIRQ and four IPIs (resched, callfunc,
  callfuncsingle, irqwork; no debug VIRQ with FIFO events), plus a "spinlock" IPI when
  PV spinlocks are on, i.e. with more than one possible cpu (xen_init_spinlocks). cpu0
  binds timer0, spinlock0, then its IPIs (time_init, smp_prepare_cpus); a secondary cpu
  binds its timer and IPIs when it is prepared and its spinlock IPI once online.
* Xen gives each new port the lowest free one, from 1; Linux each new IRQ the lowest free
  one, from the first after the GSIs in a PV dom0 (one 24-pin IO-APIC), from 0 in a domU.
* XenLinux 2.6.18: dynamic IRQs from DYNIRQ_BASE 256, chip "Dynamic-irq"; cpu0 binds
  timer0, resched0, callfunc0; a secondary cpu reschedN, callfuncN, then timerN.
* A disk's virtual-device: xvd<letter> is disk index i, (202 << 8) | (i << 4).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from xenlab.sim.machine import Machine
from xenlab.sim.scenarios import build

XVD_MAJOR = 202  # Documentation/admin-guide/devices.txt: Xen virtual block devices
PARTS_PER_DISK = 16
IOAPIC_PINS = 24  # the PC's (and qemu's) one IO-APIC: a PV dom0's GSIs, so its first dynamic IRQ
DYNIRQ_BASE = 256  # XenLinux 2.6.18 include/asm-x86_64/mach-xen/irq_vectors.h
GNTTAB_NR_RESERVED_ENTRIES = 8  # include/xen/grant_table.h
NET_RING_SLOTS = 256  # __CONST_RING_SIZE(xen_netif_tx/rx, 4096)


def percpu_names_61(nr_cpus: int) -> list[str]:
    """The per-cpu IRQ names a 6.1 PV kernel binds at boot, in binding order."""
    spin = nr_cpus > 1
    names: list[str] = []
    for cpu in range(nr_cpus):
        ipis = [f"resched{cpu}", f"callfunc{cpu}", f"callfuncsingle{cpu}", f"irqwork{cpu}"]
        if cpu == 0:
            names += [f"timer{cpu}"] + ([f"spinlock{cpu}"] if spin else []) + ipis
        else:
            names += [f"timer{cpu}"] + ipis + ([f"spinlock{cpu}"] if spin else [])
    return names


def percpu_names_2618(nr_cpus: int) -> list[str]:
    """The per-cpu IRQ names XenLinux 2.6.18 binds at boot, in binding order."""
    names = ["timer0", "resched0", "callfunc0"]
    for cpu in range(1, nr_cpus):
        names += [f"resched{cpu}", f"callfunc{cpu}", f"timer{cpu}"]
    return names


def vdev(name: str) -> int:
    """Linux/libxl's number for xvd<letter> (one letter, no partition)."""
    return (XVD_MAJOR << 8) | ((ord(name[3]) - ord("a")) * PARTS_PER_DISK)


def interrupts(text: str) -> tuple[int, dict[str, int], list[str]]:
    """(number of CPU columns, name -> IRQ of the numbered rows, the numbered rows' count columns)."""
    lines = text.splitlines()
    ncpu = len(lines[0].split())
    by_name: dict[str, int] = {}
    counts: list[str] = []
    for line in lines[1:]:
        m = re.match(r"\s*(\d+):((?:\s+\d+){" + str(ncpu) + r"})\s+.*\s(\S+)$", line)
        if m:
            by_name.setdefault(m.group(3), int(m.group(1)))
            counts.append(m.group(2))
    return ncpu, by_name, counts


def lsevtchn(text: str) -> list[tuple[int, int, str]]:
    """(port, vcpu, what) rows of lsevtchn."""
    rows = []
    for line in text.splitlines():
        m = re.match(r"\s*(\d+): VCPU (\d+): (.*)$", line)
        if m:
            rows.append((int(m.group(1)), int(m.group(2)), m.group(3)))
    return rows


@pytest.fixture(scope="module", params=[2, 4])
def dom0_smp(request: pytest.FixtureRequest) -> Iterator[tuple[int, Machine]]:
    m = build("dom0", dom0_vcpus=request.param)
    yield request.param, m
    m.shutdown()


def test_dom0_percpu_irqs_and_the_xenbus_irq_follow_the_vcpu_count(dom0_smp: tuple[int, Machine]) -> None:
    n, m = dom0_smp
    ncpu, irqs, counts = interrupts(m.dom0.run("cat /proc/interrupts"))
    assert ncpu == n
    assert all(len(c.split()) == n for c in counts)
    expected = percpu_names_61(n)
    assert [irqs[name] for name in expected] == list(range(IOAPIC_PINS, IOAPIC_PINS + len(expected)))
    assert irqs["xenbus"] == IOAPIC_PINS + len(expected)


def test_dom0_ports_follow_the_vcpu_count_and_xsd_port_comes_next(dom0_smp: tuple[int, Machine]) -> None:
    n, m = dom0_smp
    per_cpu = len(percpu_names_61(n)) // n
    rows = lsevtchn(m.dom0.run("lsevtchn 0"))
    for cpu in range(n):
        block = rows[cpu * per_cpu:(cpu + 1) * per_cpu]
        assert [r[0] for r in block] == list(range(1 + cpu * per_cpu, 1 + (cpu + 1) * per_cpu))
        assert {r[1] for r in block} == {cpu}
        assert block[0][2] == "Virtual IRQ 0"  # VIRQ_TIMER first on every cpu
        assert sum(r[2] == "IPI" for r in block) == per_cpu - 1
    xsd_port = int(m.dom0.run("cat /proc/xen/xsd_port"))
    assert xsd_port == n * per_cpu + 1
    assert rows[xsd_port - 1][2].startswith("Interdomain (Connected) - Remote Domain 0")


def test_one_vcpu_means_no_spinlock_ipi() -> None:
    m = build("dom0-early", dom0_vcpus=1)
    try:
        text = m.dom0.run("cat /proc/interrupts")
        assert "spinlock" not in text
        assert interrupts(text)[1]["xenbus"] == IOAPIC_PINS + len(percpu_names_61(1))
    finally:
        m.shutdown()


@pytest.fixture(scope="module")
def big_guest() -> Iterator[Machine]:
    m = build("domU", guest_vcpus=2, disks=3, vifs=2)
    yield m
    m.shutdown()


def test_guest_irqs_start_at_0_and_follow_its_vcpus_and_devices(big_guest: Machine) -> None:
    ncpu, irqs, _ = interrupts(big_guest.domain(1).run("cat /proc/interrupts"))
    assert ncpu == 2
    expected = percpu_names_61(2)
    assert [irqs[name] for name in expected] == list(range(len(expected)))
    assert irqs["xenbus"] == len(expected)
    text = big_guest.domain(1).run("cat /proc/interrupts")
    assert text.count(" blkif\n") == 3
    for i in range(2):
        assert f" vif{i}-q0-tx\n" in text and f" vif{i}-q0-rx\n" in text


def test_guest_ports_store_console_then_its_cpus(big_guest: Machine) -> None:
    rows = lsevtchn(big_guest.dom0.run("lsevtchn 1"))
    rd = big_guest.dom0.run
    store, console = (int(rd(f"xenstore-read /local/domain/1/{k}/port")) for k in ("store", "console"))
    assert (store, console) == (1, 2)  # libxl allocates them first, in a fresh domain
    per_cpu = len(percpu_names_61(2)) // 2
    assert [r[1] for r in rows[2:2 + 2 * per_cpu]] == [0] * per_cpu + [1] * per_cpu


def test_disk_numbers_follow_the_xvd_names(big_guest: Machine) -> None:
    names = ["xvda", "xvdb", "xvdc"]
    numbers = sorted(vdev(n) for n in names)
    assert big_guest.domain(1).run("ls /sys/bus/xen/devices").split() == [f"vbd-{v}" for v in numbers] + [
        "vif-0", "vif-1"]
    for name in names:
        be = f"/local/domain/0/backend/vbd/1/{vdev(name)}"
        assert big_guest.dom0.run(f"xenstore-read {be}/dev") == name
        fe = f"/local/domain/1/device/vbd/{vdev(name)}"
        assert big_guest.dom0.run(f"xenstore-read {fe}/virtual-device") == str(vdev(name))
    assert "blkfront: xvdc:" in big_guest.domain(1).run("dmesg")


def test_grant_refs_follow_the_allocator_not_the_capture(big_guest: Machine) -> None:
    rd = big_guest.dom0.run
    fe = "/local/domain/1/device/vbd"
    refs = [int(rd(f"xenstore-read {fe}/{vdev(n)}/ring-ref")) for n in ("xvda", "xvdb", "xvdc")]
    assert refs[0] == GNTTAB_NR_RESERVED_ENTRIES and len(set(refs)) == 3
    for i in range(2):
        tx, rx = (int(rd(f"xenstore-read /local/domain/1/device/vif/{i}/{k}-ring-ref")) for k in ("tx", "rx"))
        assert rx == tx + 1  # setup_netfront grants tx then rx
        assert tx >= GNTTAB_NR_RESERVED_ENTRIES + 2 * NET_RING_SLOTS * (i + 1)  # every slot reserved first


def test_dom0_backend_irq_names_carry_domid_and_handle(big_guest: Machine) -> None:
    text = big_guest.dom0.run("cat /proc/interrupts")
    assert text.count(" blkif-backend\n") == 3
    for i in range(2):
        assert f" vif1.{i}-q0-tx\n" in text and f" vif1.{i}-q0-rx\n" in text


def test_a_second_guest_is_domain_2_with_its_own_ports_tty_and_loop_devices() -> None:
    """openpty() and losetup -f take the lowest free number; xl destroy gives them back."""
    m = build("domU")
    try:
        g2 = m.create_domU(name="second", disks=2)
        node = "xenstore-read /local/domain/0/backend/vbd/{}/{}/node"
        assert [m.dom0.run(node.format(2, vdev(n))) for n in ("xvda", "xvdb")] == ["/dev/loop1", "/dev/loop2"]
        assert g2.domid == 2
        rd = m.dom0.run
        assert rd("xenstore-read /local/domain/2/name") == "second"
        assert rd("xenstore-read /local/domain/2/store/port") == "1"  # a fresh domain's first port
        ttys = [rd(f"xenstore-read /local/domain/{d}/console/tty") for d in (1, 2)]
        assert ttys == ["/dev/pts/0", "/dev/pts/1"]  # openpty: the lowest free index
        text = rd("cat /proc/interrupts")
        assert " vif2.0-q0-tx\n" in text
        backends = ["console-1-0", "console-2-0", f"vbd-1-{vdev('xvda')}", f"vbd-2-{vdev('xvda')}",
                    f"vbd-2-{vdev('xvdb')}", "vif-1-0", "vif-2-0"]
        assert sorted(rd("ls /sys/bus/xen-backend/devices").split()) == sorted(backends)  # ls -C: by columns
        m.destroy_domU(1)
        g3 = m.create_domU(name="third")
        assert rd(f"xenstore-read /local/domain/{g3.domid}/console/tty") == "/dev/pts/0"  # freed by d1
        assert rd(node.format(g3.domid, vdev("xvda"))) == "/dev/loop0"  # d1's block hotplug remove freed it
    finally:
        m.shutdown()


@pytest.mark.parametrize("n", [1, 2])
def test_2618_dom0_uses_the_dynirq_window_and_its_chip_names(n: int) -> None:
    m = build("dom0", flavour="2.6.18", dom0_vcpus=n)
    try:
        text = m.dom0.run("cat /proc/interrupts")
        ncpu, irqs, _ = interrupts(text)
        assert ncpu == n
        expected = percpu_names_2618(n)
        assert [irqs[name] for name in expected] == list(range(DYNIRQ_BASE, DYNIRQ_BASE + len(expected)))
        assert irqs["xenbus"] == DYNIRQ_BASE + len(expected)
        for line in text.splitlines():
            m_irq = re.match(r"\s*(\d+):", line)
            if m_irq:
                chip = "Dynamic-irq" if int(m_irq.group(1)) >= DYNIRQ_BASE else "Phys-irq"
                assert f" {chip}  " in line, line
        assert "xen-percpu" not in text and "xen-dyn" not in text and "spinlock" not in text
        assert int(m.dom0.run("cat /proc/xen/xsd_port")) == len(expected) + 1
    finally:
        m.shutdown()


def test_2618_proc_xen_modes_are_its_own_not_xenfs() -> None:
    """2.6.18 creates its /proc/xen entries itself (no xenfs): xsd_kva 0600 and xsd_port 0400
    (xenbus_probe.c:947,955), xenbus 0400 (xenbus_dev.c:403), privcmd 0400 and capabilities 0400
    (privcmd/privcmd.c:273,277 privcmd_init), balloon 0644 (balloon/balloon.c:549 balloon_init)."""
    m = build("dom0", flavour="2.6.18")
    try:
        modes = {line.split()[-1]: line.split()[0] for line in m.dom0.run("ls -l /proc/xen").splitlines()[1:]}
        assert modes == {"balloon": "-rw-r--r--", "capabilities": "-r--------", "privcmd": "-r--------",
                         "xenbus": "-r--------", "xsd_kva": "-rw-------", "xsd_port": "-r--------"}
    finally:
        m.shutdown()


def test_the_17th_disk_takes_the_extended_number_and_keeps_its_name() -> None:
    """Past xvdp (index 15) libxl and Linux use the extended form (1 << 28) | (index << 8)."""
    m = build("domU", disks=17, vifs=0)
    try:
        ext = (1 << 28) | (16 << 8)
        assert f"vbd-{ext}" in m.domain(1).run("ls /sys/bus/xen/devices").split()
        assert m.dom0.run(f"xenstore-read /local/domain/0/backend/vbd/1/{ext}/dev") == "xvdq"
        names = re.findall(r"blkfront: (xvd\w+):", m.domain(1).run("dmesg"))
        assert sorted(names) == sorted(f"xvd{chr(ord('a') + i)}" for i in range(17))
    finally:
        m.shutdown()


@pytest.mark.parametrize(("flavour", "xenstored", "dom0_vcpus", "guest_vcpus", "disks", "vifs"), [
    ("modern", "cxenstored", 3, 2, 0, 2),
    ("modern", "oxenstored", 1, 3, 2, 0),
    ("2.6.18", "cxenstored", 2, 2, 2, 1),
])
def test_every_port_a_frontend_advertises_is_connected_and_destroy_takes_all(
        flavour: str, xenstored: str, dom0_vcpus: int, guest_vcpus: int, disks: int, vifs: int) -> None:
    m = build("domU", flavour=flavour, xenstored=xenstored, dom0_vcpus=dom0_vcpus, guest_vcpus=guest_vcpus,
              disks=disks, vifs=vifs)
    try:
        assert m.errors == []
        ports = {p: what for p, _vcpu, what in lsevtchn(m.dom0.run("lsevtchn 1"))}
        advertised = [int(v) for v in re.findall(r'/event-channel(?:-tx|-rx)? = "(\d+)"',
                                                 m.dom0.run("xenstore-ls -f /local/domain/1/device"))]
        if flavour == "modern":  # queues: min(max_queues, the guest's cpus, the backend's max = dom0's cpus)
            cpus = min(guest_vcpus, dom0_vcpus)
            blk_queues, net_queues, net_ports = min(4, cpus), min(8, cpus), 2  # split tx/rx event channels
        else:  # 2.6.18: one ring per device, one port per vif
            blk_queues, net_queues, net_ports = 1, 1, 1
        assert len(advertised) == disks * blk_queues + vifs * net_queues * net_ports
        for port in advertised:
            assert ports[port].startswith("Interdomain (Connected) - Remote Domain 0"), port
        assert interrupts(m.domain(1).run("cat /proc/interrupts"))[0] == guest_vcpus
        m.destroy_domU(1)
        assert m.dom0.run("ls /sys/bus/xen-backend/devices") == ""
        assert "Remote Domain 1" not in m.dom0.run("lsevtchn 0")
    finally:
        m.shutdown()

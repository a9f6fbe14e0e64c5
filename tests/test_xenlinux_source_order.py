"""XenLinux 2.6.18 held against its source (bronson/linux-2.6.18.8-ovz-xen a63dbc8d, reference L18):
the initcall order, vcpu hotplug, the kernel config of each variant, /proc/xen, the watch tokens,
the xenbus_probe error paths, the boot lines and the names in the trace. Each test names the
source file and line (or function) its expectation comes from.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from xenbus_harness import Rig

from xenlab.abi.errno import ENOSYS
from xenlab.base.trace import Trace
from xenlab.linux.xenlinux.kernel import KCONFIGS, XenLinuxKernel
from xenlab.linux.xenlinux.xenbus_probe import xenbus_probe_init
from xenlab.linux.xenlinux.xenbus_xs import STATIC_WATCH_ADDR_BASE, WATCH_ADDR_BASE
from xenlab.sim.machine import Machine
from xenlab.sim.scenarios import build
from xenlab.xen.hypervisor import Hypervisor


@pytest.fixture(scope="module")
def two() -> Iterator[Machine]:
    """A 2-vcpu 2.6.18 dom0 with a 2-vcpu 2.6.18 domU (one vbd, one vif), all Connected."""
    m = build("domU", flavour="2.6.18", dom0_vcpus=2, guest_vcpus=2)
    yield m
    m.shutdown()


def requests(m: Machine, actor: str) -> list[str]:
    """The kernel's xenstore requests in the order it made them ("READ cpu/0/availability -> ...")."""
    return [ch.after for s in m.trace.steps for ch in s.changes if ch.table == f"{actor}/xs_requests"]


def irqs(m: Machine, domid: int) -> dict[str, int]:
    """/proc/interrupts: name -> IRQ."""
    out = {}
    for line in m.kernel(domid).show_interrupts().splitlines():
        f = re.match(r"\s*(\d+):.*\s(\S+)$", line)
        if f:
            out[f.group(2)] = int(f.group(1))
    return out


# -- 1. CONFIG_HOTPLUG_CPU: a domU's secondary vcpus come up through the cpu watch -------------------
@pytest.mark.parametrize("vcpus", [2, 3])
def test_a_hotplug_domU_binds_xenbus_before_its_secondary_vcpus(vcpus: int) -> None:
    """smpboot.c:353-358 (smp_prepare_cpus): under CONFIG_HOTPLUG_CPU a secondary vcpu enters
    cpu_present_map only in dom0, so smp_init brings up the domU's cpu0 alone; xenbus (postcore)
    then takes IRQ 259, and the arch_initcall's cpu watcher (cpu_hotplug.c:94-96 vcpu_hotplug ->
    cpu_up -> __cpu_up, smpboot.c:441 xen_smp_intr_init) binds each secondary vcpu's IPIs and timer."""
    m = build("domU", flavour="2.6.18", guest_vcpus=vcpus)
    try:
        got = irqs(m, 1)
        assert got["xenbus"] == 259
        percpu = [f"{name}{cpu}" for cpu in range(1, vcpus) for name in ("resched", "callfunc", "timer")]
        assert [got[name] for name in percpu] == list(range(260, 260 + len(percpu)))
        assert got["xencons"] == 260 + len(percpu)  # xencons_init: a device initcall, after them
        reqs = requests(m, "domU1")
        first_up = reqs.index("READ cpu/1/availability -> READ 'online'")
        assert reqs.index("WATCH device -> WATCH 'OK'") < reqs.index("WATCH cpu -> WATCH 'OK'") < first_up
        assert f"Brought up {vcpus} CPUs" in m.kernel(1).dmesg()  # cpu_hotplug.c:97
        assert m.kernel(1).cpu_online_map == set(range(vcpus))
    finally:
        m.shutdown()


def test_dom0_brings_its_vcpus_up_at_boot_before_xenbus(two: Machine) -> None:
    """smpboot.c:354 `if (is_initial_xendomain()) cpu_set(cpu, cpu_present_map)`: dom0's cpu1 is
    up (resched1 259, callfunc1 260, timer1 261) before xenbus_probe_init binds IRQ 262."""
    got = irqs(two, 0)
    assert [got[n] for n in ("resched1", "callfunc1", "timer1", "xenbus")] == [259, 260, 261, 262]


# -- 2. dom0 reads no cpu/N/availability ------------------------------------------------------------
def test_dom0_reads_no_cpu_availability(two: Machine) -> None:
    """cpu_hotplug.c:94 `if (!is_initial_xendomain())`: dom0 watches "cpu" but reads no
    cpu/N/availability; the domU reads one per possible vcpu."""
    dom0 = requests(two, "dom0")
    assert "WATCH cpu -> WATCH 'OK'" in dom0
    assert not [r for r in dom0 if r.startswith("READ cpu/")]
    assert [r for r in requests(two, "domU1") if r.startswith("READ cpu/")] == [
        "READ cpu/0/availability -> READ 'online'", "READ cpu/1/availability -> READ 'online'"]


# -- 3. the first xenstore requests follow the initcall levels ----------------------------------------
def test_the_notifiers_run_in_initcall_order(two: Machine) -> None:
    """xenbus_probe.c:1016 postcore_initcall(xenbus_probe_init) probes a domU at once; then
    cpu_hotplug.c:120 arch_initcall, reboot.c:263 subsys_initcall and balloon.c:576
    subsys_initcall (drivers/xen/Makefile links core/ before balloon/). dom0's notifiers queue on
    xenstore_chain in that order and xenbus_probe (xenbus_probe.c:856) runs them so."""
    order = ["WATCH device", "WATCH backend", "WATCH cpu",
             "READ control/platform-feature-multiprocessor-suspend", "WATCH control/shutdown",
             "WATCH control/sysrq", "WATCH memory/target"]
    for actor in ("dom0", "domU1"):
        seen = [r.split(" -> ")[0] for r in requests(two, actor)]
        assert [x for x in seen if x in order][:len(order)] == order, actor


def test_the_stages_are_the_initcall_levels() -> None:
    """init/main.c do_initcalls: postcore, arch, subsys, device, late (each level in link order)."""
    trace = Trace()
    hv = Hypervisor(trace=trace, bits=64)
    hv.domain_create(0, "Domain-0", vcpus=1, privileged=True, initdomain=True)
    k = XenLinuxKernel(hv, 0, trace=trace)
    assert [name for name, _ in k.boot_stages(initdomain=True)] == [
        "early IRQs", "xenbus init", "arch initcalls", "subsys initcalls", "device initcalls",
        "late initcalls"]


# -- 4. the rtc PIRQ is a fact of the kernel's config ----------------------------------------------------
def test_each_variant_names_its_config() -> None:
    """buildconfigs/linux-defconfig_xen0_x86_64:821 and _xenU_x86_64:497 "# CONFIG_RTC is not set"
    (L18); RHEL5's configs/kernel-2.6.18-x86_64-xen.config has CONFIG_RTC=y (-8.el5 and -274);
    all have CONFIG_HOTPLUG_CPU=y."""
    assert {v: (c[0].CONFIG_RTC, c[1].CONFIG_RTC) for v, c in KCONFIGS.items()} == {
        "L18": (False, False), "RH5-274": (True, True), "RH5-8.el5": (True, True)}
    assert all(c.CONFIG_HOTPLUG_CPU for pair in KCONFIGS.values() for c in pair)
    assert KCONFIGS["L18"][0].name == "linux-defconfig_xen0_x86_64"


@pytest.mark.parametrize(("variant", "rtc"), [("L18", False), ("RH5-274", True), ("RH5-8.el5", True)])
def test_dom0_binds_the_rtc_pirq_only_with_config_rtc(variant: str, rtc: bool) -> None:
    """drivers/char/rtc.c rtc_init (a device initcall; drivers/Makefile links char/ before xen/)
    binds PIRQ 8 before the console's VIRQ only if CONFIG_RTC is set: without it every later port
    of dom0 is one lower."""
    rig = Rig("2.6.18")
    k = rig.dom0
    assert isinstance(k, XenLinuxKernel)
    k.irq_variant = variant
    rig.boot(k)
    assert k.kconfig().CONFIG_RTC == rtc
    assert bool(k.evtchn.irq_info[8] & 0xFFFF) == rtc  # PIRQ 8 has a port only with the rtc driver
    assert ("rtc" in k.show_interrupts()) == rtc
    console = k.evtchn.irq_info[irqs_of(k)["console"]] & 0xFFFF
    i8042 = [k.evtchn.irq_info[i] & 0xFFFF for i in (12, 1)]
    acpi = k.evtchn.irq_info[9] & 0xFFFF
    assert console == acpi + 1 + rtc and i8042 == [console + 1, console + 2]


def irqs_of(k: XenLinuxKernel) -> dict[str, int]:
    """name -> IRQ of a kernel's /proc/interrupts."""
    out = {}
    for line in k.show_interrupts().splitlines():
        f = re.match(r"\s*(\d+):.*\s(\S+)$", line)
        if f:
            out[f.group(2)] = int(f.group(1))
    return out


# -- 5. /proc/xen ---------------------------------------------------------------------------------
def test_proc_xen_has_privcmd_capabilities_and_balloon(two: Machine) -> None:
    """privcmd/privcmd.c:273,277 (privcmd_init: privcmd 0400, capabilities 0400; capabilities_read
    says "control_d" only in dom0, privcmd.c:261) and balloon/balloon.c:549 (balloon 0644,
    balloon_read at bs.current_pages = start_info nr_pages, balloon.c:533)."""
    for dom in (two.dom0, two.domain(1)):
        listing = dom.run("ls -l /proc/xen")
        for mode, name in (("-r--------", "privcmd"), ("-r--------", "capabilities"),
                           ("-rw-r--r--", "balloon")):
            assert re.search(rf"^{re.escape(mode)} .* {name}$", listing, re.M), (dom, name)
    assert two.dom0.run("cat /proc/xen/capabilities").strip() == "control_d"
    assert two.domain(1).run("cat /proc/xen/capabilities").strip() == ""
    balloon = two.domain(1).run("cat /proc/xen/balloon").splitlines()
    assert balloon[0] == f"Current allocation: {256 * 1024:8d} kB"  # 256 MiB guest
    assert balloon[-1] == "Xen hard limit:          ??? kB"


# -- 6. watch tokens ------------------------------------------------------------------------------------
def test_static_watches_have_image_addresses_and_kmalloced_ones_direct_map_addresses(two: Machine) -> None:
    """xenbus_xs.c:603 token = "%lX" of the struct's address: the static be_watch/fe_watch
    (xenbus_probe_backend.c:240, xenbus_probe.c:701), cpu_watch (cpu_hotplug.c:88), shutdown/sysrq
    watches (reboot.c:210,215) and target_watch (balloon.c:428) live in the kernel image
    (0xffffffff80000000 up); a device's otherend_watch is kmalloc'd, in the direct map at
    __PAGE_OFFSET 0xffff880000000000 (include/asm-x86_64/mach-xen/asm/page.h:158)."""
    k = two.kernel(1)
    assert isinstance(k, XenLinuxKernel)
    static = {w.node: f"{w.addr:X}" for w in k.xs_state.watches if w.symbol}
    assert set(static) == {"device", "backend", "cpu", "control/shutdown", "control/sysrq", "memory/target"}
    assert all(t.startswith("FFFFFFFF80") for t in static.values())
    assert len(set(static.values())) == 6
    heap = [w for w in k.xs_state.watches if not w.symbol]
    assert heap and all(w.addr >= WATCH_ADDR_BASE and f"{w.addr:X}".startswith("FFFF8800") for w in heap)
    # a static watch's address is its place in the image, whatever order it registered in
    dom0 = two.kernel(0)
    assert isinstance(dom0, XenLinuxKernel)
    be0, be1 = dom0.xenbus_backend.watch, k.xenbus_backend.watch
    assert be0 is not None and be1 is not None
    assert be0.addr == be1.addr > STATIC_WATCH_ADDR_BASE


# -- 7. xenbus_probe's error paths ------------------------------------------------------------------
def test_be_watch_is_registered_even_when_the_backend_bus_failed() -> None:
    """xenbus_probe.c:853 calls xenbus_backend_probe_and_watch unconditionally, and
    xenbus_probe_backend.c:262 registers be_watch whatever xenbus_probe_devices returned."""
    rig = Rig("2.6.18")
    rig.up()
    k = rig.create_domU(1, faults=("bus_register_backend",))
    rig.boot(k, until="arch initcalls")
    assert isinstance(k, XenLinuxKernel) and k.xenbus_backend.error
    assert "backend" in [w.node for w in k.xs_state.watches]


def test_enosys_leaves_xen_store_mfn_and_start_info_store_mfn_set() -> None:
    """xenbus_probe.c:929 sets xen_store_mfn and xen_start_info->store_mfn before
    EVTCHNOP_alloc_unbound; on -ENOSYS (line 939, goto err) the page is freed but both keep its mfn."""
    rig = Rig("2.6.18", dom0_faults=("alloc_unbound_enosys",))
    k = rig.dom0
    assert isinstance(k, XenLinuxKernel)
    rig.boot(k, until="xenbus init")
    assert xenbus_probe_init(k) == -ENOSYS
    mfn = k.free_pages[-1].mfn
    assert k.xb.xen_store_mfn == rig.hv.domains[0].start_info.store_mfn == mfn
    assert k.xb.xen_store_evtchn == 0 and rig.hv.domains[0].start_info.store_evtchn == 0


# -- 8. boot lines ------------------------------------------------------------------------------------------
def test_the_boot_lines_2618_prints(two: Machine) -> None:
    """evtchn/evtchn.c:544 "Event-channel device installed." (evtchn_init), balloon.c:530
    "xen_mem: Initialising balloon driver."; 2.6.18 prints no grant-table line (core/gnttab.c
    gnttab_init has no printk) and no Xen version banner in these paths."""
    for domid in (0, 1):
        text = two.kernel(domid).dmesg()
        assert "Event-channel device installed." in text and "xen_mem: Initialising balloon driver." in text
        assert "Grant table" not in text and "Xen version" not in text


# -- 9. 2.6.18's own names and reads ---------------------------------------------------------------
def test_the_trace_uses_2618_function_names(two: Machine) -> None:
    """blkfront.c talk_to_backend/setup_blkring/connect, netfront.c setup_device/talk_to_backend,
    blkback/xenbus.c blkback_probe, blkback/vbd.c vbd_create, netback/interface.c netif_alloc/
    netif_map/netif_disconnect, xenbus_probe.c:218 otherend_changed, mach-xen system.h __sti."""
    names = {s.function for s in two.trace.steps if s.actor in ("dom0", "domU1")}
    assert {"talk_to_backend", "setup_blkring", "setup_device", "connect", "blkback_probe", "vbd_create",
            "netif_alloc", "netif_map", "otherend_changed", "local_irq_enable", "__cpu_up"} <= names
    assert not names & {"xen_setup_cpu_irqs", "xen_irq_enable", "xenbus_setup_ring", "talk_to_blkback",
                        "blkfront_connect", "xen_blkbk_probe", "xen_vbd_create", "xenbus_otherend_changed"}
    assert not [n for n in names if n.startswith("xenvif_")]


def test_netback_and_blkback_read_what_2618_reads(two: Machine) -> None:
    """netback/xenbus.c:359-362 gathers tx-ring-ref, rx-ring-ref, event-channel (no
    event-channel-tx/-rx), then request-rx-copy (370) and the feature flags (384-411);
    blkback/xenbus.c:479 gathers ring-ref and event-channel before protocol (489)."""
    reads = [r.split(" -> ")[0].removeprefix("READ ") for r in requests(two, "dom0") if r.startswith("READ ")]
    fe = "/local/domain/1/device"
    vif = [r.removeprefix(f"{fe}/vif/0/") for r in reads if r.startswith(f"{fe}/vif/0/")]
    assert vif[-8:] == ["tx-ring-ref", "rx-ring-ref", "event-channel", "request-rx-copy", "feature-rx-notify",
                        "feature-sg", "feature-gso-tcpv4", "feature-no-csum-offload"]
    assert not [r for r in reads if "event-channel-" in r]
    vbd = [r.removeprefix(f"{fe}/vbd/51712/") for r in reads if r.startswith(f"{fe}/vbd/51712/")]
    ring = vbd.index("ring-ref")
    assert vbd[ring:ring + 3] == ["ring-ref", "event-channel", "protocol"]


def test_the_cpu_watch_runs_on_its_own_thread_and_sysrq_commits(two: Machine) -> None:
    """cpu_hotplug.c:91 `.flags = XBWF_new_thread` (xenbus_xs.c:759: a "xenwatch_cb" thread); reboot.c:190
    `if (!xenbus_scanf(...))` never holds (xenbus_scanf returns -errno, -ERANGE or a count), so
    sysrq_handler ends its transaction with commit ("T") even when control/sysrq is missing."""
    k = two.kernel(1)
    assert isinstance(k, XenLinuxKernel)
    assert k.static_watches["cpu_watch"].flags == 1
    steps = [s for s in two.trace.steps if s.actor == "domU1" and s.function == "xenwatch_thread"]
    assert any(s.summary.startswith("cpu (token") for s in steps)
    dom0 = requests(two, "dom0")
    sysrq = dom0.index("READ control/sysrq tx 2 -> ERROR 'ENOENT'")
    assert dom0[sysrq + 1].startswith("TRANSACTION_END T tx 2")

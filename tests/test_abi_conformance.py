"""xenlab.abi against the real C headers (Debian libxen-dev, Xen 4.17).

How it works: the test walks xenlab.abi's own data -- every integer constant, every
IntEnum member, every typedef and every ctypes Structure with each (nested) field --
and writes a C program that prints the same names out of the real headers
(``offsetof``/``sizeof`` for layouts). It compiles it with the system cc in a
temporary folder and compares. The x86_32 layouts (shared_info and vcpu_info of a
32-bit PV guest) come from ``cc -m32 -S``: no 32-bit libc is needed because the
numbers are read out of the generated assembly.

So no value of ours is compared with another value of ours: change any one of them
and ``test_every_abi_value_matches_the_headers`` fails (the last test proves it).

What the 4.17 headers lack, and so cannot be checked here (``NOT_IN_4_17``): the
XS_GET_FEATURE..XS_SET_QUOTA numbers (23..26, numbered in xs_wire.h from Xen 4.21),
the master count XS_TYPE_COUNT = 27 (4.17 says 23, kept as XS_TYPE_COUNT_4_17), the
WATCHDEPTH and DOMID_ANY server feature bits (master only), and the hypervisor's
private ECS_* port states (xen/include/xen/sched.h is not a public header).
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from enum import IntEnum
from pathlib import Path
from types import ModuleType

import pytest
from conftest import require_deb

from xenlab.abi import domctl, event_channel, grant_table, hvm, shared_info, start_info, xenbus, xs_wire
from xenlab.abi import errno as abi_errno

MODULES: tuple[ModuleType, ...] = (xs_wire, event_channel, xenbus, start_info, shared_info, domctl,
                                   grant_table, hvm, abi_errno)

HEADERS = """\
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <xen/xen.h>
#include <xen/errno.h>
#include <xen/event_channel.h>
#include <xen/grant_table.h>
#include <xen/hvm/params.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/e820.h>
#include <xen/arch-x86/cpuid.h>
#include <xen/io/xenbus.h>
#include <xen/io/xs_wire.h>
#include <xen/sched.h>
#include <xen/domctl.h>
#include <xen/arch-x86/xen-mca.h>
#include <xenctrl.h>
#include <xenguest.h>
"""
#: The i386 build has no 32-bit libc: only the freestanding headers and Xen's own.
HEADERS_32 = "\n".join(line for line in HEADERS.splitlines() if "errno.h>" not in line
                       and "xenctrl.h" not in line and "xenguest.h" not in line) + "\n"
HEADER_FILES = ("xen.h", "event_channel.h", "grant_table.h", "hvm/params.h", "hvm/hvm_op.h", "io/xenbus.h",
                "io/xs_wire.h",
                "errno.h", "arch-x86/xen.h", "arch-x86/xen-x86_64.h", "arch-x86/xen-x86_32.h")

#: Our names whose C spelling differs.
C_NAME = {
    "XS_TYPE_COUNT_4_17": "XS_TYPE_COUNT",
    "XSD_SOCKMSG_SIZE": "sizeof(struct xsd_sockmsg)",
    "PAGE_SIZE": "XC_PAGE_SIZE",
}

#: Our names that xenlab models but the 4.17 headers do not have (see the module docstring).
NOT_IN_4_17 = {
    "XS_GET_FEATURE": "numbered in xs_wire.h from Xen 4.21",
    "XS_SET_FEATURE": "numbered in xs_wire.h from Xen 4.21",
    "XS_GET_QUOTA": "numbered in xs_wire.h from Xen 4.21",
    "XS_SET_QUOTA": "numbered in xs_wire.h from Xen 4.21",
    "XENSTORE_SERVER_FEATURE_WATCHDEPTH": "xs_wire.h master only",
    "XENSTORE_SERVER_FEATURE_DOMID_ANY": "xs_wire.h master only",
    **{s.name: "hypervisor-private (xen/include/xen/sched.h)" for s in event_channel.ECS},
}
#: Our names whose value is master's, not 4.17's (4.17's value is checked under another name).
NEWER_THAN_4_17 = {"XS_TYPE_COUNT": "the master count (27); 4.17's is checked as XS_TYPE_COUNT_4_17"}
#: Names the header defines only under #ifdef __XEN__: their value is read from the header text.
XEN_ONLY_DEFINES = {"EVTCHNOP_reset_cont": "event_channel.h"}
#: errno names xen/errno.h keeps to the hypervisor (#ifdef __XEN__): checked against Linux's only.
XEN_INTERNAL_ERRNOS = {"EINTR"}
#: Names printed from the 32-bit build (everything else: x86_64).
ONLY_32 = {"EVTCHN_2L_NR_CHANNELS_32": "EVTCHN_2L_NR_CHANNELS"}
ARCH_SUFFIX = {"_x86_64": 64, "_x86_32": 32}


def _is_c_constant(name: str, value: object) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)
            and (name.startswith("__HYPERVISOR_") or name[:1].isupper()))


def abi_checks() -> list[tuple[str, int, str, int]]:
    """(key, bits, C expression, our value) for every value xenlab.abi states."""
    checks: list[tuple[str, int, str, int]] = []
    for mod in MODULES:
        for name, value in sorted(vars(mod).items()):
            if name in NOT_IN_4_17 or name in NEWER_THAN_4_17 or name in XEN_ONLY_DEFINES:
                continue
            if isinstance(value, type) and issubclass(value, ctypes.Structure) \
                    and value.__module__ == mod.__name__ and not name.startswith("_"):
                checks += struct_checks(value)
            elif isinstance(value, type) and issubclass(value, ctypes._SimpleCData):
                checks.append((f"sizeof({name})", 64, f"sizeof({name})", ctypes.sizeof(value)))
            elif _is_c_constant(name, value) and not (isinstance(value, IntEnum) and value.name != name):
                assert isinstance(value, int)
                if name in ONLY_32:
                    checks.append((name, 32, ONLY_32[name], int(value)))
                elif name == "EVTCHN_2L_NR_CHANNELS_64":
                    checks.append((name, 64, "EVTCHN_2L_NR_CHANNELS", int(value)))
                elif mod is abi_errno:  # Xen's errno.h and the Linux numbering must both agree
                    if name not in XEN_INTERNAL_ERRNOS:
                        checks.append((f"XEN_{name}", 64, f"XEN_{name}", int(value)))
                    checks.append((name, 64, name, int(value)))
                else:
                    checks.append((name, 64, C_NAME.get(name, name), int(value)))
    for idx in (0, 5, 1023, 1024, 1029, 0xFFFFFFFF):
        checks.append((f"MASK_XENSTORE_IDX({idx:#x})", 64, f"MASK_XENSTORE_IDX({idx:#x}U)",
                       xs_wire.MASK_XENSTORE_IDX(idx)))
    for bits in (64, 32):
        checks.append((f"EVTCHN_2L_NR_CHANNELS/{bits}", bits, "EVTCHN_2L_NR_CHANNELS",
                       event_channel.EVTCHN_2L_NR_CHANNELS(bits)))
    return checks


def struct_checks(cls: type[ctypes.Structure]) -> list[tuple[str, int, str, int]]:
    """sizeof the struct, and offsetof + sizeof of every field, nested ones included."""
    cname, bits = cls.__name__, 64
    for suffix, b in ARCH_SUFFIX.items():
        if cname.endswith(suffix):
            cname, bits = cname[: -len(suffix)], b
    out = [(f"sizeof(struct {cls.__name__})", bits, f"sizeof(struct {cname})", ctypes.sizeof(cls))]

    def walk(t: type, path: str, base: int) -> None:
        for fname, *_ in t._fields_:  # type: ignore[attr-defined]
            desc = getattr(t, fname)
            ftype = dict((f[0], f[1]) for f in t._fields_)[fname]  # type: ignore[attr-defined]
            p, off = f"{path}{fname}", base + desc.offset
            out.append((f"offsetof({cls.__name__}, {p})", bits, f"offsetof(struct {cname}, {p})", off))
            out.append((f"sizeof({cls.__name__}.{p})", bits, f"sizeof(((struct {cname} *)0)->{p})",
                        desc.size))
            aggregate = (ctypes.Structure, ctypes.Union)
            if issubclass(ftype, aggregate):
                walk(ftype, f"{p}.", off)
            elif issubclass(ftype, ctypes.Array) and issubclass(ftype._type_, aggregate):
                walk(ftype._type_, f"{p}[1].", off + ctypes.sizeof(ftype._type_))

    walk(cls, "", 0)
    return out


def _cc(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["cc", "-D__XEN_TOOLS__", *args], cwd=cwd, capture_output=True, text=True)


def c_values_64(checks: list[tuple[str, int, str, int]], tmp: Path) -> tuple[dict[str, int], list[tuple]]:
    """Compile and run the x86_64 probe: the value of every check, and the xsd_errors table."""
    lines = [HEADERS, "#include <stdio.h>", "int main(void)", "{"]
    for key, bits, expr, _ in checks:
        if bits == 64:
            lines.append(f'    printf("%s=%lld\\n", "{key}", (long long)({expr}));')
    lines.append("    for (size_t i = 0; i < sizeof(xsd_errors) / sizeof(xsd_errors[0]); i++)")
    lines.append('        printf("xsd_errors %zu %s %d\\n", i, xsd_errors[i].errstring,')
    lines.append('               xsd_errors[i].errnum);')
    lines += ["    return 0;", "}"]
    (tmp / "abi_probe.c").write_text("\n".join(lines) + "\n")
    built = _cc(["-Wall", "-o", "abi_probe", "abi_probe.c"], tmp)
    assert built.returncode == 0, built.stderr
    run = subprocess.run([str(tmp / "abi_probe")], capture_output=True, text=True, check=True)
    values: dict[str, int] = {}
    table = []
    for line in run.stdout.splitlines():
        if line.startswith("xsd_errors "):
            _, i, name, num = line.split()
            table.append((int(i), name, int(num)))
        else:
            key, _, v = line.rpartition("=")
            values[key] = int(v)
    return values, table


def c_values_32(checks: list[tuple[str, int, str, int]], tmp: Path) -> dict[str, int] | None:
    """The 32-bit checks read out of ``cc -m32 -S`` (None if this compiler cannot target i386)."""
    mine = [(key, expr) for key, bits, expr, _ in checks if bits == 32]
    body = ",\n".join(f"    (long long)({expr})" for _, expr in mine)
    (tmp / "abi_probe32.c").write_text(f"{HEADERS_32}\nconst long long probe_values[] = {{\n{body}\n}};\n")
    out = _cc(["-m32", "-ffreestanding", "-S", "-o", "abi_probe32.s", "abi_probe32.c"], tmp)
    if out.returncode != 0:
        return None
    data = bytearray()
    asm = (tmp / "abi_probe32.s").read_text().splitlines()
    start = asm.index("probe_values:") + 1
    sizes = {".long": 4, ".quad": 8, ".value": 2, ".short": 2, ".byte": 1}
    for line in asm[start:]:
        parts = line.split()
        if not parts or parts[0] not in (*sizes, ".zero"):
            break
        if parts[0] == ".zero":
            data += bytes(int(parts[1]))
        else:
            data += (int(parts[1]) & (1 << 8 * sizes[parts[0]]) - 1).to_bytes(sizes[parts[0]], "little")
    nums = [int.from_bytes(data[i: i + 8], "little", signed=True) for i in range(0, len(data), 8)]
    assert len(nums) == len(mine)
    return {key: n for (key, _), n in zip(mine, nums, strict=True)}


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """What the real headers say, for every check xenlab.abi implies."""
    require_deb("libxen-dev")
    if shutil.which("cc") is None:
        require_deb("gcc")  # skips, naming the package that brings the C compiler
    tmp = tmp_path_factory.mktemp("abi")
    checks = abi_checks()
    values, table = c_values_64(checks, tmp)
    v32 = c_values_32(checks, tmp)
    if v32 is not None:
        values.update(v32)
    return {"values": values, "table": table, "has32": v32 is not None}


def mismatches(real: dict) -> list[str]:
    """Every check whose value differs from the header's (or that the header lacks)."""
    out = []
    for key, bits, expr, ours in abi_checks():
        if bits == 32 and not real["has32"]:
            continue
        theirs = real["values"].get(key)
        if theirs != ours:
            out.append(f"{key}: xenlab says {ours}, the headers say {theirs} ({expr})")
    return out


def test_every_abi_value_matches_the_headers(real: dict) -> None:
    assert mismatches(real) == []


def test_the_probe_covers_every_kind_of_fact(real: dict) -> None:
    """A lesson in what is checked: constants, enums, typedefs, struct offsets, both word sizes."""
    v = real["values"]
    assert v["XENSTORE_RING_SIZE"] == 1024
    assert v["offsetof(xenstore_domain_interface, error)"] == 2072
    assert v["offsetof(start_info, store_mfn)"] == 56 and v["offsetof(start_info, console.domU.evtchn)"] == 80
    assert v["offsetof(shared_info_x86_64, vcpu_info[1].evtchn_pending_sel)"] == 64 + 8
    assert v["offsetof(evtchn_status, u.interdomain.port)"] == 16 + 4
    assert v["XenbusStateReconfigured"] == 8 and v["sizeof(domid_t)"] == 2
    # the FIFO ABI: 2^17 ports, 16 queues, the control block's head[] after READY and a reserved word
    assert v["EVTCHN_FIFO_NR_CHANNELS"] == 131072 and v["EVTCHN_FIFO_MAX_QUEUES"] == 16
    assert v["offsetof(evtchn_fifo_control_block, head)"] == 8
    assert v["sizeof(struct evtchn_fifo_control_block)"] == 72 and v["sizeof(event_word_t)"] == 4
    assert v["sizeof(struct evtchn_init_control)"] == 24
    if not real["has32"]:
        pytest.skip("cc cannot target i386 here (-m32): the x86_32 layouts were not checked")
    assert v["offsetof(shared_info_x86_32, evtchn_mask)"] == 2176
    assert v["offsetof(vcpu_info_x86_32, evtchn_pending_sel)"] == 4
    assert v["EVTCHN_2L_NR_CHANNELS_32"] == 1024
    assert v["offsetof(start_info_x86_32, store_mfn)"] == 44
    assert v["offsetof(start_info_x86_32, console.domU.evtchn)"] == 56


def test_xsd_errors_table_in_wire_order(real: dict) -> None:
    """The whole error table, in order: names and errno numbers (E2BIG from 4.4, EPERM from 4.17)."""
    theirs = [(name, num) for _, name, num in real["table"]]
    assert theirs == list(xs_wire.XSD_ERRORS)
    assert theirs[-2:] == [("E2BIG", 7), ("EPERM", 1)]
    assert xs_wire.XSD_ERRORS_2_6_18 == xs_wire.XSD_ERRORS[: [n for n, _ in theirs].index("EISCONN") + 1]


def test_xen_only_defines_match_the_header_text() -> None:
    """EVTCHNOP_reset_cont hides behind #ifdef __XEN__ (a guest never builds with it): read the #define."""
    require_deb("libxen-dev")
    for name, header in XEN_ONLY_DEFINES.items():
        text = Path("/usr/include/xen", header).read_text()
        m = re.search(rf"#ifdef __XEN__\n#define {name}\s+(\d+)", text)
        assert m is not None, f"{name} is no longer a __XEN__-only define in {header}"
        assert int(m.group(1)) == getattr(event_channel, name)


def test_what_4_17_lacks_is_really_absent() -> None:
    """Every name we skip is absent from the 4.17 headers (if Debian adds one, check it instead)."""
    require_deb("libxen-dev")
    text = "".join(Path("/usr/include/xen", f).read_text() for f in HEADER_FILES
                   if Path("/usr/include/xen", f).exists())
    present = [name for name in NOT_IN_4_17 if re.search(rf"\b{name}\b", text)]
    assert present == []


def test_changing_any_one_value_is_caught(real: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison is against the headers, so a single wrong number of ours shows up."""
    monkeypatch.setattr(xs_wire, "XENSTORE_PAYLOAD_MAX", 4095)
    monkeypatch.setattr(event_channel, "EVTCHNOP_unmask", 10)
    wrong = mismatches(real)
    assert any(m.startswith("XENSTORE_PAYLOAD_MAX:") for m in wrong)
    assert any(m.startswith("EVTCHNOP_unmask:") for m in wrong)
    assert len(wrong) == 2


def test_a_wrong_field_offset_is_caught(real: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Swap two ring indices in a copy of the struct: the offsets no longer match the header."""
    fields = list(xs_wire.xenstore_domain_interface._fields_)
    i, j = [n for n, _ in fields].index("req_cons"), [n for n, _ in fields].index("req_prod")
    fields[i], fields[j] = fields[j], fields[i]
    bad = type("xenstore_domain_interface", (ctypes.Structure,), {"_fields_": fields})
    bad.__module__ = xs_wire.__name__
    monkeypatch.setattr(xs_wire, "xenstore_domain_interface", bad)
    wrong = mismatches(real)
    assert sorted(m.split(":")[0] for m in wrong) == [
        "offsetof(xenstore_domain_interface, req_cons)", "offsetof(xenstore_domain_interface, req_prod)"]


#: (header, how to find its names, our module, names we leave out and why)
FAMILIES = [
    ("errno.h", r"XEN_ERRNO\((E[A-Z0-9]+),", abi_errno,
     {"EWOULDBLOCK": "alias of EAGAIN", "EDEADLOCK": "alias of EDEADLK",
      "ERESTART": "Xen-internal (__XEN__)"}),
    ("event_channel.h", r"#define (EVTCHNOP_\w+|EVTCHNSTAT_\w+|EVTCHN_FIFO_\w+|BIND_PIRQ__\w+)",
     event_channel,
     {"EVTCHN_FIFO_WORD": "a macro taking arguments"}),
    ("xen.h", r"#define (VIRQ_\w+|DOMID_\w+|SIF_\w+|__HYPERVISOR_event_channel_op\w*)\b", event_channel,
     {}),
    ("io/xs_wire.h", r"#define (XENSTORE_\w+)|^\s+(XS_[A-Z_]+)", xs_wire,
     {"XS_WRITE_NONE": "strings of the old XS_WRITE flags", "XS_WRITE_CREATE": "idem",
      "XS_WRITE_CREATE_EXCL": "idem", "XENSTORE_RING_IDX": "a typedef, checked as sizeof"}),
    ("io/xenbus.h", r"^\s+(XenbusState\w+)", xenbus, {}),
    ("grant_table.h", r"#define (GNTTAB_RESERVED_\w+|GNTTABOP_\w+|GNTST_\w+|GTF_\w+|GNTMAP_\w+)\b",
     grant_table,
     {"GNTTABOP_error_msgs": "a string table", "GNTMAP_guest_avail_mask": "bits left to the guest"}),
    ("domctl.h", r"#define (XEN_DOMINF_\w+)", domctl, {}),
    ("sched.h", r"#define (SHUTDOWN_\w+)", domctl, {}),
]


@pytest.mark.parametrize("header,pattern,module,left_out", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_nothing_in_these_header_families_is_missing(header: str, pattern: str, module: ModuleType,
                                                     left_out: dict[str, str]) -> None:
    """The other direction: every name of these families in the header is in xenlab.abi (or excused)."""
    require_deb("libxen-dev")
    text = Path("/usr/include/xen", header).read_text()
    names = {n for m in re.finditer(pattern, text, re.M) for n in m.groups() if n}
    ours = set(vars(event_channel)) | set(vars(start_info)) | set(vars(module))
    assert sorted(names - ours - set(left_out)) == []

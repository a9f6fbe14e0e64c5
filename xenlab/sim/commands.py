"""The commands a learner runs inside a simulated domain, printing what the real ones print.

``run_command(machine, domid, "cat /proc/interrupts")`` returns a ``CommandResult``
(the text and the exit status). Each command reads the model, never a capture:
/proc and /sys come from the domain's kernel (its ``proc`` entries and driver model),
the xenstore tools go through a real xenstored connection (the Unix socket in dom0, the
guest kernel's xenbus in a domU), ``lsevtchn`` and ``xl list`` ask the hypervisor.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xenlab.linux.sysfs import sysfs
from xenlab.sim.xsring import decode_ring, xsring_line
from xenlab.sim.xstools import ToolError, xenstore_tool

if TYPE_CHECKING:
    from xenlab.linux.kernel import Kernel, ProcEntry
    from xenlab.sim.machine import Machine

GNU_LS_SHORT_OPTIONS = "abcdfghiklmnopqrstuvwxABCDFGHILNQRSTUXZ1"  # coreutils ls.c short_options letters
LS_DATE = "Jan  1 00:00"  # the lab's clock starts at the epoch; timestamps are not part of the lesson


@dataclass
class CommandResult:
    """What a command printed (stdout and stderr, in order) and its exit status."""

    text: str
    rc: int = 0

    def __str__(self) -> str:
        return self.text


class CommandError(Exception):
    """A command failed the way the real one fails: *text* is its message, *rc* its status."""

    def __init__(self, text: str, rc: int = 1) -> None:
        super().__init__(text)
        self.text = text
        self.rc = rc


@dataclass
class Shell:
    """What a command sees: the machine, the domain it runs in, and its environment (VAR=value prefixes)."""

    machine: Machine
    domid: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def kernel(self) -> Kernel:
        """The kernel of this domain."""
        return self.machine.kernel(self.domid)


# -- file system views ---------------------------------------------------------------
def _proc_entry(sh: Shell, path: str) -> ProcEntry | None:
    rel = path.removeprefix("/proc/")
    proc = sh.kernel.proc
    return proc.get(rel) or proc.get(path) or proc.get("/" + rel)


def _mode_string(mode: int, kind: str = "-") -> str:
    bits = "rwxrwxrwx"
    return kind + "".join(b if mode & (1 << (8 - i)) else "-" for i, b in enumerate(bits))


def ls_columns(names: list[str], width: int = 80) -> str:
    """GNU ls -C: as many columns as fit in *width*, filled top to bottom, two spaces apart."""
    if not names:
        return ""
    best = [names]
    for cols in range(2, len(names) + 1):
        rows = -(-len(names) // cols)
        grid = [names[c * rows:(c + 1) * rows] for c in range(cols)]
        grid = [g for g in grid if g]
        widths = [max(len(n) for n in col) + 2 for col in grid]
        if sum(widths) - 2 > width:
            break
        best = grid
    rows = len(best[0])
    widths = [max(len(n) for n in col) + 2 for col in best]
    out = []
    for r in range(rows):
        cells = [col[r] for col in best if r < len(col)]
        line = "".join(c.ljust(widths[i]) for i, c in enumerate(cells[:-1])) + cells[-1]
        out.append(line)
    return "\n".join(out)


def _list_dir(sh: Shell, path: str) -> list[tuple[str, int, str, str]] | None:
    """(name, mode, kind, link target) of each entry of a directory the lab models, or None."""
    path = path.rstrip("/") or "/"
    if path == "/proc/xen":
        entries = []
        for key, entry in sh.kernel.proc.items():
            rel = key.removeprefix("/proc/").removeprefix("/")
            if rel.startswith("xen/") and "/" not in rel[4:]:
                entries.append((rel[4:], entry.mode & 0o777, "-", ""))
        return sorted(entries)
    if path.startswith("/sys/"):
        names = sysfs_listdir(sh.kernel, path)
        if names is None:
            return None
        view = sysfs(sh.kernel)
        out = []
        for n in sorted(names):
            kind = view.kind(f"{path}/{n}")
            if kind == "link":
                out.append((n, 0o777, "l", view.readlink(f"{path}/{n}")))
            elif kind == "file":
                out.append((n, 0o644, "-", ""))
            else:
                out.append((n, 0o755, "d", ""))
        return out
    return None


def sysfs_listdir(kernel: Kernel, path: str) -> list[str] | None:
    """The names in a sysfs directory of *kernel*'s driver model (None if it does not exist)."""
    try:
        return sysfs(kernel).listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def sysfs_read(kernel: Kernel, path: str) -> str | None:
    """The text of a sysfs attribute (None if it does not exist)."""
    try:
        return sysfs(kernel).read(path)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


# -- the commands ------------------------------------------------------------------
def _file_mode(sh: Shell, path: str) -> int | None:
    """The mode of a /proc entry or sysfs attribute the lab models (None: no such file)."""
    if path.startswith("/proc/"):
        entry = _proc_entry(sh, path)
        return None if entry is None else entry.mode & 0o777
    if path.startswith("/sys/") and sysfs_read(sh.kernel, path) is not None:
        return 0o644
    return None


def cmd_cat(sh: Shell, argv: list[str]) -> str:
    """cat FILE...: /proc entries and sysfs attributes; a bad operand is reported and cat goes on."""
    if len(argv) < 2:
        raise CommandError("cat: missing operand (the lab's cat needs a file)")
    out: list[str] = []
    failed = False
    for path in argv[1:]:
        text = None
        if path.startswith("/proc/"):
            entry = _proc_entry(sh, path)
            text = None if entry is None else entry.read()
        elif path.startswith("/sys/"):
            text = sysfs_read(sh.kernel, path)
        if text is None:
            failed = True
            why = "Is a directory" if _list_dir(sh, path) is not None else "No such file or directory"
            where = "" if path.startswith(("/proc/", "/sys/")) else " (the lab has /proc and /sys)"
            out.append(f"cat: {path}: {why}{where}")
            continue
        out.append(text[:-1] if text.endswith("\n") else text)
    if failed:
        raise CommandError("\n".join(out))
    return "\n".join(out)


def cmd_ls(sh: Shell, argv: list[str]) -> str:
    """ls [-l] PATH...: /proc/xen and /sys directories (and files in them), files first as GNU ls does."""
    flags = "".join(a[1:] for a in argv[1:] if a.startswith("-"))
    for f in flags:
        if f not in GNU_LS_SHORT_OPTIONS:
            raise CommandError(f"ls: invalid option -- '{f}'\nTry 'ls --help' for more information.", rc=2)
        if f != "l":
            raise CommandError(f"ls: option -{f}: the lab's ls models -l only", rc=2)
    paths = [a for a in argv[1:] if not a.startswith("-")]
    if not paths:
        raise CommandError("ls: the lab has no working directory; name one, e.g. ls /proc/xen", rc=2)
    errors: list[str] = []
    files: list[tuple[str, int, str, str]] = []
    dirs: list[tuple[str, list[tuple[str, int, str, str]]]] = []
    for path in paths:
        entries = _list_dir(sh, path)
        mode = _file_mode(sh, path) if entries is None else None
        if entries is not None:
            dirs.append((path, entries))
        elif mode is not None:
            files.append((path, mode, "-", ""))
        else:
            errors.append(f"ls: cannot access '{path}': No such file or directory")
    out: list[str] = []

    def listing(entries: list[tuple[str, int, str, str]], total: bool) -> None:
        if "l" in flags:
            if total:
                out.append("total 0")
            for name, mode, kind, target in entries:
                links = 2 if kind == "d" else 1
                arrow = f" -> {target}" if target else ""
                out.append(f"{_mode_string(mode, kind)} {links} root root 0 {LS_DATE} {name}{arrow}")
        elif entries:
            out.append(ls_columns([e[0] for e in entries]))

    listing(files, total=False)
    for i, (path, entries) in enumerate(dirs):
        if len(paths) > 1:
            out.append(("\n" if i or files else "") + f"{path}:")
        listing(entries, total=True)
    if errors:
        raise CommandError("\n".join(errors + out), rc=2)
    return "\n".join(out)


def cmd_dmesg(sh: Shell, argv: list[str]) -> str:
    """dmesg: the kernel log."""
    return sh.kernel.dmesg()


def cmd_xenstore(sh: Shell, argv: list[str]) -> str:
    """xenstore-ls/-read/-write/-list/-rm/-exists over this domain's xenstore connection.

    In dom0 the tools use xenstored's socket; with ``XENSTORED_PATH=/dev/xen/xenbus`` they go
    through the kernel and dom0's store ring instead (what libxenstore falls back to when
    there is no socket), so the ring indices move.
    """
    from xenlab.base.sched import Deadlock

    via_kernel = sh.env.get("XENSTORED_PATH") == "/dev/xen/xenbus"
    try:
        xs = sh.machine.xs_client(sh.domid, via_kernel=via_kernel)
    except RuntimeError as e:
        raise CommandError(f"{argv[0]}: {e}") from e
    try:
        return xenstore_tool(xs, argv)
    except ToolError as e:
        raise CommandError(e.text, e.rc) from e
    except Deadlock as e:
        raise CommandError(f"{argv[0]}: no reply on the store ring (no xenstored serves it): the real client "
                           "blocks in /dev/xen/xenbus in state D until one does") from e


def _strtol(text: str) -> int:
    """strtol(text, NULL, 10): optional blanks and sign, then the leading digits; 0 if none."""
    m = re.match(r"\s*([+-]?\d+)", text)
    return int(m.group(1)) if m else 0


def cmd_lsevtchn(sh: Shell, argv: list[str]) -> str:
    """lsevtchn [DOMID]: the domain's event channels as Xen reports them (tools/xcutils/lsevtchn.c)."""
    if sh.domid != 0:
        raise CommandError("lsevtchn: xc_interface_open failed: only dom0 has /dev/xen/privcmd here")
    from xenlab.sim.lsevtchn import lsevtchn

    dom = _strtol(argv[1]) if len(argv) > 1 else 0  # lsevtchn.c: strtol(argv[1], NULL, 10)
    if dom not in sh.machine.hv.domains:
        return ""
    return lsevtchn(sh.machine.hv, dom).rstrip("\n")


def cmd_xl(sh: Shell, argv: list[str]) -> str:
    """xl list | xl destroy DOMAIN: the domains (xl_list.c), or tear a guest down (xl_vmcontrol.c)."""
    if sh.domid != 0:
        raise CommandError("xl: command not found (xl runs in dom0)", rc=127)
    if argv[1:] == ["list"]:
        return xl_list(sh.machine)
    if len(argv) == 3 and argv[1] == "destroy":
        m = sh.machine
        by_name = {m.domain_name(d): d for d in m.domains}
        target = by_name.get(argv[2], int(argv[2]) if argv[2].isdigit() else -1)
        if target not in m.domains or target == 0:
            raise CommandError(f"{argv[2]} is an invalid domain identifier (rc=-6)")
        m.destroy_domU(target)
        return ""
    raise CommandError("xl: the lab knows 'xl list' and 'xl destroy DOMAIN'")


def xl_list(m: Machine) -> str:
    """The table `xl list` prints."""
    lines = ["Name                                        ID   Mem VCPUs\tState\tTime(s)"]
    for domid in sorted(m.hv.domains):
        name = m.domain_name(domid)
        state = "r-----" if domid == 0 else "-b----"
        secs = m.cpu_time_ns(domid) / 1e9
        lines.append(f"{name:<40} {domid:5d} {m.memory_mb(domid):5d} {m.vcpus(domid):5d}"
                     f"     {state}  {secs:8.1f}")
    return "\n".join(lines)


def cmd_xsring(sh: Shell, argv: list[str]) -> str:
    """xsring [-d] [LABEL]: the indices of this domain's store ring (-d: and the messages in it)."""
    intf = sh.machine.store_interface(sh.domid)
    if intf is None:
        raise CommandError("xsring: this domain has no store page mapped yet")
    args = [a for a in argv[1:] if a != "-d"]
    label = args[0] if args else ("dom0" if sh.domid == 0 else f"domU{sh.domid}")
    lines = [xsring_line(label, intf)]
    if "-d" in argv[1:]:
        page = sh.kernel.xen_store_page()
        assert page is not None  # store_interface found it
        lines += decode_ring(page.buf, intf)
    return "\n".join(lines)


COMMANDS: dict[str, Callable[[Shell, list[str]], str]] = {
    "cat": cmd_cat,
    "dmesg": cmd_dmesg,
    "ls": cmd_ls,
    "lsevtchn": cmd_lsevtchn,
    "xenstore-exists": cmd_xenstore,
    "xenstore-list": cmd_xenstore,
    "xenstore-ls": cmd_xenstore,
    "xenstore-read": cmd_xenstore,
    "xenstore-rm": cmd_xenstore,
    "xenstore-write": cmd_xenstore,
    "xl": cmd_xl,
    "xsring": cmd_xsring,
}

#: What `xenlab exec --list` shows as examples.
EXAMPLES = ("cat /proc/interrupts", "cat /proc/xen/xsd_port", "ls -l /proc/xen", "ls /sys/bus/xen/devices",
            "ls /sys/bus/xen-backend/devices", "cat /sys/bus/xen/devices/vif-0/state", "xenstore-ls -f",
            "xenstore-ls -f -p", "xenstore-read name", "xenstore-write /a 1", "lsevtchn 0", "xl list",
            "xl destroy xenlab-domu",
            "dmesg", "xsring", "xsring -d")


def command_name(cmdline: str) -> str:
    """The program a command line runs (after any VAR=value prefixes); "" if none."""
    try:
        argv = shlex.split(cmdline)
    except ValueError:
        return ""
    while argv and "=" in argv[0] and argv[0].split("=", 1)[0].isidentifier():
        argv.pop(0)
    return argv[0] if argv else ""


def unknown_command_message(name: str) -> str:
    """The one-line error for a command the lab does not have."""
    return f"xenlab: unknown command '{name}'; valid commands: {', '.join(sorted(COMMANDS))}"


def run_command(machine: Machine, domid: int, cmdline: str) -> CommandResult:
    """Run one command line in domain *domid*: its output and exit status."""
    try:
        argv = shlex.split(cmdline)
    except ValueError as e:
        return CommandResult(f"sh: syntax error: {e}", 2)
    env: dict[str, str] = {}
    while argv and "=" in argv[0] and argv[0].split("=", 1)[0].isidentifier():
        key, value = argv.pop(0).split("=", 1)
        env[key] = value
    if not argv:
        return CommandResult("", 0)
    shell_ops = [a for a in argv if a in ("|", ";", "&&", "||", ">", ">>", "<")]
    if shell_ops:
        return CommandResult(f"xenlab: the lab runs one command at a time, without {shell_ops[0]!r}; "
                             "pass several commands instead", 2)
    fn = COMMANDS.get(argv[0])
    if fn is None:
        return CommandResult(unknown_command_message(argv[0]), 127)
    try:
        return CommandResult(fn(Shell(machine, domid, env), argv), 0)
    except CommandError as e:
        return CommandResult(e.text, e.rc)

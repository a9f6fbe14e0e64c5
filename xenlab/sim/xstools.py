"""The xenstore-* command-line tools (tools/xs-clients/xenstore_client.c), over an XsClient.

Output is what the real 4.17 tools print when stdout is not a terminal (the lab has no
terminal width): xenstore-ls indents by depth and cuts values at 80 columns; with -f
it prints whole paths and never cuts; -p adds the permission list.
"""

from __future__ import annotations

from xenlab.sim.xsclient import XsClient, XsError, format_perms

MAX_WIDTH = 80  # max_width when TIOCGWINSZ fails (output is not a tty)
DESIRED_WIDTH = 60
TAG_LEN = len(' = "..."')


class ToolError(Exception):
    """A tool failed: *text* is what it wrote to stderr, *rc* its exit status."""

    def __init__(self, text: str, rc: int = 1) -> None:
        super().__init__(text)
        self.text = text
        self.rc = rc


def sanitise_value(val: bytes) -> str:
    """sanitise_value: printable ASCII as is, \\t \\n \\r \\\\ escaped, others octal or hex."""
    out: list[str] = []
    for c in val:
        if 0x20 <= c <= 0x7E and c != 0x5C:
            out.append(chr(c))
        elif c == 0x09:
            out.append("\\t")
        elif c == 0x0A:
            out.append("\\n")
        elif c == 0x0D:
            out.append("\\r")
        elif c == 0x5C:
            out.append("\\\\")
        elif c < 0o10:
            out.append(f"\\{c:03o}")
        else:
            out.append(f"\\x{c:02x}")
    return "".join(out)


def unsanitise_value(text: str) -> bytes:
    """unsanitise_value: undo the escapes xenstore-write accepts (\\t, \\n, \\xNN, \\NNN ...)."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        i += 1
        if ch != "\\" or i >= len(text):
            out += ch.encode("latin-1")
            continue
        e = text[i]
        i += 1
        simple = {"t": 9, "n": 10, "r": 13, "\\": 0x5C}
        if e in simple:
            out.append(simple[e])
        elif e == "x":
            digits = text[i:i + 2]
            n = len(digits) - len(digits.lstrip("0123456789abcdefABCDEF"))
            out.append(int(digits[:n] or "0", 16))
            i += n
        elif e in "01234567":
            j = i - 1
            while j < len(text) and j < i + 2 and text[j] in "01234567":
                j += 1
            out.append(int(text[i - 1:j], 8) & 0xFF)
            i = j
        else:
            out += e.encode("latin-1")
    return bytes(out)


def do_ls(xs: XsClient, path: str, *, flat: bool, show_perms: bool) -> list[str]:
    """do_ls: walk the tree below *path* depth first, one line per node."""
    max_width = (2**31 - 1) // 2 if flat else MAX_WIDTH
    desired = 0 if flat else DESIRED_WIDTH
    lines: list[str] = []

    def walk(p: str, depth: int) -> None:
        try:
            names = xs.directory(p)
        except XsError as e:
            if depth and e.name == "ENOENT":
                return  # a node vanished while recursing: move on silently
            raise ToolError(f"xenstore-ls: xs_directory ({p}): {_strerror(e.name)}") from e
        for name in names:
            newpath = f"{p}{'' if p.endswith('/') else '/'}{name}"
            if flat:
                line = newpath
                width = 0
            else:
                line = " " * depth + name[: max(0, max_width - TAG_LEN - depth)]
                width = len(line)
            try:
                val: bytes | None = xs.read_bytes(newpath)
            except XsError:
                val = None
            if val is None:
                line += ":"
            elif max_width < width + len(val) + TAG_LEN:
                line += ' = "' + sanitise_value(val)[: max(0, max_width - TAG_LEN - width)] + '\\..."'
            else:
                shown = ' = "' + sanitise_value(val) + '"'
                line += shown
                width += len(shown)
                if show_perms:
                    line += " "
                    width += 1
                    while width < min(desired, max_width):
                        line += "." if width & 1 else " "
                        width += 1
            if show_perms:
                try:
                    line += "  " + format_perms(xs.get_perms(newpath))
                except XsError as e:
                    line += f"\nxenstore-ls: could not access permissions for {name}: {_strerror(e.name)}"
            lines.append(line)
            walk(newpath, depth + 1)

    walk(path, 0)
    return lines


_STRERROR = {"ENOENT": "No such file or directory", "EACCES": "Permission denied",
             "EINVAL": "Invalid argument", "EEXIST": "File exists", "E2BIG": "Argument list too long",
             "ENOSPC": "No space left on device", "EQUOTA": "Disk quota exceeded",
             "EAGAIN": "Resource temporarily unavailable", "EPERM": "Operation not permitted"}


def _strerror(name: str) -> str:
    return _STRERROR.get(name, name)


#: usage(): what each mode's errx prints after "Usage: <prog> " (xenstore_client.c, 4.17).
USAGE = {"read": "[-h] [-p] [-s] [-R] key [...]", "write": "[-h] [-s] [-R] key value [...]",
         "rm": "[-h] [-s] [-t] key [...]", "exists": "[-h] [-p] [-s] key [...]",
         "list": "[-h] [-p] [-s] key [...]", "ls": "[-h] [-f] [-p] [-s] [path]"}
#: main()'s getopt_long options ("hfspturn:R") and the modes that accept each; others call usage().
OPTION_MODES = {"f": {"ls"}, "s": set(USAGE), "p": {"read", "list", "ls"}, "t": {"rm"},
                "R": {"read", "write"}, "u": set(), "r": set(), "n": set()}
LONG_OPTIONS = {"help": "h", "flat": "f", "socket": "s", "prefix": "p", "tidy": "t", "upto": "u",
                "recurse": "r", "number": "n", "raw": "R"}


def parse_options(prog: str, tool: str, argv: list[str]) -> tuple[str, list[str], list[str]]:
    """main()'s getopt_long loop: (flags, operands, getopt's warnings); usage() as a ToolError."""
    usage = f"{prog}: Usage: {prog} {USAGE[tool]}"
    flags, operands, warnings = "", [], []
    args = iter(argv)
    for a in args:
        if a == "--":
            operands += list(args)
            break
        if a.startswith("--"):
            letter = LONG_OPTIONS.get(a[2:])
            if letter is None:
                warnings.append(f"{prog}: unrecognized option '{a}'")
                continue
            letters = letter
        elif a.startswith("-") and len(a) > 1:
            letters = a[1:]
        else:
            operands.append(a)
            continue
        for c in letters:
            if c not in OPTION_MODES and c != "h":
                warnings.append(f"{prog}: invalid option -- '{c}'")  # the switch has no default: go on
            elif c == "h" or tool not in OPTION_MODES[c]:
                raise ToolError("\n".join(warnings + [usage]))
            else:
                flags += c
    return flags, operands, warnings


def xenstore_tool(xs: XsClient, argv: list[str]) -> str:
    """main() of xenstore-ls / -read / -write / -list / -rm / -exists: the text it prints."""
    tool = argv[0].removeprefix("xenstore-")
    flags, args, warnings = parse_options(argv[0], tool, argv[1:])
    try:
        out = _main(xs, argv[0], tool, flags, args)
    except ToolError as e:
        raise ToolError("\n".join(warnings + ([e.text] if e.text else [])), e.rc) from e
    return "\n".join(warnings + ([out] if out else []))


def _main(xs: XsClient, prog: str, tool: str, flags: str, args: list[str]) -> str:
    """The rest of main(): argument count checks, then perform() (in a transaction where it uses one)."""
    argv = [prog]
    if tool == "ls":
        return "\n".join(do_ls(xs, args[0] if args else "/", flat="f" in flags, show_perms="p" in flags))
    if not args or (tool == "write" and len(args) % 2):
        raise ToolError(f"{prog}: Usage: {prog} {USAGE[tool]}")
    # main(): read and write use a transaction only for several keys; the other modes always
    # do (ls and watch never); EAGAIN at the end starts the whole thing again.
    use_tx = len(args) > 1 if tool == "read" else len(args) > 2 if tool == "write" else True
    for _attempt in range(16):
        t = xs.transaction_start() if use_tx else 0
        try:
            out = _perform(xs, tool, flags, args, t)
        except ToolError:
            if t:
                xs.transaction_end(t, abort=True)
            raise
        if not t:
            return out
        try:
            xs.transaction_end(t)
            return out
        except XsError as e:
            if e.name != "EAGAIN":
                raise ToolError(f"{argv[0]}: couldn't end transaction") from e
    raise ToolError(f"{argv[0]}: couldn't end transaction")


def _perform(xs: XsClient, tool: str, flags: str, args: list[str], t: int) -> str:
    """perform(): each key of the command line, inside transaction *t* (0: none)."""
    out: list[str] = []
    if tool == "read":
        for key in args:
            try:
                val = xs.read_bytes(key, t)
            except XsError as e:
                # warnx goes out at once; what perform() output()s is printed at the end, even on failure
                raise ToolError("\n".join([f"xenstore-read: couldn't read path {key}"] + out)) from e
            shown = val.decode("latin-1") if "R" in flags else sanitise_value(val)  # -R: output_raw
            out.append((f"{key}: " if "p" in flags else "") + shown)
    elif tool == "write":
        for key, value in zip(args[::2], args[1::2], strict=True):
            try:
                xs.write(key, value.encode("latin-1") if "R" in flags else unsanitise_value(value), t)
            except XsError as e:
                raise ToolError(f"xenstore-write: could not write path {key}") from e
    elif tool == "list":
        for key in args:
            try:
                names = xs.directory(key, t)
            except XsError as e:
                raise ToolError("\n".join([f"xenstore-list: could not list path {key}"] + out)) from e
            out.extend((f"{key}/" if "p" in flags else "") + n for n in names)  # "%s/" of argv: "//tool"
    elif tool == "rm":
        for key in args:
            try:
                xs.rm(key, t)
            except XsError as e:
                raise ToolError(f"xenstore-rm: could not remove path {key}") from e
    elif tool == "exists":
        for key in args:
            try:
                xs.read_bytes(key, t)
            except XsError as e:
                raise ToolError("", rc=1) from e
    else:
        raise ToolError(f"xenstore: unknown mode {tool}")
    return "\n".join(out)

"""`xenlab serve --socket PATH`: the lab xenstored in the foreground, for real tools.

Point any libxenstore tool at it with ``XENSTORED_PATH=PATH``::

    xenlab serve --socket /tmp/xs.sock --trace &
    XENSTORED_PATH=/tmp/xs.sock xenstore-write /vm/name "my guest"
    XENSTORED_PATH=/tmp/xs.sock xenstore-ls -f

Clients are dom0 (as on the real daemon's socket). No TCP. SIGTERM or SIGINT ends it
cleanly and removes the socket file. With no Xen below it, INTRODUCE fails (EINVAL, as
when C xenstored cannot map the guest's page); an internal error is logged to stderr
with its traceback, answered EIO, and the daemon goes on.

``xenlab serve --real`` runs as the xenstored of a real Xen dom0 (realhost.py): the
socket (default /run/xenstored/socket), dom0's own store ring and every INTRODUCE'd
guest, in one selectors loop, in the foreground (it never daemonizes).
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import signal
import socket
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from xenlab.abi.xs_wire import XENSTORE_SERVER_FEATURE_RECONNECTION
from xenlab.base.trace import Trace
from xenlab.xenstored.daemon import Daemon
from xenlab.xenstored.quota import Quotas
from xenlab.xenstored.unix import DEFAULT_MAX_OUTPUT, UnixServer

if TYPE_CHECKING:
    from xenlab.xenstored.ring import RingServer

#: personality -> the server_features it advertises on a ring (C xenstored 4.17 leaves 0;
#: oxenstored sets RECONNECTION in xb.ml) and the name the daemon goes by.
PERSONALITIES: dict[str, tuple[int, str]] = {
    "cxenstored": (0, "xenstored"),
    "oxenstored": (XENSTORE_SERVER_FEATURE_RECONNECTION, "oxenstored"),
}


REAL_SOCKET = "/run/xenstored/socket"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `xenlab serve` with the top-level parser."""
    p = subparsers.add_parser("serve", help="run the lab xenstored on a Unix socket (for real tools)",
                              description=__doc__.splitlines()[0])
    p.add_argument("--socket", metavar="PATH",
                   help=f"Unix socket path (created mode 0600); required unless --real ({REAL_SOCKET})")
    p.add_argument("--real", action="store_true",
                   help="serve a real Xen dom0: /proc/xen/xsd_kva, /dev/xen/evtchn, gntdev, privcmd")
    p.add_argument("--trace", action="store_true", help="log one line per request to stderr")
    p.add_argument("--personality", choices=sorted(PERSONALITIES), default="cxenstored",
                   help="which real daemon to behave like (default: cxenstored)")
    p.add_argument("--max-output", type=int, default=DEFAULT_MAX_OUTPUT, metavar="BYTES",
                   help="unread reply bytes after which a client is dropped")
    p.add_argument("-Q", "--quota", action="append", default=[], metavar="WHAT=NB",
                   help="cxenstored: hard quota (memory, outstanding, transaction-nodes), as xenstored -Q")
    p.add_argument("-q", "--quota-soft", action="append", default=[], metavar="WHAT=NB",
                   help="cxenstored: soft quota (memory), as xenstored -q")
    p.add_argument("-w", "--timeout", action="append", default=[], metavar="WHAT=SECONDS",
                   help="cxenstored: timeout (watch-event), as xenstored -w")
    p.add_argument("--config-file", metavar="FILE",
                   help="oxenstored: read quota-* settings from an oxenstored.conf")
    return p


def no_xen_introduce(domid: int, mfn: int, port: int) -> int:
    """introduce_domain() with no Xen below: map_interface() of the domain's page fails (EINVAL).

    Without ``--real`` there is no hypervisor to map a guest's store page from, so every
    INTRODUCE fails as C xenstored's does when gntdev cannot map grant ref 1.
    """
    return -errno.EINVAL


#: xenstored -Q / -q / -w names (set_quota(), set_timeout() in xenstored_core.c) -> Quotas fields
C_HARD = {"outstanding": "outstanding", "transaction-nodes": "transaction_nodes", "memory": "memory"}
C_SOFT = {"memory": "memory_soft"}
C_TIMEOUT = {"watch-event": "watch_event_timeout"}
#: oxenstored.conf keys (xenstored.ml) -> Quotas fields
OX_CONF = {"quota-maxentity": "nodes", "quota-maxsize": "node_size", "quota-maxwatch": "watches",
           "quota-transaction": "transactions", "quota-maxrequests": "transaction_nodes",
           "quota-path-max": "path_max", "quota-maxoutstanding": "outstanding",
           "quota-maxwatchevents": "watch_events"}


def quotas_from_args(personality: str, args: argparse.Namespace) -> Quotas:
    """The personality's defaults with the command line's settings applied (ValueError: bad one)."""
    quotas = Quotas.oxenstored() if personality == "oxenstored" else Quotas()
    c_opts = [(C_HARD, a, "-Q") for a in args.quota] + [(C_SOFT, a, "-q") for a in args.quota_soft] + \
        [(C_TIMEOUT, a, "-w") for a in args.timeout]
    if c_opts and personality != "cxenstored":
        raise ValueError("-Q/-q/-w are C xenstored's options; oxenstored reads --config-file")
    for names, arg, opt in c_opts:
        what, eq, value = arg.partition("=")
        if not eq or what not in names or not value.isascii() or not value.isdigit():
            raise ValueError(f"{opt} {arg}: want <what>=<number>, <what> one of {', '.join(names)}")
        quotas = dataclasses.replace(quotas, **{names[what]: int(value)})
    if args.config_file is not None:
        if personality != "oxenstored":
            raise ValueError("--config-file is oxenstored's option")
        with open(args.config_file, encoding="utf-8") as f:
            for line in f:
                key, eq, value = line.split("#", 1)[0].partition("=")
                key, value = key.strip(), value.strip()
                if eq and key in OX_CONF:
                    quotas = dataclasses.replace(quotas, **{OX_CONF[key]: int(value)})
    return quotas


def make_daemon(personality: str, quotas: Quotas | None = None) -> Daemon:
    """A fresh lab Daemon with the personality's features and name, on the monotonic clock."""
    features, name = PERSONALITIES[personality]
    # A long-running daemon must not keep every step it ever took: the trace is for the
    # simulated machine's views; here --trace logs lines instead.
    trace = Trace()
    trace.enabled = False
    daemon = Daemon(trace=trace, features=features, name=name, quotas=quotas)
    daemon.clock = time.monotonic
    return daemon


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; 0 on a clean stop, 1 if the socket could not be made."""
    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.socket is None:
        if not args.real:
            print("xenlab serve: --socket PATH is required (or --real)", file=sys.stderr)
            return 2
        args.socket = REAL_SOCKET
    if args.max_output < 1:
        print(f"xenlab serve: --max-output must be at least 1 byte, not {args.max_output}", file=sys.stderr)
        return 2
    try:
        quotas = quotas_from_args(args.personality, args)
    except (ValueError, OSError) as exc:
        print(f"xenlab serve: {exc}", file=sys.stderr)
        return 2
    daemon = make_daemon(args.personality, quotas)
    daemon.log_error = log  # an internal error is always logged, with its traceback
    daemon.on_introduce = no_xen_introduce  # --real replaces it with the ring server's
    try:
        server = UnixServer(daemon, args.socket, log=log if args.trace else None,
                            max_output=args.max_output)
    except OSError as exc:
        print(f"xenlab serve: cannot listen on {args.socket}: {exc.strerror or exc}", file=sys.stderr)
        return 1

    ring: RingServer | None = None
    if args.real:
        from xenlab.xenstored.realhost import RealHost, serve_real, serve_turn

        try:
            host = RealHost(log=log, comm=PERSONALITIES[args.personality][1])
            ring = serve_real(daemon, server, host, personality=args.personality, log=log)
        except OSError as exc:
            print(f"xenlab serve: cannot serve the real dom0: {exc}", file=sys.stderr)
            server.close()
            return 1
    stop: list[int] = []
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.append(signum)

    def drain() -> None:
        try:
            wake_r.recv(4096)
        except BlockingIOError:
            pass

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    old_wakeup = signal.set_wakeup_fd(wake_w.fileno())
    server.register_fd(wake_r.fileno(), drain)
    print(f"xenlab serve: {args.personality} listening on {args.socket} (pid {os.getpid()})",
          file=sys.stderr, flush=True)
    try:
        while not stop:
            if ring is None:
                server.service(None)
            else:
                serve_turn(server, ring)
    finally:
        signal.set_wakeup_fd(old_wakeup)
        for s, h in old_handlers.items():
            signal.signal(s, h)
        server.close()
        wake_r.close()
        wake_w.close()
    print(f"xenlab serve: stopped by {signal.Signals(stop[0]).name}", file=sys.stderr, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m xenlab.xenstored.serve ...`: the same command without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="xenlab serve")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    return run(parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())

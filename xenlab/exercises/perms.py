"""Xenstore permission exercises, answered by the lab's xenstored (xenlab.xenstored.daemon).

dom0 writes a node and sets its permission list; guests then READ or WRITE it over
their own connections. Each query runs on a fresh daemon set up the same way, and the
answer is the daemon's reply: OK, or the error name it sent (EACCES, ...).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from xenlab.abi.xs_wire import xsd_sockmsg_type as T
from xenlab.exercises.common import NO_KNOBS, Question
from xenlab.xenstored.daemon import Daemon
from xenlab.xenstored.wire import Message

NODE = "/local/domain/1/data/quiz"
GUESTS = (1, 2, 3)


def ask(perms: list[str], late: int | None, domid: int, op: str) -> str:
    """Set up the store, send *op* ('read'/'write') from *domid*; 'OK' or the daemon's error name."""
    daemon = Daemon()
    conns = {d: daemon.new_connection(d, f"domU{d}") for d in GUESTS if d != late}
    daemon.write(NODE, "42")
    daemon.set_perms(NODE, *perms)
    if late is not None:
        conns[late] = daemon.new_connection(late, f"domU{late}")
    conn = daemon.new_connection(0, "socket-quiz") if domid == 0 else conns[domid]
    if op == "read":
        msg = Message(int(T.XS_READ), 7, 0, NODE.encode() + b"\0")
    else:
        msg = Message(int(T.XS_WRITE), 7, 0, NODE.encode() + b"\0" + b"43")
    daemon.handle(conn, msg)
    [reply] = [m for m in conn.take_output() if m.req_id == 7]
    return reply.payload.rstrip(b"\0").decode() if reply.type == T.XS_ERROR else "OK"


def gen_perms(rng: random.Random, knobs: Mapping[str, Any] = NO_KNOBS) -> Question:
    """Who may read or write a node with a given permission list."""
    owner = rng.choice([0, 0, 1, 2])
    perms = [f"{rng.choice('nrwb')}{owner}"]
    for d in rng.sample([x for x in (0, *GUESTS) if x != owner], rng.randint(1, 2)):
        perms.append(f"{rng.choice('nrwb')}{d}")
    late = rng.choice([None, None, 3])
    pairs = [(d, op) for d in GUESTS for op in ("read", "write")]
    queries = rng.sample(pairs, 3)
    if rng.random() < 0.3:
        queries.append((0, rng.choice(["read", "write"])))
    queries.sort()
    q = Question("perms", (
        f"dom0 writes {NODE} and sets its permissions to {','.join(perms)} "
        f"(xenstore-chmod {NODE} {' '.join(perms)}). Guests "
        + ", ".join(str(d) for d in GUESTS if d != late) + " were introduced before that"
        + (f"; domain {late} is introduced only afterwards" if late is not None else "")
        + ". Each guest uses its own ring connection; dom0 uses a socket."))
    answers = []
    q.setup = {"perms": perms, "late": late, "queries": queries}
    for domid, op in queries:
        result = ask(perms, late, domid, op)
        answers.append((domid, op, result))
        q.expect(f"d{domid}.{op}", result, "OK, or the error name xenstored replies with (e.g. EACCES)",
                 base="text")
    q.worked = [
        "perm_for_conn (xenstored_core.c): a privileged connection (dom0) and the owner (the first "
        "entry's domid) get everything; otherwise the first later entry naming the domain gives its "
        "letter (r, w, b = both, n = none); a domain not listed gets the first entry's letter.",
        "domain_adjust_node_perms: an entry naming a domain introduced after the node was last written "
        "is ignored (XS_PERM_IGNORE), so that domain falls back to the first entry's letter.",
        "A READ needs r, a WRITE needs w; without it xenstored answers ERROR with the errno's name.",
        "The lab's xenstored answered:",
        *(f"  d{d} {op}: {r}" for d, op, r in answers),
    ]
    return q

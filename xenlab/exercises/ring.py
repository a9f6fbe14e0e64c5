"""Ring and framing exercises: xb_write on a real store page, xsd_sockmsg frames in req[].

Both run the guest's side of the ring (xenlab.linux.pvops.xenbus_comms, Linux 6.1: it never
sleeps) on a page the lab's hypervisor allocated, with the real xenstore_domain_interface
laid over it. The answers are read back from the page, the trace the writer recorded and
the hypervisor's record of each EVTCHNOP_send; framing answers come from the lab
xenstored's own decoder (xenlab.xenstored.wire).
"""

from __future__ import annotations

import ctypes
import random
from collections.abc import Mapping
from typing import Any

from xenlab.abi.errno import EIO
from xenlab.abi.xs_wire import XENSTORE_RING_SIZE, xenstore_domain_interface
from xenlab.abi.xs_wire import xsd_sockmsg_type as T
from xenlab.base.trace import Trace
from xenlab.exercises.common import NO_KNOBS, KnobError, Question, yes_no
from xenlab.linux.kernels import new_kernel
from xenlab.linux.pvops import xenbus_comms as comms
from xenlab.linux.pvops.kernel import PvopsKernel
from xenlab.xen.hypervisor import Hypervisor
from xenlab.xenstored import wire

U32 = 0xFFFFFFFF


def guest_with_store_page() -> tuple[PvopsKernel, Any]:
    """A modern domU (domid 1) whose xen_store_interface is a real page and whose store port is dom0's."""
    trace = Trace()
    hv = Hypervisor(trace=trace, bits=64)
    hv.domain_create(0, "Domain-0", vcpus=1, privileged=True, initdomain=True)
    hv.domain_create(1, "guest", vcpus=1)
    k = new_kernel(hv, 1, flavour="modern", trace=trace)
    assert isinstance(k, PvopsKernel)
    page = hv.memory.alloc_page(1)
    xb = k.xb
    xb.xen_store_interface = xenstore_domain_interface.from_buffer(page.buf)
    xb.xen_store_evtchn = hv.evtchn_alloc_unbound(0, 1, 0)  # what the toolstack made for xenstored
    return k, xb.xen_store_interface


def _write_steps(k: PvopsKernel, start: int) -> tuple[list[tuple[int, int, int, bool]], int]:
    """After *start*, from the trace: each chunk xb_write copied (offset, length, prod before, kicked
    after it) and the number of EVTCHNOP_sends Xen recorded."""
    chunks: list[tuple[int, int, int, bool]] = []
    kicks = 0
    for step in k.trace.steps[start:]:
        if step.function == "evtchn_send" and step.actor == "xen":
            kicks += 1
            if chunks:
                chunks[-1] = (*chunks[-1][:3], True)
        if step.function != "xb_write":
            continue
        if any(c.key == "req_cons" for c in step.changes):
            continue  # the -EIO reset of both indices, not a copy
        for c in step.changes:
            if c.key == "req_prod" and c.table == f"{k.name}/ring":
                chunks.append((c.before % XENSTORE_RING_SIZE, (c.after - c.before) & U32, c.before, False))
    return chunks, kicks


def gen_ring(rng: random.Random, knobs: Mapping[str, Any] = NO_KNOBS) -> Question:
    """How xb_write (modern) copies N bytes into req[] from given indices, and what it leaves."""
    kind = rng.random()
    fill = XENSTORE_RING_SIZE + rng.randint(1, 300) if kind < 0.15 else rng.randint(0, 900)
    lap = rng.choice([0, rng.randint(1, 5), (U32 + 1) // XENSTORE_RING_SIZE - 1])
    if rng.random() < 0.5:  # prod just before the end of req[]: the copy may split in two
        prod = (lap * XENSTORE_RING_SIZE + XENSTORE_RING_SIZE - rng.randint(1, 60)) & U32
    else:
        prod = (lap * XENSTORE_RING_SIZE + rng.randint(0, XENSTORE_RING_SIZE - 1)) & U32
    cons = (prod - fill) & U32
    free = XENSTORE_RING_SIZE - fill
    n = rng.randint(16, 200) if kind < 0.15 or free <= 16 else rng.randint(16, min(free + 60, 400))
    cons, prod, n = int(knobs.get("cons", cons)), int(knobs.get("prod", prod)), int(knobs.get("len", n))
    for name, value in (("cons", cons), ("prod", prod)):
        if not 0 <= value <= U32:
            raise KnobError(f"--{name} must be a uint32, 0..0xffffffff (got {value})")
    if not 1 <= n <= 4096:
        raise KnobError(f"--len must be 1..4096 (got {n})")
    k, intf = guest_with_store_page()
    intf.req_cons, intf.req_prod = cons, prod
    start = len(k.trace)
    rc = comms.xb_write(k, bytes(rng.randrange(256) for _ in range(n)))
    chunks, kicks = _write_steps(k, start)
    q = Question("ring", (
        f"A Linux 6.1 guest's store page has req_cons = {cons:#010x} and req_prod = {prod:#010x} "
        f"(uint32, free-running). xenstored consumes nothing meanwhile. The guest calls xb_write() "
        f"with a {n}-byte message."))
    q.setup = {"cons": cons, "prod": prod, "n": n}
    q.expect("check_indexes", yes_no(comms.check_indexes(cons, prod)), "yes/no: are the indices sane?")
    q.expect("chunks", ", ".join(f"{c[0]}+{c[1]}" for c in chunks) or "none",
             "each copy as OFFSET+LENGTH into req[], comma separated, or none", points=2)
    q.expect("return", rc, "what xb_write returns (bytes written, or -5 for -EIO)")
    q.expect("req_prod", f"{intf.req_prod:#010x}", "req_prod afterwards", base="hex")
    q.expect("kicks", kicks, "how many EVTCHNOP_send notifications", points=2)
    inflight = (prod - cons) & U32
    w = [f"prod - cons = {inflight} (mod 2^32); check_indexes wants <= XENSTORE_RING_SIZE "
         f"({XENSTORE_RING_SIZE})."]
    if rc == -EIO:
        w.append("check_indexes fails: xb_write resets req_cons = req_prod = 0 and returns -EIO; nothing "
                 "is copied, nobody is kicked.")
    else:
        for off, ln, before, kicked in chunks:
            free = XENSTORE_RING_SIZE - ((before - cons) & U32)
            w.append(f"prod {before:#010x}: get_output_chunk gives MASK_XENSTORE_IDX(prod) = {off}, "
                     f"min({XENSTORE_RING_SIZE - off} to the end, {free} free) -> copy {ln} bytes to "
                     f"req[{off}..{off + ln}); kicked after it: {'yes' if kicked else 'no'}.")
        if sum(c[1] for c in chunks) < n:
            w.append("The ring is then full: modern xb_write does not sleep, it returns the short count "
                     "and the xenbus thread tries again after xenstored's next kick.")
        w.append(f"Modern xb_write kicks (notify_remote_via_evtchn) after a chunk only if the prod it "
                 f"started from <= req_cons ({cons}), compared as plain numbers: xenstored had caught up.")
    w.append(f"The lab ran it: {kicks} EVTCHNOP_send, req_prod now {intf.req_prod:#010x}.")
    q.worked = w
    return q


_PATHS = ["/local/domain/1/name", "device/vbd/51712/state", "control/shutdown", "memory/target",
          "backend/vif/1/0/state", "/vm", "console/ring-ref", "data"]


def _random_message(rng: random.Random) -> wire.Message:
    path = rng.choice(_PATHS)
    kind = rng.choice(["read", "write", "directory", "watch", "start", "perms", "rm"])
    if kind == "write":
        t, payload = T.XS_WRITE, path.encode() + b"\0" + rng.choice([b"4", b"Connected", b"xvda", b"1"])
    elif kind == "watch":
        t, payload = T.XS_WATCH, path.encode() + b"\0" + rng.choice([b"tok", b"be:1", b"0"]) + b"\0"
    elif kind == "start":
        t, payload = T.XS_TRANSACTION_START, b"\0"
    else:
        t = {"read": T.XS_READ, "directory": T.XS_DIRECTORY, "perms": T.XS_GET_PERMS, "rm": T.XS_RM}[kind]
        payload = path.encode() + b"\0"
    tx = rng.choice([0, 0, rng.randint(1, 20)]) if kind not in ("start", "watch") else 0
    return wire.Message(int(t), rng.randint(0, 40), tx, payload)


def show_payload(payload: bytes) -> str:
    """A payload as text with each NUL written as \\0."""
    return payload.decode("latin-1").replace("\0", "\\0")


def hexdump(data: bytes) -> list[str]:
    """16 bytes a line: offset, hex bytes, printable characters."""
    out = []
    for i in range(0, len(data), 16):
        row = data[i:i + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        out.append(f"  {i:04x}  {' '.join(f'{b:02x}' for b in row):<47}  {text}")
    return out


def gen_framing(rng: random.Random, knobs: Mapping[str, Any] = NO_KNOBS) -> Question:
    """Decode the bytes waiting in req[] into xsd_sockmsg messages."""
    msgs = [_random_message(rng) for _ in range(rng.randint(1, 3))]
    k, intf = guest_with_store_page()
    start_idx = rng.choice([0, rng.randint(0, 1023), 1024 - rng.randint(8, 40)])
    intf.req_cons = intf.req_prod = start_idx
    for m in msgs:
        comms.xb_write(k, wire.encode(m))
    # what xenstored's reader takes out of req[], chunk by chunk (get_input_chunk on the page)
    stream = _req_bytes(intf, intf.req_cons, intf.req_prod)
    decoded = wire.decode_all(stream)
    q = Question("framing", (
        f"These {len(stream)} bytes sit in a guest's req[] ring (req_cons = {intf.req_cons}, req_prod = "
        f"{intf.req_prod}), shown in the order xenstored reads them:\n" + "\n".join(hexdump(stream))))
    q.expect("count", len(decoded), "how many whole messages")
    for i, m in enumerate(decoded, 1):
        q.expect(f"m{i}.type", m.type_name, "the xsd_sockmsg_type name, e.g. XS_READ")
        q.expect(f"m{i}.req_id", m.req_id, "a number")
        q.expect(f"m{i}.tx_id", m.tx_id, "a number")
        q.expect(f"m{i}.payload", show_payload(m.payload), "the payload with each NUL written \\0",
                 base="text")
    w = ["struct xsd_sockmsg is four little-endian uint32: type, req_id, tx_id, len; then len payload bytes."]
    pos = 0
    for i, m in enumerate(decoded, 1):
        w.append(f"m{i} at {pos:#06x}: type {m.type} = {m.type_name}, req_id {m.req_id}, tx_id {m.tx_id}, "
                 f"len {m.len} -> payload '{show_payload(m.payload)}'")
        pos += 16 + m.len
    if start_idx % XENSTORE_RING_SIZE + len(stream) > XENSTORE_RING_SIZE:
        w.append("The bytes wrap: xb_write split them at req[1023] -> req[0] (get_output_chunk), and the "
                 "reader's get_input_chunk joins them again.")
    q.worked = w
    return q


def _req_bytes(intf: Any, cons: int, prod: int) -> bytes:
    """The unread bytes of req[] from *cons* to *prod*, chunk by chunk as get_input_chunk gives them."""
    req = ctypes.string_at(ctypes.addressof(intf) + type(intf).req.offset, XENSTORE_RING_SIZE)
    out = b""
    while cons != prod:
        off, ln = comms.get_input_chunk(cons, prod)
        out += req[off:off + ln]
        cons = (cons + ln) & U32
    return out

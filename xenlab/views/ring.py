"""RingView: the req and rsp rings of a xenstore page, with every message in flight framed.

Works over any 4096-byte page: a simulated bytearray, a shared mapping, a memoryview,
or bytes copied from a real dom0 page (``xenstore_domain_interface`` from
``xenlab.abi.xs_wire`` is laid over it). For each ring it shows the free-running
indices (``req_cons``/``req_prod``...) beside the slot ``MASK_XENSTORE_IDX`` gives, the
bytes in flight, and each ``xsd_sockmsg`` cut into its 16-byte header (type named) and
its payload, including the wrap from slot 1023 to slot 0.

Used alone (``RingView(page)``) it shows the page as it is now; as a Stepper panel it
shows the snapshot taken (``view.snap(trace)``) at or before the current step, so a
lesson can step back through the bytes too.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

from xenlab.abi.xs_wire import (
    MASK_XENSTORE_IDX,
    XENSTORE_CONNECTED,
    XENSTORE_PAYLOAD_MAX,
    XENSTORE_RING_SIZE,
    XSD_SOCKMSG_SIZE,
    xenstore_domain_interface,
    xsd_sockmsg,
    xsd_sockmsg_type,
)
from xenlab.base.trace import Trace
from xenlab.views._html import box, esc, table, text_table
from xenlab.views.stepper import Context, TablePanel

_U32 = 0xFFFFFFFF
#: in flight (strong) and already read (pale), per part of a message
COLORS = {"header": "#f4a742", "payload": "#6fa8dc", "partial": "#c9c9c9"}
PALE = {"header": "#fbe2bf", "payload": "#d3e4f4", "partial": "#ececec"}
LEGEND = ("<div style='font-size:11px'>"
          "<span style='background:#f4a742'>&nbsp;header&nbsp;</span> "
          "<span style='background:#6fa8dc'>&nbsp;payload&nbsp;</span> in flight &middot; "
          "<span style='background:#fbe2bf'>&nbsp;header&nbsp;</span> "
          "<span style='background:#d3e4f4'>&nbsp;payload&nbsp;</span> already read &middot; "
          "red marks: cons / prod (free-running index &rarr; slot)</div>")


@dataclass(frozen=True)
class Segment:
    """A run of ring bytes: [start, start+length) as free-running indices, and what they are."""

    kind: str  # header | payload | partial
    start: int
    length: int
    label: str

    def slots(self) -> str:
        """The masked slot range(s), split at the wrap: '1020..1023+0..3'."""
        a = MASK_XENSTORE_IDX(self.start)
        end = a + self.length - 1
        if end < XENSTORE_RING_SIZE:
            return f"{a}..{end}"
        return f"{a}..{XENSTORE_RING_SIZE - 1}+0..{end - XENSTORE_RING_SIZE}"


def _taken(s: Segment, cons: int, prod: int) -> int:
    """How many of the segment's bytes the consumer has already read."""
    before_cons = (cons - s.start) & _U32
    if before_cons > ((prod - s.start) & _U32):
        return 0
    return min(before_cons, s.length)


def _type_name(t: int) -> str:
    try:
        return xsd_sockmsg_type(t).name
    except ValueError:
        return f"type {t} (not a message type)"


def _payload_text(data: bytes, limit: int = 48) -> str:
    shown = data[:limit].decode("latin-1").replace("\0", "\\0")
    shown = "".join(ch if 32 <= ord(ch) < 127 or ch == "\\" else f"\\x{ord(ch):02x}" for ch in shown)
    return f'"{shown}"' + ("..." if len(data) > limit else "")


def ring_bytes(ring: bytes, start: int, length: int) -> bytes:
    """*length* bytes of a 1024-byte ring from free-running index *start*, across the wrap."""
    out = bytearray()
    for i in range(length):
        out.append(ring[MASK_XENSTORE_IDX(start + i)])
    return bytes(out)


def frame(ring: bytes, start: int, cons: int, prod: int) -> list[Segment]:
    """Cut the bytes from *start* (a message boundary at or before cons) to prod into headers and payloads."""
    segs: list[Segment] = []
    i = start
    while (prod - i) & _U32:
        left = (prod - i) & _U32
        if left < XSD_SOCKMSG_SIZE:
            segs.append(Segment("partial", i, left, f"{left} bytes of a header still being written"))
            break
        hdr = xsd_sockmsg.from_buffer_copy(ring_bytes(ring, i, XSD_SOCKMSG_SIZE))
        if hdr.len > XENSTORE_PAYLOAD_MAX:
            label = f"{left} bytes that are not a valid header (len {hdr.len})"
            segs.append(Segment("partial", i, left, label))
            break
        segs.append(Segment("header", i, XSD_SOCKMSG_SIZE,
                            f"{_type_name(hdr.type)} req_id={hdr.req_id} tx_id={hdr.tx_id} len={hdr.len}"))
        i = (i + XSD_SOCKMSG_SIZE) & _U32
        left = (prod - i) & _U32
        n = min(hdr.len, left)
        if n:
            body = ring_bytes(ring, i, n)
            more = f" ({hdr.len - n} bytes not yet written)" if n < hdr.len else ""
            segs.append(Segment("payload", i, n, _payload_text(body) + more))
        i = (i + n) & _U32
        if n < hdr.len:
            break
    return segs


class RingView(TablePanel):
    """``RingView(page)``: the store page's two rings; ``.snap(trace)`` to step through them."""

    title = "xenstore ring page"

    def __init__(self, page: Any = None, *, layout: str = "4.17", name: str = "", history: bool = False,
                 limit: int = 12) -> None:
        self.page = page
        self.history = history
        self.limit = limit
        self.layout = layout
        self.name = name
        if name:
            self.title = f"xenstore ring page ({name})"
        self.snapshots: list[tuple[int, bytes]] = []
        self._followed: Trace | None = None  # the trace follow() wraps
        # Free-running indices known to start a message; with history=True, index 0 (a fresh
        # page) is one, and framing starts from the earliest one still in the ring.
        self._starts: dict[str, set[int]] = {r: {0} if history else set() for r in ("req", "rsp")}

    # -- the page ----------------------------------------------------------------------------
    def _raw(self, data: Any = None) -> bytes | None:
        data = self.page if data is None else data
        if data is None:
            return None
        raw = bytes(memoryview(data).cast("B")[: ctypes.sizeof(xenstore_domain_interface)])
        if len(raw) < ctypes.sizeof(xenstore_domain_interface):
            need = ctypes.sizeof(xenstore_domain_interface)
            raise ValueError(f"a store page has at least {need} bytes, got {len(raw)}")
        return raw

    def snap(self, trace: Trace | None = None, step: int | None = None) -> None:
        """Remember the page's bytes as they are now, for step *step* (default: the trace's last step)."""
        index = step if step is not None else (len(trace) - 1 if trace is not None else len(self.snapshots))
        raw = self._raw()
        if raw is None:
            raise ValueError("RingView has no page to snapshot")
        self.decode(raw, learn=True)
        self.snapshots.append((index, raw))

    def follow(self, trace: Trace) -> RingView:
        """Snapshot the page after each step recorded into *trace* that changed its bytes (until unfollow)."""
        if self._followed is not None:
            self.unfollow()
        original = trace.record
        last: list[bytes | None] = [self.snapshots[-1][1] if self.snapshots else None]

        def record(*args: Any, **kw: Any) -> Any:
            step = original(*args, **kw)
            if step is not None:
                raw = self._raw()
                if raw is not None and raw != last[0]:
                    self.decode(raw, learn=True)
                    self.snapshots.append((step.index, raw))
                    last[0] = raw
            return step

        trace.record = record  # type: ignore[method-assign]
        self._followed = trace
        if not self.snapshots and len(trace):
            self.snap(trace)
        return self

    def unfollow(self) -> None:
        """Stop snapshotting the trace given to ``follow``."""
        trace = self._followed
        if trace is not None:
            del trace.record  # the instance attribute; the class method shows through again
            self._followed = None

    def _at(self, index: int | None) -> bytes | None:
        if index is None or not self.snapshots:
            return self._raw()
        best = None
        for i, raw in self.snapshots:
            if i <= index:
                best = raw
        return best

    def decode(self, raw: bytes, learn: bool = False) -> dict[str, Any]:
        """Indices, fields and framed segments of both rings (framed from the last known message start)."""
        intf = xenstore_domain_interface.from_buffer_copy(raw)
        out: dict[str, Any] = {}
        for ring in ("req", "rsp"):
            cons, prod = getattr(intf, f"{ring}_cons"), getattr(intf, f"{ring}_prod")
            offset = getattr(xenstore_domain_interface, ring).offset
            data = raw[offset: offset + XENSTORE_RING_SIZE]
            inflight = (prod - cons) & _U32
            known = [s for s in self._starts[ring]
                     if ((cons - s) & _U32) <= ((prod - s) & _U32) <= XENSTORE_RING_SIZE]
            pick = max if self.history else min
            start = pick(known, key=lambda s: (cons - s) & _U32) if known else cons
            segs = frame(data, start, cons, prod) if inflight <= XENSTORE_RING_SIZE else []
            if learn:
                self._starts[ring].update(s.start for s in segs if s.kind == "header")
            out[ring] = dict(cons=cons, prod=prod, inflight=inflight, segs=segs, start=start)
        out["fields"] = {f: getattr(intf, f) for f in ("server_features", "connection", "error")}
        return out

    # -- text ------------------------------------------------------------------------------------
    def _ring_lines(self, ring: str, d: dict[str, Any]) -> list[str]:
        cons, prod, n = d["cons"], d["prod"], d["inflight"]
        lines = [f"{ring}: {ring}_cons={cons:#x} (slot {MASK_XENSTORE_IDX(cons)})  "
                 f"{ring}_prod={prod:#x} (slot {MASK_XENSTORE_IDX(prod)})  "
                 + (f"{n} bytes in flight, {XENSTORE_RING_SIZE - n} free" if n <= XENSTORE_RING_SIZE
                    else f"INVALID: prod - cons = {n} > {XENSTORE_RING_SIZE}")]
        msgs: list[str] = []
        for s in d["segs"]:
            taken = _taken(s, cons, prod)
            tag = " (read)" if taken == s.length else (f" ({taken} of {s.length} read)" if taken else "")
            if s.kind == "payload" and msgs:
                msgs[-1] += f" | payload [{s.slots()}] {s.label}{tag}"
            elif s.kind == "header":
                msgs.append(f"  @{s.start:#x} header [{s.slots()}]{tag} {s.label}")
            else:
                msgs.append(f"  @{s.start:#x} [{s.slots()}] {s.label}{tag}")
        if len(msgs) > self.limit:
            lines.append(f"  ... {len(msgs) - self.limit} earlier messages")
            msgs = msgs[-self.limit:]
        return lines + msgs

    def text(self, ctx: Context | None = None) -> str:
        """Both rings as stable text (at the stepper's step when used as a panel)."""
        raw = self._at(ctx.index if ctx else None)
        if raw is None:
            return "(no snapshot of the page at or before this step)"
        d = self.decode(raw, learn=ctx is None)
        out = self._ring_lines("req", d["req"]) + self._ring_lines("rsp", d["rsp"])
        if self.layout != "2.6.18":
            f = d["fields"]
            conn = "XENSTORE_CONNECTED" if f["connection"] == XENSTORE_CONNECTED else "XENSTORE_RECONNECT"
            out.append(f"server_features={f['server_features']:#x} connection={f['connection']} ({conn}) "
                       f"error={f['error']}")
        return "\n".join(out)

    # -- HTML ------------------------------------------------------------------------------------
    def _bar(self, ring: str, d: dict[str, Any], scale: float = 0.75) -> str:
        width = int(XENSTORE_RING_SIZE * scale)
        parts = [f"<div style='position:relative;height:26px;width:{width}px;background:#fafafa;"
                 f"border:1px solid #999;margin:14px 0 16px 0'>"]
        cons = d["cons"]
        for s in d["segs"]:
            consumed = _taken(s, cons, d["prod"]) == s.length
            color = PALE[s.kind] if consumed else COLORS[s.kind]
            a = MASK_XENSTORE_IDX(s.start)
            pieces = [(a, min(s.length, XENSTORE_RING_SIZE - a))]
            if a + s.length > XENSTORE_RING_SIZE:
                pieces.append((0, a + s.length - XENSTORE_RING_SIZE))
            for left, length in pieces:
                parts.append(f"<div title='{esc(s.kind + ' ' + s.label)}' style='position:absolute;top:0;"
                             f"left:{left * scale:.1f}px;width:{max(length * scale, 1):.1f}px;height:26px;"
                             f"background:{color};border-right:1px solid #888'></div>")
        for name, idx, top in ((f"{ring}_cons", d["cons"], -14), (f"{ring}_prod", d["prod"], 27)):
            x = MASK_XENSTORE_IDX(idx) * scale
            parts.append(f"<div style='position:absolute;left:{x:.1f}px;top:{top}px;font-size:10px;"
                         f"white-space:nowrap;border-left:2px solid #c00;padding-left:2px'>"
                         f"{name}={idx:#x} &rarr; slot {MASK_XENSTORE_IDX(idx)}</div>")
        parts.append(f"<div style='position:absolute;left:{width + 4}px;top:5px;font-size:10px'>"
                     "1023 &#8617; 0 (wrap)</div>")
        parts.append("</div>")
        return "".join(parts)

    def html(self, ctx: Context | None = None) -> str:
        """Both rings as bars (header orange, payload blue, read grey) with a framed message table."""
        raw = self._at(ctx.index if ctx else None)
        if raw is None:
            return "<i>no snapshot of the page at or before this step</i>"
        d = self.decode(raw)
        out = [LEGEND]
        for ring in ("req", "rsp"):
            r = d[ring]
            out.append(f"<b>{ring}</b> &middot; {r['inflight']} bytes in flight{self._bar(ring, r)}")
            segs = r["segs"]
            heads = [i for i, s in enumerate(segs) if s.kind != "payload"]
            if len(heads) > self.limit:
                out.append(f"<div class='xl-muted'>... {len(heads) - self.limit} earlier messages</div>")
                segs = segs[heads[-self.limit]:]
            rows = [[s.slots(), f"{s.start:#x}", s.kind, s.label] for s in segs]
            if rows:
                out.append(table(["slots", "free-running idx", "part", "contents"], rows,
                                 ["xl-new" if s.kind == "header" else "" for s in segs]))
        return "".join(out)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        return box(self.html())

    def table_text(self, ctx: Context | None = None) -> str:
        """The framed segments of both rings as an aligned table."""
        raw = self._at(ctx.index if ctx else None)
        if raw is None:
            return ""
        d = self.decode(raw)
        rows = [[ring, s.slots(), f"{s.start:#x}", s.kind, s.label]
                for ring in ("req", "rsp") for s in d[ring]["segs"]]
        return text_table(["ring", "slots", "idx", "part", "contents"], rows)

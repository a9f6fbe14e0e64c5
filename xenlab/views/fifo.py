"""FifoView: one domain's event-channel delivery state per step, as its port ABI keeps it.

On the FIFO ABI (Linux 6.1's default: xen/common/event_fifo.c, drivers/xen/events/events_fifo.c)
it shows what the trace records in ``xen/d<N>/*``: the vCPU's control block (the READY bits
and ``head[]`` per priority), each priority's queue from the head the guest reads next,
LINK by LINK, to Xen's tail, and the event words of the ports that matter (PENDING, MASKED,
LINKED, BUSY and LINK; priority). A domain still on the 2-level ABI (XenLinux 2.6.18, or
Linux 6.1 with ``xen.fifo_events=0``) has none of that: the view says so and shows the
shared_info bits instead (pending, mask, the vCPU's selector and upcall flag).
"""

from __future__ import annotations

from typing import Any

from xenlab.views._html import esc, table, text_table
from xenlab.views.stepper import Context, TablePanel

FLAGS = "PMLB"  # event_word_bits' letters: PENDING, MASKED, LINKED, BUSY


def _bits(mask: int) -> list[int]:
    return [b for b in range(mask.bit_length()) if mask >> b & 1]


class FifoView(TablePanel):
    """``FifoView(1, ports=[1])``: domain 1's control block, queues and event words (vCPU 0)."""

    def __init__(self, domid: int, *, vcpu: int = 0, ports: list[int] | None = None, limit: int = 12) -> None:
        self.domid, self.vcpu, self.limit = domid, vcpu, limit
        self.ports = list(ports or [])
        self.title = f"event channel delivery (d{domid}, vcpu {vcpu})"

    def _t(self, name: str) -> str:
        return f"xen/d{self.domid}/{name}"

    def abi(self, ctx: Context) -> str:
        """ "FIFO" once EVTCHNOP_init_control switched the domain, else "2-level"."""
        return str(ctx.table(self._t("evtchn_port_ops")).get("abi", "2-level"))

    # -- FIFO -------------------------------------------------------------------------------------
    def control_block(self, ctx: Context) -> list[str]:
        """READY and the non-zero head[] of the vCPU's control block, and its upcall flag."""
        vcpu = ctx.table(self._t(f"vcpu{self.vcpu}"))
        cb = ctx.table(self._t("fifo_control_block")).get(str(self.vcpu))
        if cb is None:
            return [f"vcpu {self.vcpu}: no control block registered (Xen drops its events)"]
        ready = int(vcpu.get("fifo_ready") or 0)
        heads = {k[len("fifo_head["):-1]: v for k, v in vcpu.items() if k.startswith("fifo_head[") and v}
        head_text = ", ".join(f"head[{p}] = {v}" for p, v in sorted(heads.items(), key=lambda kv: int(kv[0])))
        return [f"vcpu {self.vcpu} control block (gfn {cb[0]:#x}): READY "
                + ("{" + ", ".join(map(str, _bits(ready))) + "}" if ready else "0")
                + (f"; {head_text}" if head_text else "; every head[] 0"),
                f"evtchn_upcall_pending = {int(vcpu.get('evtchn_upcall_pending') or 0)}"]

    def queue_rows(self, ctx: Context) -> tuple[list[str], list[list[str]], list[str]]:
        """(headers, rows, marks): each non-empty queue of the vCPU, head first, and Xen's tail."""
        queues = ctx.table(self._t(f"fifo_queue/v{self.vcpu}"))
        tails = ctx.table(self._t(f"fifo_tail/v{self.vcpu}"))
        rows, marks = [], []
        for prio in sorted(set(queues) | set(tails), key=int):
            ports = queues.get(prio) or ()
            rows.append([prio, " -> ".join(map(str, ports)) or "(empty)", str(tails.get(prio, 0))])
            changed = ctx.is_changed(self._t(f"fifo_queue/v{self.vcpu}"), prio) or ctx.is_changed(
                self._t(f"fifo_tail/v{self.vcpu}"), prio)
            marks.append("xl-new" if changed else "")
        return ["priority", "queue (head -> ... -> tail)", "Xen's tail"], rows, marks

    def word_rows(self, ctx: Context) -> tuple[list[str], list[list[str]], list[str]]:
        """(headers, rows, marks): the chosen ports' event words, and every pending or linked one."""
        words = ctx.table(self._t("event_word"))
        prio = ctx.table(self._t("evtchn_priority"))
        has_word = {int(k) for k in words}
        busy = {int(k) for k, v in words.items() if v and ("P" in v[0] or "L" in v[0])}
        changed = {int(c.key) for (t, _), c in ctx.changed.items() if t == self._t("event_word")}
        arrays = len(ctx.table(self._t("fifo_event_array")))
        shown = sorted(set(self.ports) | busy | {p for p in changed if p in has_word or p in self.ports})
        rows, marks = [], []
        for port in shown[: self.limit]:
            if port >= arrays * 1024:
                rows.append([str(port), "(no event word yet)", "", str(prio.get(str(port), 0))])
            else:
                flags, link = words.get(str(port)) or ("----", 0)
                rows.append([str(port), " ".join(f if f != "-" else "." for f in flags), str(link),
                             str(prio.get(str(port), 0))])
            marks.append("xl-new" if port in changed else "")
        return ["port", " ".join(FLAGS), "LINK", "priority"], rows, marks

    # -- 2-level ----------------------------------------------------------------------------------
    def shared_info_rows(self, ctx: Context) -> tuple[list[str], list[list[str]], list[str]]:
        """(headers, rows, marks): pending and mask bits of the chosen ports, and every pending one."""
        pend, mask = ctx.table(self._t("evtchn_pending")), ctx.table(self._t("evtchn_mask"))
        shown = sorted(set(self.ports) | {int(k) for k in pend})[: self.limit]
        rows = [[str(p), str(pend.get(str(p), 0)), str(mask.get(str(p), 0))] for p in shown]
        marks = ["xl-new" if ctx.is_changed(self._t("evtchn_pending"), str(p))
                 or ctx.is_changed(self._t("evtchn_mask"), str(p)) else "" for p in shown]
        return ["port", "pending", "mask"], rows, marks

    def two_level_lines(self, ctx: Context) -> list[str]:
        vcpu = ctx.table(self._t(f"vcpu{self.vcpu}"))
        return [f"d{self.domid} runs the 2-level ABI (xen/common/event_2l.c): no queues, no READY; a "
                "pending bit and a mask bit per port in shared_info, and per vCPU a selector word "
                "(which 64-port words to scan) and the upcall flag",
                f"vcpu {self.vcpu}: evtchn_pending_sel = {int(vcpu.get('evtchn_pending_sel') or 0):#x}, "
                f"evtchn_upcall_pending = {int(vcpu.get('evtchn_upcall_pending') or 0)}"]

    # -- rendering --------------------------------------------------------------------------------
    def _parts(self, ctx: Context) -> list[tuple[str, Any]]:
        """("line", text) and ("table", (headers, rows, marks)) in order."""
        if self.abi(ctx) != "FIFO":
            return [("line", ln) for ln in self.two_level_lines(ctx)] + [
                ("line", "shared_info bits:"), ("table", self.shared_info_rows(ctx))]
        parts: list[tuple[str, Any]] = [
            ("line", f"d{self.domid} runs the FIFO ABI (xen/common/event_fifo.c)")]
        parts += [("line", ln) for ln in self.control_block(ctx)]
        q = self.queue_rows(ctx)
        parts += [("line", "queues:" if q[1] else "queues: all empty")] + ([("table", q)] if q[1] else [])
        w = self.word_rows(ctx)
        parts += [("line", "event words (P pending, M masked, L linked, B busy; LINK: the next port):"
                   if w[1] else "event words: none pending or linked")] + ([("table", w)] if w[1] else [])
        return parts

    def text(self, ctx: Context) -> str:
        """The view as stable text."""
        out = []
        for kind, part in self._parts(ctx):
            out.append(part if kind == "line" else text_table(*part))
        return "\n".join(out)

    def html(self, ctx: Context) -> str:
        """The same as HTML."""
        out = []
        for kind, part in self._parts(ctx):
            out.append(f"<div>{esc(part)}</div>" if kind == "line" else table(*part))
        return "".join(out)

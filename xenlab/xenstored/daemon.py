"""The lab xenstored: connections, dispatch, replies and watch events, no IO (xenstored_core.c).

Theory of operation
-------------------
A transport (ring, Unix socket, a test) makes a ``Connection`` with ``new_connection``,
decodes requests into ``wire.Message`` and calls ``handle(conn, msg)``. The daemon
answers exactly as C xenstored 4.17 does: unknown types ENOSYS, privileged types from
a guest EACCES, an unknown transaction id ENOENT, then the operation (ops.py,
domain.py). Replies copy type, req_id and tx_id; errors are type ERROR carrying the
errno's *name* and a NUL. Replies and watch events are appended to each affected
connection's ``out`` deque and ``conn.on_output(conn)`` is called once the request is
done. Each request is one trace step (actor = the daemon's name) whose changes rows
show what the tree, the watches and the transactions looked like before and after.

Socket connections (label ``socket...``) are dom0 like the real daemon's socket. Any
other label is a domain's connection (its ring) and belongs to ``daemon.domains``.

Hooks for transports and the machine: ``on_introduce(domid, mfn, port) -> 0 | -errno``
(map the page, bind the port, make the connection), ``on_release(domid)``,
``domain_exists(domid) -> bool`` (get_domain_info(): the hypervisor's view, XSA-322), and per
connection ``on_output`` / ``on_close`` / ``on_reset`` (INTRODUCE zeroes the ring).
``name="oxenstored"`` selects that daemon's visible differences: sorted children, the
``/@introduceDomain`` and ``/@releaseDomain`` nodes, its quota defaults, ``EQUOTA``.

Output and memory (XSA-326, see quota.py): ``conn.out`` is the connection's out_list.
A transport takes messages with ``take_message(conn)`` (one, when it has room: the ring)
or ``take_all(conn)`` (a socket that buffers bytes itself), never by emptying ``out``
itself, so the daemon's accounting and oxenstored's event pipes stay right. It reads a
connection only while ``domain_can_read(conn)`` and calls ``check_event_timeout(conn)``
once per turn. ``clock`` (seconds) drives the watch-event timeout; None stops time.
Watches are found through ``watch_index`` (path -> watches), so a write costs its
path's depth plus the events it fires, not the number of watches.
"""

from __future__ import annotations

import traceback
from collections import deque
from collections.abc import Callable

from xenlab.abi.errno import EACCES, EINVAL, EIO, ENOENT, ENOMEM, ENOSYS
from xenlab.abi.xs_wire import XENSTORE_PAYLOAD_MAX, XSD_ERROR_BY_ERRNO, XSD_ERROR_BY_NAME, xsd_sockmsg_type
from xenlab.base.trace import Trace
from xenlab.xenstored import domain as domain_ops
from xenlab.xenstored import ops
from xenlab.xenstored import watch as watch_ops
from xenlab.xenstored.connection import Connection, Domain
from xenlab.xenstored.paths import SPECIAL_PATHS, get_parent, watch_prefixes
from xenlab.xenstored.perms import XS_PERM_IGNORE, XS_PERM_NONE, XS_PERM_READ, Perms, perms_text
from xenlab.xenstored.quota import DEFAULT_BUFFER_SIZE, MEM_WARN_MINTIME_SEC, XSD_SOCKMSG_SIZE, Quotas
from xenlab.xenstored.store import Node, QuotaError, Store, XenstoreError, initial_store, value_text
from xenlab.xenstored.transaction import OcamlTransaction, Transaction
from xenlab.xenstored.watch import Watch, get_watch_path
from xenlab.xenstored.wire import Message

T = xsd_sockmsg_type
WATCHES = "xenstored/watches"
TRANSACTIONS = "xenstored/transactions"
DOMAINS = "xenstored/domains"
CORE = "tools/xenstore/xenstored_core.c"

Handler = Callable[["Daemon", "Connection", Message, "Transaction | None"], None]

#: wire_funcs[]: type -> (handler, function name, source file, flags) as xenstored_core.c lists them.
XS_FLAG_NOTID = 1  # ignore the transaction id
XS_FLAG_PRIV = 2  # privileged domains only
WIRE_FUNCS: dict[int, tuple[Handler, str, str, int]] = {
    T.XS_CONTROL: (domain_ops.do_control, "do_control", "tools/xenstore/xenstored_control.c", XS_FLAG_PRIV),
    T.XS_DIRECTORY: (ops.send_directory, "send_directory", CORE, 0),
    T.XS_READ: (ops.do_read, "do_read", CORE, 0),
    T.XS_GET_PERMS: (ops.do_get_perms, "do_get_perms", CORE, 0),
    T.XS_WATCH: (watch_ops.do_watch, "do_watch", "tools/xenstore/xenstored_watch.c", XS_FLAG_NOTID),
    T.XS_UNWATCH: (watch_ops.do_unwatch, "do_unwatch", "tools/xenstore/xenstored_watch.c", XS_FLAG_NOTID),
    T.XS_TRANSACTION_START: (ops.do_transaction_start, "do_transaction_start",
                             "tools/xenstore/xenstored_transaction.c", 0),
    T.XS_TRANSACTION_END: (ops.do_transaction_end, "do_transaction_end",
                           "tools/xenstore/xenstored_transaction.c", 0),
    T.XS_INTRODUCE: (domain_ops.do_introduce, "do_introduce", domain_ops.SOURCE, XS_FLAG_PRIV),
    T.XS_RELEASE: (domain_ops.do_release, "do_release", domain_ops.SOURCE, XS_FLAG_PRIV),
    T.XS_GET_DOMAIN_PATH: (domain_ops.do_get_domain_path, "do_get_domain_path", domain_ops.SOURCE, 0),
    T.XS_WRITE: (ops.do_write, "do_write", CORE, 0),
    T.XS_MKDIR: (ops.do_mkdir, "do_mkdir", CORE, 0),
    T.XS_RM: (ops.do_rm, "do_rm", CORE, 0),
    T.XS_SET_PERMS: (ops.do_set_perms, "do_set_perms", CORE, 0),
    T.XS_IS_DOMAIN_INTRODUCED: (domain_ops.do_is_domain_introduced, "do_is_domain_introduced",
                                domain_ops.SOURCE, XS_FLAG_PRIV),
    T.XS_RESUME: (domain_ops.do_resume, "do_resume", domain_ops.SOURCE, XS_FLAG_PRIV),
    T.XS_SET_TARGET: (domain_ops.do_set_target, "do_set_target", domain_ops.SOURCE, XS_FLAG_PRIV),
    T.XS_RESET_WATCHES: (watch_ops.do_reset_watches, "do_reset_watches", domain_ops.SOURCE, 0),
    T.XS_DIRECTORY_PART: (ops.send_directory_part, "send_directory_part", CORE, 0),
}
# 4.17 knows types up to DIRECTORY_PART (XS_TYPE_COUNT 23): GET/SET_FEATURE and
# GET/SET_QUOTA (23-26, Xen 4.21), WATCH_EVENT, ERROR, 20 and the rest answer ENOSYS.


class Daemon:
    """The xenstored core: a tree, connections, watches, transactions, quotas."""

    def __init__(self, trace: Trace | None = None, quotas: Quotas | None = None, features: int = 0,
                 name: str = "xenstored", on_introduce: Callable[[int, int, int], int] | None = None
                 ) -> None:
        self._trace = trace if trace is not None else Trace()
        #: which real daemon's visible behaviour to follow: "cxenstored" (default) or "oxenstored"
        self.personality = "oxenstored" if name == "oxenstored" else "cxenstored"
        if quotas is None:
            quotas = Quotas.oxenstored() if self.personality == "oxenstored" else Quotas()
        self.quotas = quotas
        self.features = features
        self.name = name
        self.on_introduce = on_introduce
        #: get_domain_info(): does the domain exist in the hypervisor (None: every domid does)?
        #: C xenstored ignores SET_PERMS entries naming one that does not (an owner that does not
        #: is ENOENT) and forgets a never-introduced domain once it is gone (XSA-322). The
        #: machine (sim/daemons.py) and ``serve --real`` (realhost.py) set it.
        self.domain_exists: Callable[[int], bool] | None = None
        #: called with the domid when a domain's connection goes (RELEASE or its death)
        self.on_release: Callable[[int], None] | None = None
        self.store: Store = initial_store(self.personality)
        self.connections: list[Connection] = []
        self.domains: dict[int, Domain] = {0: Domain(0, introduced=True)}
        self.special_perms: dict[str, Perms] = {p: ((XS_PERM_NONE, 0),) for p in SPECIAL_PATHS}
        self.bugs: list[str] = []
        #: called with each internal error and its traceback (``xenlab serve`` prints them)
        self.log_error: Callable[[str], None] | None = None
        self.log: list[str] = []
        self._numbers = 0
        self._rows: list[tuple[str, str, object, object]] = []
        self._touched: list[Connection] = []
        self._events = 0
        self._lab: Connection | None = None
        #: perform() collects the replies here instead of sending them; _answered: the last reply
        self._capture: list[Message] | None = None
        self._answered: Message | None = None
        #: watched path -> [(connection number, registration number, connection, watch)]: a write
        #: looks up its path and each ancestor, so it costs O(depth + events), not O(watches)
        self.watch_index: dict[str, list[tuple[int, int, Connection, Watch]]] = {}
        self._watch_seq = 0
        #: seconds, for the watch-event timeout and the quota messages' rate limit; None: time
        #: stands still (no timeouts). ``xenlab serve`` uses the monotonic clock, a Machine its
        #: scheduler's simulated clock.
        self.clock: Callable[[], float] | None = None
        #: the connection whose request is being processed (oxenstored: who fired the events)
        self._source: Connection | None = None
        #: oxenstored: connections whose fired events wait for room (pending_source_watchevents)
        self._overflowing: list[Connection] = []
        self._dropped = 0
        self._reply: Message | None = None
        self.record("setup_structure", "initial tree: " + " ".join(self.store.nodes))

    @property
    def trace(self) -> Trace:
        """The trace every request is recorded into."""
        return self._trace

    @trace.setter
    def trace(self, trace: Trace) -> None:
        """Record into *trace* from now on; it first gets the tree as it stands (setup_structure)."""
        if trace is self._trace:
            return
        self._trace = trace
        self.store.take_changes()
        for path, node in self.store.nodes.items():
            self.row("xenstored/tree", path, None, value_text(node.value))
            self.row("xenstored/perms", path, None, perms_text(node.perms))
        self.record("setup_structure", "the tree as it stands: " + " ".join(self.store.nodes))

    # -- connections -------------------------------------------------------------------
    def new_connection(self, domid: int = 0, label: str = "socket") -> Connection:
        """new_connection(): a client; ``socket...`` labels are dom0 sockets, others a domain's ring."""
        self._numbers += 1
        is_domain = not label.startswith("socket")
        if any(c.label == label for c in self.connections):  # keep trace keys unambiguous
            label = f"{label}#{self._numbers}"
        conn = Connection(self._numbers, domid, label, is_domain)
        self.connections.append(conn)
        if is_domain:
            self.alloc_domain(domid).conn = conn
        return conn

    def alloc_domain(self, domid: int) -> Domain:
        """find_or_alloc_domain(): the domain's record, made now (stamped with the generation) if new."""
        dom = self.domains.get(domid)
        if dom is None:
            dom = self.domains[domid] = Domain(domid, generation=self.store.generation)
            self.row(DOMAINS, str(domid), None, "known")
        return dom

    def node_perms(self, node: Node) -> Perms:
        """domain_adjust_node_perms(): entries for a domain unknown or newer than the node are ignored.

        C xenstored only: oxenstored honours every entry as written, and instead removes the
        entries naming a domain when it is RELEASEd (Store.reset_permissions).
        """
        perms = node.perms
        if len(perms) == 1 or self.personality == "oxenstored":
            return perms
        out = [perms[0]]
        for bits, domid in perms[1:]:
            dom = self.domains.get(domid)
            if dom is None or dom.generation > node.generation:
                bits |= XS_PERM_IGNORE
            out.append((bits, domid))
        return tuple(out)

    def node_perm(self, conn: Connection, node: Node) -> int:
        """perm_for_conn() on a node's permissions as read_node() adjusted them."""
        return conn.perm(self.node_perms(node))

    def close_connection(self, conn: Connection) -> None:
        """ignore_connection()/destroy_conn(): drop its watches and transactions; the tree keeps its nodes."""
        if conn.closed:
            return
        conn.closed = True
        conn.overflow.clear()
        if conn in self._overflowing:
            self._overflowing.remove(conn)
        self.conn_delete_all_watches(conn)
        self.conn_delete_all_transactions(conn)
        if conn in self.connections:
            self.connections.remove(conn)
        dom = self.domains.get(conn.domid)
        if conn.is_domain and dom is not None and dom.conn is conn:
            dom.conn = None
        self.record("ignore_connection", f"{conn.name}: connection closed")
        if conn.on_close is not None:
            conn.on_close(conn)

    def ignore_connection(self, conn: Connection) -> None:
        """ignore_connection(): a domain's connection is no longer served; it stays the domain's.

        Its watches, transactions and unsent output go. Unlike a closed socket it is not
        freed: RELEASE finds it, and a new INTRODUCE reuses it (C 4.17 keeps it ignored).
        """
        if conn.closed:
            return
        conn.closed = True
        self.conn_delete_all_watches(conn)
        self.conn_delete_all_transactions(conn)
        conn.out.clear()
        conn.outstanding = 0
        if conn in self.connections:
            self.connections.remove(conn)
        self.record("ignore_connection", f"{conn.name}: connection ignored")

    def conn_delete_all_watches(self, conn: Connection) -> None:
        """conn_delete_all_watches() (xenstored_watch.c)."""
        for w in conn.watches:
            self.row(WATCHES, self.watch_key(conn, w), "watch", None)
            self.unindex_watch(conn, w)
        conn.watches.clear()
        conn.watch_pending.clear()

    def index_watch(self, conn: Connection, w: Watch) -> None:
        """Add a just-registered watch to the path index (its order: connection, then registration)."""
        self._watch_seq += 1
        self.watch_index.setdefault(w.node, []).append((conn.number, self._watch_seq, conn, w))

    def unindex_watch(self, conn: Connection, w: Watch) -> None:
        """Drop a watch from the path index."""
        entries = self.watch_index.get(w.node, [])
        for i, (_, _, c, x) in enumerate(entries):
            if c is conn and x == w:
                del entries[i]
                break
        if not entries:
            self.watch_index.pop(w.node, None)
        conn.watch_pending.pop(w, None)

    def find_watch(self, conn: Connection, path: str, token: str) -> Watch | None:
        """The connection's watch on (*path*, *token*), found through the index."""
        for _, _, c, w in self.watch_index.get(path, ()):
            if c is conn and w.token == token:
                return w
        return None

    def conn_delete_all_transactions(self, conn: Connection) -> None:
        """conn_delete_all_transactions() (xenstored_transaction.c)."""
        for tid in sorted(conn.transactions):
            self.row(TRANSACTIONS, f"{conn.name} {tid}", "open", None)
            conn.transactions[tid].destroy()
        conn.transactions.clear()
        conn.transaction_started = 0

    def watch_list(self) -> list[tuple[str, str, str]]:
        """(connection, path, token) of every registered watch, in registration order per connection."""
        return [(c.name, w.node, w.token) for c in self.connections for w in c.watches]

    def can_read(self, conn: Connection) -> bool:
        """domain_can_read(): False while a guest has quota-many replies it has not taken yet."""
        return conn.privileged or conn.outstanding < self.quotas.outstanding


    # -- memory (C xenstored 4.17, xenstored_domain.c) -----------------------------------------
    def domain_memory(self, domid: int) -> int:
        """domain->memory: its nodes, its transactions' nodes, its watches, its queued output."""
        mem = self.store.memory[domid]
        dom = self.domains.get(domid)
        c = dom.conn if dom is not None else None
        if c is not None:
            mem += c.out_bytes + sum(len(w.node) + len(w.token) for w in c.watches)
            if c.tx_memory:  # nodes its open transactions wrote ("<generation>/<name>" records)
                open_now = {(t.id, t.generation) for t in c.transactions.values()}
                for key in [k for k in c.tx_memory if k not in open_now]:
                    del c.tx_memory[key]  # ended: the records went with the transaction
                mem += sum(sum(sizes.values()) for sizes in c.tx_memory.values())
        return mem

    def domain_chk_quota(self, domid: int, mem: int) -> bool:
        """domain_chk_quota(): True at or over the hard quota; logs each crossing (10 s apart at most)."""
        dom = self.domains.get(domid)
        if dom is None or domid == 0 or self.personality != "cxenstored":
            return False
        hard, soft = self.quotas.memory, self.quotas.memory_soft
        now = self.clock() if self.clock is not None else 0.0
        if hard and mem >= hard:
            if not dom.hard_quota_reported:
                dom.hard_quota_reported, dom.mem_last_msg = True, now
                self._quota_message(dom, "hard", f"Domain {domid} exceeds hard memory quota, "
                                    "Xenstore interface to domain stalled")
            return True
        if dom.mem_last_msg is None or now - dom.mem_last_msg >= MEM_WARN_MINTIME_SEC:
            if dom.hard_quota_reported:
                dom.hard_quota_reported, dom.mem_last_msg = False, now
                self._quota_message(dom, "soft" if dom.soft_quota_reported else "ok",
                                    f"Domain {domid} below hard memory quota again")
            if soft and mem >= soft and not dom.soft_quota_reported:
                dom.soft_quota_reported, dom.mem_last_msg = True, now
                self._quota_message(dom, "soft", f"Domain {domid} exceeds soft memory quota")
            if mem < soft and dom.soft_quota_reported:
                dom.soft_quota_reported, dom.mem_last_msg = False, now
                self._quota_message(dom, "ok", f"Domain {domid} below soft memory quota again")
        return False

    def _quota_message(self, dom: Domain, state: str, text: str) -> None:
        before = "hard" if state != "hard" and dom.hard_quota_reported else None
        self.row("xenstored/memory_quota", f"d{dom.domid}", before, None if state == "ok" else state)
        self.log.append(text)

    def domain_memory_chk(self, domid: int, add: int) -> bool:
        """domain_memory_add_chk(): True (the caller answers ENOMEM) if *domid* would be over its quota."""
        if domid == 0 or self.personality != "cxenstored" or not self.quotas.memory:
            return False
        return self.domain_chk_quota(domid, self.domain_memory(domid) + add)

    def domain_can_read(self, conn: Connection) -> bool:
        """domain_can_read()'s quota part: a guest at its hard memory quota, or (oxenstored) one
        whose fired events wait in its overflow queue, is not read from."""
        if conn.overflow:
            return False
        if conn.privileged or self.personality != "cxenstored" or not self.quotas.memory:
            return True
        return not self.domain_chk_quota(conn.domid, self.domain_memory(conn.domid))

    def check_event_timeout(self, conn: Connection) -> int:
        """check_event_timeout(): drop watch events not yet started that waited too long; how many."""
        if not conn.deadlines or self.clock is None:
            return 0
        now = self.clock()
        doomed: set[int] = set()
        while conn.deadlines and conn.deadlines[0][0] <= now:
            doomed.add(id(conn.deadlines.popleft()[1]))
        if not doomed:
            return 0
        before = conn.out_bytes
        conn.drop_output(doomed)
        gone = len(doomed) if before != conn.out_bytes else 0
        if gone:
            self.log.append(f"{conn.name}: {gone} watch events timed out")
            self.record("check_event_timeout", f"{conn.name}: {gone} watch event{'s' * (gone != 1)} "
                        f"unsent for {self.quotas.watch_event_timeout} s dropped")
        return gone

    def take_message(self, conn: Connection) -> Message | None:
        """The next message for a transport to send (freed as C's free_buffered_data frees it).

        oxenstored: the room it leaves lets waiting watch events move up (flush_pipe).
        """
        msg = conn.pop_output()
        if msg is not None and conn.deadlines and conn.deadlines[0][1] is msg:
            conn.deadlines.popleft()
        if self.personality == "oxenstored" and (conn.watch_pending or self._overflowing):
            self.flush_watch_events(conn)
        return msg

    def take_all(self, conn: Connection) -> list[Message]:
        """Every message queued for *conn* (a transport that buffers them itself)."""
        if not conn.watch_pending and not self._overflowing:  # nothing waits for room: all at once
            return conn.take_output()
        msgs = []
        while True:
            msg = self.take_message(conn)
            if msg is None:
                return msgs
            msgs.append(msg)

    # -- oxenstored's bounded event pipes (connection.ml, xb.ml) -----------------------------------
    def _xb_queue(self, target: Connection, msg: Message) -> bool:
        """Xb.queue: room for one more event in the output queue (quota-maxwatchevents of them)."""
        limit = self.quotas.watch_events
        if target.out_event_count >= limit or len(target.out) >= self.quotas.outstanding + limit:
            return False
        self._queue(target, msg)
        return True

    def _flush_watch(self, target: Connection, w: Watch) -> None:
        pend = target.watch_pending.get(w)
        while pend and self._xb_queue(target, pend[0]):
            pend.popleft()
        if pend is not None and not pend:
            del target.watch_pending[w]

    def _push_watch(self, target: Connection, w: Watch, msg: Message) -> bool:
        """BoundedPipe.push into the watch's pending_watchevents (capacity quota-maxwatchevents)."""
        self._flush_watch(target, w)
        pend = target.watch_pending.setdefault(w, deque())
        if len(pend) >= self.quotas.watch_events:
            return False
        pend.append(msg)
        self._flush_watch(target, w)
        return True

    def _flush_source(self, source: Connection) -> None:
        while source.overflow:
            target, w, msg = source.overflow[0]
            if not target.closed and not self._push_watch(target, w, msg):
                return
            source.overflow.popleft()

    def flush_watch_events(self, conn: Connection) -> None:
        """send_watchevents(): move waiting events on as far as there is room."""
        for w in list(conn.watch_pending):
            self._flush_watch(conn, w)
        for source in list(self._overflowing):
            self._flush_source(source)
            if not source.overflow:
                self._overflowing.remove(source)

    def fire_single_watch(self, target: Connection, w: Watch, msg: Message) -> None:
        """fire_single_watch_unchecked(): the event joins the firing connection's overflow pipe."""
        source = self._source if self._source is not None and not self._source.closed else target
        source.overflow.append((target, w, msg))
        self._flush_source(source)
        if source.overflow and source not in self._overflowing:
            self._overflowing.append(source)

    # -- trace ---------------------------------------------------------------------------
    def row(self, table: str, key: str, before: object, after: object) -> None:
        """Queue one changes row for the step being built."""
        self._rows.append((table, key, before, after))

    @staticmethod
    def watch_key(conn: Connection, w: Watch) -> str:
        """The xenstored/watches key of a watch."""
        return f"{conn.name} {w.node} {w.token}"

    def record(self, function: str, summary: str, source: str = CORE) -> None:
        """One trace step with every row queued since the last one."""
        rows = self.store.take_changes() + self._rows
        self._rows = []
        self.trace.record(function, summary, actor=self.name, source=source, changes=rows)

    # -- output ----------------------------------------------------------------------------
    def _queue(self, conn: Connection, msg: Message) -> None:
        conn.push_output(msg)
        if conn is self._source and msg.type != T.XS_WATCH_EVENT:
            self._reply = msg
        if conn not in self._touched:
            self._touched.append(conn)

    def _answer(self, conn: Connection, msg: Message) -> None:
        """The reply to a request: queued for the connection (or kept by perform())."""
        self._answered = msg
        if self._capture is not None:
            self._capture.append(msg)
            return
        conn.outstanding += 1
        self._queue(conn, msg)

    def send_reply(self, conn: Connection, req: Message, payload: bytes, type: int | None = None) -> None:
        """send_reply(): the answer with the request's header fields; E2BIG if over 4096 bytes."""
        if len(payload) > XENSTORE_PAYLOAD_MAX:
            self.send_error(conn, req, 7)  # E2BIG
            return
        if len(payload) > DEFAULT_BUFFER_SIZE and self.domain_memory_chk(conn.domid,
                                                                         len(payload) + XSD_SOCKMSG_SIZE):
            self.send_error(conn, req, ENOMEM)
            return
        self._answer(conn, Message(req.type if type is None else type, req.req_id, req.tx_id, payload))

    def send_ack(self, conn: Connection, req: Message) -> None:
        """send_ack(): ``OK\\0``."""
        self.send_reply(conn, req, b"OK\0")

    def send_error(self, conn: Connection, req: Message, err: int) -> None:
        """send_error(): type ERROR with the errno's name; untranslatable values go out as EINVAL."""
        name = XSD_ERROR_BY_ERRNO.get(err, "EINVAL")
        self._answer(conn, Message(T.XS_ERROR, req.req_id, req.tx_id, name.encode() + b"\0"))

    def send_event(self, conn: Connection, path: str, token: str, w: Watch | None = None) -> None:
        """send_event(): a WATCH_EVENT (req_id 0); what each daemon then does with it.

        C xenstored (XSA-326): an event identical to one still queued is dropped ("don't buffer
        multiple identical watch events"), so is one that would take a guest over its hard
        memory quota, and a guest's event gets a deadline (``-w watch-event=``, 20 s).
        oxenstored sends every one (a transaction that mkdirs and then set_perms the same node
        fires two events there, libxl's device add does that) through its bounded pipes.
        """
        payload = path.encode("latin-1") + b"\0" + token.encode("latin-1") + b"\0"
        if len(payload) > XENSTORE_PAYLOAD_MAX:
            return
        msg = Message(T.XS_WATCH_EVENT, 0, 0, payload)
        if self.personality == "oxenstored":
            self._events += 1
            if w is None or not self.quotas.watch_events:
                self._queue(conn, msg)
            else:
                self.fire_single_watch(conn, w, msg)
            return
        if not path.startswith("@") and conn.out_events[payload]:
            return
        if self.domain_memory_chk(conn.domid, len(payload) + XSD_SOCKMSG_SIZE):
            self._dropped += 1
            return
        self._events += 1
        self._queue(conn, msg)
        if self.quotas.watch_event_timeout and not conn.privileged and self.clock is not None:
            conn.deadlines.append((self.clock() + self.quotas.watch_event_timeout, msg))

    def _flush(self) -> None:
        touched, self._touched = self._touched, []
        for conn in touched:
            if conn.on_output is not None and not conn.closed:
                conn.on_output(conn)

    # -- permissions and watches ---------------------------------------------------------------
    def watch_permitted(self, conn: Connection, name: str, node: Node | None, perms: Perms | None) -> bool:
        """watch_permitted(): the watcher may read the node, its parent, or the node's old permissions."""
        if perms is not None and conn.perm(perms) & XS_PERM_READ:
            return True
        if node is None:
            node = self.store.read_node(name)
            if node is None:
                return False
        if self.node_perm(conn, node) & XS_PERM_READ:
            return True
        parent = self.store.read_node(get_parent(name))
        return parent is not None and bool(self.node_perm(conn, parent) & XS_PERM_READ)

    def fire_watches(self, tx: Transaction | None, name: str, node: Node | None, exact: bool,
                     perms: Perms | None = None) -> None:
        """fire_watches(): an event for every watch on *name* or above it (only exact ones if *exact*)."""
        if tx is not None:
            tx.queue_watches(name, exact, perms if perms is not None else (node.perms if node else None))
            return
        special = name in self.special_perms
        matches = [m for key in ((name,) if exact else watch_prefixes(name))
                   for m in self.watch_index.get(key, ())]
        if not matches:
            return
        matches.sort(key=lambda m: (m[0], m[1]))  # connection order, then registration order
        allowed: dict[int, bool] = {}
        for number, _, conn, w in matches:
            ok = allowed.get(number)
            if ok is None:
                if special:
                    ok = bool(conn.perm(self.special_perms[name]) & XS_PERM_READ)
                else:
                    ok = self.watch_permitted(conn, name, node, perms)
                allowed[number] = ok
            if ok:
                self.send_event(conn, get_watch_path(w, name), w.token, w)

    # -- Python-facing requests as dom0 (traced, watches fire) ---------------------------------------
    def request(self, type: int, *args: str, value: bytes | None = None) -> bytes:
        """Send one request on the daemon's own dom0 connection; the reply payload or XenstoreError."""
        if self._lab is None or self._lab.closed:
            self._lab = self.new_connection(0, "socket-lab")
        payload = b"".join(a.encode("latin-1") + b"\0" for a in args) + (value or b"")
        self.handle(self._lab, Message(type, 0, 0, payload))
        replies = [m for m in self.take_all(self._lab) if m.type != T.XS_WATCH_EVENT]
        reply = replies[-1]
        if reply.type == T.XS_ERROR:
            name = reply.payload.rstrip(b"\0").decode()
            raise XenstoreError(XSD_ERROR_BY_NAME.get(name, EINVAL), f"{T(type).name[3:]} {' '.join(args)}")
        return reply.payload

    def write(self, path: str, value: bytes | str) -> None:
        """dom0 writes *path* (XenstoreError naming the errno on failure)."""
        self.request(T.XS_WRITE, path, value=value.encode() if isinstance(value, str) else value)

    def mkdir(self, path: str) -> None:
        """dom0 makes *path*."""
        self.request(T.XS_MKDIR, path)

    def rm(self, path: str) -> None:
        """dom0 removes *path* and everything below it."""
        self.request(T.XS_RM, path)

    def set_perms(self, path: str, *perms: str) -> None:
        """dom0 sets the permission list of *path* (``"n1", "r0"``)."""
        self.request(T.XS_SET_PERMS, path, *perms)

    # -- domains seen dying by the transport -----------------------------------------------------
    def fire_release_domain(self, domid: int) -> None:
        """The domain died: destroy_domain() (connection, owned nodes) and @releaseDomain."""
        try:
            domain_ops.destroy_domain(self, domid)
            self.record("destroy_domain", f"domain {domid} gone: @releaseDomain", domain_ops.SOURCE)
        finally:
            self._flush()

    def check_domains(self) -> list[int]:
        """check_domains(), on VIRQ_DOM_EXC: forget the never-introduced domains that are gone."""
        try:
            gone = domain_ops.forget_dead_domains(self)
            if gone:
                self.record("check_domains", "forgot domain(s) " + ", ".join(map(str, gone))
                            + ": no longer in the hypervisor", domain_ops.SOURCE)
            return gone
        finally:
            self._flush()

    def fire_domain_shutdown(self, domid: int) -> bool:
        """VIRQ_DOM_EXC saw *domid* shut down (not yet dead): @releaseDomain once; True if it fired."""
        try:
            fired = domain_ops.domain_shutdown(self, domid)
            if fired:
                self.record("check_domains", f"domain {domid} shut down: @releaseDomain", domain_ops.SOURCE)
            return fired
        finally:
            self._flush()

    # -- dispatch -----------------------------------------------------------------------------
    def handle(self, conn: Connection, msg: Message) -> None:
        """process_message(): answer one request; replies and events land in the connections' queues."""
        if conn.closed:  # an ignored connection's requests are dropped unanswered
            return
        try:
            self.process_message(conn, msg)
        finally:
            self._flush()

    def process_message(self, conn: Connection, msg: Message) -> None:
        """process_message() proper: type, privilege and transaction checks, then the op."""
        entry = WIRE_FUNCS.get(msg.type)
        if entry is None:
            self.send_error(conn, msg, ENOSYS)
            self.record("process_message", f"{conn.name}: unknown operation {msg.type} -> ENOSYS")
            return
        func, fname, source, flags = entry
        if flags & XS_FLAG_PRIV and not conn.privileged:
            self.send_error(conn, msg, EACCES)
            self.record("process_message", f"{conn.name}: {T(msg.type).name[3:]} needs privilege -> EACCES")
            return
        tx = None
        if not flags & XS_FLAG_NOTID and msg.tx_id:
            tx = conn.transactions.get(msg.tx_id)
            if tx is None:
                self.send_error(conn, msg, ENOENT)
                self.record("process_message", f"{conn.name}: no transaction {msg.tx_id} -> ENOENT")
                return
        self._events = 0
        self._dropped = 0
        self._reply = None
        self._source = conn
        try:
            if isinstance(tx, OcamlTransaction) and msg.type != T.XS_TRANSACTION_END:
                # check_quota_exn (transaction.ml): a guest's transaction holds quota-maxrequests
                # requests; the next ones get EQUOTA and are not remembered for the replay
                if tx.node_limit is not None and len(tx.operations) >= tx.node_limit:
                    self._answer(conn, Message(T.XS_ERROR, msg.req_id, msg.tx_id, b"EQUOTA\0"))
                else:
                    tx.add_operation(msg, self.run_op(conn, msg, tx, func, fname))
            else:
                self.run_op(conn, msg, tx, func, fname)
        finally:
            self._source = None
        if self.trace.enabled:
            events = f"; {self._events} watch event{'s' * (self._events != 1)}" if self._events else ""
            if self._dropped:
                events += f"; {self._dropped} dropped (hard memory quota)"
            reply = outcome(msg, self._reply)
            self.record(fname, f"{conn.name}: {describe(msg)} -> {reply}{events}", source)
        else:
            self.store.pending.clear()
            self._rows.clear()


    def run_op(self, conn: Connection, msg: Message, tx: Transaction | None, func: Handler,
               fname: str) -> Message:
        """Run one operation; its errors become the error reply. Returns the reply."""
        self._answered = None
        try:
            func(self, conn, msg, tx)
        except QuotaError as e:
            if self.personality == "oxenstored":  # process.ml: Quota.Limit_reached -> "EQUOTA"
                self._answer(conn, Message(T.XS_ERROR, msg.req_id, msg.tx_id, b"EQUOTA\0"))
            else:
                self.send_error(conn, msg, e.errno)
        except XenstoreError as e:
            self.send_error(conn, msg, e.errno)
        except Exception as e:  # a daemon bug must cost one request, never the tree or other clients
            self.bugs.append(f"{fname}: {type(e).__name__}: {e}")
            if self.log_error is not None:
                self.log_error(f"{self.name}: internal error in {fname} for {conn.name} {describe(msg)}, "
                               f"answered EIO:\n{traceback.format_exc().rstrip()}")
            self.send_error(conn, msg, EIO)
        answered = self._answered
        if answered is None:  # every operation answers; a silent one is a daemon bug
            answered = Message(T.XS_ERROR, msg.req_id, msg.tx_id, b"EIO\0")
        return answered

    def perform(self, conn: Connection, msg: Message, tx: Transaction) -> Message:
        """Run *msg* again inside *tx* for its reply only (oxenstored's replay); nothing is sent."""
        func, fname, _, _ = WIRE_FUNCS[msg.type]
        outer, self._capture = self._capture, []
        try:
            return self.run_op(conn, msg, tx, func, fname)
        finally:
            self._capture = outer


def describe(msg: Message) -> str:
    """A request as one stable line: type, transaction and the payload's strings."""
    try:
        kind = T(msg.type).name[3:]
    except ValueError:
        kind = str(msg.type)
    text = msg.payload[:64].decode("latin-1").replace("\0", " ").rstrip()
    if len(msg.payload) > 64:
        text += "..."
    tx = f" tx{msg.tx_id}" if msg.tx_id else ""
    return f"{kind}{tx} {text!r}"


def outcome(msg: Message, reply: Message | None) -> str:
    """The reply to *msg* as one stable word or short text."""
    if reply is None or reply.req_id != msg.req_id:
        return "no reply"
    if reply.type == T.XS_ERROR:
        return reply.payload.rstrip(b"\0").decode()
    if reply.payload == b"OK\0":
        return "OK"
    text = reply.payload[:48].decode("latin-1").replace("\0", " ").rstrip()
    return repr(text) + ("..." if len(reply.payload) > 48 else "")


__all__ = ["Connection", "Daemon", "Domain", "WIRE_FUNCS"]

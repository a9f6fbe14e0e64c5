"""A daemon connection and a known domain (struct connection, struct domain of xenstored_core.h/_domain.c)."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from xenlab.abi.xs_wire import XS_WATCH_EVENT
from xenlab.xenstored.perms import Perms, perm_for_conn
from xenlab.xenstored.quota import XSD_SOCKMSG_SIZE
from xenlab.xenstored.transaction import Transaction
from xenlab.xenstored.watch import Watch
from xenlab.xenstored.wire import Message


@dataclass(eq=False)
class Connection:
    """struct connection: one client (a socket or a domain's ring) and what it owns in the daemon."""

    number: int
    domid: int
    label: str
    is_domain: bool
    out: deque[Message] = field(default_factory=deque)
    on_output: Callable[[Connection], None] | None = None
    on_close: Callable[[Connection], None] | None = None
    #: domain_conn_reset() (every INTRODUCE): the ring transport zeroes the ring indices here
    on_reset: Callable[[Connection], None] | None = None
    watches: list[Watch] = field(default_factory=list)
    transactions: dict[int, Transaction] = field(default_factory=dict)
    next_transaction_id: int = 0
    transaction_started: int = 0
    target: int | None = None
    can_write: bool = True
    outstanding: int = 0
    closed: bool = False
    #: bytes (payload + header) of what waits in ``out``: the domain is charged for them
    out_bytes: int = 0
    #: payload -> how many such watch events wait in ``out`` (the duplicate check, O(1))
    out_events: Counter[bytes] = field(default_factory=Counter)
    #: (deadline, event) of the watch events in ``out`` that time out, oldest first (C xenstored)
    deadlines: deque[tuple[float, Message]] = field(default_factory=deque)
    #: oxenstored: (watch, event) its requests fired that found no room yet (pending_source_watchevents)
    overflow: deque[tuple[Connection, Watch, Message]] = field(default_factory=deque)
    #: oxenstored: per watch, events waiting for room in ``out`` (the watch's pending_watchevents)
    watch_pending: dict[Watch, deque[Message]] = field(default_factory=dict)
    #: oxenstored: watch events now in ``out`` (its class count in the xb output queue)
    out_event_count: int = 0
    #: (transaction id, its generation) -> path -> bytes of the record it wrote (C's accounting)
    tx_memory: dict[tuple[int, int], dict[str, int]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """A stable name for traces: the label and the domid."""
        return f"{self.label}(d{self.domid})"

    @property
    def privileged(self) -> bool:
        """!domain_is_unprivileged(): sockets and dom0 bypass permissions and quotas."""
        return not self.is_domain or self.domid == 0

    def push_output(self, msg: Message) -> None:
        """Queue one reply or event (list_add_tail on out_list) and account for it."""
        self.out.append(msg)
        self.out_bytes += len(msg.payload) + XSD_SOCKMSG_SIZE
        if msg.type == XS_WATCH_EVENT:
            self.out_events[msg.payload] += 1
            self.out_event_count += 1

    def _forget(self, msg: Message) -> None:
        self.out_bytes -= len(msg.payload) + XSD_SOCKMSG_SIZE
        if msg.type == XS_WATCH_EVENT:
            self.out_event_count -= 1
            left = self.out_events[msg.payload] - 1
            if left:
                self.out_events[msg.payload] = left
            else:
                del self.out_events[msg.payload]

    def pop_output(self) -> Message | None:
        """The oldest queued message, taken off the queue (free_buffered_data once it is out)."""
        if not self.out:
            return None
        msg = self.out.popleft()
        self._forget(msg)
        if msg.type != XS_WATCH_EVENT and self.outstanding:
            self.outstanding -= 1
        return msg

    def take_output(self) -> list[Message]:
        """Every queued reply and event, oldest first; the queue is left empty."""
        msgs = list(self.out)
        self.clear_output()
        return msgs

    def clear_output(self) -> None:
        """conn_free_buffered_data(): forget everything queued."""
        self.out.clear()
        self.outstanding = 0
        self.out_bytes = 0
        self.out_events.clear()
        self.out_event_count = 0
        self.deadlines.clear()

    def drop_output(self, doomed: set[int]) -> None:
        """Take the messages whose id() is in *doomed* off the queue (timed-out events)."""
        keep: deque[Message] = deque()
        for msg in self.out:
            if id(msg) in doomed:
                self._forget(msg)
            else:
                keep.append(msg)
        self.out = keep

    def perm(self, perms: Perms) -> int:
        """perm_for_conn() for this connection."""
        return perm_for_conn(self.domid, self.privileged, perms, self.target, self.can_write)


@dataclass(eq=False)
class Domain:
    """struct domain: a guest the toolstack introduced (its ring connection, port, state)."""

    domid: int
    conn: Connection | None = None
    introduced: bool = False
    mfn: int = 0
    port: int = 0
    shutdown: bool = False
    #: the store's generation count when xenstored first heard of the domain
    generation: int = 0
    #: domain_chk_quota()'s memory: which quota messages are in force and when the last one went
    soft_quota_reported: bool = False
    hard_quota_reported: bool = False
    mem_last_msg: float | None = None

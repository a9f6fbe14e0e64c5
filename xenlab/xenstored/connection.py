"""A daemon connection and a known domain (struct connection, struct domain of xenstored_core.h/_domain.c)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from xenlab.xenstored.perms import Perms, perm_for_conn
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

    @property
    def name(self) -> str:
        """A stable name for traces: the label and the domid."""
        return f"{self.label}(d{self.domid})"

    @property
    def privileged(self) -> bool:
        """!domain_is_unprivileged(): sockets and dom0 bypass permissions and quotas."""
        return not self.is_domain or self.domid == 0

    def take_output(self) -> list[Message]:
        """Every queued reply and event, oldest first; the queue is left empty."""
        msgs = list(self.out)
        self.out.clear()
        self.outstanding = 0
        return msgs

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

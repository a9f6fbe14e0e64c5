"""Per-domain quotas of C xenstored 4.17 (xenstored_core.c ``quota_*``), never applied to dom0.

| field | CXS variable | default | what hits it |
|---|---|---|---|
| nodes | quota_nb_entry_per_domain | 1000 | creating a node (ENOSPC) |
| node_size | quota_max_entry_size | 2048 | writing a node record of >= this many bytes (ENOSPC) |
| watches | quota_nb_watch_per_domain | 128 | WATCH while more are registered (E2BIG) |
| transactions | quota_max_transaction | 10 | TRANSACTION_START while more are open (ENOSPC) |
| outstanding | quota_req_outstanding | 20 | the daemon stops reading the domain's ring |
| perms | quota_nb_perms_per_node | 5 | SET_PERMS with more entries (ENOSPC) |
| path_max | quota_max_path_len | 2048 | a longer name below /local/domain/<id>/ (EINVAL, everyone) |
| transaction_nodes | quota_trans_nodes | 1024 | nodes touched by one transaction (ENOSPC) |
| memory | quota_memory_per_domain_hard | 2.5 MB | see "Memory" below (ENOMEM, ring not read) |
| memory_soft | quota_memory_per_domain_soft | 2 MB | a warning in the log, no error |
| watch_event_timeout | timeout_watch_event_msec / 1000 | 20 s | an unsent watch event is dropped |
| watch_events | (oxenstored) quota-maxwatchevents | 1024 | see "oxenstored" below |

Memory (C xenstored 4.17, XSA-326): each domain is charged for the nodes it owns
(record + name), the nodes its open transactions wrote (record + ``<generation>/<name>``),
its watches (path + token) and the replies and events queued for it (payload + 16-byte
header). At or over the hard quota (``-Q memory=``) a node write, a WATCH or a reply over
16 bytes fails ENOMEM, a watch event for it is dropped, and its ring is not read until it
is under again; the first time is logged ("exceeds hard memory quota"), and crossing the
soft quota (``-q memory=``) logs a warning, at most one message per 10 s. A watch event
still unsent after ``-w watch-event=`` seconds is dropped. Set to 0, each one is off.

oxenstored has no memory quota. A connection's output queue holds at most
``quota-maxoutstanding`` replies and ``quota-maxwatchevents`` events; each watch buffers
up to ``quota-maxwatchevents`` more; what a request fires beyond that waits in the
*firing* connection's overflow queue, and that connection is not read from until it has
drained (xb.ml, connection.ml): the writer is held back, nothing is dropped.

The comparisons are CXS's own: a guest may own 1000 nodes, keep 129 watches and 11
transactions (it checks ``count > quota`` before adding), and a node record is
24 bytes of header + 8 per permission + value + child names with their NULs.
"""

from __future__ import annotations

from dataclasses import dataclass

from xenlab.abi.xs_wire import XENSTORE_REL_PATH_MAX

#: sizeof(struct xs_tdb_record_hdr): uint64 generation + 3 * uint32, padded to 8.
XS_TDB_RECORD_HDR_SIZE = 24
#: sizeof(struct xs_permissions): int perms + unsigned int id.
XS_PERMISSIONS_SIZE = 8
#: sizeof(struct xsd_sockmsg): what each queued message costs on top of its payload.
XSD_SOCKMSG_SIZE = 16
#: DEFAULT_BUFFER_SIZE of struct buffered_data: a longer reply is checked against the quota.
DEFAULT_BUFFER_SIZE = 16
#: MEM_WARN_MINTIME_SEC (xenstored_domain.c): at most one memory-quota message per 10 s.
MEM_WARN_MINTIME_SEC = 10


@dataclass(frozen=True)
class Quotas:
    """The quota values a daemon enforces on unprivileged domains."""

    nodes: int = 1000
    node_size: int = 2048
    watches: int = 128
    transactions: int = 10
    outstanding: int = 20
    perms: int = 5
    path_max: int = XENSTORE_REL_PATH_MAX
    transaction_nodes: int = 1024
    memory: int = 2 * 1024 * 1024 + 512 * 1024
    memory_soft: int = 2 * 1024 * 1024
    watch_event_timeout: int = 20
    watch_events: int = 0

    @classmethod
    def oxenstored(cls) -> Quotas:
        """oxenstored's shipped oxenstored.conf values (quota-maxentity, -maxwatch, ...)."""
        return cls(nodes=1000, node_size=2048, watches=100, transactions=10, outstanding=1024,
                   perms=5, path_max=1024, transaction_nodes=1024, memory=0, memory_soft=0,
                   watch_event_timeout=0, watch_events=1024)

    def rows(self) -> list[tuple[str, int]]:
        """(name, value) pairs in a stable order, as CONTROL quota prints them."""
        return [(name, getattr(self, name)) for name in self.__dataclass_fields__]


def node_record_size(nperms: int, datalen: int, childlen: int) -> int:
    """The size write_node_raw() compares with quota_max_entry_size (xenstored_core.c)."""
    return XS_TDB_RECORD_HDR_SIZE + XS_PERMISSIONS_SIZE * nperms + datalen + childlen

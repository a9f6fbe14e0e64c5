"""What every part of the hypervisor shares: its domains, its trace, and how it records a step.

Xen's steps are recorded with actor ``xen`` and the source file of the code they
mirror; a change row's table for one domain is ``xen/d<domid>/<table>`` (DEVELOPERS.md,
"Trace tables Xen records").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from xenlab.base.trace import Trace

if TYPE_CHECKING:
    from xenlab.xen.domain import Domain

#: One change row: (table, key, before, after).
Row = tuple[str, Any, Any, Any]


def domain_table(d: Domain, table: str) -> str:
    """The trace table *table* of domain *d*: "xen/d1/evtchn"."""
    return f"xen/d{d.domid}/{table}"


class XenPart:
    """A part of the Hypervisor (event channels, grant tables, domctls): the state they all use."""

    domains: dict[int, Domain]
    trace: Trace

    def _rec(self, function: str, summary: str, changes: Iterable[Row] = (), *, source: str) -> None:
        """Record one step of Xen: *function* in *source*."""
        self.trace.record(function, summary, actor="xen", source=source, changes=changes)

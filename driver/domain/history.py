"""What the history records: its actions, one name each, stored as the string."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class HistoryAction(StrEnum):
    """An event of the audit history (the ``history.action`` column holds its value)."""

    ALLOCATE = "allocate"
    RELEASE = "release"
    GC_RELEASE = "gc-release"  # ipledger gc, or CNI's GC, reclaimed a lease
    SPOOL_RELEASE = "spool-release"  # a CNI DEL spooled while the server was down
    HOST_RETIRE = "host-retire"  # a lease released, or a shared pool left, by a host's retiring
    HOST_ADMIT = "host-admit"  # a shared pool a host is attached to again by its admitting
    POOL_CREATE = "pool-create"
    POOL_RELEASE = "pool-release"
    POOL_DETACH = "pool-detach"  # a host no longer uses a shared pool others still use
    GC_POOL_RELEASE = "gc-pool-release"
    RESERVE = "reserve"
    UNRESERVE = "unreserve"
    CNI_OPTION = "cni-option"  # a CNI network's option changed
    CNI_RETIRE = "cni-retire"  # a CNI network's pools released with the network

    @property
    def by_gc(self) -> bool:
        return self in (HistoryAction.GC_RELEASE, HistoryAction.GC_POOL_RELEASE)


# the actions that give an address back, as the status page counts releases
RELEASES = frozenset(
    {
        HistoryAction.RELEASE,
        HistoryAction.GC_RELEASE,
        HistoryAction.SPOOL_RELEASE,
        HistoryAction.HOST_RETIRE,
    }
)


@dataclass(frozen=True)
class HistorySpan:
    """The history events older than a moment: how many, the oldest and the newest."""

    count: int
    oldest: datetime | None
    newest: datetime | None

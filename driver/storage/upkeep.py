"""The ledger's own records, as rows: the history, what gc left alone, the drivers served."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, bindparam, delete, func, insert, select

from driver.domain.history import HistoryAction, HistorySpan
from driver.domain.moments import as_utc
from driver.domain.pools import Lease
from driver.domain.reconcile import Finding
from driver.storage.models import findings, history, served
from driver.storage.prepared import Prepared
from driver.storage.rows import now

_WRITE_HISTORY = Prepared(
    insert(history).values({c.name: bindparam(c.name) for c in history.c if c.name != "id"})
)
# the longest detail the findings table keeps
FINDING_DETAIL_LENGTH = 255


class HistoryRows:
    """The audit history: written in the transaction of what it records, pruned oldest first."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def write(
        self,
        host_id: str,
        action: HistoryAction,
        pool_id: str,
        address: str,
        lease: Lease | None = None,
        detail: str | None = None,
    ) -> None:
        """One line of the audit history."""
        _WRITE_HISTORY.count(
            self.connection,
            {
                "at": now(),
                "host_id": host_id,
                "action": action.value,
                "pool_id": pool_id,
                "address": address,
                "kind": lease.kind.value if lease else None,
                "mac": lease.mac if lease else None,
                "name": lease.name if lease else None,
                "detail": detail,
            },
        )

    def span_before(self, before: datetime) -> HistorySpan:
        """How many events are older than ``before``, and the oldest and newest of them."""
        count, oldest, newest = self.connection.execute(
            select(func.count(), func.min(history.c.at), func.max(history.c.at)).where(
                history.c.at < before
            )
        ).one()
        return HistorySpan(
            int(count), as_utc(oldest) if oldest else None, as_utc(newest) if newest else None
        )

    def prune(self, before: datetime, limit: int) -> int:
        """Drop up to ``limit`` of the oldest events before ``before``; how many were dropped."""
        oldest = (
            select(history.c.id).where(history.c.at < before).order_by(history.c.id).limit(limit)
        )
        result = self.connection.execute(delete(history).where(history.c.id.in_(oldest)))
        return int(result.rowcount)


class FindingRows:
    """What the last ``ipledger gc`` found and left alone (for the leak-candidate metrics)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def replace(self, found: Sequence[Finding]) -> None:
        """Keep ``found`` in place of what was kept before."""
        self.connection.execute(delete(findings))
        if found:
            at = now()
            rows = [
                {
                    "what": f.what,
                    "pool_id": f.pool_id,
                    "address": f.address,
                    "detail": f.detail[:FINDING_DETAIL_LENGTH],
                    "found_at": at,
                }
                for f in found
            ]
            self.connection.execute(insert(findings), rows)

    def kept(self) -> list[tuple[str, str, str | None, str]]:
        """(what, PoolID, address, detail) of each finding kept, in the order found."""
        rows = self.connection.execute(select(findings).order_by(findings.c.id))
        return [(r.what, r.pool_id, r.address, r.detail) for r in rows]


class ServedRows:
    """The driver names and sockets ``ipledger serve`` serves the ledger under, by host."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def record(self, host_id: str, driver: str, socket: str) -> None:
        """``ipledger serve`` on ``host_id`` serves the ledger as ``driver`` on ``socket``."""
        self.connection.execute(
            delete(served).where(served.c.host_id == host_id, served.c.driver == driver)
        )
        self.connection.execute(
            insert(served).values(host_id=host_id, driver=driver, socket=socket, started_at=now())
        )

    def drivers(self, host_id: str) -> list[str]:
        """The driver names ``ipledger serve`` on ``host_id`` has served the ledger under."""
        rows = self.connection.execute(
            select(served.c.driver).where(served.c.host_id == host_id).order_by(served.c.driver)
        )
        return [driver for (driver,) in rows]

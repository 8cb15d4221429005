"""In-memory fakes of the ports the use cases declare, for unit tests and the contract suite."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from driver.domain.history import HistoryAction, HistorySpan
from driver.domain.pools import Lease
from driver.domain.reconcile import Finding
from driver.storage.upkeep import FINDING_DETAIL_LENGTH


@dataclass
class FakeHistory:
    events: list[tuple[datetime, str, HistoryAction, str, str, Lease | None, str | None]] = field(
        default_factory=list
    )

    def write(
        self,
        host_id: str,
        action: HistoryAction,
        pool_id: str,
        address: str,
        lease: Lease | None = None,
        detail: str | None = None,
    ) -> None:
        self.events.append((datetime.now(UTC), host_id, action, pool_id, address, lease, detail))

    def span_before(self, before: datetime) -> HistorySpan:
        older = [e[0] for e in self.events if e[0] < before]
        return HistorySpan(len(older), min(older, default=None), max(older, default=None))

    def prune(self, before: datetime, limit: int) -> int:
        dropped = [e for e in self.events if e[0] < before][:limit]
        self.events = [e for e in self.events if e not in dropped]
        return len(dropped)


@dataclass
class FakeFindings:
    found: list[tuple[str, str, str | None, str]] = field(default_factory=list)

    def replace(self, found: Sequence[Finding]) -> None:
        self.found = [
            (f.what, f.pool_id, f.address, f.detail[:FINDING_DETAIL_LENGTH]) for f in found
        ]

    def kept(self) -> list[tuple[str, str, str | None, str]]:
        return list(self.found)


@dataclass
class FakeServed:
    served: dict[tuple[str, str], str] = field(default_factory=dict)

    def record(self, host_id: str, driver: str, socket: str) -> None:
        self.served[(host_id, driver)] = socket

    def drivers(self, host_id: str) -> list[str]:
        return sorted(driver for host, driver in self.served if host == host_id)


@dataclass
class FakeUnit:
    history: FakeHistory = field(default_factory=FakeHistory)
    findings: FakeFindings = field(default_factory=FakeFindings)
    served: FakeServed = field(default_factory=FakeServed)


class FakeUnits:
    """Units of work in memory: a write that raises leaves the state as it was."""

    def __init__(self) -> None:
        self.state = FakeUnit()
        self.commits = 0

    @contextmanager
    def writing(self) -> Iterator[FakeUnit]:
        unit = copy.deepcopy(self.state)
        yield unit
        self.state = unit
        self.commits += 1

    @contextmanager
    def reading(self) -> Iterator[FakeUnit]:
        yield copy.deepcopy(self.state)

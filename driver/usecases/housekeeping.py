"""Upkeep of the ledger itself: pruning history, keeping what gc found for the metrics."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

from driver.domain.history import HistorySpan
from driver.domain.reconcile import Finding
from driver.storage.store import retrying
from driver.usecases.operator import BATCH_PAUSE, WRITE_BATCH


class HistoryPruning(Protocol):
    def span_before(self, before: datetime) -> HistorySpan: ...

    def prune(self, before: datetime, limit: int) -> int:
        """Drop up to ``limit`` of the oldest events before ``before``; how many."""


class KeptFindings(Protocol):
    def replace(self, found: Sequence[Finding]) -> None: ...


class ServedDrivers(Protocol):
    def record(self, host_id: str, driver: str, socket: str) -> None: ...


class UpkeepUnit(Protocol):
    """The ports of one transaction that housekeeping uses."""

    @property
    def history(self) -> HistoryPruning: ...

    @property
    def findings(self) -> KeptFindings: ...

    @property
    def served(self) -> ServedDrivers: ...


class UpkeepUnits(Protocol):
    def writing(self) -> AbstractContextManager[UpkeepUnit]: ...

    def reading(self) -> AbstractContextManager[UpkeepUnit]: ...


class Housekeeping:
    """Upkeep of the ledger itself: pruning history, keeping what gc found for the metrics."""

    def __init__(self, units: UpkeepUnits, host_id: str = "local") -> None:
        self.units = units
        self.host_id = host_id

    def history_before(self, before: datetime) -> HistorySpan:
        """What :meth:`prune_history` would drop, to show before dropping it."""
        with self.units.reading() as unit:
            return unit.history.span_before(before)

    def prune_history(self, before: datetime) -> int:
        """Forget history events older than ``before``; how many were dropped. Deletes in
        transactions of :data:`WRITE_BATCH` events, so that the plugin's calls interleave."""
        dropped = 0
        while batch := self._prune_batch(before):
            dropped += batch
            time.sleep(BATCH_PAUSE)
        return dropped

    @retrying
    def _prune_batch(self, before: datetime) -> int:
        with self.units.writing() as unit:
            return unit.history.prune(before, WRITE_BATCH)

    @retrying
    def record_served(self, driver: str, socket: str) -> None:
        """Remember that this host serves the ledger as ``driver`` (for gc's default)."""
        with self.units.writing() as unit:
            unit.served.record(self.host_id, driver, socket)

    @retrying
    def record_findings(self, found: list[Finding]) -> None:
        """Keep what gc found and left alone, for the leak-candidate metrics."""
        with self.units.writing() as unit:
            unit.findings.replace(found)

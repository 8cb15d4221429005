"""Upkeep of the ledger itself: pruning history, keeping what gc found for the metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from driver.domain.moments import as_utc
from driver.domain.reconcile import Finding
from driver.storage.inventory import Journal
from driver.storage.store import retrying
from driver.usecases.operator import BATCH_PAUSE, WRITE_BATCH, OnLedger


@dataclass(frozen=True)
class HistorySpan:
    """The history events older than a moment: how many, the oldest and the newest."""

    count: int
    oldest: datetime | None
    newest: datetime | None


class Housekeeping(OnLedger):
    """Upkeep of the ledger itself: pruning history, keeping what gc found for the metrics."""

    @retrying
    def history_before(self, before: datetime) -> HistorySpan:
        """What :meth:`prune_history` would drop, to show before dropping it."""
        with self.store.reading() as ledger:
            count, oldest, newest = Journal(ledger.connection).span_before(before)
        return HistorySpan(
            count, as_utc(oldest) if oldest else None, as_utc(newest) if newest else None
        )

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
        with self.store.transaction() as ledger:
            return ledger.prune_history(before, WRITE_BATCH)

    @retrying
    def record_served(self, driver: str, socket: str) -> None:
        """Remember that this host serves the ledger as ``driver`` (for gc's default)."""
        with self.store.transaction() as ledger:
            ledger.record_served(self.host_id, driver, socket)

    def record_findings(self, found: list[Finding]) -> None:
        """Keep what gc found and left alone, for the leak-candidate metrics."""
        with self.store.transaction() as ledger:
            ledger.replace_findings(
                [
                    {
                        "what": f.what,
                        "pool_id": f.pool_id,
                        "address": f.address,
                        "detail": f.detail[:255],
                    }
                    for f in found
                ]
            )

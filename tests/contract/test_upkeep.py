"""The housekeeping ports' contract (history, findings, drivers served) on every
implementation, and the housekeeping use case on each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from driver.domain.history import HistoryAction
from driver.domain.pools import Lease, LeaseKind
from driver.domain.reconcile import Finding
from driver.usecases import housekeeping
from driver.usecases.housekeeping import Housekeeping


def soon() -> datetime:
    return datetime.now(UTC) + timedelta(seconds=5)


def test_history_is_counted_and_pruned_oldest_first_in_batches(units, monkeypatch):
    monkeypatch.setattr(housekeeping, "BATCH_PAUSE", 0)
    with units.writing() as unit:
        for n in range(3):
            lease = Lease(LeaseKind.ENDPOINT, None, f"c{n}")
            unit.history.write("host-a", HistoryAction.ALLOCATE, "p", f"192.0.2.{n}", lease)
    with units.writing() as unit:
        assert unit.history.prune(soon(), 2) == 2
    keeping = Housekeeping(units, "host-a")
    span = keeping.history_before(soon())
    assert span.count == 1
    assert span.oldest is not None and span.oldest == span.newest
    assert keeping.history_before(span.oldest).count == 0
    assert keeping.prune_history(soon()) == 1
    assert keeping.history_before(soon()).count == 0


def test_findings_kept_are_replaced_whole_and_their_detail_cut_to_its_column(units):
    keeping = Housekeeping(units, "host-a")
    keeping.record_findings([Finding("pool", "p1", None, "gone", due=True)])
    keeping.record_findings([Finding("lease", "p2", "192.0.2.9", "x" * 300, due=False)])
    with units.reading() as unit:
        assert unit.findings.kept() == [("lease", "p2", "192.0.2.9", "x" * 255)]


def test_a_driver_served_again_is_recorded_once_per_host(units):
    keeping = Housekeeping(units, "host-a")
    keeping.record_served("ipledger", "/run/a.sock")
    keeping.record_served("ipledger", "/run/b.sock")
    Housekeeping(units, "host-b").record_served("other", "/run/c.sock")
    with units.reading() as unit:
        assert unit.served.drivers("host-a") == ["ipledger"]
        assert unit.served.drivers("host-b") == ["other"]


def test_a_write_that_raises_leaves_nothing_behind(units):
    with pytest.raises(RuntimeError), units.writing() as unit:
        unit.served.record("host-a", "ipledger", "/run/a.sock")
        raise RuntimeError("abandoned")
    with units.reading() as unit:
        assert unit.served.drivers("host-a") == []

"""Units of work: one transaction of the store, handing out the ports a use case asks for.

A use case declares the few operations it needs as Protocols (its ports) and receives them
from a unit, as cosmicpython's unit of work hands out repositories; the tables stay here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection

from driver.storage.store import Store
from driver.storage.upkeep import FindingRows, HistoryRows, ServedRows


class Unit:
    """The ports of one transaction, as rows of its connection."""

    def __init__(self, connection: Connection) -> None:
        self.history = HistoryRows(connection)
        self.findings = FindingRows(connection)
        self.served = ServedRows(connection)


class StoreUnits:
    """Units of work on a :class:`Store`: a write takes its locks, a read takes none."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @contextmanager
    def writing(self) -> Iterator[Unit]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        with self.store.transaction() as ledger:
            yield Unit(ledger.connection)

    @contextmanager
    def reading(self) -> Iterator[Unit]:
        """One transaction that only reads."""
        with self.store.reading() as ledger:
            yield Unit(ledger.connection)

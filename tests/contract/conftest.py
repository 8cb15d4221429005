"""The contract suite's fixtures: each port as the in-memory fake, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import netaddr
import pytest
from sqlalchemy import Engine

from driver.domain.addresses import FreeRanges, Range, Subnet
from driver.storage.ledger import Ledger
from driver.storage.store import Store
from driver.storage.units import StoreUnits
from tests.fakes import FakeUnits
from tests.memory_ranges import MemoryFreeRanges

# the fake first: a contract test that fails on it alone is wrong about the contract
IMPLEMENTATIONS = ("memory", "sqlite", "postgresql")
# the subnet the free ranges of a contract test belong to
SUBNET = Subnet(netaddr.IPNetwork("192.0.2.0/24"))

FreeRangesMaker = Callable[..., AbstractContextManager[FreeRanges]]


@pytest.fixture(params=IMPLEMENTATIONS)
def backend(request: pytest.FixtureRequest) -> str:
    """Which implementation of the ports: the fake, or storage on SQLite or PostgreSQL."""
    return str(request.param)


@pytest.fixture
def units(backend: str, request: pytest.FixtureRequest) -> StoreUnits | FakeUnits:
    if backend == "memory":
        return FakeUnits()
    engine: Engine = request.getfixturevalue("engine")
    return StoreUnits(Store(engine))


@pytest.fixture
def fresh_free_ranges(backend: str, request: pytest.FixtureRequest) -> FreeRangesMaker:
    """Makes the free ranges of a new, empty subnet, holding ``ranges``; a database's are
    rolled back afterwards, so that one fixture serves every example of a property test."""
    if backend == "memory":

        @contextmanager
        def in_memory(*ranges: Range) -> Iterator[FreeRanges]:
            yield MemoryFreeRanges(*ranges)

        return in_memory
    engine: Engine = request.getfixturevalue("engine")

    @contextmanager
    def as_rows(*ranges: Range) -> Iterator[FreeRanges]:
        with engine.connect() as connection:
            transaction = connection.begin()
            ledger = Ledger(connection)
            subnet_id = ledger.add_subnet("local", "LocalDefault", SUBNET)
            free_ranges = ledger.free_ranges(subnet_id)
            allocatable = SUBNET.allocatable()
            assert allocatable is not None
            free_ranges.remove(allocatable)
            for free in ranges:
                free_ranges.add(free)
            try:
                yield free_ranges
            finally:
                transaction.rollback()

    return as_rows

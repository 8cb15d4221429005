from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from driver.config import Settings
from driver.schema import migrate
from driver.service import Ipam
from driver.store import Store, make_engine


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(socket=str(tmp_path / "ipledger.sock"),
                    db_url=f"sqlite:///{tmp_path}/db/ledger.db")


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.db_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def ipam(engine: Engine, settings: Settings) -> Ipam:
    return Ipam(Store(engine), settings.default_pools)

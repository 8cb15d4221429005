from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import TypeVar

import pytest
from sqlalchemy import Engine

from driver.config import Settings
from driver.storage.engine import make_engine
from driver.storage.schema import migrate
from driver.storage.store import Store
from driver.usecases.ipam import Ipam
from tests.e2e.harness import need
from tests.examples import FULL_LANE
from tests.pg import NetworkedPostgres, PostgresCluster, binaries

Cluster = TypeVar("Cluster", bound=PostgresCluster)
BACKENDS = ("sqlite", "postgresql")

# Two lanes. Plain `pytest` runs the quick one: unit, API and SQLite tests, as any user, in a few
# minutes. `bash tests/run.sh` sets IPLEDGER_REQUIRE_E2E=1 and runs everything: PostgreSQL, real
# dockerd, root-only faults, systemd and promtool, the stress and timing-heavy tests; there a
# missing part fails a test instead of skipping it.
FULL_LANE_FIXTURES = {
    "postgres",
    "networked_postgres",
    "dockerd",
    "small_disk",
    "cni_plugins",
    "browser",
}
FULL_LANE_REASON = "full lane (Docker, PostgreSQL, root or system tools): bash tests/run.sh"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if FULL_LANE:
        return
    skip = pytest.mark.skip(reason=FULL_LANE_REASON)
    for item in items:
        params = getattr(item, "callspec", None)
        if (
            item.get_closest_marker("docker")
            or item.get_closest_marker("full")
            or FULL_LANE_FIXTURES & set(getattr(item, "fixturenames", ()))
            or (params is not None and params.params.get("backend") == "postgresql")
        ):
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FULL_LANE:
        return
    # counted as pytest counts them in its closing line
    skipped = [
        r
        for r in terminalreporter.stats.get("skipped", [])
        if getattr(r, "count_towards_summary", True)
    ]
    full = sum(FULL_LANE_REASON in str(r.longrepr) for r in skipped)
    if skipped:
        other = len(skipped) - full
        terminalreporter.write_line(
            f"quick lane: {len(skipped)} tests skipped: {full} need Docker, PostgreSQL, root or "
            "system tools (`bash tests/run.sh`, as root, installs what they need and runs them "
            "all)"
            + (
                f", {other} {'does' if other == 1 else 'do'} not apply here (pytest -rs says why)"
                if other
                else ""
            )
        )


def _running(kind: type[Cluster]) -> Iterator[Cluster]:
    """A started cluster of ``kind`` for the session; without root or PostgreSQL, a skip (or, in
    the full lane, a failure)."""
    if binaries() is None or os.geteuid() != 0:
        why = "PostgreSQL is not installed, or not root"
        if FULL_LANE:
            pytest.fail(f"{why}: tests/run.sh installs Debian's postgresql")
        pytest.skip(why)
    cluster = kind()
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One private PostgreSQL server for the whole run."""
    yield from _running(PostgresCluster)


@pytest.fixture(scope="session")
def networked_postgres() -> Iterator[NetworkedPostgres]:
    """A private PostgreSQL server in a network namespace, reached over a veth pair."""
    yield from _running(NetworkedPostgres)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Which database the ledger is in: every ledger test runs on SQLite and on PostgreSQL."""
    return str(request.param)


def _ledger_url(backend: str, sqlite_path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new ledger's URL: an SQLite file, or a migrated database on the test cluster."""
    if backend == "sqlite":
        yield f"sqlite:///{sqlite_path}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    url = cluster.new_database()
    yield url
    cluster.drop_database(url)


@pytest.fixture
def db_url(backend: str, tmp_path, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from _ledger_url(backend, tmp_path / "db" / "ledger.db", request)


@pytest.fixture
def settings(tmp_path, db_url: str) -> Settings:
    return Settings(
        socket=str(tmp_path / "ipledger.sock"),
        db_url=db_url,
        host_id="host-a",
        cni_spool=str(tmp_path / "cni-spool"),
    )


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.db_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def ipam(engine: Engine, settings: Settings) -> Ipam:
    return Ipam(Store(engine), settings.default_pools, settings.host_id)


@pytest.fixture
def other_db_url(backend: str, tmp_path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A second, empty ledger on the same kind of database."""
    yield from _ledger_url(backend, tmp_path / "other.db", request)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Debian's headless Chromium, driven by selenium through Debian's chromedriver."""
    need(shutil.which("chromium") is not None, "chromium not installed (apt-get install chromium)")
    need(
        shutil.which("chromedriver") is not None,
        "chromedriver not installed (apt-get install chromium-driver)",
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    yield driver
    driver.quit()

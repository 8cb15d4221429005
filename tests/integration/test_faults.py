"""Database faults: each gets a clear error to Docker, corrupts nothing, and heals without a restart."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from driver.config import Settings
from driver.entrypoints.api import create_app
from driver.storage.engine import make_engine
from driver.storage.schema import migrate
from tests.api.conftest import Plugin

POOL = {"AddressSpace": "LocalDefault", "Pool": "2001:db8::/64"}
ADDRESS = {"PoolID": "LocalDefault/2001:db8::/64", "Address": ""}


def plugin_on(db_url: str, **settings) -> Plugin:
    engine = make_engine(db_url)
    migrate(engine)
    engine.dispose()
    return Plugin(create_app(Settings(db_url=db_url, **settings)).test_client())


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 2 MiB tmpfs of the test's own, so that it can be filled up and made read-only."""
    if os.geteuid() != 0:
        pytest.fail("needs root to mount a tmpfs")
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mountpoint)], check=True)
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], check=True)


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as c:
        return c.execute("PRAGMA integrity_check").fetchone()[0]


def test_a_full_disk_is_a_clear_503_and_service_resumes_when_space_is_back(small_disk):
    db = small_disk / "ledger.db"
    plugin = plugin_on(f"sqlite:///{db}")
    assert plugin.call("RequestPool", POOL)[0] == 200
    filler = small_disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    statuses = [plugin.call("RequestAddress", ADDRESS) for _ in range(200)]
    failures = [answer for status, answer in statuses if status != 200]
    assert failures, "the disk never filled up"
    assert all(
        a["Err"].startswith("database unavailable: database or disk is full") for a in failures
    )
    assert {s for s, _ in statuses} <= {200, 503}
    filler.unlink()
    status, answer = plugin.call("RequestAddress", ADDRESS)
    assert status == 200, answer
    assert integrity(db) == "ok"
    # every address it answered is leased once, and the failed calls leased nothing
    handed = [a["Address"] for s, a in statuses if s == 200] + [answer["Address"]]
    assert len(handed) == len(set(handed))
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM leases").fetchone()[0] == len(handed)


def test_a_read_only_database_is_a_clear_503_and_service_resumes_when_writable(small_disk):
    db = small_disk / "ledger.db"
    plugin = plugin_on(f"sqlite:///{db}")
    assert plugin.call("RequestPool", POOL)[0] == 200
    # a filesystem cannot turn read-only under open writers: let the pool close its connection
    plugin.client.application.extensions["ipledger"].store.dispose()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        status, answer = plugin.call("RequestAddress", ADDRESS)
        assert status == 503
        assert answer["Err"] in (
            "database unavailable: attempt to write a readonly database",
            "database unavailable: unable to open database file",
        )
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert plugin.call("RequestAddress", ADDRESS) == (
        200,
        {"Address": "2001:db8::1/64", "Data": {}},
    )
    assert integrity(db) == "ok"


def test_a_database_locked_longer_than_the_busy_timeout_is_a_clear_503(tmp_path):
    db = tmp_path / "ledger.db"
    plugin = plugin_on(f"sqlite:///{db}", busy_timeout_ms=200)
    assert plugin.call("RequestPool", POOL)[0] == 200
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        assert plugin.call("RequestAddress", ADDRESS) == (
            503,
            {
                "Err": "database unavailable: database is locked",
                "Error": "database unavailable: database is locked",
            },
        )
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert plugin.call("RequestAddress", ADDRESS)[1]["Address"] == "2001:db8::1/64"


def test_a_lock_shorter_than_the_busy_timeout_only_delays_the_call(tmp_path):
    db = tmp_path / "ledger.db"
    plugin = plugin_on(f"sqlite:///{db}", busy_timeout_ms=5000)
    assert plugin.call("RequestPool", POOL)[0] == 200
    locker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN IMMEDIATE")
    threading.Timer(0.3, lambda: locker.execute("COMMIT")).start()
    assert plugin.call("RequestAddress", ADDRESS)[0] == 200
    locker.close()

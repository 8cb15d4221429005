"""A ledger on a read-only file system: the commands that only read work, the others say what is
read-only; nothing ends in a traceback.

The file system is a real read-only mount (a tmpfs remounted read-only): root, full lane.
Root ignores mode bits, so a read-only directory cannot stand in for it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from driver.config import Settings
from driver.entrypoints.cli import main
from driver.storage.engine import make_engine
from driver.storage.schema import migrate
from driver.storage.store import Store
from driver.usecases.ipam import Ipam

pytestmark = [
    pytest.mark.full,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a file system needs root"),
]

POOL = "LocalDefault/198.51.100.0/24"


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _mount(where: Path) -> None:
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "h-cli-ro", str(where)], check=True)


def _read_only(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)


@pytest.fixture
def mounted(tmp_path) -> Iterator[Path]:
    where = tmp_path / "h-cli-ro"
    _mount(where)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(url: str, revision: str = "head") -> None:
    engine = make_engine(url)
    migrate(engine)
    ipam = Ipam(Store(engine), Settings().default_pools, "h-cli")
    pool = ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {}, False).pool_id
    ipam.request_address(pool, "", {"com.docker.network.endpoint.macaddress": "02:00:00:00:00:07"})
    engine.dispose()


@pytest.fixture
def ledger(mounted) -> str:
    url = f"sqlite:///{mounted}/ledger.db"
    _fill(url)
    _read_only(mounted)
    return url


def test_the_read_only_commands_work_on_a_read_only_ledger(ledger, mounted):
    pools = invoke("pools", "--db", ledger, "--json")
    assert pools.exit_code == 0, pools.output
    assert [p["leased"] for p in json.loads(pools.output)] == [1]
    check = invoke("check", "--db", ledger)
    assert check.exit_code == 0, check.output
    assert "ok: 1 subnets and 1 leases are consistent" in check.output
    for command in (
        ["usage"],
        ["leases", POOL],
        ["history", "--pool", POOL],
        ["export"],
    ):
        result = invoke(command[0], "--db", ledger, *command[1:])
        assert result.exit_code == 0, (command, result.output)
        assert "Traceback" not in result.output
    assert "198.51.100.1" in invoke("leases", "--db", ledger, POOL).output
    assert sorted(os.listdir(mounted)) == ["ledger.db"]


def test_a_write_on_a_read_only_ledger_says_it_is_read_only(ledger):
    result = invoke("reserve", "--db", ledger, "198.51.100.50", "--label", "x")
    assert result.exit_code == 1
    assert "read-only" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_read_only_ledger_that_needs_a_migration_says_so(mounted):
    url = f"sqlite:///{mounted}/ledger.db"
    engine = make_engine(url)
    from alembic import command

    from driver.storage.schema import _config

    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
    engine.dispose()
    _read_only(mounted)
    result = invoke("pools", "--db", url)
    assert result.exit_code == 1
    assert "read-only" in result.output and "0003" in result.output
    assert "Traceback" not in result.output

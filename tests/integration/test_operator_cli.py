"""The operator commands as a new user meets them: clean errors, safe defaults, forgiving input.

Run as `ipledger ...` (click's runner) on a real ledger, SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import stat
import sys

import pytest
from click.testing import CliRunner

from driver.entrypoints.cli import main
from driver.storage.store import Store
from driver.usecases.ipam import Ipam

SHARED = {"ipledger.shared": "lan"}


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), catch_exceptions=False, env=env)


@pytest.fixture
def run(settings):
    def run(*args: str, ok: bool = True) -> str:
        result = invoke(
            *args, env={"IPLEDGER_HOST_ID": settings.host_id, "IPLEDGER_DB": settings.db_url}
        )
        assert (result.exit_code == 0) == ok, result.output
        return result.output

    return run


def test_the_common_options_may_also_come_before_the_subcommand(ipam, settings):
    ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {}, False)
    result = invoke("--db", settings.db_url, "pools", env={"IPLEDGER_HOST_ID": settings.host_id})
    assert result.exit_code == 0, result.output
    assert "LocalDefault/198.51.100.0/24" in result.output


def test_leases_takes_a_subnet_where_a_pool_id_is_wanted(run, ipam):
    pool = ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {}, False).pool_id
    ipam.request_address(pool, "198.51.100.7", {})
    assert "198.51.100.7" in run("leases", "198.51.100.0/24")


def test_a_subnet_with_several_pools_lists_their_pool_ids_to_choose_from(run, ipam):
    for subpool in ("198.51.100.0/25", "198.51.100.128/25"):
        ipam.request_pool("LocalDefault", "198.51.100.0/24", subpool, {}, False)
    out = run("leases", "198.51.100.0/24", ok=False)
    assert "198.51.100.0/24 is held by several pools: give one of" in out
    assert "LocalDefault/198.51.100.0/24/198.51.100.0/25" in out
    assert "LocalDefault/198.51.100.0/24/198.51.100.128/25" in out


def test_an_unknown_pool_says_how_to_find_one(run, ipam):
    out = run("leases", "203.0.113.0/24", ok=False)
    assert "no pool 203.0.113.0/24" in out and "ipledger pools" in out


def test_a_read_only_command_refuses_a_ledger_file_that_does_not_exist(tmp_path):
    missing = tmp_path / "typo.db"
    for command in (
        ["pools"],
        ["leases", "x"],
        ["usage"],
        ["check"],
        ["export"],
        ["history", "--pool", "x"],
        ["gc"],
    ):
        result = invoke(*command, "--db", f"sqlite:///{missing}")
        assert result.exit_code == 1, command
        assert f"no ledger at {missing}" in result.output
        assert not missing.exists()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("not a url", "invalid database URL 'not a url'"),
        ("mysql+nodriver://x@127.0.0.1/z", "invalid database URL"),
        ("mysql://x@127.0.0.1/z", "ipledger keeps its ledger in SQLite or PostgreSQL"),
    ],
)
def test_a_database_url_that_cannot_work_is_a_clean_error(url, says):
    result = invoke("pools", "--db", url)
    assert result.exit_code == 1
    assert says in result.output
    assert "Traceback" not in result.output


def test_a_postgresql_url_without_its_driver_installed_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the [postgres] extra were missing
    result = invoke("pools", "--db", "postgresql+psycopg://ipledger@127.0.0.1:1/ipam")
    assert "pip install 'ipledger[postgres]'" in result.output
    assert result.exit_code == 1
    assert "Traceback" not in result.output


def test_export_writes_a_file_only_its_owner_can_read(run, ipam, tmp_path):
    ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {}, False)
    target = tmp_path / "ledger.json"
    run("export", "-o", str(target))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert json.loads(target.read_text())["subnets"]


def test_version_prints_the_package_version():
    from importlib.metadata import version

    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"ipledger {version('ipledger')}"


def test_a_shared_reservation_is_written_to_history_under_the_shared_pools_id(run, ipam):
    pool = ipam.request_pool("LocalDefault", "198.51.100.0/24", "", SHARED, False).pool_id
    assert pool == "shared/lan/LocalDefault/198.51.100.0/24"
    run("reserve", "--shared", "198.51.100.10-198.51.100.12", "--label", "routers")
    out = run("history", "--pool", pool)
    assert "reserve" in out and "198.51.100.10-198.51.100.12" in out
    run("unreserve", "--shared", "198.51.100.10")
    assert "unreserve" in run("history", "--pool", pool)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda d: d["subnets"][0].pop("cidr"), "subnets[0]: missing 'cidr'"),
        (lambda d: d["subnets"][0].update(cidr=7), "subnets[0].cidr: expected a string, not int"),
        (
            lambda d: d["subnets"][0]["leases"][0].update(address="nope"),
            "subnets[0].leases[0].address: invalid address 'nope'",
        ),
        (
            lambda d: d["subnets"][0]["leases"][0].update(created_at="yesterday"),
            "subnets[0].leases[0].created_at: invalid timestamp 'yesterday'",
        ),
        (
            lambda d: d["subnets"][0]["pools"][0].update(quarantine_s="1h"),
            "subnets[0].pools[0].quarantine_s: expected an integer, not str",
        ),
        (lambda d: d.update(history={}), "history: expected a list, not dict"),
        (
            lambda d: d["subnets"][0]["leases"][0].update(address="203.0.113.9"),
            "subnets[0].leases[0]: 203.0.113.9 cannot be held in 198.51.100.0/24 [held-in-subnet]",
        ),
        (
            lambda d: d["subnets"][0]["pools"][0].update(reuse="random"),
            "subnets[0].pools[0].reuse: expected one of lowest, serial, not 'random'",
        ),
        (
            lambda d: d["subnets"][0]["leases"][0].update(kind="vip"),
            "subnets[0].leases[0].kind: expected one of gateway, endpoint, aux, other, cni, not 'vip'",
        ),
    ],
)
def test_a_malformed_export_is_refused_naming_the_field_and_changes_nothing(
    run, ipam, tmp_path, other_db_url, settings, backend, change, says
):
    pool = ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {}, False).pool_id
    ipam.request_address(pool, "", {})
    exported = tmp_path / "ledger.json"
    run("export", "-o", str(exported))
    data = json.loads(exported.read_text())
    change(data)
    exported.write_text(json.dumps(data))
    result = invoke(
        "import", str(exported), "--db", other_db_url, env={"IPLEDGER_HOST_ID": settings.host_id}
    )
    assert result.exit_code == 1
    assert f"export: {says}" in result.output or f"export refused: {says}" in result.output
    if backend == "sqlite":
        assert not (tmp_path / "other.db").exists(), "a refused import made a ledger file"
    else:
        assert "no pools" in invoke("pools", "--db", other_db_url).output


def test_a_bug_met_during_import_is_not_reported_as_a_malformed_export(
    run, ipam, tmp_path, other_db_url, monkeypatch
):
    ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {}, False)
    exported = tmp_path / "ledger.json"
    run("export", "-o", str(exported))

    def broken(*_args, **_kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr("driver.usecases.transfer.Transfer._import_contents", broken)
    with pytest.raises(KeyError, match="a bug"):
        invoke("import", str(exported), "--db", other_db_url)


def test_quarantine_deadlines_on_a_shared_ledger_follow_the_database_clock(
    engine, settings, monkeypatch, backend
):
    if backend != "postgresql":
        pytest.skip("an SQLite ledger has one host, and so one clock")
    a = Ipam(Store(engine), settings.default_pools, "host-a")
    b = Ipam(Store(engine), settings.default_pools, "host-b")
    pool = a.request_pool(
        "LocalDefault", "198.51.100.0/24", "", {**SHARED, "ipledger.quarantine": "1h"}, False
    ).pool_id
    b.request_pool(
        "LocalDefault", "198.51.100.0/24", "", {**SHARED, "ipledger.quarantine": "1h"}, False
    )
    first = a.request_address(pool, "", {}).split("/")[0]
    a.release_address(pool, first)
    import time

    skewed = time.time() + 2 * 3600
    monkeypatch.setattr("time.time", lambda: skewed)  # this host's clock is 2 h fast
    assert b.request_address(pool, "", {}).split("/")[0] != first

"""The operator commands where a new user tripped: ages with units, what prune-history drops,
addresses whose hold ran out, overlap hints, a network name without Docker.

Run as `ipledger ...` (click's runner) on real SQLite ledgers, and PostgreSQL in the full lane.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from driver.domain.errors import PoolOverlap
from driver.entrypoints.cli import main

MAC = "com.docker.network.endpoint.macaddress"
NAME = "com.docker.network.endpoint.name"
GATEWAY = {"RequestAddressType": "com.docker.network.gateway"}


@pytest.fixture
def run(settings):
    def run(*args: str, ok: bool = True, env: dict[str, str] | None = None) -> str:
        result = CliRunner().invoke(
            main,
            [*args[:1], "--db", settings.db_url, *args[1:]],
            catch_exceptions=False,
            env={"IPLEDGER_HOST_ID": settings.host_id, **(env or {})},
        )
        assert (result.exit_code == 0) == ok, result.output
        return result.output

    return run


@pytest.fixture
def history(ipam, engine):
    """A pool with ten events: six of 2020, four of now."""
    pool = ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {}, False).pool_id
    for i in range(5):
        ipam.request_address(pool, "", {MAC: f"02:00:00:00:00:0{i}"})
    for i in range(5):
        ipam.release_address(pool, f"198.51.100.{i + 1}")
    with engine.begin() as c:
        ids = [r[0] for r in c.execute(text("SELECT id FROM history ORDER BY id"))]
        for n, event in enumerate(ids[:6]):
            c.execute(
                text("UPDATE history SET at = :at WHERE id = :id"),
                {"at": datetime(2020, 1, 1 + n, 12, 0, 0), "id": event},
            )
    return pool


def events(engine) -> int:
    with engine.connect() as c:
        return int(c.execute(text("SELECT count(*) FROM history")).scalar_one())


@pytest.mark.parametrize("bare", ["90", "7", " 30 "])
def test_an_age_without_a_unit_is_refused_naming_the_fix(run, history, engine, bare):
    before = events(engine)
    out = run("prune-history", "--older-than", bare, "--apply", ok=False)
    n = bare.strip()
    assert f"--older-than {bare!r} needs a unit: {n}d (days), {n}h, {n}m or {n}s" in out
    assert events(engine) == before
    assert "needs a unit" in run("gc", "--grace", bare, ok=False)


def test_prune_history_shows_what_it_would_drop_and_drops_nothing_without_apply(
    run, history, engine
):
    before = events(engine)
    out = run("prune-history", "--older-than", "90d")
    assert (
        "would drop 6 history events older than 90d, from 2020-01-01 12:00:00 to 2020-01-06 12:00:00"
        in out
    )
    assert "run with --apply" in out
    assert events(engine) == before


def test_prune_history_with_apply_says_what_it_drops_then_drops_only_that(run, history, engine):
    before = events(engine)
    out = run("prune-history", "--older-than", "30d", "--apply")
    assert "dropping 6 history events older than 30d, from 2020-01-01 12:00:00" in out
    assert "dropped 6 history events older than 30d" in out
    assert events(engine) == before - 6
    assert "no history events older than 30d" in run("prune-history", "--older-than", "30d")


def test_a_network_name_without_a_reachable_docker_says_docker_could_not_be_reached(
    run, ipam, tmp_path
):
    ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {}, False)
    socket = tmp_path / "h-cli-no-docker.sock"
    out = run("leases", "web", ok=False, env={"DOCKER_HOST": f"unix://{socket}"})
    assert "Docker could not be reached" in out
    assert f"unix://{socket}" in out
    assert "network name web" in out
    assert len(out.strip().splitlines()) == 1


def test_a_pool_id_or_subnet_needs_no_docker(run, ipam, tmp_path):
    pool = ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {}, False).pool_id
    env = {"DOCKER_HOST": f"unix://{tmp_path}/h-cli-no-docker.sock"}
    assert "nothing leased" in run("leases", pool, env=env)
    assert "nothing leased" in run("leases", "198.51.100.0/24", env=env)


def overlap_message(ipam) -> str:
    with pytest.raises(PoolOverlap) as refused:
        ipam.request_pool("LocalDefault", "198.51.100.0/25", "", {}, False)
    return refused.value.message


def test_an_overlap_with_a_pool_in_use_is_one_short_line_without_the_gc_hint(ipam):
    pool = ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {}, False).pool_id
    ipam.request_address(pool, "", GATEWAY)
    ipam.request_address(pool, "", {MAC: "02:00:00:00:00:01", NAME: "web"})
    message = overlap_message(ipam)
    assert message == (
        "Pool overlaps with other one on this address space: 198.51.100.0/25 overlaps "
        "198.51.100.0/24 in address space LocalDefault: pool LocalDefault/198.51.100.0/24 "
        "holds 2 leases"
    )
    assert "gc" not in message


@pytest.mark.parametrize("with_gateway", [True, False])
def test_an_overlap_with_a_pool_only_its_gateway_uses_suggests_gc(ipam, with_gateway):
    pool = ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {}, False).pool_id
    if with_gateway:
        ipam.request_address(pool, "", GATEWAY)
    message = overlap_message(ipam)
    assert message.startswith(
        "Pool overlaps with other one on this address space: 198.51.100.0/25 overlaps "
        "198.51.100.0/24 in address space LocalDefault: pool LocalDefault/198.51.100.0/24, "
        "0s old, "
    )
    assert message.endswith(
        "leases only its gateway: if its network is gone, 'ipledger gc --apply' reclaims it"
        if with_gateway
        else "leases nothing: if its network is gone, 'ipledger gc --apply' reclaims it"
    )
    assert "\n" not in message and len(message) < 260


def expire_parked(engine) -> None:
    """Every parked address's hold ran out a minute ago, and nothing allocated since."""
    with engine.begin() as c:
        c.execute(text("UPDATE parked SET until = :t"), {"t": time.time() - 60})


@pytest.fixture
def held(ipam, engine):
    """Two endpoints released in a pool that holds addresses for an hour; one hold ran out."""
    pool = ipam.request_pool(
        "LocalDefault", "198.51.100.0/24", "", {"ipledger.hold": "1h"}, False
    ).pool_id
    for i in (1, 2):
        ipam.request_address(pool, "", {MAC: f"02:00:00:00:00:0{i}", NAME: f"c{i}"})
    ipam.release_address(pool, "198.51.100.1")
    expire_parked(engine)
    ipam.release_address(pool, "198.51.100.2")
    return pool


def test_an_address_whose_hold_ran_out_is_free_in_leases_pools_and_the_page(
    run, held, ipam, settings
):
    from driver.domain.status import CellState
    from driver.usecases.status import StatusViews

    rows = run("leases", held).splitlines()
    assert [r.split()[:2] for r in rows[1:]] == [["198.51.100.2", "held"]]
    pools = run("pools", "--json")
    (report,) = json.loads(pools)
    assert (report["parked"], report["free"]) == (1, 253)
    views = StatusViews(ipam.store, settings.host_id)
    (status,) = views.overview().pools
    assert status.usage.parked == 1
    page = views.pool(held)
    assert page.counts[CellState.PARKED] == 1
    assert [c.state for c in page.cells[:2]] == [CellState.FREE, CellState.PARKED]


def test_a_block_map_counts_an_address_whose_hold_ran_out_as_free(ipam, engine, settings):
    from driver.usecases.status import StatusViews

    pool = ipam.request_pool("LocalDefault", "10.20.0.0/16", "", {"ipledger.hold": "1h"}, False)
    ipam.request_address(pool.pool_id, "", {MAC: "02:00:00:00:00:01"})
    ipam.release_address(pool.pool_id, "10.20.0.1")
    expire_parked(engine)
    page = StatusViews(ipam.store, settings.host_id).pool(pool.pool_id)
    assert page.status.usage.parked == 0
    assert page.cells[0].parked == 0 and page.cells[0].leased == 0


def test_since_and_until_are_printed_in_one_format(run, held):
    (_header, line) = run("leases", held).splitlines()
    until = line.split("until ")[1].strip()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", until), line


def test_a_network_option_without_its_prefix_is_refused_and_makes_no_pool(run, ipam):
    from driver.domain.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match=r"ipledger\.hold=10m"):
        ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {"hold": "10m"}, False)
    assert "no pools" in run("pools")

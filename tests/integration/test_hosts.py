"""The hosts of a ledger, on SQLite and PostgreSQL: heartbeats, `ipledger hosts`, retiring a dead
host (its leases released as its pools' reuse policies say) and admitting it back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from driver.domain.errors import HostRetired
from driver.domain.hosts import STALE_AFTER_S, HostState
from driver.entrypoints.cli import main
from driver.storage.models import attachments, history, hosts, leases, parked
from driver.storage.store import Store
from driver.usecases.hosts import Hosts
from driver.usecases.ipam import Ipam

SHARED = {"ipledger.shared": "lan", "ipledger.quarantine": "1h"}
GATEWAY = {"RequestAddressType": "com.docker.network.gateway"}
DEAD, ALIVE = "host-dead", "host-alive"


def hosts_cli(db_url: str, *args: str, ok: bool = True, host_id: str = ALIVE) -> str:
    result = CliRunner().invoke(
        main,
        ["hosts", *args],
        catch_exceptions=False,
        env={"IPLEDGER_DB": db_url, "IPLEDGER_HOST_ID": host_id},
    )
    assert (result.exit_code == 0) == ok, result.output
    return result.output


def last_seen_ago(engine, host_id: str, seconds: float) -> None:
    with engine.begin() as c:
        c.execute(
            update(hosts)
            .where(hosts.c.id == host_id)
            .values(last_seen=datetime.now(UTC) - timedelta(seconds=seconds))
        )


@pytest.fixture
def two_hosts(engine, settings):
    """A dead host and a live one, both using one shared pool (quarantine 1h)."""
    store = Store(engine)
    dead = Ipam(store, settings.default_pools, DEAD)
    alive = Ipam(store, settings.default_pools, ALIVE)
    Hosts(store, DEAD).beat("web-1", "0.2.0")
    Hosts(store, ALIVE).beat("web-2", "0.2.0")
    pool = dead.request_pool("LocalDefault", "198.51.100.0/24", "", SHARED, False).pool_id
    alive.request_pool("LocalDefault", "198.51.100.0/24", "", SHARED, False)
    dead.request_address(pool, "", GATEWAY)
    dead.request_address(pool, "198.51.100.10", {})
    dead.request_address(pool, "198.51.100.11", {})
    alive.request_address(pool, "198.51.100.20", {})
    last_seen_ago(engine, DEAD, 3600)
    return pool


def test_a_heartbeat_records_the_host_with_its_name_version_and_leases(engine, settings, two_hosts):
    listed = {h["host"]: h for h in json.loads(hosts_cli(settings.db_url, "--json"))}
    assert listed[ALIVE]["name"] == "web-2"
    assert listed[ALIVE]["version"] == "0.2.0"
    assert listed[ALIVE]["seen_recently"] is True
    assert listed[ALIVE]["state"] == "active"
    assert listed[DEAD]["last_seen_age_s"] >= 3600
    assert (listed[DEAD]["leases"], listed[ALIVE]["leases"]) == (3, 1)
    table = hosts_cli(settings.db_url)
    assert "web-1" in table and "1h ago" in table and "active, silent" in table


def test_a_heartbeat_refreshes_the_row_and_keeps_the_first_seen(engine, settings):
    store = Store(engine)
    Hosts(store, "h").beat("one", "0.1.0")
    last_seen_ago(engine, "h", 600)
    Hosts(store, "h").beat("two", "0.2.0")
    (report,) = Hosts(store, "h").reports()
    assert (report.host.name, report.host.version) == ("two", "0.2.0")
    assert report.host.seen_recently(datetime.now(UTC))
    assert report.host.first_seen < report.host.last_seen


def test_retiring_a_host_seen_recently_is_refused_and_changes_nothing(engine, settings, two_hosts):
    out = hosts_cli(settings.db_url, "retire", ALIVE, "--apply", ok=False)
    assert "was seen" in out and f"within {STALE_AFTER_S:.0f} s" in out and "--force" in out
    with engine.connect() as c:
        assert c.execute(select(hosts.c.state).where(hosts.c.id == ALIVE)).scalar() == "active"
        assert len(c.execute(select(leases)).all()) == 4


def test_retire_without_apply_only_says_what_it_would_do(engine, settings, two_hosts):
    out = hosts_cli(settings.db_url, "retire", DEAD)
    assert "would retire host web-1 (host-dead)" in out and "its 3 leases" in out
    assert "--apply" in out
    with engine.connect() as c:
        assert c.execute(select(hosts.c.state).where(hosts.c.id == DEAD)).scalar() == "active"


def test_retire_releases_every_lease_of_the_dead_host_as_its_pool_reuse_policy_says(
    engine, settings, two_hosts
):
    out = hosts_cli(settings.db_url, "retire", "web-1", "--apply")
    assert "retired host web-1 (host-dead): 2 leases released, 1 shared pools left" in out
    assert "1 shared gateways kept" in out
    with engine.connect() as c:
        held = {
            (row.host_id, row.kind) for row in c.execute(select(leases.c.host_id, leases.c.kind))
        }
        # the gateway is every host's: it stays while another host uses the pool
        assert held == {(DEAD, "gateway"), (ALIVE, "aux")}
        # quarantine 1h: the released addresses are parked, not free
        assert len(c.execute(select(parked)).all()) == 2
        assert c.execute(select(attachments.c.host_id)).scalars().all() == [ALIVE]
        events = c.execute(
            select(history.c.host_id, history.c.address).where(history.c.action == "host-retire")
        ).all()
        row = c.execute(select(hosts).where(hosts.c.id == DEAD)).one()
    assert sorted(events) == [(DEAD, ""), (DEAD, "198.51.100.10"), (DEAD, "198.51.100.11")]
    assert row.state == "retired" and row.retired_at is not None
    assert row.retired_by.endswith("@" + settings.host_name) or "@" in row.retired_by
    listed = {h["host"]: h for h in json.loads(hosts_cli(settings.db_url, "--json"))}
    assert listed[DEAD]["state"] == "retired" and listed[DEAD]["leases"] == 1


def test_a_shared_pool_keeps_its_gateway_when_its_last_host_is_retired(engine, settings, two_hosts):
    hosts_cli(settings.db_url, "retire", DEAD, "--apply")
    last_seen_ago(engine, ALIVE, 3600)
    out = hosts_cli(settings.db_url, "retire", ALIVE, "--apply")
    assert "1 leases released, 1 shared pools left" in out
    with engine.connect() as c:
        # the pool stays (Docker's ReleasePool or gc releases a pool), and with it its gateway
        assert c.execute(select(leases.c.kind)).scalars().all() == ["gateway"]
        assert c.execute(select(attachments)).all() == []


def test_a_retired_host_hands_out_nothing_until_admitted(engine, settings, two_hosts):
    serving = Ipam(Store(engine, serving_host=DEAD), settings.default_pools, DEAD)
    hosts_cli(settings.db_url, "retire", DEAD, "--apply")
    for call in (
        lambda: serving.request_address(two_hosts, "", {}),
        lambda: serving.release_address(two_hosts, "198.51.100.20"),
        lambda: serving.request_pool("LocalDefault", "203.0.113.0/24", "", {}, False),
    ):
        with pytest.raises(HostRetired, match=f"ipledger hosts admit {DEAD}$"):
            call()
    with engine.connect() as c:  # the live host's lease is untouched
        assert c.execute(select(leases.c.host_id).where(leases.c.kind == "aux")).all() == [(ALIVE,)]
    # its heartbeat goes on (so that operators see it is back), and does not admit it
    assert Hosts(Store(engine), DEAD).beat("web-1", "0.2.0").state == HostState.RETIRED
    out = hosts_cli(settings.db_url, "admit", DEAD)
    assert "admitted host web-1 (host-dead)" in out
    assert serving.request_address(two_hosts, "", {}).startswith("198.51.100.")


def test_retiring_a_retired_host_or_admitting_an_active_one_is_refused(engine, settings, two_hosts):
    assert "is not retired" in hosts_cli(settings.db_url, "admit", DEAD, ok=False)
    hosts_cli(settings.db_url, "retire", DEAD, "--apply")
    assert "retired already" in hosts_cli(settings.db_url, "retire", DEAD, "--apply", ok=False)


def test_an_unknown_host_is_named_in_the_error(settings, engine):
    out = hosts_cli(settings.db_url, "retire", "nowhere", "--apply", ok=False)
    assert "no host 'nowhere' in the ledger" in out


def test_a_host_name_two_hosts_share_must_be_given_as_an_id(engine, settings):
    store = Store(engine)
    Hosts(store, "a").beat("twin", "0.2.0")
    Hosts(store, "b").beat("twin", "0.2.0")
    out = hosts_cli(settings.db_url, "retire", "twin", "--apply", "--force", ok=False)
    assert "2 hosts are named 'twin'" in out and "a, b" in out


def test_a_host_name_with_control_characters_is_escaped_in_the_list(engine, settings):
    Hosts(Store(engine), "h").beat("evil\x1b[2J\nname", "0.2.0")
    out = hosts_cli(settings.db_url)
    assert "evil\\x1b[2J\\nname" in out and "\x1b" not in out


def test_hosts_on_an_empty_ledger_says_so(engine, settings):
    assert "no hosts" in hosts_cli(settings.db_url)


def test_every_instance_exports_every_host_with_its_heartbeat_and_leases(engine, two_hosts):
    from prometheus_client import CollectorRegistry, generate_latest

    from driver.observability.metrics import LedgerCollector
    from driver.usecases.admin import Admin

    registry = CollectorRegistry()
    registry.register(LedgerCollector(Admin(Store(engine), ALIVE)))
    text = generate_latest(registry).decode()
    assert 'ipledger_host_leases{host="host-dead",name="web-1"} 3.0' in text
    assert 'ipledger_host_leases{host="host-alive",name="web-2"} 1.0' in text
    assert 'ipledger_host_retired{host="host-dead",name="web-1"} 0.0' in text
    seen = float(
        next(
            line.split()[-1]
            for line in text.splitlines()
            if line.startswith('ipledger_host_last_seen_timestamp_seconds{host="host-dead"')
        )
    )
    assert abs(datetime.now(UTC).timestamp() - 3600 - seen) < 60


@pytest.fixture
def empty_db_url(backend, tmp_path, request):
    """A database with no schema yet."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/old.db"
        return
    cluster = request.getfixturevalue("postgres")
    url = cluster.new_database(template=None)
    yield url
    cluster.drop_database(url)


def test_the_hosts_a_ledger_knew_before_the_hosts_table_are_listed_never_seen(empty_db_url):
    db_url = empty_db_url
    from alembic import command
    from sqlalchemy import text

    from driver.storage.engine import make_engine
    from driver.storage.schema import _config, migrate

    engine = make_engine(db_url)
    config = _config()
    with engine.begin() as c:
        config.attributes["connection"] = c
        command.upgrade(config, "0006")
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO served VALUES ('old-a', 'ipledger', '/run/x.sock', "
                "'2026-01-01 00:00:00')"
            )
        )
        c.execute(text("INSERT INTO attachments VALUES ('p', 'old-b', '2026-01-01 00:00:00')"))
        c.execute(text("INSERT INTO attachments VALUES ('q', 'old-a', '2026-01-01 00:00:00')"))
    migrate(engine)
    try:
        reports = {r.host.id: r for r in Hosts(Store(engine), "x").reports()}
        assert set(reports) == {"old-a", "old-b"}
        assert reports["old-a"].drivers == ("ipledger",)
        assert all(r.host.last_seen is None and not r.host.retired for r in reports.values())
        assert "never" in hosts_cli(db_url)
    finally:
        engine.dispose()


def test_history_shows_each_hosts_name(engine, settings, two_hosts):
    result = CliRunner().invoke(
        main,
        ["history", "--pool", two_hosts],
        env={"IPLEDGER_DB": settings.db_url, "IPLEDGER_HOST_ID": ALIVE},
    )
    assert result.exit_code == 0, result.output
    hosts_shown = {line.split()[2] for line in result.output.splitlines()[1:]}
    assert hosts_shown == {"web-1", "web-2"}


def test_retiring_a_swarm_manager_leaves_the_swarms_leases_which_serve_containers_on_every_node(
    engine, settings, backend
):
    if backend != "postgresql":
        pytest.skip("the swarm owns global pools on a shared ledger only")
    store = Store(engine)
    manager = Ipam(store, settings.default_pools, DEAD)
    Hosts(store, DEAD).beat("manager-1", "0.2.0")
    pool = manager.request_pool("GlobalDefault", "203.0.113.0/24", "", {}, False).pool_id
    manager.request_address(pool, "", GATEWAY)
    manager.request_address(pool, "203.0.113.10", {})
    last_seen_ago(engine, DEAD, 3600)
    out = hosts_cli(settings.db_url, "retire", DEAD, "--apply")
    assert "0 leases released" in out
    with engine.connect() as c:
        assert sorted(c.execute(select(leases.c.kind)).scalars().all()) == ["aux", "gateway"]


def test_retire_keeps_the_leases_of_the_hosts_own_pools_so_admitting_it_hands_out_no_double(
    engine, settings, two_hosts
):
    store = Store(engine)
    dead = Ipam(store, settings.default_pools, DEAD)
    own = dead.request_pool("LocalDefault", "203.0.113.0/24", "", {}, False).pool_id
    assert dead.request_address(own, "", GATEWAY) == "203.0.113.1/24"
    assert dead.request_address(own, "", {}) == "203.0.113.2/24"
    out = hosts_cli(settings.db_url, "retire", DEAD, "--apply")
    assert "2 leases released" in out
    assert "2 leases in its own pools kept: no other host draws from them" in out
    hosts_cli(settings.db_url, "admit", DEAD)
    # the network's gateway and its container's address are still held: not answered again
    assert dead.request_address(own, "", {}) == "203.0.113.3/24"
    with engine.connect() as c:
        own_leases = c.execute(
            select(leases.c.host_id, leases.c.kind).where(leases.c.pool_id == own)
        ).all()
    assert sorted(own_leases) == [(DEAD, "gateway"), (DEAD, "other"), (DEAD, "other")]


def test_admit_attaches_the_host_again_to_the_shared_pools_retire_took_it_off(
    engine, settings, two_hosts
):
    store = Store(engine)
    dead = Ipam(store, settings.default_pools, DEAD)
    alive = Ipam(store, settings.default_pools, ALIVE)
    hosts_cli(settings.db_url, "retire", DEAD, "--apply")
    out = hosts_cli(settings.db_url, "admit", DEAD)
    assert "attached again to 1 shared pools" in out
    alive.release_address(two_hosts, "198.51.100.20")
    alive.release_pool(two_hosts)
    with engine.connect() as c:  # the admitted host still uses the pool: it stays
        assert c.execute(select(attachments.c.host_id)).scalars().all() == [DEAD]
        held = c.execute(select(leases.c.host_id, leases.c.kind)).all()
    assert held == [(DEAD, "gateway")]
    mine = dead.request_address(two_hosts, "", {})
    pool = alive.request_pool("LocalDefault", "198.51.100.0/24", "", SHARED, False).pool_id
    assert pool == two_hosts
    taken = {alive.request_address(pool, "", {}) for _ in range(3)}
    assert mine not in taken and "198.51.100.1/24" not in taken


def test_a_request_in_a_shared_pool_attaches_a_host_that_is_not_attached(
    engine, settings, two_hosts
):
    store = Store(engine)
    with engine.begin() as c:  # its attachment lost (retired and admitted before this fix)
        c.execute(attachments.delete().where(attachments.c.host_id == DEAD))
    Ipam(store, settings.default_pools, DEAD).request_address(two_hosts, "", {})
    with engine.connect() as c:
        assert sorted(c.execute(select(attachments.c.host_id)).scalars().all()) == [ALIVE, DEAD]


def test_a_host_id_with_control_characters_is_escaped_in_the_metrics(engine):
    from prometheus_client import CollectorRegistry, generate_latest

    from driver.observability.metrics import LedgerCollector
    from driver.usecases.admin import Admin

    store = Store(engine)
    Hosts(store, "evil\x1b[2J").beat("web-9", "0.2.0")  # written before the id was checked
    registry = CollectorRegistry()
    registry.register(LedgerCollector(Admin(store, ALIVE)))
    text = generate_latest(registry).decode()
    assert "\x1b" not in text
    assert 'ipledger_host_retired{host="evil\\\\x1b[2J",name="web-9"} 0.0' in text


def test_a_second_serve_with_the_same_host_id_is_warned_about_once_per_name(
    engine, settings, caplog
):
    from dataclasses import replace

    from driver.entrypoints.heartbeat import Heartbeat

    other = Hosts(Store(engine), "twin")
    ours = Heartbeat(replace(settings, host_id="twin", host_name="machine-b"))
    try:
        other.beat("machine-a", "0.2.0")
        last_seen_ago(engine, "twin", STALE_AFTER_S + 60)
        ours.beat()  # a host renamed after a long silence: no other serve
        other.beat("machine-a", "0.2.0")
        ours.beat()
        other.beat("machine-a", "0.2.0")
        ours.beat()  # the same other serve again: said once already
        other.beat("machine-c", "0.2.0")
        ours.beat()
    finally:
        ours.stop()
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 2, warned
    assert "'machine-a'" in warned[0] and "'machine-c'" in warned[1]
    assert "another ipledger serve" in warned[0] and "IPLEDGER_HOST_ID" in warned[0]

"""The swarm's global address space on a ledger: as a new leader restores it after another
manager led (the requests swarmkit's allocator makes), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select, text

from driver.config import Settings
from driver.domain.errors import AddressInUse, PoolOverlap
from driver.storage.models import leases, pools
from driver.storage.store import Store
from driver.usecases.ipam import Ipam

GW = {"RequestAddressType": "com.docker.network.gateway"}
SERIAL = {"com.docker.network.ipam.serial": "true"}
OVERLAY = "198.51.100.0/24"


def manager(engine: Engine, host: str, settings: Settings | None = None) -> Ipam:
    return Ipam(Store(engine), settings.default_pools if settings else (), host)


def leader_a_made_a_network(engine: Engine) -> tuple[Ipam, str, list[str]]:
    a = manager(engine, "host-a")
    pool_id = a.request_pool("GlobalDefault", OVERLAY, "", SERIAL, False).pool_id
    held = [a.request_address(pool_id, "", GW), a.request_address(pool_id, "", SERIAL)]
    held.append(a.request_address(pool_id, "", SERIAL))
    return a, pool_id, [h.split("/")[0] for h in held]


def rows(engine: Engine) -> tuple[list[tuple[str, str]], int]:
    with engine.connect() as c:
        owned = sorted(tuple(r) for r in c.execute(select(pools.c.owner, pools.c.id)))
        return owned, len(c.execute(select(leases.c.address)).all())


def test_a_new_leader_finds_the_swarms_pool_and_its_leases_on_a_shared_ledger(engine, backend):
    if backend != "postgresql":
        pytest.skip("one SQLite ledger per host: a new leader has its own ledger")
    _, pool_id, held = leader_a_made_a_network(engine)
    b = manager(engine, "host-b")
    assert b.request_pool("GlobalDefault", OVERLAY, "", SERIAL, False).pool_id == pool_id
    assert b.request_address(pool_id, held[0], GW) == f"{held[0]}/24"
    for address in held[1:]:
        assert b.request_address(pool_id, address, SERIAL) == f"{address}/24"
    assert rows(engine) == ([("swarm", pool_id)], 3)
    # each lease answers the new leader once: a second request for one is another holder
    with pytest.raises(AddressInUse):
        b.request_address(pool_id, held[1], SERIAL)
    assert b.request_address(pool_id, "", SERIAL).split("/")[0] not in held
    for address in held:
        assert b.release_address(pool_id, address)
    b.release_pool(pool_id)
    assert rows(engine) == ([], 0)


def test_a_global_pool_stays_the_hosts_own_on_an_sqlite_ledger(engine, backend):
    if backend != "sqlite":
        pytest.skip("the SQLite ledger's rule")
    a, pool_id, held = leader_a_made_a_network(engine)
    assert rows(engine) == ([("local", pool_id)], 3)
    with pytest.raises(PoolOverlap):
        a.request_pool("GlobalDefault", OVERLAY, "", SERIAL, False)
    with pytest.raises(AddressInUse):
        a.request_address(pool_id, held[1], SERIAL)


def test_a_default_global_pool_is_picked_from_the_swarms_plan_by_any_host(
    engine, backend, settings
):
    if backend != "postgresql":
        pytest.skip("a shared ledger's rule")
    a, b = manager(engine, "host-a", settings), manager(engine, "host-b", settings)
    first = a.request_pool("GlobalDefault", "", "", {}, False)
    second = b.request_pool("GlobalDefault", "", "", {}, False)
    assert first.pool != second.pool
    assert {owner for owner, _ in rows(engine)[0]} == {"swarm"}


def test_the_migration_gives_the_swarm_the_global_pools_one_host_holds(postgres):
    from alembic import command

    from driver.storage.engine import make_engine
    from driver.storage.schema import _config, migrate

    url = postgres.new_database(template=None)
    engine = make_engine(url)
    try:
        config = _config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0006")
        with engine.begin() as c:
            for owner, space, cidr, first in (
                ("host-a", "GlobalDefault", "198.51.100.0/24", 1),  # alone: the swarm's
                ("host-a", "GlobalDefault", "203.0.113.0/24", 2),  # held twice: stays
                ("host-b", "GlobalDefault", "203.0.113.0/24", 2),
                ("host-a", "LocalDefault", "192.0.2.0/24", 3),  # a host's own
            ):
                subnet_id = c.execute(
                    text(
                        "INSERT INTO subnets (owner, space, version, cidr, first, last, refs, "
                        "created_at) VALUES (:o, :s, 4, :c, :f, :f, 1, now()) RETURNING id"
                    ),
                    {"o": owner, "s": space, "c": cidr, "f": bytes([first] * 16)},
                ).scalar_one()
                c.execute(
                    text(
                        "INSERT INTO pools (owner, id, subnet_id, space, cidr, range_first, "
                        "range_last, options, created_at) VALUES (:o, :i, :n, :s, :c, :f, :f, "
                        "'{}', now())"
                    ),
                    {
                        "o": owner,
                        "i": f"{space}/{cidr}",
                        "n": subnet_id,
                        "s": space,
                        "c": cidr,
                        "f": bytes([first] * 16),
                    },
                )
        migrate(engine)
        owned = rows(engine)[0]
        assert owned == [
            ("host-a", "GlobalDefault/203.0.113.0/24"),
            ("host-a", "LocalDefault/192.0.2.0/24"),
            ("host-b", "GlobalDefault/203.0.113.0/24"),
            ("swarm", "GlobalDefault/198.51.100.0/24"),
        ]
    finally:
        engine.dispose()
        postgres.drop_database(url)


def test_a_hosts_own_global_pool_from_before_is_still_its_to_use_and_release(engine, backend):
    if backend != "postgresql":
        pytest.skip("a shared ledger's rule")
    a = manager(engine, "host-a")
    pool_id = a.request_pool("GlobalDefault", OVERLAY, "", {}, False).pool_id
    with engine.begin() as c:  # as a ledger from before, that migration 0008 left as it was
        c.execute(text("UPDATE pools SET owner = 'host-a'"))
        c.execute(text("UPDATE subnets SET owner = 'host-a'"))
    assert a.request_address(pool_id, "", {}) == "198.51.100.1/24"
    assert a.reclaim_pool(pool_id, datetime.now(UTC) + timedelta(minutes=1))
    assert rows(engine) == ([], 0)

"""The use cases on a real SQLite file."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select, text

from driver.domain.errors import (
    AddressInUse,
    AddressOutOfRange,
    InvalidRequest,
    NoAvailableAddress,
    PoolNotFound,
    PoolOverlap,
    PoolsExhausted,
)
from driver.storage.engine import make_engine
from driver.storage.models import Base, leases
from driver.storage.store import Store
from driver.usecases.ipam import Ipam

GW = {"RequestAddressType": "com.docker.network.gateway"}


def snapshot(engine: Engine) -> dict[str, list[tuple]]:
    with engine.connect() as c:
        return {
            t.name: sorted(map(tuple, c.execute(select(t)))) for t in Base.metadata.sorted_tables
        }


def pool(ipam: Ipam, cidr: str = "", subpool: str = "", v6: bool = False, space="LocalDefault"):
    return ipam.request_pool(space, cidr, subpool, {}, v6)


def test_an_explicit_pool_gets_a_deterministic_id_and_its_masked_cidr(ipam):
    grant = pool(ipam, "192.0.2.9/24", "192.0.2.128/25")
    assert grant.pool_id == "LocalDefault/192.0.2.0/24/192.0.2.128/25"
    assert grant.pool == "192.0.2.0/24"


def test_the_gateway_is_the_first_dynamic_address_and_containers_follow(ipam):
    p = pool(ipam, "192.0.2.0/24").pool_id
    assert ipam.request_address(p, "", GW) == "192.0.2.1/24"
    assert ipam.request_address(p, "", {}) == "192.0.2.2/24"
    assert ipam.request_address(p, "192.0.2.200", {}) == "192.0.2.200/24"
    assert ipam.request_address(p, "", {}) == "192.0.2.3/24"


def test_dynamic_addresses_come_from_the_ip_range_and_static_ones_from_anywhere(ipam):
    p = pool(ipam, "192.0.2.0/24", "192.0.2.128/25").pool_id
    assert ipam.request_address(p, "", GW) == "192.0.2.128/24"
    assert ipam.request_address(p, "192.0.2.5", {}) == "192.0.2.5/24"
    assert ipam.request_address(p, "", {}) == "192.0.2.129/24"


def test_the_lowest_free_address_is_reused_after_a_release(ipam):
    p = pool(ipam, "198.51.100.0/24").pool_id
    for _ in range(4):
        ipam.request_address(p, "", {})
    ipam.release_address(p, "198.51.100.2")
    assert ipam.request_address(p, "", {}) == "198.51.100.2/24"


@pytest.mark.parametrize(
    ("address", "error", "message"),
    [
        (
            "192.0.2.0",
            AddressInUse,
            "Address already in use: 192.0.2.0 (the network address of 192.0.2.0/24 is reserved)",
        ),
        (
            "192.0.2.255",
            AddressInUse,
            "Address already in use: 192.0.2.255 (the broadcast address of 192.0.2.0/24 is reserved)",
        ),
        (
            "192.0.2.1",
            AddressInUse,
            "Address already in use: 192.0.2.1 (held by the gateway in 192.0.2.0/24)",
        ),
        (
            "198.51.100.1",
            AddressOutOfRange,
            "requested address is out of range: 198.51.100.1 is not in pool 192.0.2.0/24",
        ),
        (
            "2001:db8::1",
            AddressOutOfRange,
            "requested address is out of range: 2001:db8::1 is not in pool 192.0.2.0/24",
        ),
        (
            "192.0.2.1/24",
            InvalidRequest,
            "invalid address '192.0.2.1/24': expected a plain IP address, without a zone or a prefix length",
        ),
    ],
)
def test_a_refused_static_address_says_why_and_changes_nothing(
    ipam, engine, address, error, message
):
    p = pool(ipam, "192.0.2.0/24").pool_id
    ipam.request_address(p, "", GW)
    before = snapshot(engine)
    with pytest.raises(error) as caught:
        ipam.request_address(p, address, {})
    assert caught.value.message == message
    assert snapshot(engine) == before


def test_a_full_pool_says_so_and_recovers_after_a_release(ipam):
    p = pool(ipam, "192.0.2.0/29").pool_id
    got = [ipam.request_address(p, "", {}) for _ in range(6)]
    assert got[-1] == "192.0.2.6/29"
    with pytest.raises(
        NoAvailableAddress,
        match=r"no available addresses on this pool: pool 192\.0\.2\.0/29 is full",
    ):
        ipam.request_address(p, "", {})
    ipam.release_address(p, "192.0.2.4")
    assert ipam.request_address(p, "", {}) == "192.0.2.4/29"


def test_a_full_ip_range_is_full_even_when_the_rest_of_the_subnet_is_free(ipam):
    p = pool(ipam, "192.0.2.0/24", "192.0.2.64/31").pool_id
    ipam.request_address(p, "", {})
    ipam.request_address(p, "", {})
    with pytest.raises(
        NoAvailableAddress, match=r"ip-range 192\.0\.2\.64/31 of pool 192\.0\.2\.0/24 is full"
    ):
        ipam.request_address(p, "", {})


@pytest.mark.parametrize(
    ("cidr", "first", "second"),
    [
        ("192.0.2.0/31", "192.0.2.0/31", "192.0.2.1/31"),
        ("192.0.2.8/32", "192.0.2.8/32", None),
        ("192.0.2.8/30", "192.0.2.9/30", "192.0.2.10/30"),
    ],
)
def test_small_ipv4_subnets_follow_rfc_3021(ipam, cidr, first, second):
    p = pool(ipam, cidr).pool_id
    assert ipam.request_address(p, "", {}) == first
    if second is None:
        with pytest.raises(NoAvailableAddress):
            ipam.request_address(p, "", {})
    else:
        assert ipam.request_address(p, "", {}) == second


@pytest.mark.parametrize("cidr", ["2001:db8::/64", "2001:db8::/48", "2001:db8::/32"])
def test_ipv6_pools_of_any_size_hand_out_the_lowest_address_after_the_reserved_first(ipam, cidr):
    p = pool(ipam, cidr).pool_id
    prefix = cidr.split("/")[1]
    assert ipam.request_address(p, "", GW) == f"2001:db8::1/{prefix}"
    assert ipam.request_address(p, "2001:db8::ffff", {}) == f"2001:db8::ffff/{prefix}"
    assert ipam.request_address(p, "", {}) == f"2001:db8::2/{prefix}"
    with pytest.raises(AddressInUse, match="subnet-router anycast"):
        ipam.request_address(p, "2001:db8::", {})


def test_an_ipv6_ip_range_is_honoured(ipam):
    p = pool(ipam, "2001:db8:1::/64", "2001:db8:1::100/120").pool_id
    assert ipam.request_address(p, "", GW) == "2001:db8:1::100/64"
    assert ipam.request_address(p, "", {}) == "2001:db8:1::101/64"


def test_an_overlapping_explicit_pool_is_refused_in_the_same_space_only(ipam, engine):
    pool(ipam, "192.0.2.0/24")
    before = snapshot(engine)
    for cidr in ("192.0.2.0/25", "192.0.0.0/16", "192.0.2.0/24"):
        with pytest.raises(PoolOverlap, match="Pool overlaps with other one on this address space"):
            pool(ipam, cidr)
    assert snapshot(engine) == before
    assert pool(ipam, "192.0.2.0/24", space="GlobalDefault").pool_id == "GlobalDefault/192.0.2.0/24"
    assert pool(ipam, "192.0.3.0/24").pool == "192.0.3.0/24"


def test_sub_pools_of_one_subnet_share_its_addresses(ipam):
    a = pool(ipam, "192.0.2.0/24", "192.0.2.0/25").pool_id
    b = pool(ipam, "192.0.2.0/24", "192.0.2.128/25").pool_id
    assert ipam.request_address(a, "192.0.2.200", {}) == "192.0.2.200/24"
    with pytest.raises(AddressInUse):
        ipam.request_address(b, "192.0.2.200", {})
    # what pool a left behind goes back to the subnet that b still holds
    ipam.release_pool(a)
    assert ipam.request_address(b, "192.0.2.200", {}) == "192.0.2.200/24"


def test_a_release_through_a_sibling_pool_is_refused_and_frees_nothing(ipam, engine):
    # Docker never sends it (measured on 20.10, 26.1 and 28.5): a client that does must not
    # free the lease another network holds in the subnet both pools share
    a = pool(ipam, "192.0.2.0/24", "192.0.2.0/25").pool_id
    b = pool(ipam, "192.0.2.0/24", "192.0.2.128/25").pool_id
    ipam.request_address(b, "", GW)
    mine = ipam.request_address(b, "", {"com.docker.network.endpoint.name": "b1"})
    assert mine == "192.0.2.129/24"
    before = snapshot(engine)
    with pytest.raises(
        AddressInUse,
        match=(
            r"^Address already in use: 192\.0\.2\.129 \(held by an endpoint \(name b1\) in pool "
            r"LocalDefault/192\.0\.2\.0/24/192\.0\.2\.128/25; pool "
            r"LocalDefault/192\.0\.2\.0/24/192\.0\.2\.0/25 does not hold it, so it cannot "
            r"release it\)$"
        ),
    ):
        ipam.release_address(a, "192.0.2.129")
    assert snapshot(engine) == before
    # the address stays b1's: nobody else gets it, and b releases it as before
    with pytest.raises(AddressInUse):
        ipam.request_address(a, "192.0.2.129", {})
    assert ipam.request_address(b, "", {}) == "192.0.2.130/24"
    assert ipam.release_address(b, "192.0.2.129") is True
    assert ipam.request_address(a, "192.0.2.129", {}) == "192.0.2.129/24"
    # an address a holds, also one inside b's ip-range, is released through a
    assert ipam.release_address(a, "192.0.2.129") is True


def test_a_subnet_is_freed_with_its_last_pool(ipam, engine):
    a = pool(ipam, "192.0.2.0/24", "192.0.2.0/25").pool_id
    b = pool(ipam, "192.0.2.0/24", "192.0.2.128/25").pool_id
    ipam.request_address(b, "", GW)
    ipam.release_pool(a)
    ipam.release_pool(b)
    assert all(
        rows == []
        for name, rows in snapshot(engine).items()
        if name not in ("alembic_version", "history")
    )
    assert pool(ipam, "192.0.2.0/24").pool_id == "LocalDefault/192.0.2.0/24"


def test_the_same_ip_range_twice_is_an_overlap(ipam):
    pool(ipam, "192.0.2.0/24", "192.0.2.0/25")
    with pytest.raises(PoolOverlap):
        pool(ipam, "192.0.2.0/24", "192.0.2.0/25")


@pytest.mark.parametrize(
    ("cidr", "subpool", "message"),
    [
        (
            "192.0.2.0/24",
            "192.0.3.0/25",
            "ip-range (SubPool) 192.0.3.0/25 is not inside pool 192.0.2.0/24",
        ),
        (
            "192.0.2.0/24",
            "2001:db8::/64",
            "ip-range (SubPool) 2001:db8::/64 is not inside pool 192.0.2.0/24",
        ),
        ("", "192.0.2.0/25", "ip-range (SubPool) 192.0.2.0/25 given without a pool (subnet)"),
        ("192.0.2.0/33", "", "invalid pool '192.0.2.0/33': bad prefix length '33'"),
    ],
)
def test_an_invalid_ip_range_is_refused(ipam, engine, cidr, subpool, message):
    before = snapshot(engine)
    with pytest.raises(InvalidRequest) as caught:
        pool(ipam, cidr, subpool)
    assert caught.value.message == message
    assert snapshot(engine) == before


def test_an_unknown_address_space_is_refused(ipam):
    with pytest.raises(InvalidRequest, match="unknown address space 'local'"):
        pool(ipam, "192.0.2.0/24", space="local")


def test_default_pools_hand_out_a_different_subnet_while_earlier_ones_are_held(ipam):
    got = [pool(ipam).pool for _ in range(3)]
    assert got == ["10.128.0.0/24", "10.128.1.0/24", "10.128.2.0/24"]
    ipam.release_pool("LocalDefault/10.128.1.0/24")
    assert pool(ipam).pool == "10.128.1.0/24"
    assert pool(ipam, v6=True).pool == "fd42:1edb::/64"
    assert pool(ipam, v6=True).pool == "fd42:1edb:0:1::/64"


def test_default_pools_skip_subnets_taken_explicitly(ipam):
    pool(ipam, "10.128.0.0/23")
    assert pool(ipam).pool == "10.128.2.0/24"


def test_docker_29_size_only_pools_carve_a_subnet_of_that_size(ipam):
    assert pool(ipam, "0.0.0.0/26").pool == "10.128.0.0/26"
    assert pool(ipam, "::/56").pool == "fd42:1edb::/56"
    assert pool(ipam, "0.0.0.0/26").pool == "10.128.0.64/26"


def test_exhausted_default_pools_fail_cleanly(engine):
    from driver.config import parse_default_pools

    ipam = Ipam(Store(engine), parse_default_pools('[{"base":"192.0.2.0/24","size":25}]'))
    assert pool(ipam).pool == "192.0.2.0/25"
    assert pool(ipam).pool == "192.0.2.128/25"
    with pytest.raises(
        PoolsExhausted,
        match=r"no free IPv4 subnet of the configured size left in the default pools \(192.0.2.0/24",
    ):
        pool(ipam)
    with pytest.raises(PoolsExhausted, match="no free IPv6 subnet"):
        pool(ipam, v6=True)


def test_the_family_of_an_explicit_pool_comes_from_the_pool_not_from_v6(ipam):
    assert pool(ipam, "2001:db8::/64", v6=False).pool == "2001:db8::/64"


def test_releasing_a_free_address_is_not_an_error(ipam):
    p = pool(ipam, "192.0.2.0/24").pool_id
    ipam.release_address(p, "192.0.2.77")
    ipam.release_address(p, "192.0.2.0")
    assert ipam.request_address(p, "", {}) == "192.0.2.1/24"


def test_releasing_twice_frees_once(ipam, engine):
    p = pool(ipam, "192.0.2.0/24").pool_id
    ipam.request_address(p, "", {})
    ipam.release_address(p, "192.0.2.1")
    before = snapshot(engine)
    ipam.release_address(p, "192.0.2.1")
    assert snapshot(engine) == before


def test_unknown_pools_are_reported(ipam):
    for call in (
        lambda: ipam.request_address("LocalDefault/203.0.113.0/24", "", {}),
        lambda: ipam.release_address("nope", "192.0.2.1"),
        lambda: ipam.release_pool("nope"),
    ):
        with pytest.raises(PoolNotFound):
            call()


def test_release_pool_drops_every_lease_of_the_pool(ipam, engine):
    p = pool(ipam, "192.0.2.0/24").pool_id
    ipam.request_address(p, "", {})
    ipam.release_pool(p)
    with engine.connect() as c:
        assert c.execute(select(leases)).all() == []
    with pytest.raises(PoolNotFound):
        ipam.release_pool(p)


def test_serial_option_hands_out_addresses_round_robin(ipam):
    p = pool(ipam, "192.0.2.0/29").pool_id
    serial = {"com.docker.network.ipam.serial": "true"}
    assert ipam.request_address(p, "", serial) == "192.0.2.1/29"
    assert ipam.request_address(p, "", serial) == "192.0.2.2/29"
    ipam.release_address(p, "192.0.2.1")
    assert ipam.request_address(p, "", serial) == "192.0.2.3/29"


def test_lease_metadata_is_recorded(ipam, engine):
    p = pool(ipam, "192.0.2.0/24").pool_id
    ipam.request_address(p, "", GW)
    ipam.request_address(p, "192.0.2.10", {})
    ipam.request_address(
        p,
        "",
        {
            "com.docker.network.endpoint.macaddress": "02:42:00:00:00:01",
            "com.docker.network.endpoint.name": "web",
        },
    )
    with engine.connect() as c:
        rows = c.execute(
            select(leases.c.kind, leases.c.mac, leases.c.name).order_by(leases.c.address)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("gateway", None, None),
        ("endpoint", "02:42:00:00:00:01", "web"),
        ("aux", None, None),
    ]


def test_the_database_primary_key_refuses_a_double_lease(ipam, engine):
    from sqlalchemy.exc import IntegrityError

    p = pool(ipam, "192.0.2.0/24").pool_id
    ipam.request_address(p, "", {})
    with pytest.raises(IntegrityError), engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO leases (subnet_id, address, pool_id, kind, created_at) "
                "SELECT subnet_id, address, pool_id, kind, created_at FROM leases"
            )
        )


def test_the_schema_is_at_the_newest_migration_and_matches_the_models(engine):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from driver.storage.schema import _config, current_revision

    assert current_revision(engine) == ScriptDirectory.from_config(_config()).get_current_head()
    with engine.connect() as c:
        assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []


def test_a_ledger_of_the_first_schema_keeps_its_leases_through_the_upgrade(tmp_path):
    from alembic import command

    from driver.storage.schema import _config, migrate

    engine = make_engine(f"sqlite:///{tmp_path}/old.db")
    config = _config()
    with engine.begin() as c:
        config.attributes["connection"] = c
        command.upgrade(config, "0001")
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO subnets VALUES (1, 'LocalDefault', 4, '192.0.2.0/24', "
                "x'000000000000000000000000c0000200', x'000000000000000000000000c00002ff', "
                "1, NULL, '2026-01-01 00:00:00')"
            )
        )
        c.execute(
            text(
                "INSERT INTO leases VALUES (1, x'000000000000000000000000c0000205', "
                "'LocalDefault/192.0.2.0/24', 'endpoint', NULL, NULL, '2026-01-01 00:00:00')"
            )
        )
    migrate(engine)
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM leases")).scalar() == 1
        assert c.execute(text("SELECT reservations FROM subnets")).scalar() == 0
    engine.dispose()


MAC = {"com.docker.network.endpoint.macaddress": "02:42:c0:00:02:07"}


def test_after_a_release_the_same_mac_gets_the_lowest_free_address_again(ipam):
    p = pool(ipam, "192.0.2.0/24").pool_id
    ipam.request_address(p, "192.0.2.50", MAC)
    ipam.release_address(p, "192.0.2.50")
    assert ipam.request_address(p, "", MAC) == "192.0.2.1/24"

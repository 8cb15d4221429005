"""`ipledger import` and `ipledger check` hold every invariant the live calls hold.

An import is refused, naming the invariant, when the file would give an address two holders or
break any other rule RequestPool, RequestAddress and `reserve` enforce, and a refused file changes
nothing: no row, and no ledger file where there was none. `check` finds what an import must refuse.
Run as `ipledger ...` (click's runner) on a real SQLite file and, in the full lane, PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Any

import netaddr
import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.engine import make_url

from driver.entrypoints.cli import main

AT = "2026-01-01T00:00:00+00:00"


def pool(pool_id: str, subpool: str | None = None, **changes: Any) -> dict[str, Any]:
    return {
        "id": pool_id,
        "subpool": subpool,
        "options": {},
        "reuse": "lowest",
        "quarantine_s": 0,
        "hold_s": 0,
        "host_id": "old",
        "created_at": AT,
        **changes,
    }


def lease(address: str, pool_id: str, kind: str = "endpoint") -> dict[str, Any]:
    return {
        "address": address,
        "pool_id": pool_id,
        "kind": kind,
        "mac": None,
        "name": None,
        "host_id": "old",
        "created_at": AT,
        "cni_attachment": None,
    }


def subnet(
    cidr: str,
    pools: list[dict[str, Any]],
    leases: list[dict[str, Any]] | None = None,
    owner: str = "local",
    space: str = "LocalDefault",
) -> dict[str, Any]:
    return {
        "owner": owner,
        "space": space,
        "cidr": cidr,
        "cursor": None,
        "created_at": AT,
        "pools": pools,
        "leases": leases or [],
        "reservations": [],
        "parked": [],
    }


def export(*subnets: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": "ipledger-export/1",
        "exported_at": AT,
        "subnets": list(subnets),
        "history": [],
    }


def one_pool(cidr: str, *addresses: str, owner: str = "local", shared: str | None = None):
    """A subnet of one pool, its ID as the live calls make it, holding ``addresses``."""
    pool_id = f"LocalDefault/{cidr}" if shared is None else f"shared/{shared}/LocalDefault/{cidr}"
    return subnet(cidr, [pool(pool_id)], [lease(a, pool_id) for a in addresses], owner=owner)


def invoke(*args: str, db: str, host_id: str = "host-a"):
    return CliRunner().invoke(
        main,
        [*args[:1], "--db", db, *args[1:]],
        catch_exceptions=False,
        env={"IPLEDGER_HOST_ID": host_id},
    )


def sqlite_file(url: str) -> str | None:
    parsed = make_url(url)
    return parsed.database if parsed.get_backend_name() == "sqlite" else None


@pytest.fixture
def importing(tmp_path, other_db_url):
    """Import a file (a dict) into the empty second ledger; the CLI's result."""

    def importing(data: Any, db: str = other_db_url):
        path = tmp_path / "import.json"
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        return invoke("import", str(path), db=db)

    return importing


def assert_refused_leaving_nothing(result, db_url: str, *says: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    for words in says:
        assert words in result.output
    path = sqlite_file(db_url)
    if path is not None:
        assert not any(
            p.name.startswith("other.db") for p in __import__("pathlib").Path(path).parent.iterdir()
        ), "a refused import left a ledger file behind"
    else:
        assert "no pools" in invoke("pools", db=db_url).output


@pytest.mark.parametrize(
    ("wide", "narrow", "address"),
    [
        ("198.51.100.0/24", "198.51.100.128/25", "198.51.100.130"),
        ("2001:db8::/32", "2001:db8:1::/64", "2001:db8:1::5"),
    ],
)
def test_an_import_whose_subnets_overlap_is_refused_naming_both_and_writes_nothing(
    importing, other_db_url, wide, narrow, address
):
    result = importing(export(one_pool(wide, address), one_pool(narrow, address)))
    assert_refused_leaving_nothing(
        result,
        other_db_url,
        f"subnets[1]: {narrow} overlaps {wide} (subnets[0]) in address space LocalDefault",
        "[no-overlap]",
    )


def test_an_import_whose_own_subnet_overlaps_its_shared_one_is_refused(importing, other_db_url):
    result = importing(
        export(
            one_pool("198.51.100.0/24", "198.51.100.130"),
            one_pool("198.51.100.128/25", "198.51.100.130", owner="shared", shared="lan"),
        )
    )
    assert_refused_leaving_nothing(
        result, other_db_url, "198.51.100.128/25 overlaps 198.51.100.0/24", "[no-overlap]"
    )


def test_an_import_naming_one_subnet_twice_is_refused_before_anything_is_written(
    importing, other_db_url
):
    twice = one_pool("198.51.100.0/24", "198.51.100.2")
    result = importing(export(twice, twice))
    assert_refused_leaving_nothing(
        result, other_db_url, "subnets[1]: 198.51.100.0/24 overlaps 198.51.100.0/24 (subnets[0])"
    )


def test_an_import_overlapping_what_the_ledger_holds_is_refused_and_leaves_it_unchanged(
    run_live, importing, tmp_path, settings
):
    """The ledger holds this host's own 198.51.100.0/24; the file brings a shared pool inside it."""
    before = invoke("export", db=settings.db_url).output
    result = importing(
        export(one_pool("198.51.100.128/25", "198.51.100.130", owner="shared", shared="lan")),
        db=settings.db_url,
    )
    assert result.exit_code == 1, result.output
    assert "198.51.100.128/25 overlaps 198.51.100.0/24" in result.output
    assert "(in the ledger)" in result.output and "[no-overlap]" in result.output
    after = invoke("export", db=settings.db_url).output
    assert _without_time(after) == _without_time(before)


def _without_time(exported: str) -> dict[str, Any]:
    data = json.loads(exported[: exported.rindex("}") + 1])
    data.pop("exported_at")
    return data


@pytest.fixture
def run_live(ipam):
    pool_id = ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {}, False).pool_id
    ipam.request_address(pool_id, "198.51.100.130", {})
    return pool_id


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (
            lambda d: d["subnets"][0]["pools"][0].update(hold_s=10**30),
            "subnets[0].pools[0]: pool 'LocalDefault/198.51.100.0/24': hold_s a 31-digit number is out of range (0 to 2147483647) [durations]",
        ),
        (
            lambda d: d["subnets"][0]["pools"][0].update(hold_s=1e30),
            "subnets[0].pools[0].hold_s: expected an integer, not float",
        ),
        (
            lambda d: d["subnets"][0]["pools"][0].update(quarantine_s=-5),
            "subnets[0].pools[0]: pool 'LocalDefault/198.51.100.0/24': quarantine_s -5 is out of range (0 to 2147483647) [durations]",
        ),
        (
            lambda d: d["subnets"][0]["pools"][0].update(options={"a": {"b": [1]}}),
            "subnets[0].pools[0].options.a: expected a string, not dict",
        ),
        (
            lambda d: d["subnets"][0]["leases"][0].update(mac="02:" * 40),
            "subnets[0].leases[0].mac: longer than 32 characters",
        ),
        (
            lambda d: d["subnets"][0]["parked"].append(
                {
                    "address": "198.51.100.3",
                    "pool_id": "LocalDefault/198.51.100.0/24",
                    "mac": None,
                    "name": None,
                    "until": float("inf"),
                }
            ),
            "subnets[0].parked[0].until: expected a finite number, not inf",
        ),
        (
            lambda d: d["subnets"][0]["parked"].append(
                {
                    "address": "198.51.100.3",
                    "pool_id": "LocalDefault/198.51.100.0/24",
                    "mac": None,
                    "name": None,
                    "until": 10**400,
                }
            ),
            "subnets[0].parked[0].until: expected a finite number, not a 401-digit number",
        ),
    ],
)
def test_an_import_with_a_value_out_of_range_is_a_clear_error_naming_it(
    importing, other_db_url, change, says
):
    data = export(one_pool("198.51.100.0/24", "198.51.100.2"))
    change(data)
    assert_refused_leaving_nothing(importing(data), other_db_url, says)


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"format": "ipledger-export/1", "subnets": ['
        + '{"a": ' * 50_000
        + "1"
        + "}" * 50_000
        + "]}",
    ],
)
def test_an_import_of_deeply_nested_json_is_a_clear_error(importing, other_db_url, body):
    assert_refused_leaving_nothing(importing(body), other_db_url, "nested too deeply")


def _rewrite_subnet(engine, cidr_from: str, cidr_to: str) -> None:
    """Move a subnet, with its pool, lease and free ranges, to another CIDR, as an import
    that checked nothing could write it."""
    old, new = netaddr.IPNetwork(cidr_from), netaddr.IPNetwork(cidr_to)

    def packed(n: int) -> bytes:
        return n.to_bytes(16, "big")

    with engine.begin() as c:
        subnet_id = c.execute(
            text("SELECT id FROM subnets WHERE cidr = :c"), {"c": cidr_from}
        ).scalar_one()
        c.execute(
            text("UPDATE subnets SET cidr = :c, first = :f, last = :l WHERE id = :i"),
            {"c": cidr_to, "f": packed(new.first), "l": packed(new.last), "i": subnet_id},
        )
        c.execute(
            text(
                "UPDATE pools SET id = :p, cidr = :c, range_first = :f, range_last = :l "
                "WHERE subnet_id = :i"
            ),
            {
                "p": f"LocalDefault/{cidr_to}",
                "c": cidr_to,
                "f": packed(new.first),
                "l": packed(new.last),
                "i": subnet_id,
            },
        )
        c.execute(
            text("UPDATE leases SET address = :a, pool_id = :p WHERE subnet_id = :i"),
            {"a": packed(new.first + 2), "p": f"LocalDefault/{cidr_to}", "i": subnet_id},
        )
        c.execute(text("DELETE FROM free_ranges WHERE subnet_id = :i"), {"i": subnet_id})
        c.execute(
            text("INSERT INTO free_ranges (subnet_id, first, last) VALUES (:i, :f, :l)"),
            [
                {"i": subnet_id, "f": packed(new.first + 1), "l": packed(new.first + 1)},
                {"i": subnet_id, "f": packed(new.first + 3), "l": packed(new.last - 1)},
            ],
        )
    assert old.size == new.size


def test_check_finds_overlapping_subnets_and_an_address_held_in_both(ipam, engine, settings):
    wide = ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {}, False).pool_id
    ipam.request_address(wide, "198.51.100.130", {})
    other = ipam.request_pool("LocalDefault", "203.0.113.128/25", "", {}, False).pool_id
    ipam.request_address(other, "203.0.113.130", {})
    _rewrite_subnet(engine, "203.0.113.128/25", "198.51.100.128/25")
    result = invoke("check", db=settings.db_url)
    assert result.exit_code == 1, result.output
    assert (
        "198.51.100.128/25 overlaps 198.51.100.0/24 in address space LocalDefault" in result.output
    )
    assert "198.51.100.130 is held in both 198.51.100.0/24 and 198.51.100.128/25" in result.output
    assert "2 problems in 2 subnets" in result.output


def test_migrate_db_refuses_a_ledger_that_breaks_an_invariant_without_creating_the_target(
    ipam, engine, settings, tmp_path
):
    wide = ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {}, False).pool_id
    ipam.request_address(wide, "198.51.100.130", {})
    other = ipam.request_pool("LocalDefault", "203.0.113.128/25", "", {}, False).pool_id
    ipam.request_address(other, "203.0.113.130", {})
    _rewrite_subnet(engine, "203.0.113.128/25", "198.51.100.128/25")
    target = tmp_path / "h-import-target.db"
    result = invoke("migrate-db", "--to", f"sqlite:///{target}", db=settings.db_url)
    assert result.exit_code == 1, result.output
    assert "198.51.100.128/25 overlaps 198.51.100.0/24" in result.output
    assert "[no-overlap]" in result.output
    assert not target.exists()


def _fail_inserts_of(engine, pool_id: str) -> None:
    """Make the database itself refuse a lease of ``pool_id``, as a fault part-way through an
    import would (a trigger: no mock)."""
    with engine.begin() as c:
        if engine.dialect.name == "sqlite":
            c.execute(
                text(
                    "CREATE TRIGGER h_import_fault BEFORE INSERT ON leases "
                    f"WHEN NEW.pool_id = '{pool_id}' BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
                )
            )
        else:
            c.execute(
                text(
                    "CREATE FUNCTION h_import_fault() RETURNS trigger AS "
                    "$$ BEGIN RAISE EXCEPTION 'injected fault'; END $$ LANGUAGE plpgsql"
                )
            )
            c.execute(
                text(
                    "CREATE TRIGGER h_import_fault BEFORE INSERT ON leases FOR EACH ROW "
                    f"WHEN (NEW.pool_id = '{pool_id}') EXECUTE FUNCTION h_import_fault()"
                )
            )


def test_an_import_the_database_stops_before_its_free_ranges_leaves_none_of_the_file_behind(
    engine, settings, tmp_path
):
    before = invoke("export", db=settings.db_url).output
    _fail_inserts_of(engine, "LocalDefault/203.0.113.0/24")
    path = tmp_path / "import.json"
    path.write_text(
        json.dumps(
            export(
                one_pool("198.51.100.0/24", "198.51.100.2", "198.51.100.3"),
                one_pool("203.0.113.0/24", "203.0.113.2"),
            )
        )
    )
    result = invoke("import", str(path), db=settings.db_url)
    assert result.exit_code == 1, result.output
    assert "injected fault" in result.output and "Traceback" not in result.output
    assert _without_time(invoke("export", db=settings.db_url).output) == _without_time(before)
    assert "ok: 0 subnets" in invoke("check", db=settings.db_url).output

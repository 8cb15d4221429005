"""The operator commands, run as `ipledger ...` (click's runner) on a real SQLite ledger."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from driver.domain.history import HistoryAction
from driver.entrypoints.cli import main
from driver.storage.engine import make_engine
from driver.storage.schema import migrate
from driver.storage.store import Store
from driver.usecases.ipam import Ipam
from tests.examples import examples

MAC = "com.docker.network.endpoint.macaddress"


@pytest.fixture
def run(settings):
    def run(*args: str, ok: bool = True, db: str | None = None, stdin: str | None = None):
        result = CliRunner().invoke(
            main,
            [*args[:1], "--db", db or settings.db_url, *args[1:]],
            input=stdin,
            catch_exceptions=False,
            env={"IPLEDGER_HOST_ID": settings.host_id},
        )
        assert (result.exit_code == 0) == ok, result.output
        return result.output

    return run


@pytest.fixture
def busy(ipam):
    """A ledger with a gateway, endpoints, a reservation and a quarantined address."""
    pool = ipam.request_pool(
        "LocalDefault", "198.51.100.0/24", "", {"ipledger.quarantine": "1h"}, False
    ).pool_id
    ipam.request_address(pool, "", {"RequestAddressType": "com.docker.network.gateway"})
    for i in range(4):
        ipam.request_address(pool, "", {MAC: f"02:00:00:00:00:0{i}"})
    ipam.release_address(pool, "198.51.100.3")
    v6 = ipam.request_pool("LocalDefault", "2001:db8::/64", "", {}, True).pool_id
    ipam.request_address(v6, "", {})
    return pool


def test_pools_shows_each_pool_with_its_counts_and_a_utilisation_bar(run, busy, backend):
    run("reserve", "198.51.100.100-198.51.100.149", "--label", "printers")
    lines = [line.split() for line in run("pools").splitlines()]
    if backend == "postgresql":
        # a shared ledger names each pool's owner: this host's id
        assert [line.pop(1) for line in lines] == ["OWNER", "host-a", "host-a"]
    assert lines[0] == ["POOL", "SIZE", "LEASED", "RESERVED", "PARKED", "FREE", "UTILISATION"]
    assert lines[1] == [
        "LocalDefault/198.51.100.0/24",
        "254",
        "4",
        "50",
        "1",
        "199",
        "[####................]",
        "21.7%",
    ]
    assert lines[2][:3] == ["LocalDefault/2001:db8::/64", "1.84e+19", "1"]
    as_json = json.loads(run("pools", "--json"))
    assert as_json[0]["free"] == 199 and as_json[1]["size"] == 2**64 - 1


def test_leases_lists_every_held_address_with_its_state(run, busy):
    run("reserve", "198.51.100.200", "--label", "vip")
    rows = [line.split()[:3] for line in run("leases", busy).splitlines()]
    assert rows == [
        ["ADDRESS", "STATE", "KIND"],
        ["198.51.100.1", "leased", "gateway"],
        ["198.51.100.2", "leased", "endpoint"],
        ["198.51.100.3", "quarantined", "-"],
        ["198.51.100.4", "leased", "endpoint"],
        ["198.51.100.5", "leased", "endpoint"],
        ["198.51.100.200", "reserved", "-"],
    ]


def test_usage_totals_each_address_space_and_flags_a_subnet_running_out(run, ipam):
    pool = ipam.request_pool("LocalDefault", "198.51.100.0/29", "", {}, False).pool_id
    for _ in range(5):
        ipam.request_address(pool, "", {})
    out = run("usage", "--warn", "80")
    assert "<- running out" in out
    assert "LocalDefault IPv4: 1 subnets, 5 leased, 0 reserved, 0 parked" in out


def test_history_tells_who_had_an_address_and_when(run, busy):
    lines = run("history", "198.51.100.3").splitlines()
    assert [line.split()[3] for line in lines[1:]] == ["allocate", "release"]
    assert "02:00:00:00:00:01" in lines[1] and "parked for 3600s" in lines[2]
    pool_lines = run("history", "--pool", busy, "--limit", "3").splitlines()
    assert len(pool_lines) == 4
    assert "give an ADDRESS" in run("history", ok=False)


def test_prune_history_drops_only_events_older_than_asked(run, busy, engine):
    with engine.begin() as c:
        c.execute(
            text("UPDATE history SET at = :old WHERE address = '198.51.100.3'"),
            {"old": datetime(2020, 1, 1)},
        )
    assert "dropped 2 history events older than 30d" in run(
        "prune-history", "--older-than", "30d", "--apply"
    )
    assert run("history", "198.51.100.3").strip() == "no history for that"
    assert "allocate" in run("history", "198.51.100.2")
    assert "Error: invalid --older-than 'soon'" in run(
        "prune-history", "--older-than", "soon", ok=False
    )


def test_export_then_import_into_a_new_ledger_gives_back_the_same_export(
    run, busy, tmp_path, other_db_url
):
    run("reserve", "198.51.100.10-198.51.100.19", "--label", "routers")
    exported = tmp_path / "ledger.json"
    run("export", "-o", str(exported))
    target = other_db_url
    assert "imported 2 subnets and 5 leases" in run("import", str(exported), db=target)
    again_path = tmp_path / "again.json"
    run("export", "-o", str(again_path), db=target)
    again = json.loads(again_path.read_text())
    first = json.loads(exported.read_text())
    first.pop("exported_at")
    again.pop("exported_at")
    assert again == first
    assert "ok: 2 subnets and 5 leases are consistent" in run("check", db=target)


def test_import_refuses_a_ledger_that_already_holds_this_hosts_pools_and_a_file_that_is_not_an_export(
    run, busy, tmp_path, other_db_url, backend, settings
):
    exported = tmp_path / "ledger.json"
    run("export", "-o", str(exported))
    owner = "local" if backend == "sqlite" else settings.host_id
    assert (
        f"the target ledger already holds pools of '{owner}': import a host's ledger only once"
        in run("import", str(exported), ok=False)
    )
    (tmp_path / "other.json").write_text('{"subnets": []}')
    target = other_db_url
    assert "not an ipledger export" in run(
        "import", str(tmp_path / "other.json"), ok=False, db=target
    )
    (tmp_path / "bad.json").write_text("{nope")
    assert "is not JSON" in run("import", str(tmp_path / "bad.json"), ok=False, db=target)


def test_check_finds_a_lost_free_range_and_a_lease_nobody_can_hold(run, busy, engine):
    assert "ok: 2 subnets and 5 leases are consistent" in run("check")
    with engine.begin() as c:
        c.execute(text("DELETE FROM free_ranges WHERE subnet_id = 1"))
        c.execute(
            text("UPDATE leases SET pool_id = 'LocalDefault/gone' WHERE address = :a"),
            {"a": (0xC6336402).to_bytes(16, "big")},
        )
    out = run("check", ok=False)
    assert "expected free but not marked: 198.51.100.6-198.51.100.254" in out
    assert (
        "lease 198.51.100.2 names pool 'LocalDefault/gone', which is not a pool of "
        "198.51.100.0/24 [lease-pool]" in out
    )
    assert "2 problems in 2 subnets" in out


def test_reserve_and_unreserve_report_bad_input_without_a_traceback(run, busy):
    assert "reserved 198.51.100.10-198.51.100.12 (x)" in run(
        "reserve", "198.51.100.10-198.51.100.12", "--label", "x"
    )
    assert "Error: invalid range to reserve 'nonsense'" in run(
        "reserve", "nonsense", "--label", "x", ok=False
    )
    assert "Error: no reservation in 198.51.100.0/24 covers 198.51.100.50" in run(
        "unreserve", "198.51.100.50", ok=False
    )
    assert "unreserved 198.51.100.10-198.51.100.12" in run("unreserve", "198.51.100.10")


OPS = st.lists(
    st.tuples(
        st.sampled_from(["take", "static", "release", "reserve", "unreserve"]), st.integers(1, 30)
    ),
    max_size=40,
)


@settings(
    max_examples=examples(25),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=OPS)
def test_any_history_of_operations_leaves_a_ledger_that_checks_clean_and_survives_export(
    tmp_path_factory, ops
):
    from driver.domain.errors import IpamError
    from driver.usecases.admin import Admin

    where = tmp_path_factory.mktemp("prop")
    engine = make_engine(f"sqlite:///{where}/a.db")
    migrate(engine)
    ipam = Ipam(Store(engine), ())
    admin = Admin(ipam.store)
    pool = ipam.request_pool(
        "LocalDefault", "198.51.100.0/27", "198.51.100.0/28", {"ipledger.quarantine": "1h"}, False
    ).pool_id
    for op, n in ops:
        address = f"198.51.100.{n}"
        try:
            if op == "take":
                ipam.request_address(pool, "", {})
            elif op == "static":
                ipam.request_address(pool, address, {})
            elif op == "release":
                ipam.release_address(pool, address)
            elif op == "reserve":
                admin.reservations.reserve(f"{address}-198.51.100.{min(n + 2, 30)}", "r")
            else:
                admin.reservations.unreserve(address)
        except IpamError:
            pass
    assert admin.checks.check().problems == []
    exported = admin.transfer.export()
    copy = make_engine(f"sqlite:///{where}/b.db")
    migrate(copy)
    copy_admin = Admin(Store(copy))
    copy_admin.transfer.import_(exported)
    assert copy_admin.checks.check().problems == []
    again = copy_admin.transfer.export()
    assert {k: v for k, v in again.items() if k != "exported_at"} == {
        k: v for k, v in exported.items() if k != "exported_at"
    }
    engine.dispose()
    copy.dispose()


def test_migrate_db_moves_an_sqlite_ledger_into_postgresql_where_the_plugin_carries_on(
    tmp_path, postgres
):
    sqlite_url = f"sqlite:///{tmp_path}/host.db"
    engine = make_engine(sqlite_url)
    migrate(engine)
    ipam = Ipam(Store(engine), ())
    pool = ipam.request_pool(
        "LocalDefault", "198.51.100.0/24", "", {"ipledger.quarantine": "1h"}, False
    ).pool_id
    taken = [ipam.request_address(pool, "", {MAC: f"02:00:00:00:00:0{i}"}) for i in range(4)]
    ipam.release_address(pool, taken[1].split("/")[0])
    engine.dispose()
    target = postgres.new_database(template=None)
    try:
        result = CliRunner().invoke(
            main,
            ["migrate-db", "--db", sqlite_url, "--to", target],
            env={"IPLEDGER_HOST_ID": "host-a"},
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        assert "moved 1 subnets, 3 leases and 6 history events" in result.output
        assert "as host 'host-a'" in result.output
        pg = make_engine(target)
        moved = Ipam(Store(pg), (), "host-a")
        # the quarantined address stays quarantined; the lowest free one is next
        assert moved.request_address(pool, "", {}) == "198.51.100.5/24"
        assert moved.release_address(pool, taken[0].split("/")[0])
        # another host sees none of it: its LocalDefault is its own
        with pytest.raises(Exception, match="not found"):
            Ipam(Store(pg), (), "host-b").request_address(pool, "", {})
        pg.dispose()
        again = CliRunner().invoke(
            main,
            ["migrate-db", "--db", sqlite_url, "--to", target],
            env={"IPLEDGER_HOST_ID": "host-a"},
        )
        assert again.exit_code == 1
        assert "already holds pools of 'host-a'" in again.output
    finally:
        postgres.drop_database(target)


def test_reports_read_beside_a_writer_instead_of_waiting_for_it(ipam, busy):
    import threading

    from driver.usecases.admin import Admin

    admin = Admin(ipam.store, ipam.host_id)
    done: list[int] = []
    with ipam.store.transaction() as ledger:
        ledger.write_history(
            "host-a", HistoryAction.RESERVE, busy, "198.51.100.99"
        )  # a writer holds the database
        reader = threading.Thread(target=lambda: done.append(len(admin.reports.pools())))
        reader.start()
        reader.join(2)
        assert done == [2], "the report waited for the writer"

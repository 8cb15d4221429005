"""A CNI network's conflist is the source of truth: a changed option takes effect at the next ADD,
written to the history, or is refused with the reason; a network no longer used is retired by
``ipledger cni retire`` (issue 21, items 3 and 4)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from driver.domain.errors import IpamError
from driver.entrypoints.cli import main
from driver.storage.models import history, pools
from tests.api.test_cni_api import Cni, cni_config, leases_of
from tests.integration.test_ledger import snapshot

POD = "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=db-0"
POOL = "LocalDefault/203.0.113.0/24"


@pytest.fixture
def cni(plugin):
    return Cni(plugin)


@pytest.fixture
def run(settings):
    def run(*args: str, ok: bool = True) -> str:
        result = CliRunner().invoke(
            main,
            list(args),
            catch_exceptions=False,
            env={"IPLEDGER_HOST_ID": settings.host_id, "IPLEDGER_DB": settings.db_url},
        )
        assert (result.exit_code == 0) == ok, result.output
        return result.output

    return run


def option_events(engine) -> list[tuple[str, str, str | None]]:
    with engine.connect() as c:
        rows = c.execute(
            select(history.c.action, history.c.pool_id, history.c.detail)
            .where(history.c.action == "cni-option")
            .order_by(history.c.id)
        )
        return [tuple(row) for row in rows]


def with_range(**fields: Any) -> dict[str, Any]:
    return cni_config([{"subnet": "203.0.113.0/24", **fields}])


def test_hold_and_hold_by_added_to_an_existing_network_take_effect_at_the_next_add(cni, engine):
    assert cni.add(cni_config(), container="c0") == ["203.0.113.2/24"]
    changed = cni_config(hold="10m", hold_by="pod")
    assert cni.add(changed, container="c1", args=POD) == ["203.0.113.3/24"]
    assert cni.call("Del", changed, container="c1", args=POD)[0] == 200
    # another attachment does not get the pod's address: it is held for the pod
    assert cni.add(changed, container="c3") == ["203.0.113.4/24"]
    assert cni.add(changed, container="c2", args=POD) == ["203.0.113.3/24"]
    events = option_events(engine)
    assert ("cni-option", POOL, "lan: hold 0s -> 10m") in events
    assert ("cni-option", POOL, "lan: hold_by container -> pod") in events
    assert len(events) == 2, events


def test_an_unchanged_config_writes_no_option_event(cni, engine):
    config = cni_config(reuse="serial")
    for container in ("c1", "c2", "c1"):
        cni.add(config, container=container)
    assert option_events(engine) == []


def test_reuse_quarantine_routes_and_dns_changes_are_each_one_event_naming_old_and_new(cni, engine):
    cni.add(cni_config(), container="c1")
    changed = cni_config(reuse="serial", quarantine="5m")
    changed["ipam"]["routes"] = [{"dst": "198.51.100.0/24"}]
    changed["ipam"]["dns"] = {"nameservers": ["192.0.2.53"]}
    status, answer = cni.call("Add", changed, container="c2")
    assert status == 200, answer
    assert answer["result"]["routes"] == [{"dst": "198.51.100.0/24"}]
    details = [detail for _, _, detail in option_events(engine)]
    assert "lan: reuse lowest -> serial" in details
    assert "lan: quarantine 0s -> 5m" in details
    assert 'lan: routes [{"dst": "0.0.0.0/0"}] -> [{"dst": "198.51.100.0/24"}]' in details
    assert 'lan: dns {} -> {"nameservers": ["192.0.2.53"]}' in details
    assert len(details) == 4, details
    # released, the address is quarantined now, as the new options say
    assert cni.call("Del", changed, container="c2")[0] == 200
    assert cni.add(changed, container="c3") == ["203.0.113.4/24"]


def test_a_changed_gateway_moves_the_gateway_lease_at_the_next_add(cni, settings, engine):
    cni.add(with_range(), container="c1")
    moved = with_range(gateway="203.0.113.254")
    status, answer = cni.call("Add", moved, container="c2")
    assert status == 200, answer
    assert answer["result"]["ips"][0]["gateway"] == "203.0.113.254"
    leased = leases_of(settings, POOL)
    assert ("203.0.113.254", "gateway", "CNI network lan") in leased
    # the nodes' bridges keep the old gateway's address: no pod may get it
    assert ("203.0.113.1", "aux", "former gateway of CNI network lan") in leased
    assert answer["result"]["ips"][0]["address"] == "203.0.113.3/24"
    assert ("cni-option", POOL, "lan: gateway 203.0.113.1 -> 203.0.113.254") in option_events(
        engine
    )
    # and back: the former gateway is the gateway again, .254 free for pods
    assert cni.add(with_range(), container="c3") == ["203.0.113.4/24"]
    leased = leases_of(settings, POOL)
    assert ("203.0.113.1", "gateway", "CNI network lan") in leased
    assert ("203.0.113.254", "aux", "former gateway of CNI network lan") in leased


def test_another_subnet_while_attachments_hold_addresses_is_refused_naming_one(cni, engine):
    cni.add(cni_config(), container="c1")
    cni.add(cni_config(), container="c2")
    before = snapshot(engine)
    status, answer = cni.call("Add", cni_config([{"subnet": "198.51.100.0/24"}]), container="c3")
    assert status != 200
    assert answer["CniCode"] == 7
    message = answer["Err"]
    assert "ipam.ranges[0]" in message and "203.0.113.0/24" in message, message
    assert "2 attachments" in message and "lan/c1/eth0" in message, message
    assert snapshot(engine) == before


def test_shrinking_range_end_below_a_live_lease_is_refused_and_writes_nothing(cni, engine):
    config = with_range(rangeEnd="203.0.113.100")
    for container in ("c1", "c2", "c3"):
        cni.add(config, container=container)
    before = snapshot(engine)
    _, answer = cni.call("Add", with_range(rangeEnd="203.0.113.3"), container="c9")
    assert answer["CniCode"] == 7, answer
    assert "203.0.113.1-203.0.113.100" in answer["Err"], answer
    assert snapshot(engine) == before


def test_a_range_changed_once_nothing_holds_it_retires_the_old_pool_and_makes_the_new(cni, engine):
    cni.add(cni_config(), container="c1")
    assert cni.call("Del", cni_config(), container="c1")[0] == 200
    moved = cni_config([{"subnet": "198.51.100.0/24"}])
    assert cni.add(moved, container="c2") == ["198.51.100.2/24"]
    with engine.connect() as c:
        assert c.execute(select(pools.c.id)).scalars().all() == ["LocalDefault/198.51.100.0/24"]
    assert any(
        detail == "lan: ranges[0] 203.0.113.0/24 -> 198.51.100.0/24"
        for _, _, detail in option_events(engine)
    ), option_events(engine)


def test_a_changed_shared_name_with_live_leases_is_refused(cni):
    cni.add(cni_config(), container="c1")
    _, answer = cni.call("Add", cni_config(shared="lan"), container="c2")
    assert answer["CniCode"] == 7, answer
    assert "lan/c1/eth0" in answer["Err"]


def test_cni_networks_lists_attachments_last_add_and_pools(cni, run):
    cni.add(cni_config(), container="c1")
    cni.add(cni_config(), container="c2")
    listed = json.loads(run("cni", "networks", "--json"))
    assert [n["network"] for n in listed] == ["lan"]
    assert listed[0]["attachments"] == 2
    assert listed[0]["last_add"] is not None
    assert listed[0]["pools"] == [POOL]
    table = run("cni", "networks")
    assert "lan" in table and POOL in table


def test_retire_refuses_while_the_network_has_attachments_naming_the_count_and_one(
    cni, run, engine
):
    cni.add(cni_config(), container="c1")
    cni.add(cni_config(), container="c2")
    before = snapshot(engine)
    output = run("cni", "retire", "lan", ok=False)
    assert "2 attachments" in output and "lan/c1/eth0" in output, output
    assert snapshot(engine) == before


def test_retire_drops_the_pools_and_gateway_leases_and_a_later_add_makes_them_again(
    cni, run, settings, engine
):
    config = cni_config(hold="1h")
    cni.add(config, container="c1")
    assert cni.call("Del", config, container="c1")[0] == 200
    output = run("cni", "retire", "lan")
    assert POOL in output, output
    assert json.loads(run("cni", "networks", "--json")) == []
    assert json.loads(run("pools", "--json")) == []
    with engine.connect() as c:
        retired = c.execute(select(history.c.pool_id).where(history.c.action == "cni-retire")).all()
    assert [tuple(r) for r in retired] == [(POOL,)]
    assert cni.add(config, container="c2") == ["203.0.113.2/24"]
    assert ("203.0.113.1", "gateway", "CNI network lan") in leases_of(settings, POOL)


def test_retiring_an_unknown_network_says_so(run, engine):
    assert "no CNI network" in run("cni", "retire", "nope", ok=False)


def test_retire_racing_adds_never_leaves_a_lease_without_its_pool(cni, settings, engine):
    from driver.storage.store import open_store
    from driver.usecases.cni_networks import CniNetworks

    config = cni_config()
    cni.add(config, container="warm")
    cni.call("Del", config, container="warm")
    store = open_store(settings.db_url)
    networks = CniNetworks(store, (), settings.host_id)
    outcomes: list[str] = []

    def retire() -> None:
        for _ in range(20):
            try:
                networks.retire("lan")
                outcomes.append("retired")
            except IpamError as e:
                outcomes.append(type(e).__name__)

    thread = threading.Thread(target=retire)
    thread.start()
    for i in range(20):
        cni.add(config, container=f"c{i}")
        cni.call("Del", config, container=f"c{i}")
    thread.join()
    store.dispose()
    with engine.connect() as c:
        orphans = c.exec_driver_sql(
            "SELECT count(*) FROM leases l LEFT JOIN pools p ON p.id = l.pool_id WHERE p.id IS NULL"
        ).scalar()
    assert orphans == 0
    # refused while an ADD's attachment held an address, or nothing left to retire
    assert set(outcomes) <= {"retired", "NetworkInUse", "InvalidRequest"}, outcomes


def test_during_a_rollout_an_older_generation_does_not_revert_the_newer_options(cni, engine):
    """Two nodes, two conflist versions: the node not yet updated keeps ADDing with the old one."""
    old, new = cni_config(generation=1), cni_config(generation=2, hold="10m")
    cni.add(old, container="a1")
    cni.add(new, container="b1")
    for i in range(3):
        cni.add(old, container=f"a{i + 2}")
        cni.add(new, container=f"b{i + 2}")
    details = [detail for _, _, detail in option_events(engine)]
    assert details == ["lan: hold 0s -> 10m", "lan: generation 1 -> 2"], details
    # released on the old node, the address is held as the newer conflist says
    assert cni.call("Del", old, container="a1")[0] == 200
    assert cni.add(old, container="a9") == ["203.0.113.10/24"]


def test_an_older_generation_asking_for_another_range_is_refused_once_the_newer_applied(cni):
    cni.add(cni_config(generation=1), container="a1")
    cni.call("Del", cni_config(generation=1), container="a1")
    moved = cni_config([{"subnet": "198.51.100.0/24"}], generation=2)
    assert cni.add(moved, container="b1") == ["198.51.100.2/24"]
    _, answer = cni.call("Add", cni_config(generation=1), container="a2")
    assert answer["CniCode"] == 7, answer
    assert "generation 1" in answer["Err"] and "generation 2" in answer["Err"], answer


def test_a_generation_that_is_not_a_whole_number_is_refused_naming_it(cni):
    _, answer = cni.call("Add", cni_config(generation="2"), container="a1")
    assert answer["CniCode"] == 7
    assert "ipam.ipledger.generation" in answer["Err"]


def test_widening_a_full_range_under_live_pods_takes_effect_at_the_next_add(cni, settings, engine):
    small = with_range(rangeEnd="203.0.113.3")
    cni.add(small, container="c1")
    cni.add(small, container="c2")
    assert cni.call("Add", small, container="c3")[1]["CniCode"] == 100
    wide = with_range(rangeEnd="203.0.113.10")
    assert cni.add(wide, container="c3") == ["203.0.113.4/24"]
    # the pods of the narrower range keep their addresses, under the widened pool
    assert cni.add(wide, container="c1") == ["203.0.113.2/24"]
    widened = "LocalDefault/203.0.113.0/24/203.0.113.1-203.0.113.10"
    assert {name for _, _, name in leases_of(settings, widened)} == {
        "CNI network lan",
        "container c1",
        "container c2",
        "container c3",
    }
    assert option_events(engine) == [
        (
            "cni-option",
            widened,
            "lan: ranges[0] 203.0.113.0/24 203.0.113.1-203.0.113.3 -> "
            "203.0.113.0/24 203.0.113.1-203.0.113.10",
        )
    ]
    assert cni.call("Del", wide, container="c2")[0] == 200
    assert cni.add(wide, container="c4") == ["203.0.113.3/24"]


def test_moving_range_start_past_a_held_address_lets_it_go_and_keeps_pods_inside(cni, settings):
    held = cni_config([{"subnet": "203.0.113.0/24"}], hold="1h")
    cni.add(held, container="c1")
    cni.add(held, container="c2")
    cni.call("Del", held, container="c1")
    moved = cni_config([{"subnet": "203.0.113.0/24", "rangeStart": "203.0.113.3"}], hold="1h")
    # c1's held address is outside the range now: it is not given back, and is free again
    assert cni.add(moved, container="c1") == ["203.0.113.4/24"]
    pool = "LocalDefault/203.0.113.0/24/203.0.113.3-203.0.113.254"
    lines = leases_of(settings, pool)
    assert {a for a, kind, _ in lines if kind == "cni"} == {"203.0.113.3", "203.0.113.4"}
    assert "203.0.113.2" not in {a for a, _, _ in lines}


def test_a_pool_made_before_options_were_recorded_records_them_without_inventing_old_values(
    cni, engine
):
    cni.add(cni_config(), container="c1")
    with engine.begin() as c:  # as ipledger before issue 21 made it
        c.execute(pools.update().values(options='{"ipledger.cni.network": "lan"}'))
    cni.add(cni_config(hold="10m", hold_by="pod"), container="c2")
    assert [d for _, _, d in option_events(engine)] == ["lan: hold 0s -> 10m"]
    cni.add(cni_config(hold="10m"), container="c3")
    assert [d for _, _, d in option_events(engine)][1:] == ["lan: hold_by pod -> container"]


def test_two_nodes_adding_concurrently_with_two_generations_neither_flap_nor_collide(
    settings, engine
):
    """Two ipledger instances on one ledger (two nodes mid-rollout), ADDs in parallel."""
    from driver.domain.cni import Attachment, parse_network
    from driver.storage.store import open_store
    from driver.usecases.cni import CniCalls

    configs = {
        "a": parse_network(cni_config(generation=1)),
        "b": parse_network(cni_config(generation=2, hold="10m", reuse="serial")),
    }
    answers: dict[str, list[str]] = {"a": [], "b": []}
    failures: list[BaseException] = []

    def node(name: str) -> None:
        store = open_store(settings.db_url)
        calls = CniCalls(store, (), settings.host_id)
        try:
            for i in range(25):
                attachment = Attachment("lan", f"{name}{i}", "eth0")
                found = calls.add(configs[name], attachment, f"container {name}{i}")
                answers[name].append(found[0].address)
        except BaseException as e:
            failures.append(e)
        finally:
            store.dispose()

    threads = [threading.Thread(target=node, args=(name,)) for name in configs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    every = answers["a"] + answers["b"]
    assert len(set(every)) == len(every) == 50
    details = [detail for _, _, detail in option_events(engine)]
    # generation 2 applied once, whenever its first ADD came; generation 1 never undid it
    assert details in (
        [],
        ["lan: reuse lowest -> serial", "lan: hold 0s -> 10m", "lan: generation 1 -> 2"],
    ), details
    if not details:  # generation 2 made the pool: then generation 1 changed nothing either
        with engine.connect() as c:
            assert '"ipledger.cni.generation": "2"' in c.execute(select(pools.c.options)).scalar()

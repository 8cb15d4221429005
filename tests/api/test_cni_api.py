"""ipledger's CNI endpoints on the plugin socket: the ledger's rules for CNI attachments."""

from __future__ import annotations

import json
from typing import Any

import pytest

from driver.entrypoints.bodies import MAX_BODY
from driver.usecases.admin import Admin
from tests.integration.test_ledger import snapshot

NETWORK = "lan"


def cni_config(*range_sets: list[dict[str, Any]], **ipledger: Any) -> dict[str, Any]:
    ipam: dict[str, Any] = {
        "type": "ipledger",
        "ranges": list(range_sets) or [[{"subnet": "203.0.113.0/24"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
    }
    if ipledger:
        ipam["ipledger"] = ipledger
    return {"cniVersion": "1.0.0", "name": NETWORK, "type": "bridge", "ipam": ipam}


class Cni:
    def __init__(self, plugin):
        self.plugin = plugin

    def call(self, command: str, config: dict[str, Any], container: str = "c1", **more: Any):
        body = {"config": config, "containerId": container, "ifname": "eth0", "args": "", **more}
        return self.plugin.raw(f"/Cni.{command}", json.dumps(body))

    def add(self, config: dict[str, Any], container: str = "c1", **more: Any) -> list[str]:
        status, answer = self.call("Add", config, container, **more)
        assert status == 200, answer
        return [ip["address"] for ip in answer["result"]["ips"]]


@pytest.fixture
def cni(plugin):
    return Cni(plugin)


def leases_of(settings, pool_id: str) -> list[tuple[str, str | None, str | None]]:
    from driver.storage.store import open_store

    store = open_store(settings.db_url)
    try:
        lines = Admin(store, settings.host_id).reports.addresses(pool_id)
    finally:
        store.dispose()
    return [(line.address, line.kind, line.name) for line in lines if line.state == "leased"]


def test_add_answers_the_lowest_free_address_with_the_gateway_routes_and_dns(cni):
    status, answer = cni.call("Add", cni_config())
    assert status == 200
    assert answer["result"] == {
        "cniVersion": "1.0.0",
        "ips": [{"address": "203.0.113.2/24", "gateway": "203.0.113.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {},
    }


def test_a_repeated_add_answers_the_attachments_lease_and_leases_nothing_more(cni, settings):
    assert cni.add(cni_config()) == ["203.0.113.2/24"]
    assert cni.add(cni_config()) == ["203.0.113.2/24"]
    assert cni.add(cni_config(), container="c2") == ["203.0.113.3/24"]
    assert leases_of(settings, "LocalDefault/203.0.113.0/24") == [
        ("203.0.113.1", "gateway", "CNI network lan"),
        ("203.0.113.2", "cni", "container c1"),
        ("203.0.113.3", "cni", "container c2"),
    ]


def test_dual_stack_gives_one_address_of_each_family(cni):
    config = cni_config(
        [{"subnet": "203.0.113.0/24"}], [{"subnet": "2001:db8:7::/64", "gateway": "2001:db8:7::1"}]
    )
    status, answer = cni.call("Add", dict(config, cniVersion="0.4.0"))
    assert status == 200
    assert answer["result"]["ips"] == [
        {"address": "203.0.113.2/24", "gateway": "203.0.113.1", "version": "4"},
        {"address": "2001:db8:7::2/64", "gateway": "2001:db8:7::1", "version": "6"},
    ]


def test_del_releases_by_identity_and_succeeds_when_nothing_is_held(cni, settings):
    cni.add(cni_config())
    assert cni.call("Del", cni_config())[0] == 200
    assert cni.call("Del", cni_config())[0] == 200
    assert cni.call("Del", cni_config(), container="never-added")[0] == 200
    assert leases_of(settings, "LocalDefault/203.0.113.0/24") == [
        ("203.0.113.1", "gateway", "CNI network lan")
    ]
    assert cni.add(cni_config(), container="c2") == ["203.0.113.2/24"]


def test_check_fails_with_code_3_for_an_attachment_that_holds_nothing(cni):
    cni.add(cni_config())
    assert cni.call("Check", cni_config())[0] == 200
    status, answer = cni.call("Check", cni_config(), container="c9")
    assert (status, answer["CniCode"]) == (404, 3)
    assert "c9" in answer["Err"]


def test_gc_releases_the_networks_leases_not_in_the_valid_attachments(cni, settings):
    for container in ("c1", "c2", "c3"):
        cni.add(cni_config(), container=container)
    config = dict(
        cni_config(),
        cniVersion="1.1.0",
        **{"cni.dev/valid-attachments": [{"containerID": "c2", "ifname": "eth0"}]},
    )
    assert cni.call("Gc", config)[0] == 200
    assert [a for a, kind, _ in leases_of(settings, "LocalDefault/203.0.113.0/24")] == [
        "203.0.113.1",
        "203.0.113.3",
    ]


def test_a_full_range_answers_code_100_and_the_next_range_of_the_set_is_used_first(cni):
    config = cni_config(
        [
            {"subnet": "203.0.113.0/24", "rangeStart": "203.0.113.10", "rangeEnd": "203.0.113.11"},
            {
                "subnet": "198.51.100.0/24",
                "rangeStart": "198.51.100.10",
                "rangeEnd": "198.51.100.10",
            },
        ]
    )
    got = [cni.add(config, container=f"c{i}")[0] for i in range(3)]
    assert got == ["203.0.113.10/24", "203.0.113.11/24", "198.51.100.10/24"]
    status, answer = cni.call("Add", config, container="c9")
    assert (status, answer["CniCode"]) == (409, 100)
    assert "no available addresses" in answer["Err"]


def test_a_bad_config_answers_code_7_naming_the_field_and_writes_nothing(cni, settings):
    config = cni_config([{"subnet": "203.0.113.0/24", "gateway": "198.51.100.1"}])
    status, answer = cni.call("Add", config)
    assert (status, answer["CniCode"]) == (400, 7)
    assert "ipam.ranges[0][0].gateway" in answer["Err"]
    from driver.storage.store import open_store

    store = open_store(settings.db_url)
    try:
        assert Admin(store, settings.host_id).reports.pools() == []
    finally:
        store.dispose()


def test_a_pod_recreated_under_its_name_gets_its_held_address_back(cni):
    config = cni_config(hold="1h", hold_by="pod")
    pod = "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=db-0"
    assert cni.add(config, container="c1", args=pod) == ["203.0.113.2/24"]
    cni.add(config, container="other")
    assert cni.call("Del", config, container="c1", args=pod)[0] == 200
    # a new container of the same pod, after other attachments came and went
    assert cni.add(config, container="c3") == ["203.0.113.4/24"]
    assert cni.add(config, container="c2", args=pod) == ["203.0.113.2/24"]


def test_a_cni_network_and_a_docker_network_share_a_pool_only_through_ipledger_shared(cni, plugin):
    status, answer = plugin.call(
        "RequestPool",
        {
            "AddressSpace": "LocalDefault",
            "Pool": "203.0.113.0/24",
            "Options": {"ipledger.shared": "lan"},
        },
    )
    assert status == 200, answer
    docker_pool = answer["PoolID"]
    docker = [plugin.call("RequestAddress", {"PoolID": docker_pool})[1]["Address"]]
    status, answer = cni.call("Add", cni_config())  # not shared: the subnet is held
    assert status == 409 and "overlaps" in answer["Err"]
    shared = cni_config(shared="lan")
    got = cni.add(shared) + cni.add(shared, container="c2")
    docker.append(plugin.call("RequestAddress", {"PoolID": docker_pool})[1]["Address"])
    handed_out = docker + got
    assert len(set(handed_out)) == len(handed_out) == 4


def test_removing_the_docker_network_of_a_shared_pool_keeps_the_cni_attachments_leases(
    cni, plugin, settings
):
    _, answer = plugin.call(
        "RequestPool",
        {
            "AddressSpace": "LocalDefault",
            "Pool": "203.0.113.0/24",
            "Options": {"ipledger.shared": "lan"},
        },
    )
    pool_id = answer["PoolID"]
    docker = plugin.call("RequestAddress", {"PoolID": pool_id})[1]["Address"].split("/")[0]
    cni.add(cni_config(shared="lan"))
    assert plugin.call("ReleaseAddress", {"PoolID": pool_id, "Address": docker})[0] == 200
    assert plugin.call("ReleasePool", {"PoolID": pool_id})[0] == 200
    assert leases_of(settings, pool_id) == [("203.0.113.2", "cni", "container c1")]
    assert cni.call("Check", cni_config(shared="lan"))[0] == 200


def test_a_gateway_that_is_another_attachments_lease_is_refused_naming_it_and_writes_nothing(
    cni, engine
):
    assert cni.add(cni_config(), container="c9") == ["203.0.113.2/24"]
    before = snapshot(engine)
    moved = cni_config([{"subnet": "203.0.113.0/24", "gateway": "203.0.113.2"}])
    for container in ("c1", "c9"):  # a new attachment, and the holder's own repeated ADD
        status, answer = cni.call("Add", moved, container=container)
        assert (status, answer["CniCode"]) == (409, 7), answer
        assert "203.0.113.2" in answer["Err"] and "lan/c9/eth0" in answer["Err"]
        assert "ipam.ranges[0][0].gateway" in answer["Err"]
    assert snapshot(engine) == before


def test_a_gateway_that_is_a_docker_endpoints_address_is_refused_naming_the_endpoint(
    cni, plugin, engine
):
    _, answer = plugin.call(
        "RequestPool",
        {
            "AddressSpace": "LocalDefault",
            "Pool": "203.0.113.0/24",
            "Options": {"ipledger.shared": "lan"},
        },
    )
    pool_id = answer["PoolID"]
    status, answer = plugin.call(
        "RequestAddress",
        {
            "PoolID": pool_id,
            "Options": {"com.docker.network.endpoint.macaddress": "02:42:c0:00:02:05"},
        },
    )
    assert status == 200, answer
    taken = answer["Address"].split("/")[0]
    before = snapshot(engine)
    config = cni_config([{"subnet": "203.0.113.0/24", "gateway": taken}], shared="lan")
    status, answer = cni.call("Add", config)
    assert (status, answer["CniCode"]) == (409, 7), answer
    assert taken in answer["Err"] and "02:42:c0:00:02:05" in answer["Err"]
    assert snapshot(engine) == before


def test_a_new_range_whose_gateway_another_networks_attachment_holds_is_refused_unmade(cni, engine):
    first = dict(
        cni_config(
            [{"subnet": "203.0.113.0/24", "rangeStart": "203.0.113.10", "rangeEnd": "203.0.113.20"}]
        ),
        name="first",
    )
    assert cni.add(first, container="c9") == ["203.0.113.10/24"]
    before = snapshot(engine)
    second = cni_config(
        [
            {
                "subnet": "203.0.113.0/24",
                "rangeStart": "203.0.113.30",
                "rangeEnd": "203.0.113.40",
                "gateway": "203.0.113.10",
            }
        ]
    )
    status, answer = cni.call("Add", second)
    assert (status, answer["CniCode"]) == (409, 7), answer
    assert "first/c9/eth0" in answer["Err"]
    assert snapshot(engine) == before


def test_networks_on_one_subnet_share_its_gateway_lease(cni):
    for name, start, end in (
        ("first", "203.0.113.10", "203.0.113.20"),
        ("second", "203.0.113.30", "203.0.113.40"),
    ):
        config = dict(
            cni_config([{"subnet": "203.0.113.0/24", "rangeStart": start, "rangeEnd": end}]),
            name=name,
        )
        status, answer = cni.call("Add", config, container=f"c-{name}")
        assert status == 200, answer
        assert answer["result"]["ips"] == [{"address": f"{start}/24", "gateway": "203.0.113.1"}]


def test_each_endpoint_bounds_its_body_gc_alone_may_be_large(cni, plugin):
    for container in ("c1", "c2"):
        cni.add(cni_config(), container=container)
    padding = "x" * (70 * 1024)
    status, answer = cni.call("Add", dict(cni_config(), padding=padding))
    assert (status, answer["CniCode"]) == (413, 7)
    assert answer["Err"] == "request body too large: at most 65536 bytes"
    status, answer = plugin.call("RequestPool", {"AddressSpace": "LocalDefault", "Pool": padding})
    assert status == 413 and "CniCode" not in answer
    valid = [{"containerID": f"{i:064x}", "ifname": "eth0"} for i in range(20_000)]
    valid.append({"containerID": "c2", "ifname": "eth0"})
    config = dict(cni_config(), cniVersion="1.1.0", **{"cni.dev/valid-attachments": valid})
    assert len(json.dumps(config)) > 16 * MAX_BODY
    status, answer = cni.call("Gc", config)
    assert status == 200, answer
    assert cni.call("Check", cni_config(), container="c1")[1]["CniCode"] == 3
    assert cni.call("Check", cni_config(), container="c2")[0] == 200
    status, answer = cni.call("Gc", dict(config, padding="x" * (33 * 1024 * 1024)))
    assert (status, answer["CniCode"]) == (413, 7)


def test_a_pod_name_of_253_characters_in_cni_args_is_taken(cni):
    args = (
        f"IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME={'p' * 253};K8S_POD_UID=" + "u" * 36
    )
    config = cni_config(hold="1h", hold_by="pod")
    assert cni.add(config, container="c1", args=args) == ["203.0.113.2/24"]


def test_a_container_id_of_255_characters_is_leased_released_and_held_on_every_database(
    cni, engine
):
    """The longest container ID the API takes names its lease ("container ID", 265 characters),
    its history line (the attachment, "lan/ID/eth0, parked for 3600s") and the parked address."""
    container = "c" * 255
    config = cni_config(hold="1h")
    assert cni.add(config, container=container) == ["203.0.113.2/24"]
    status, answer = cni.call("Del", config, container)
    assert status == 200, answer
    assert cni.add(config, container=container) == ["203.0.113.2/24"]


def test_a_pod_name_longer_than_kubernetes_allows_is_refused_naming_it(cni, engine):
    before = snapshot(engine)
    args = f"K8S_POD_NAMESPACE=shop;K8S_POD_NAME={'p' * 254}"
    status, answer = cni.plugin.raw(
        "/Cni.Add",
        json.dumps(
            {
                "config": cni_config(hold="1h", hold_by="pod"),
                "containerId": "c1",
                "ifname": "eth0",
                "args": args,
            }
        ),
    )
    assert (status, answer["CniCode"]) == (400, 7), answer
    assert "K8S_POD_NAME" in answer["Err"] and "253" in answer["Err"]
    assert snapshot(engine) == before


def test_text_that_is_not_unicode_is_refused_with_code_7(cni, engine):
    before = snapshot(engine)
    body = json.dumps({"config": cni_config(), "containerId": "c\udcff", "ifname": "eth0"})
    status, answer = cni.plugin.raw("/Cni.Add", body)
    assert (status, answer["CniCode"]) == (400, 7)
    assert "containerId" in answer["Err"]
    assert snapshot(engine) == before


def test_a_gc_of_more_stale_leases_than_one_call_can_release_keeps_what_it_did_and_goes_on(
    settings, engine, monkeypatch
):
    """2,000 stale leases, a call bound of half a second: each GC releases what fits in it, answers
    code 11 (try again later) with what is left, and a few GCs release them all. Before, the GC
    was one transaction that never fitted: 11 at every try, nothing released, forever."""
    import dataclasses

    from driver.domain.cni import Attachment, parse_network
    from driver.entrypoints.api import create_app
    from driver.storage.store import open_store
    from driver.usecases.cni import CniCalls
    from tests.api.conftest import Plugin

    monkeypatch.setattr("driver.usecases.cni.GC_BATCH", 50, raising=False)
    monkeypatch.setattr("driver.usecases.cni.GC_MARGIN", 0.1, raising=False)
    config = cni_config([{"subnet": "2001:db8:9c::/64"}])
    network = parse_network(config)
    store = open_store(settings.db_url)
    calls = CniCalls(store, settings.default_pools, settings.host_id)
    containers = [f"c{i}" for i in range(2_100)]
    for container in containers:
        calls.add(network, Attachment(NETWORK, container, "eth0"), f"container {container}")
    store.dispose()
    app = create_app(dataclasses.replace(settings, call_timeout=0.5))
    cni = Cni(Plugin(app.test_client()))
    valid = [{"containerID": c, "ifname": "eth0"} for c in containers[:100]]
    gc = dict(config, cniVersion="1.1.0", **{"cni.dev/valid-attachments": valid})
    answers, went_on = [], 0
    for _ in range(100):
        status, answer = cni.call("Gc", gc)
        answers.append((status, answer.get("CniCode")))
        if status == 200:
            break
        # on a loaded machine a call may find no time even for its first batch: it is refused as
        # any call out of time is, and the next goes on
        went_on += "left: run it again" in answer["Err"]
        assert went_on or "database unavailable" in answer["Err"], answer
    app.extensions["ipledger"].store.dispose()
    assert answers[-1] == (200, None) and set(answers[:-1]) <= {(503, 11)}
    assert went_on, answers  # at least one GC released what it could and said what was left
    held = {name for _, kind, name in leases_of(settings, "LocalDefault/2001:db8:9c::/64")}
    assert held == {"CNI network lan"} | {f"container {c}" for c in containers[:100]}
    print(f"2,000 stale leases released by {len(answers)} GCs")

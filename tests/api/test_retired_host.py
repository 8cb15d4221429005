"""A retired host's plugin answers every write with the fix, Docker's calls and CNI's alike."""

from __future__ import annotations

import json

from driver.storage.store import Store
from driver.usecases.hosts import Hosts
from tests.api.test_cni_api import cni_config

FIX = "ipledger hosts admit host-a"


def retire(engine, settings) -> None:
    Hosts(Store(engine), settings.host_id).beat("web-1", "0.2.0")
    Hosts(Store(engine), "operator").retire(settings.host_id, "ops@admin", force=True)


def test_a_retired_hosts_docker_calls_are_refused_naming_the_fix(plugin, engine, settings):
    status, pool = plugin.call(
        "RequestPool", {"AddressSpace": "LocalDefault", "Pool": "198.51.100.0/24"}
    )
    assert status == 200, pool
    retire(engine, settings)
    for method, body in (
        ("RequestPool", {"AddressSpace": "LocalDefault", "Pool": "203.0.113.0/24"}),
        ("RequestAddress", {"PoolID": pool["PoolID"]}),
        ("ReleaseAddress", {"PoolID": pool["PoolID"], "Address": "198.51.100.1"}),
        ("ReleasePool", {"PoolID": pool["PoolID"]}),
    ):
        status, answer = plugin.call(method, body)
        assert status == 403, (method, answer)
        assert answer["Err"].endswith(FIX) and answer["Error"] == answer["Err"]
    # what changes nothing is still answered
    assert plugin.call("GetCapabilities")[0] == 200


def test_a_retired_hosts_cni_add_is_refused_naming_the_fix(plugin, engine, settings):
    retire(engine, settings)
    body = {"config": cni_config(), "containerId": "c1", "ifname": "eth0", "args": ""}
    status, answer = plugin.raw("/Cni.Add", json.dumps(body))
    assert status == 403, answer
    assert answer["Err"].endswith(FIX)
    assert answer["CniCode"] == 999

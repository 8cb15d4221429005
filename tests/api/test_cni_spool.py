"""Applying DELs that ``ipledger-cni`` spooled while the server was down: the releases reach the
ledger and its history, and a spooled DEL never releases a lease its attachment was given after
it (the same container ADDed again), however often it is applied."""

from __future__ import annotations

import time
from pathlib import Path

from driver.adapters.spool import Spool, spool_release
from driver.domain.cni import Attachment, parse_network
from driver.usecases.admin import Admin
from driver.usecases.cni import CniCalls
from tests.api.test_cni_api import NETWORK, Cni, cni_config, leases_of
from tests.waiting import wait_until

POOL = "LocalDefault/203.0.113.0/24"


def cni_leases(settings) -> list[str]:
    return [address for address, kind, _ in leases_of(settings, POOL) if kind != "gateway"]


def calls(ipam) -> CniCalls:
    return CniCalls(ipam.store, ipam.default_pools, ipam.host_id)


def test_a_spooled_del_releases_the_lease_and_writes_history(ipam, settings):
    cni = calls(ipam)
    network = parse_network(cni_config())
    attachment = Attachment(NETWORK, "c1", "eth0")
    [address] = cni.add(network, attachment, "c1")
    assert cni.apply_spooled([(str(attachment), time.time())]) == 1
    assert cni_leases(settings) == []
    history = Admin(ipam.store, settings.host_id).reports.history(address="203.0.113.2")
    assert sorted(e.action for e in history) == ["allocate", "spool-release"]
    assert address.address == "203.0.113.2/24"


def test_a_spooled_del_applied_after_the_attachment_came_back_keeps_its_new_lease(ipam, settings):
    cni = calls(ipam)
    network = parse_network(cni_config())
    attachment = Attachment(NETWORK, "c1", "eth0")
    cni.add(network, attachment, "c1")
    deleted_at = time.time()
    wait_until(lambda: time.time() > deleted_at, 1, "the clock to pass the DEL's time", 0.001)
    spooled = [(str(attachment), deleted_at)]
    # the ADD that comes back applies it first, then leases anew
    [again] = cni.add(network, attachment, "c1", spooled)
    assert again.address == "203.0.113.2/24"
    for _ in range(2):  # the same release again (a claim left by a dead applier, a restart)
        assert cni.apply_spooled(spooled) == 0
    assert cni_leases(settings) == ["203.0.113.2"]
    assert cni.check(network, attachment)[0].address == "203.0.113.2/24"


def test_a_spooled_del_of_an_unknown_attachment_changes_nothing(ipam, settings):
    cni = calls(ipam)
    cni.add(parse_network(cni_config()), Attachment(NETWORK, "c1", "eth0"), "c1")
    assert cni.apply_spooled([(f"{NETWORK}/c9/eth0", time.time()), ("other/c1/eth0", 0.0)]) == 0
    assert cni_leases(settings) == ["203.0.113.2"]


def test_an_add_through_the_endpoint_applies_its_networks_spool_and_empties_it(plugin, settings):
    cni = Cni(plugin)
    assert cni.add(cni_config(), "c1") == ["203.0.113.2/24"]
    spool_release(settings.cni_spool, NETWORK, "c1", "eth0")
    spool_release(settings.cni_spool, "other", "c1", "eth0")
    assert cni.add(cni_config(), "c2") == ["203.0.113.2/24"]
    assert [r.network for r in Spool(settings.cni_spool).pending()] == ["other"]


def test_a_del_through_the_endpoint_applies_its_networks_spool_and_counts_it(settings, engine):
    from prometheus_client import CollectorRegistry

    from driver.entrypoints.api import create_app
    from driver.observability.metrics import Metrics
    from tests.api.conftest import Plugin

    registry = CollectorRegistry()
    app = create_app(settings, metrics=Metrics(registry))
    try:
        cni = Cni(Plugin(app.test_client()))
        cni.add(cni_config(), "c1")
        cni.add(cni_config(), "c2")
        spool_release(settings.cni_spool, NETWORK, "c1", "eth0")
        assert cni.call("Del", cni_config(), "c2")[0] == 200
        assert cni_leases(settings) == []
        assert Spool(settings.cni_spool).pending() == []
        assert registry.get_sample_value("ipledger_cni_spooled_releases_total") == 1
    finally:
        app.extensions["ipledger"].store.dispose()


def test_a_bad_file_in_the_spool_is_moved_aside_and_the_add_is_served(plugin, settings):
    spool = Path(settings.cni_spool)
    spool.mkdir()
    from driver.adapters.spool import entry_name

    (spool / entry_name(NETWORK, "c1", "eth0")).write_text('{"format": 1, "netw')
    assert Cni(plugin).add(cni_config(), "c2") == ["203.0.113.2/24"]
    assert len(list((spool / "bad").iterdir())) == 1


def test_a_call_applies_a_batch_of_the_spool_its_own_attachment_first_and_the_next_the_rest(
    plugin, settings, monkeypatch
):
    from driver.entrypoints import api_cni

    monkeypatch.setattr(api_cni, "SPOOL_BATCH", 2)
    cni = Cni(plugin)
    for container in ("c1", "c2", "c3", "c4"):
        cni.add(cni_config(), container)
    for container in ("c1", "c2", "c3", "c4"):
        spool_release(settings.cni_spool, NETWORK, container, "eth0")
    assert cni.call("Del", cni_config(), "c4")[0] == 200
    left = {r.container_id for r in Spool(settings.cni_spool).pending()}
    assert len(left) == 2 and "c4" not in left
    assert cni.call("Del", cni_config(), "c9")[0] == 200
    assert Spool(settings.cni_spool).pending() == []
    assert cni_leases(settings) == []

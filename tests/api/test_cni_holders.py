"""A CNI lease has no MAC: where the MAC would be, `ipledger leases`, `ipledger history` and the
status page (its JSON twin here; tests/ui has the browser) show the attachment (network,
container, ifname) and the pod when the lease records it, escaped onto one line."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from click.testing import CliRunner

from driver.entrypoints.cli import main
from driver.entrypoints.ui.app import create_ui_app
from driver.storage.store import Store
from driver.usecases.status import StatusViews
from tests.api.test_cni_api import Cni, cni_config

POOL = "LocalDefault/203.0.113.0/24"
POD = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0"


@pytest.fixture
def cni(plugin):
    return Cni(plugin)


@pytest.fixture
def attached(cni) -> None:
    """web-0's pod (held by pod), a plain container, and a container whose ifname has an escape
    sequence in it; then web-0's pod goes (its address is held for it)."""
    by_pod = cni_config(hold="10m", hold_by="pod")
    assert cni.add(by_pod, container="sandbox1", args=POD) == ["203.0.113.2/24"]
    assert cni.add(by_pod, container="plain") == ["203.0.113.3/24"]
    status, answer = cni.plugin.raw(
        "/Cni.Add",
        json.dumps({"config": by_pod, "containerId": "odd", "ifname": "e\x1b[2J", "args": ""}),
    )
    assert status == 200, answer
    assert cni.call("Del", by_pod, container="sandbox1", args=POD)[0] == 200


def run(settings, *args: str) -> list[dict[str, str]]:
    """The table a command prints, as a dict per row, cut where the headers start."""
    result = CliRunner().invoke(
        main,
        list(args),
        env={"IPLEDGER_HOST_ID": settings.host_id, "IPLEDGER_DB": settings.db_url},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output
    header, *lines = result.output.splitlines()
    names = header.split()
    starts = [
        header.index(f"{name} ") if name != names[-1] else header.rindex(name) for name in names
    ]
    ends = [*starts[1:], None]
    return [
        {name: line[a:b].strip() for name, a, b in zip(names, starts, ends, strict=True)}
        for line in lines
    ]


def column(rows: list[dict[str, str]], header: str) -> dict[str, str]:
    return {row["ADDRESS"]: row[header] for row in rows}


def test_leases_show_the_attachment_where_a_cni_lease_has_no_mac(attached, settings):
    rows = run(settings, "leases", POOL)
    assert column(rows, "MAC/ATTACHMENT") == {
        "203.0.113.1": "-",  # the network's gateway: neither
        "203.0.113.2": "-",  # held for web-0's pod: no attachment any more
        "203.0.113.3": "lan/plain/eth0",
        "203.0.113.4": "lan/odd/e\\x1b[2J",
    }


def test_history_shows_the_attachment_and_the_pod_of_each_cni_event(attached, settings):
    events = run(settings, "history", "203.0.113.2")
    assert [(e["ACTION"], e["MAC/ATTACHMENT"]) for e in events] == [
        ("allocate", "lan/sandbox1/eth0 (pod shop/web-0)"),
        ("release", "lan/sandbox1/eth0 (pod shop/web-0)"),
    ]


def test_a_leased_pods_attachment_and_pod_show_together(cni, settings):
    cni.add(cni_config(hold_by="pod"), container="sandbox1", args=POD)
    rows = run(settings, "leases", POOL)
    assert column(rows, "MAC/ATTACHMENT")["203.0.113.2"] == "lan/sandbox1/eth0 (pod shop/web-0)"


def page_json(settings, engine, path: str, **query: str) -> Any:
    client = create_ui_app(StatusViews(Store(engine), settings.host_id)).test_client()
    return json.loads(client.get(path, query_string={**query, "format": "json"}).get_data())


def test_the_pool_page_and_history_page_give_the_holder_where_the_mac_is_empty(
    attached, settings, engine
):
    leases = {
        lease["address"]: lease["holder"]
        for lease in page_json(settings, engine, f"/pool/{POOL}")["leases"]
    }
    assert leases == {
        "203.0.113.1": None,
        "203.0.113.3": "lan/plain/eth0",
        "203.0.113.4": "lan/odd/e\\x1b[2J",
    }
    events = page_json(settings, engine, "/history", address="203.0.113.2")["events"]
    assert [(e["action"], e["holder"]) for e in events] == [
        ("release", "lan/sandbox1/eth0 (pod shop/web-0)"),
        ("allocate", "lan/sandbox1/eth0 (pod shop/web-0)"),
    ]


def test_the_pool_pages_html_shows_the_holder_escaped(attached, settings, engine):
    client = create_ui_app(StatusViews(Store(engine), settings.host_id)).test_client()
    page = client.get(f"/pool/{POOL}").get_data(as_text=True)
    assert "lan/plain/eth0" in page and "lan/odd/e\\x1b[2J" in page and "\x1b" not in page
    history = client.get("/history", query_string={"address": "203.0.113.2"}).get_data(as_text=True)
    assert "lan/sandbox1/eth0 (pod shop/web-0)" in history


def test_a_containers_lease_records_the_pod_the_runtime_named(cni, settings, engine):
    """hold_by container (the default): the lease's name is the container, yet the pod the
    runtime passed in CNI_ARGS shows beside the attachment in `leases`, on the page and in the
    history; a control character in it is escaped."""
    config = cni_config(hold="10m")
    assert cni.add(config, container="sandbox1", args=POD) == ["203.0.113.2/24"]
    odd = "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=w\x1b[2J"
    assert cni.add(config, container="sandbox2", args=odd) == ["203.0.113.3/24"]
    shown = "lan/sandbox1/eth0 (pod shop/web-0)"
    odd_shown = "lan/sandbox2/eth0 (pod shop/w\\x1b[2J)"
    assert column(run(settings, "leases", POOL), "MAC/ATTACHMENT") == {
        "203.0.113.1": "-",
        "203.0.113.2": shown,
        "203.0.113.3": odd_shown,
    }
    page = page_json(settings, engine, f"/pool/{POOL}")["leases"]
    assert {lease["address"]: (lease["holder"], lease["pod"]) for lease in page} == {
        "203.0.113.1": (None, None),
        "203.0.113.2": (shown, "shop/web-0"),
        "203.0.113.3": (odd_shown, "shop/w\x1b[2J"),
    }
    assert cni.call("Del", config, container="sandbox1", args=POD)[0] == 200
    events = run(settings, "history", "203.0.113.2")
    assert [(e["ACTION"], e["MAC/ATTACHMENT"]) for e in events] == [
        ("allocate", shown),
        ("release", shown),
    ]
    events = page_json(settings, engine, "/history", address="203.0.113.2")["events"]
    assert [(e["action"], e["holder"]) for e in events] == [("release", shown), ("allocate", shown)]
    # the odd pod's events: its name escaped in the holder and in the detail
    events = run(settings, "history", "203.0.113.3")
    assert [(e["ACTION"], e["MAC/ATTACHMENT"]) for e in events] == [("allocate", odd_shown)]
    client = create_ui_app(StatusViews(Store(engine), settings.host_id)).test_client()
    page = client.get("/history", query_string={"address": "203.0.113.3"}).get_data(as_text=True)
    assert odd_shown in page and "\x1b" not in page


def test_a_pod_longer_than_kubernetes_allows_is_refused_also_when_held_by_container(cni):
    long_name = "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=" + "w" * 254
    status, answer = cni.call("Add", cni_config(), container="sandbox1", args=long_name)
    assert status != 200 and "K8S_POD_NAME has 254 characters" in answer["Err"], answer
    assert cni.add(cni_config(), container="sandbox1", args=POD) == ["203.0.113.2/24"]


def test_export_and_import_keep_the_pod_of_a_cni_lease(
    cni, settings, engine, tmp_path, other_db_url
):
    cni.add(cni_config(), container="sandbox1", args=POD)
    cni.add(cni_config(), container="plain")
    exported = tmp_path / "ledger.json"
    env = {"IPLEDGER_HOST_ID": settings.host_id, "IPLEDGER_DB": settings.db_url}
    result = CliRunner().invoke(main, ["export", "-o", str(exported)], env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(exported.read_text())
    pods = {lease["address"]: lease.get("pod") for s in data["subnets"] for lease in s["leases"]}
    assert pods == {"203.0.113.1": None, "203.0.113.2": "shop/web-0", "203.0.113.3": None}
    result = CliRunner().invoke(main, ["import", str(exported), "--db", other_db_url], env=env)
    assert result.exit_code == 0, result.output
    rows = run(dataclasses.replace(settings, db_url=other_db_url), "leases", POOL)
    assert column(rows, "MAC/ATTACHMENT")["203.0.113.2"] == "lan/sandbox1/eth0 (pod shop/web-0)"
    # an export made before leases recorded their pod has none: it imports as before
    for s in data["subnets"]:
        for lease in s["leases"]:
            lease.pop("pod", None)
    older = tmp_path / "older.json"
    older.write_text(json.dumps(data))
    third = tmp_path / "third.db"
    result = CliRunner().invoke(main, ["import", str(older), "--db", f"sqlite:///{third}"], env=env)
    assert result.exit_code == 0, result.output

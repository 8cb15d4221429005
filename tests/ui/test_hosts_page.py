"""The status page's hosts view, and a host's human name wherever a host shows, in a real
headless Chromium against a real ledger."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from driver.storage.models import hosts
from driver.storage.store import Store
from driver.usecases.admin import Admin
from driver.usecases.ipam import Ipam
from tests.ui.conftest import SCREENSHOTS

HOSTILE = "<script>alert('owned')</script>\x1b[2J"
SHOWN = "<script>alert('owned')</script>\\x1b[2J"
SHARED = {"ipledger.shared": "lan"}


@pytest.fixture
def ledger(engine, settings) -> dict[str, Any]:
    """Three hosts on one shared pool: this one (a hostile name), a silent one holding two
    leases, and one retired."""
    store = Store(engine)
    admin = Admin(store, settings.host_id)
    admin.hosts.beat(HOSTILE, "0.2.0")
    for host_id, name in (("host-b", "web-b"), ("host-c", "web-c")):
        Admin(store, host_id).hosts.beat(name, "0.1.9")
    mine = Ipam(store, settings.default_pools, settings.host_id)
    silent = Ipam(store, settings.default_pools, "host-b")
    pool = mine.request_pool("LocalDefault", "198.51.100.0/24", "", SHARED, False).pool_id
    silent.request_pool("LocalDefault", "198.51.100.0/24", "", SHARED, False)
    mine.request_address(pool, "198.51.100.5", {})
    silent.request_address(pool, "198.51.100.6", {})
    silent.request_address(pool, "198.51.100.7", {})
    with engine.begin() as c:
        for host_id, ago in (("host-b", 600), ("host-c", 7200)):
            c.execute(
                update(hosts)
                .where(hosts.c.id == host_id)
                .values(last_seen=datetime.now(UTC) - timedelta(seconds=ago))
            )
    admin.hosts.retire("host-c", "ops@admin")
    return {"pool": pool}


def rows(browser: Any) -> dict[str, list[str]]:
    """Host id -> the cells of its row."""
    found = {}
    for row in browser.find_elements("css selector", "#hosts tr.host-row"):
        cells = [cell.text for cell in row.find_elements("css selector", "td")]
        found[cells[1]] = cells
    return found


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_hosts_view_lists_each_host_with_its_heartbeat_state_and_leases(
    browser, ledger, ui_server, settings, backend
):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.get(ui_server.url + "/hosts")
    browser.save_screenshot(str(SCREENSHOTS / "hosts.png"))
    listed = rows(browser)
    assert set(listed) == {settings.host_id, "host-b", "host-c"}
    mine, silent, retired = listed[settings.host_id], listed["host-b"], listed["host-c"]
    assert mine[0] == SHOWN  # the name as text: escaped, and no script ran
    assert browser.find_elements("css selector", "script") == []
    assert (mine[4], mine[5]) == ("active", "1")
    assert (silent[3], silent[4], silent[5]) == ("10m ago", "active, silent", "2")
    assert retired[4].startswith("retired ") and retired[4].endswith(" by ops@admin")
    assert browser.find_elements("css selector", "tr.host-row.silent")
    with urllib.request.urlopen(ui_server.url + "/hosts?format=json", timeout=10) as answer:
        as_json = {h["host"]: h for h in json.loads(answer.read())["hosts"]}
    assert as_json["host-b"]["leases"] == 2 and as_json["host-c"]["state"] == "retired"
    assert as_json[settings.host_id]["name"] == HOSTILE


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_hosts_name_shows_wherever_its_id_did(browser, ledger, ui_server, settings, backend):
    browser.get(ui_server.url + f"/pool/{ledger['pool']}")
    headers = [th.text for th in browser.find_elements("css selector", "#leases thead th")]
    host_column = headers.index("host")
    by_address = {
        cells[0].text: cells[host_column]
        for cells in (
            row.find_elements("css selector", "td")
            for row in browser.find_elements("css selector", "#leases tbody tr")
        )
    }
    assert by_address["198.51.100.6"].text == "web-b"
    assert (
        by_address["198.51.100.6"].find_element("css selector", "span").get_attribute("title")
        == "host-b"
    )
    assert by_address["198.51.100.5"].text == SHOWN
    browser.get(ui_server.url + "/history")
    hosts_shown = {
        row.find_elements("css selector", "td")[1].text
        for row in browser.find_elements("css selector", "#history tr.event")
    }
    assert {"web-b", SHOWN} <= hosts_shown
    assert "host-b" not in hosts_shown

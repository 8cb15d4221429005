"""The status page in a real headless Chromium, served by ``ipledger ui`` against a real ledger."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from driver.domain.pools import GATEWAY_TYPE, MAC_OPTION, NAME_OPTION, REQUEST_ADDRESS_TYPE
from driver.usecases.admin import Admin
from tests.ui.conftest import SCREENSHOTS

HOSTILE = "<script>alert('owned')</script>"
SMALL = "LocalDefault/198.51.100.0/24"
LARGE = "LocalDefault/2001:db8:77::/64"


@pytest.fixture
def ledger(ipam, engine, settings) -> dict[str, Any]:
    """Pools in every state: a gateway, endpoints (one with a hostile name), an aux address, a
    parked address, a reservation, a nearly full pool and a large IPv6 one."""
    small = ipam.request_pool(
        "LocalDefault", "198.51.100.0/24", "", {"ipledger.quarantine": "1h"}, False
    ).pool_id
    ipam.request_address(small, "", {REQUEST_ADDRESS_TYPE: GATEWAY_TYPE})
    for i in range(6):
        ipam.request_address(
            small,
            "",
            {MAC_OPTION: f"02:00:00:00:00:{i:02x}", NAME_OPTION: HOSTILE if i == 0 else f"web-{i}"},
        )
    ipam.request_address(small, "198.51.100.200", {})  # an aux address
    ipam.release_address(small, "198.51.100.4")  # parked for an hour
    admin = Admin(ipam.store, settings.host_id)
    admin.reservations.reserve("198.51.100.240-198.51.100.249", "routers")
    tiny = ipam.request_pool("LocalDefault", "203.0.113.0/29", "", {}, False).pool_id
    for _ in range(6):
        ipam.request_address(tiny, "", {})  # all six: exhausted
    large = ipam.request_pool("LocalDefault", "2001:db8:77::/64", "", {}, True).pool_id
    for _ in range(300):
        ipam.request_address(large, "", {})
    return {"small": small, "tiny": tiny, "large": large, "admin": admin}


def console_errors(browser: Any) -> list[dict[str, Any]]:
    return [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def fetch_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


@pytest.mark.parametrize("backend", ["sqlite"])
def test_every_page_loads_with_no_console_error_and_is_saved_as_a_screenshot(
    browser, ledger, ui_server, backend
):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, path in (
        ("overview", "/"),
        ("pool", f"/pool/{SMALL}"),
        ("pool-large", f"/pool/{LARGE}"),
        ("history", "/history"),
        ("hosts", "/hosts"),
    ):
        browser.get(ui_server.url + path)
        assert browser.find_element("css selector", "h1").text
        assert console_errors(browser) == [], name
        browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_map_has_as_many_cells_of_each_state_as_the_ledger_says(
    browser, ledger, ui_server, backend
):
    browser.get(f"{ui_server.url}/pool/{SMALL}")
    cells = browser.find_elements("css selector", "#map rect.cell")
    assert len(cells) == 254
    lines = ledger["admin"].reports.addresses(SMALL)
    expected = {"gateway": 0, "endpoint": 0, "aux": 0, "reserved": 0, "parked": 0}
    for line in lines:
        if line.state == "leased":
            expected[str(line.kind)] += 1
        elif line.state == "reserved":
            first, _, last = line.address.partition("-")
            expected["reserved"] += int(last.rsplit(".", 1)[1]) - int(first.rsplit(".", 1)[1]) + 1
        else:
            expected["parked"] += 1
    assert expected == {"gateway": 1, "endpoint": 5, "aux": 1, "reserved": 10, "parked": 1}
    for state, count in expected.items():
        drawn = browser.find_elements("css selector", f"#map rect.s-{state}")
        assert len(drawn) == count, state
        legend = browser.find_element("css selector", f'#legend li[data-state="{state}"] .count')
        assert legend.text == str(count)
    free = browser.find_elements("css selector", "#map rect.s-free")
    assert len(free) == 254 - sum(expected.values())


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_large_pool_is_drawn_in_blocks_whose_counts_add_up_to_its_leases(
    browser, ledger, ui_server, backend
):
    browser.get(f"{ui_server.url}/pool/{LARGE}")
    blocks = browser.find_elements("css selector", "#map rect.cell.block")
    assert len(blocks) == 256
    assert sum(int(b.get_attribute("data-leased")) for b in blocks) == 300
    twin = fetch_json(f"{ui_server.url}/pool/{LARGE}?format=json")
    assert twin["leased"] == 300 and twin["map"]["block_size"] == 2**56


@pytest.mark.parametrize("backend", ["sqlite"])
def test_pools_near_exhaustion_come_first_and_a_column_header_sorts(
    browser, ledger, ui_server, backend
):
    browser.get(ui_server.url + "/")

    def order() -> list[str]:
        rows = browser.find_elements("css selector", "#pools tbody tr")
        return [row.get_attribute("data-pool") for row in rows]

    assert order()[0] == "LocalDefault/203.0.113.0/29"
    pill = browser.find_element("css selector", "#pools tbody tr .pill")
    assert pill.text == "exhausted"
    browser.find_element("link text", "leased").click()
    assert order() == [LARGE, SMALL, "LocalDefault/203.0.113.0/29"]
    browser.find_element("partial link text", "leased").click()
    assert order() == ["LocalDefault/203.0.113.0/29", SMALL, LARGE]
    assert fetch_json(ui_server.url + "/?format=json&sort=leased&order=asc")["pools"][0][
        "pool"
    ] == ("LocalDefault/203.0.113.0/29")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_history_filters_by_pool_and_by_address(browser, ledger, ui_server, backend):
    browser.get(ui_server.url + "/history")
    pool_box = browser.find_element("name", "pool")
    pool_box.send_keys(SMALL)
    pool_box.submit()
    pools = {
        row.find_elements("css selector", "td")[4].text
        for row in browser.find_elements("css selector", "#history tr.event")
    }
    assert pools == {SMALL}
    browser.get(ui_server.url + "/history?address=198.51.100.4")
    actions = [
        row.find_elements("css selector", "td")[2].text
        for row in browser.find_elements("css selector", "#history tr.event")
    ]
    assert actions == ["release", "allocate"]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_hostile_container_name_shows_as_text_and_runs_nothing(
    browser, ledger, ui_server, backend
):
    for path in (f"/pool/{SMALL}", f"/history?pool={SMALL}"):
        browser.get(ui_server.url + path)
        names = [cell.text for cell in browser.find_elements("css selector", "td.name")]
        assert HOSTILE in names
        assert browser.find_elements("css selector", "script") == []
        assert console_errors(browser) == []


@pytest.mark.parametrize("backend", ["sqlite"])
def test_every_answer_forbids_scripts_and_the_page_accepts_no_writes(ledger, ui_server, backend):
    with urllib.request.urlopen(ui_server.url + "/", timeout=10) as answer:
        policy = answer.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    post = urllib.request.Request(ui_server.url + "/", data=b"x=1", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(post, timeout=10)
    assert refused.value.code == 405
    refused.value.close()
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(ui_server.url + "/pool/%3Cb%3Enope", timeout=10)
    assert missing.value.code == 404
    assert b"&lt;b&gt;nope" in missing.value.read()
    missing.value.close()

"""The status page's HTTP answers, through Flask's test client (the browser tests are tests/ui)."""

from __future__ import annotations

from driver.entrypoints.ui.app import create_ui_app
from driver.usecases.status import StatusViews


def test_the_history_pages_json_link_keeps_its_filters_whatever_they_contain(ipam, settings):
    client = create_ui_app(StatusViews(ipam.store, settings.host_id)).test_client()
    page = client.get("/history", query_string={"pool": "a b&c", "address": "#1"}).get_data(
        as_text=True
    )
    assert 'href="/history?pool=a+b%26c&amp;address=%231&amp;format=json"' in page


def test_a_pools_page_shows_each_leases_dns_name_and_whether_it_is_published(ipam, settings):
    options = {"ipledger.dns_zone": "apps.example.test"}
    pool = ipam.request_pool("LocalDefault", "192.0.2.0/24", "", options, False).pool_id
    for name in ("web1", "web2"):
        ipam.request_address(pool, "", {"com.docker.network.endpoint.name": name})
    with ipam.store.transaction() as ledger:  # a publisher sent web1's
        first = ledger.claim_dns("test", 0.0, 60, 10)[0]
        assert first.change.name == "web1.apps.example.test"
        assert ledger.published_dns(first, "test", 0.0)
    client = create_ui_app(StatusViews(ipam.store, settings.host_id)).test_client()
    page = client.get(f"/pool/{pool}").get_data(as_text=True)
    assert 'web1.apps.example.test</span> <span class="dns-published">published' in page
    assert 'web2.apps.example.test</span> <span class="dns-pending">pending' in page

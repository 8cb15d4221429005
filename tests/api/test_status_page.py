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

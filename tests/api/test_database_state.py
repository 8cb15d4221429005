"""The database's state on the status page and in the metrics: the server the instance is on,
the calls that waited through an outage and the ones refused."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from driver.entrypoints.ui.app import create_ui_app
from driver.observability.metrics import Metrics, database_state
from driver.usecases.status import DatabaseState, StatusViews


def test_the_metrics_follow_the_server_the_connections_reach_and_count_outage_calls():
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    assert database_state(registry) == DatabaseState((), 0, 0)
    metrics.server("127.0.0.1:55432")
    metrics.server("127.0.0.1:55433")  # a failover
    metrics.waited()
    metrics.waited()
    metrics.refused()
    assert database_state(registry) == DatabaseState(("127.0.0.1:55433",), 2, 1)
    assert registry.get_sample_value("ipledger_database_server", {"server": "127.0.0.1:55432"}) == 0


def test_the_overview_names_the_database_server_and_the_outage_counts(ipam, settings):
    state = DatabaseState(("127.0.0.1:55433",), 12, 1)
    client = create_ui_app(
        StatusViews(ipam.store, settings.host_id), database=lambda: state
    ).test_client()
    page = " ".join(client.get("/").get_data(as_text=True).split())
    assert (
        '<p id="database">Database: <code>127.0.0.1:55433</code> · 12 calls waited through an '
        "outage · 1 refused (503) while it stayed unavailable</p>"
    ) in page
    assert client.get("/?format=json").get_json()["database"] == {
        "servers": ["127.0.0.1:55433"],
        "waited": 12,
        "refused": 1,
    }


def test_without_a_served_instance_the_overview_says_nothing_of_a_database(ipam, settings):
    client = create_ui_app(StatusViews(ipam.store, settings.host_id)).test_client()
    assert 'id="database"' not in client.get("/").get_data(as_text=True)
    assert "database" not in client.get("/?format=json").get_json()

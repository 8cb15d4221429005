"""Prometheus metrics from the real server: two gunicorn workers, one listener, the ledger's gauges."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from driver.adapters.plugin_client import PluginClient
from tests.e2e.harness import PluginProcess, free_port
from tests.waiting import wait_until


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def server(tmp_path):
    port = free_port()
    process = PluginProcess(
        "ipl-metrics",
        f"sqlite:///{tmp_path}/ledger.db",
        tmp_path,
        socket=str(tmp_path / "ipl-metrics.sock"),
        workers=2,
        extra_env={"IPLEDGER_METRICS_ADDR": str(port), "IPLEDGER_LOG_FORMAT": "json"},
    )
    process.start()
    process.port = port
    yield process
    process.stop()


def test_metrics_count_every_workers_calls_and_read_pool_usage_from_the_ledger(server):
    pool = {"AddressSpace": "LocalDefault", "Pool": "198.51.100.0/24", "SubPool": "198.51.100.0/26"}
    assert server.client.call("RequestPool", pool)[0] == 200
    pool_id = "LocalDefault/198.51.100.0/24/198.51.100.0/26"

    def allocate(_: int) -> list[str]:
        with PluginClient(server.socket) as client:
            return [
                client.call("RequestAddress", {"PoolID": pool_id})[1]["Address"] for _ in range(5)
            ]

    with ThreadPoolExecutor(4) as pool_of_clients:
        got = [a for batch in pool_of_clients.map(allocate, range(4)) for a in batch]
    assert len(set(got)) == 20
    events = [
        json.loads(line)
        for line in server.log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    allocations = [e for e in events if e.get("event") == "allocate"]
    assert {e["address"] for e in allocations} == {a.split("/")[0] for a in got}
    assert {(e["pool"], e["kind"], e["level"]) for e in allocations} == {(pool_id, "other", "info")}
    for address in got[:5]:
        server.client.call("ReleaseAddress", {"PoolID": pool_id, "Address": address.split("/")[0]})
    server.client.call("RequestAddress", {"PoolID": pool_id, "Address": "203.0.113.9"})
    server.client.call("RequestAddress", {"PoolID": "LocalDefault/nope"})

    samples = scrape(server.port)
    assert value(samples, "ipledger_allocations_total", pool=pool_id) == 20
    assert value(samples, "ipledger_releases_total", pool=pool_id) == 5
    assert (
        value(
            samples,
            "ipledger_errors_total",
            endpoint="IpamDriver.RequestAddress",
            error="AddressOutOfRange",
        )
        == 1
    )
    assert (
        value(
            samples,
            "ipledger_errors_total",
            endpoint="IpamDriver.RequestAddress",
            error="PoolNotFound",
        )
        == 1
    )
    assert (
        value(
            samples, "ipledger_request_duration_seconds_count", endpoint="IpamDriver.RequestAddress"
        )
        == 22
    )
    labels = {
        "pool": pool_id,
        "subnet": "198.51.100.0/24",
        "range": "198.51.100.0/26",
        "owner": "local",
    }
    assert (
        value(samples, "ipledger_pool_size_addresses", **labels) == 63
    )  # .0 is the network address
    assert value(samples, "ipledger_pool_leased_addresses", **labels) == 15
    assert value(samples, "ipledger_pool_free_addresses", **labels) == 48
    assert value(samples, "ipledger_pool_utilisation_ratio", **labels) == pytest.approx(15 / 63)
    assert value(samples, "ipledger_ledger_up") == 1


def test_counts_of_a_killed_worker_stay_counted_after_gunicorn_replaces_it(server):
    pool = {"AddressSpace": "LocalDefault", "Pool": "198.51.100.0/24"}
    assert server.client.call("RequestPool", pool)[0] == 200
    for _ in range(10):
        with PluginClient(server.socket) as client:
            assert (
                client.call("RequestAddress", {"PoolID": "LocalDefault/198.51.100.0/24"})[0] == 200
            )
    workers = subprocess.run(
        ["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True, check=True
    ).stdout.split()
    os.kill(int(workers[0]), signal.SIGKILL)

    def replaced() -> bool:
        now = subprocess.run(
            ["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True
        ).stdout.split()
        return len(now) == len(workers) and workers[0] not in now

    wait_until(replaced, 15, f"gunicorn to replace the killed worker {workers[0]}")
    with PluginClient(server.socket) as client:
        assert client.call("RequestAddress", {"PoolID": "LocalDefault/198.51.100.0/24"})[0] == 200
    samples = scrape(server.port)
    assert value(samples, "ipledger_allocations_total", pool="LocalDefault/198.51.100.0/24") == 11


def test_the_metrics_listener_is_off_unless_asked_for(tmp_path):
    process = PluginProcess(
        "ipl-nometrics",
        f"sqlite:///{tmp_path}/ledger.db",
        tmp_path,
        socket=str(tmp_path / "ipl-nometrics.sock"),
    )
    process.start()
    try:
        listening = [line for line in process.log_tail(50).splitlines() if "metrics on" in line]
        assert listening == []
    finally:
        process.stop()


def test_the_status_page_is_served_beside_metrics_and_a_stalled_browser_holds_up_neither(server):
    client = PluginClient(server.socket)
    pool = client.call("RequestPool", {"AddressSpace": "LocalDefault", "Pool": "198.51.100.0/24"})
    for _ in range(3):
        client.call("RequestAddress", {"PoolID": pool[1]["PoolID"]})
    stalled = []
    for _ in range(8):  # more than any fixed pool of handlers would have
        connection = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        connection.sendall(b"GET / HTTP/1.1\r\nHost: ipledger\r\n")  # and never the end
        stalled.append(connection)
    try:
        page = requests.get(f"http://127.0.0.1:{server.port}/?format=json", timeout=5).json()
        assert page["pools"][0]["leased"] == 3
        leased = [
            v
            for (name, labels), v in scrape(server.port).items()
            if name == "ipledger_pool_leased_addresses"
            and ("pool", "LocalDefault/198.51.100.0/24") in labels
        ]
        assert leased == [3]
    finally:
        for connection in stalled:
            connection.close()


def test_metrics_are_answered_with_one_charset_in_their_content_type(server):
    from prometheus_client import CONTENT_TYPE_LATEST

    answer = requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert answer.headers["Content-Type"].count("charset=") == 1

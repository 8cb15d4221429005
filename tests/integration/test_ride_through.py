"""A real `ipledger serve` on PostgreSQL through a restart and an outage: its metrics and status
page name the database server it is on and count the calls that waited or were refused."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import requests
from sqlalchemy.engine import make_url

from driver.storage.store import open_store
from driver.usecases.ipam import Ipam
from tests.e2e.harness import PluginProcess, free_port
from tests.integration.test_metrics import scrape, value

POOL = {"AddressSpace": "LocalDefault", "Pool": "2001:db8:2::/64"}
POOL_ID = "LocalDefault/2001:db8:2::/64"
PASSWORD = "s3cret-never-shown"


@pytest.fixture
def server(tmp_path, postgres):
    url = postgres.new_database()
    # trust authentication ignores the password: it is there to be hidden
    with_password = url.replace("postgres@", f"postgres:{PASSWORD}@")
    port = free_port()
    process = PluginProcess(
        "iplha-metrics",
        with_password,
        tmp_path,
        socket=str(tmp_path / "iplha-metrics.sock"),
        extra_env={"IPLEDGER_METRICS_ADDR": str(port), "IPLEDGER_CALL_TIMEOUT": "3"},
    )
    process.start()
    process.port = port
    yield process
    process.stop()
    postgres.drop_database(url)


def calls_during(server, outage) -> list[tuple[int, dict]]:
    """The answers to RequestAddress calls made from two clients while ``outage`` runs."""
    statuses: list[tuple[int, dict]] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            statuses.append(server.client.call("RequestAddress", {"PoolID": POOL_ID}))

    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        outage()
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    return statuses


def test_the_metrics_and_the_page_show_the_server_and_count_calls_that_waited_or_were_refused(
    server, postgres
):
    assert server.client.call("RequestPool", POOL)[0] == 200
    answers = calls_during(server, postgres.restart)
    assert [a for a in answers if a[0] != 200] == []
    postgres.stop()
    try:
        assert server.client.call("RequestAddress", {"PoolID": POOL_ID})[0] == 503
    finally:
        postgres.start()
    assert server.client.call("RequestAddress", {"PoolID": POOL_ID})[0] == 200

    where = f"{postgres.socket_dir}:{make_url(server.db_url).query['port']}"
    samples = scrape(server.port)
    assert value(samples, "ipledger_database_server", server=where) == 1
    assert value(samples, "ipledger_database_outage_waits_total") >= 1
    assert value(samples, "ipledger_database_outage_refusals_total") == 1
    page = requests.get(f"http://127.0.0.1:{server.port}/", timeout=10).text
    assert f"Database: <code>{where}</code>" in page
    assert "1 refused (503)" in page
    text = requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=10).text
    assert PASSWORD not in text + page


@pytest.mark.parametrize(
    "command",
    [["pools"], ["reserve", "2001:db8:2::200-2001:db8:2::209", "--label", "routers"]],
    ids=["a read", "a write"],
)
def test_an_operator_command_waits_for_postgresql_to_come_back(tmp_path, postgres, command):
    url = postgres.new_database()
    try:
        # an operator's command waits for the database up to the call bound
        engine_env = dict(os.environ, IPLEDGER_HOST_ID="host-0", IPLEDGER_CALL_TIMEOUT="30")
        store = open_store(url)
        try:
            Ipam(store, (), "host-0").request_pool("LocalDefault", POOL["Pool"], "", {}, True)
        finally:
            store.dispose()
        postgres.stop()
        try:
            cli = subprocess.Popen(
                [sys.executable, "-m", "driver", *command, "--db", url],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=engine_env,
            )
            time.sleep(3)  # the command meets the database down, and waits
            assert cli.poll() is None, cli.communicate()[0]
        finally:
            postgres.start()
        output = cli.communicate(timeout=60)[0]
        assert cli.returncode == 0, output
        assert (POOL_ID if command == ["pools"] else "reserved") in output
    finally:
        postgres.drop_database(url)

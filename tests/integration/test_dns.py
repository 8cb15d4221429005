"""Leases in a real DNS server: `ipledger serve` publishes them by RFC 2136 updates signed with
TSIG to BIND 9 (and Knot DNS), read back with `dig`; never in a call's way."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.dns_servers import REVERSE4, REVERSE6, ZONE, DnsServer, free_port, write_key
from tests.e2e.harness import PluginProcess
from tests.waiting import wait_until

pytestmark = pytest.mark.full

GATEWAY = {"RequestAddressType": "com.docker.network.gateway"}
DNS_OPTIONS = {"ipledger.dns_zone": ZONE, "ipledger.dns_reverse": "true"}


def need(tool: str) -> None:
    import shutil

    if shutil.which(tool) is None:
        if os.environ.get("IPLEDGER_REQUIRE_E2E"):
            pytest.fail(f"{tool} missing: tests/run.sh installs bind9, bind9-dnsutils and knot")
        pytest.skip(f"{tool} not installed")


@pytest.fixture(params=["bind", "knot"])
def any_server(request) -> Iterator[DnsServer]:
    need("named" if request.param == "bind" else "knotd")
    need("dig")
    server = DnsServer(request.param)
    server.start()
    yield server
    server.close()


@pytest.fixture
def bind() -> Iterator[DnsServer]:
    need("named")
    need("dig")
    server = DnsServer("bind")
    server.start()
    yield server
    server.close()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    wait_until(check, timeout, what)


def serve(
    tmp_path: Path, server: DnsServer, name: str = "ipldns", db_url: str | None = None, **env: str
) -> PluginProcess:
    plugin = PluginProcess(
        name,
        db_url or f"sqlite:///{tmp_path}/ledger.db",
        tmp_path,
        socket=str(tmp_path / f"{name}.sock"),
        extra_env={
            "IPLEDGER_DNS_SERVER": server.address,
            "IPLEDGER_DNS_TSIG": str(server.key_path),
            **env,
        },
    )
    plugin.start()
    return plugin


def call(plugin: PluginProcess, method: str, body: dict) -> dict:
    status, answer = plugin.client.call(method, body)
    assert status == 200, answer
    return answer


def docker_pool(plugin: PluginProcess, cidr: str, options: dict | None = None) -> str:
    return call(
        plugin,
        "/IpamDriver.RequestPool",
        {"AddressSpace": "LocalDefault", "Pool": cidr, "Options": options or DNS_OPTIONS},
    )["PoolID"]


def container(plugin: PluginProcess, pool_id: str, name: str) -> str:
    """A RequestAddress as Docker 29 sends it for a container's endpoint (with its name)."""
    answer = call(
        plugin,
        "/IpamDriver.RequestAddress",
        {"PoolID": pool_id, "Address": "", "Options": {"com.docker.network.endpoint.name": name}},
    )
    return str(answer["Address"]).split("/")[0]


def release(plugin: PluginProcess, pool_id: str, address: str) -> None:
    call(plugin, "/IpamDriver.ReleaseAddress", {"PoolID": pool_id, "Address": address})


def cli(*args: str, db_url: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "driver", *args, "--db", db_url],
        capture_output=True,
        text=True,
        env=dict(os.environ, **(env or {})),
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def queue_depth(db_url: str) -> int:
    zones = json.loads(cli("dns", "status", "--json", db_url=db_url))
    return sum(z["pending"] for z in zones)


def forward(server: DnsServer) -> set[tuple[str, str]]:
    return {(name, value) for name, _, value in server.records(ZONE)}


CNI_CONFIG = {
    "cniVersion": "1.0.0",
    "name": "pods",
    "type": "bridge",
    "ipam": {
        "type": "ipledger",
        "ranges": [[{"subnet": "192.0.2.0/25"}], [{"subnet": "2001:db8:23::/64"}]],
        "ipledger": {"dns_zone": ZONE, "dns_reverse": True},
    },
}


def cni(plugin: PluginProcess, verb: str, container_id: str, pod: str, namespace: str) -> dict:
    return call(
        plugin,
        f"/Cni.{verb}",
        {
            "config": CNI_CONFIG,
            "containerId": container_id,
            "ifname": "eth0",
            "args": f"IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={pod}",
        },
    )


def test_pods_containers_and_reservations_are_published_with_ptr_and_removed_when_released(
    tmp_path, any_server
):
    plugin = serve(tmp_path, any_server)
    db_url = plugin.db_url
    try:
        result = cni(plugin, "Add", "c1", "web-0", "shop")["result"]
        v4, v6 = (ip["address"].split("/")[0] for ip in result["ips"])
        pool_id = docker_pool(plugin, "198.51.100.0/24", {"ipledger.dns_zone": ZONE})
        web1 = container(plugin, pool_id, "Web_1")
        cli("reserve", "192.0.2.100", "--label", "printer", db_url=db_url)
        pod = "web-0.shop.apps.example.test"
        wait_for(
            "the pod, the container and the reservation in the zone",
            lambda: (
                any_server.dig(pod, "AAAA") == [v6]
                and any_server.dig("printer.apps.example.test") == ["192.0.2.100"]
                and any_server.dig("web-1.apps.example.test") == [web1]
            ),
        )
        assert any_server.dig(pod, "A") == [v4]
        assert any_server.dig(v4, "PTR") == [pod]
        assert any_server.dig(v6, "PTR") == [pod]
        assert any_server.dig(web1, "PTR") == []  # that pool has no dns_reverse
        names = cli("dns", "names", db_url=db_url)
        assert re.search(rf"{pod}\s+{v4}\s+published", names), names
        assert re.search(rf"web-1\.{ZONE}\s+{web1}\s+published", names), names

        cni(plugin, "Del", "c1", "web-0", "shop")
        release(plugin, pool_id, web1)
        cli("unreserve", "192.0.2.100", db_url=db_url)
        wait_for("every record removed", lambda: forward(any_server) == set())
        assert any_server.records(REVERSE4) == set()
        assert any_server.records(REVERSE6) == set()
        assert queue_depth(db_url) == 0
    finally:
        plugin.stop()


def test_a_name_someone_re_pointed_is_not_deleted_when_its_lease_is_released(tmp_path, bind):
    plugin = serve(tmp_path, bind)
    try:
        pool_id = docker_pool(plugin, "192.0.2.0/24")
        address = container(plugin, pool_id, "db")
        wait_for("db published", lambda: bind.dig("db.apps.example.test") == [address])
        subprocess.run(
            ["nsupdate", "-k", str(bind.key_path)],
            input=f"server 127.0.0.1 {bind.port}\nzone {ZONE}\n"
            f"update delete db.{ZONE} A\nupdate add db.{ZONE} 60 A 192.0.2.77\nsend\n",
            text=True,
            check=True,
        )
        release(plugin, pool_id, address)
        wait_for("the removal done", lambda: queue_depth(plugin.db_url) == 0)
        assert bind.dig("db.apps.example.test") == ["192.0.2.77"]
    finally:
        plugin.stop()


def timed(calls: list[float], action: Callable[[], object]) -> None:
    started = time.perf_counter()
    action()
    calls.append(time.perf_counter() - started)


def churn(plugin: PluginProcess, pool_id: str, n: int, prefix: str) -> tuple[list[float], dict]:
    """``n`` named allocations, then every other one released; the call times, and what is
    leased (name -> address)."""
    times: list[float] = []
    leased: dict[str, str] = {}
    for i in range(n):
        name = f"{prefix}{i}"
        timed(times, lambda name=name: leased.__setitem__(name, container(plugin, pool_id, name)))
    for i in range(0, n, 2):
        name = f"{prefix}{i}"
        timed(times, lambda name=name: release(plugin, pool_id, leased.pop(name)))
    return times, leased


def summary(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    return (
        f"{len(ms)} calls: median {statistics.median(ms):.2f} ms, "
        f"p99 {ms[int(len(ms) * 0.99) - 1]:.2f} ms, max {ms[-1]:.2f} ms"
    )


def test_calls_while_the_dns_server_is_down_are_answered_as_fast_and_the_zone_catches_up(
    tmp_path, bind
):
    plugin = serve(tmp_path, bind)
    try:
        pool_id = docker_pool(plugin, "2001:db8:23::/64")
        up, up_leased = churn(plugin, pool_id, 100, "up")
        wait_for("the first churn published", lambda: queue_depth(plugin.db_url) == 0)
        bind.stop()
        down, down_leased = churn(plugin, pool_id, 200, "down")
        print(f"\nDNS server up:   {summary(up)}\nDNS server down: {summary(down)}")
        # bounded, not timed: every call answered well within the call bound (5 s)
        assert max(down) < 5
        # 200 allocations, 100 releases: an AAAA change and a PTR change each
        assert queue_depth(plugin.db_url) == 600
        bind.start()
        leased = {(f"{n}.{ZONE}", a) for n, a in {**up_leased, **down_leased}.items()}
        wait_for("the zone equals the leases", lambda: forward(bind) == leased, timeout=120)
        wait_for("their PTRs published", lambda: queue_depth(plugin.db_url) == 0)
        pointers = sorted(target for _, _, target in bind.records(REVERSE6))
        assert pointers == sorted(name for name, _ in leased)
    finally:
        plugin.stop()


def test_changes_queued_when_ipledger_is_killed_are_published_after_its_restart(
    tmp_path, any_server
):
    any_server.stop()
    plugin = serve(tmp_path, any_server)
    pool_id = docker_pool(plugin, "192.0.2.0/24")
    addresses = {container(plugin, pool_id, f"k{i}"): f"k{i}.{ZONE}" for i in range(10)}
    assert queue_depth(plugin.db_url) == 20  # an A and a PTR each
    plugin.kill()  # SIGKILL, master and workers: no chance to send anything
    any_server.start()
    plugin.start()
    try:
        wait_for(
            "the queued changes published",
            lambda: forward(any_server) == {(n, a) for a, n in addresses.items()},
        )
        wait_for("their PTRs published", lambda: queue_depth(plugin.db_url) == 0)
    finally:
        plugin.stop()


def test_a_wrong_key_is_reported_in_dns_status_the_log_and_the_metrics_and_the_queue_is_kept(
    tmp_path, bind
):
    wrong = tmp_path / "wrong-key.conf"
    write_key(wrong, secret=b"not the server's secret, 32 byte")
    port = free_port()
    plugin = PluginProcess(
        "ipldns-wrongkey",
        f"sqlite:///{tmp_path}/ledger.db",
        tmp_path,
        socket=str(tmp_path / "wrongkey.sock"),
        extra_env={
            "IPLEDGER_DNS_SERVER": bind.address,
            "IPLEDGER_DNS_TSIG": str(wrong),
            "IPLEDGER_METRICS_ADDR": str(port),
        },
    )
    plugin.start()
    try:
        pool_id = docker_pool(plugin, "192.0.2.0/24")
        container(plugin, pool_id, "web1")
        wait_for("the failure recorded", lambda: "bad-signature" in cli_status(plugin))
        status = cli_status(plugin)
        print(status)
        assert "the key's secret differs from the server's" in status
        assert "PeerBadSignature" in plugin.log_tail(50)
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert f'ipledger_dns_failures_total{{failure="bad-signature",zone="{ZONE}"}}' in metrics
        # its A record and its PTR, each a change
        assert f'ipledger_dns_queue_changes{{zone="{ZONE}"}} 2.0' in metrics
        assert queue_depth(plugin.db_url) == 2
        assert bind.dig("web1.apps.example.test") == []
    finally:
        plugin.stop()
    # the key fixed, a restart publishes what was kept
    fixed = serve(tmp_path, bind, name="ipldns-fixed", db_url=plugin.db_url)
    try:
        wait_for("published with the right key", lambda: bind.dig(f"web1.{ZONE}") != [])
    finally:
        fixed.stop()


def cli_status(plugin: PluginProcess) -> str:
    return cli("dns", "status", db_url=plugin.db_url)


def test_two_instances_on_one_postgresql_ledger_publish_each_record_once(tmp_path, bind, postgres):
    db_url = postgres.new_database(template=None)
    instances = [
        serve(tmp_path, bind, name=f"ipldns-pg{i}", db_url=db_url, IPLEDGER_HOST_ID=f"host-{i}")
        for i in range(2)
    ]
    try:
        pools = [
            docker_pool(p, cidr)
            for p, cidr in zip(instances, ("192.0.2.0/25", "192.0.2.128/25"), strict=True)
        ]
        expected = set()
        for i in range(60):
            plugin, pool_id = instances[i % 2], pools[i % 2]
            expected.add((f"n{i}.{ZONE}", container(plugin, pool_id, f"n{i}")))
        wait_for("all published", lambda: forward(bind) == expected, timeout=60)
        adds = Counter(line for line in bind.update_log() if line.startswith("adding"))
        forward_adds = [line for line in adds if " A " in line]
        print(f"\n{len(forward_adds)} A records added, {len(adds)} updates logged")
        assert len(forward_adds) == 60
        assert set(adds.values()) == {1}, [line for line, n in adds.items() if n > 1]
    finally:
        for plugin in instances:
            plugin.stop()
        postgres.drop_database(db_url)


def test_sync_shows_the_difference_and_converges_only_the_names_ipledger_manages(
    tmp_path, any_server
):
    plugin = serve(tmp_path, any_server)
    env = {"IPLEDGER_DNS_SERVER": any_server.address, "IPLEDGER_DNS_TSIG": str(any_server.key_path)}
    try:
        pool_id = docker_pool(plugin, "192.0.2.0/24")
        address = container(plugin, pool_id, "app")
        wait_for("app published", lambda: any_server.dig(f"app.{ZONE}") == [address])
        nsupdate = (
            f"server 127.0.0.1 {any_server.port}\nzone {ZONE}\n"
            f"update delete app.{ZONE} A\n"  # a managed name lost its record
            f"update add app.{ZONE} 60 A 192.0.2.99\n"  # and got one no lease holds
            f"update add foreign.{ZONE} 60 A 192.0.2.98\nsend\n"  # not ipledger's
        )
        subprocess.run(
            ["nsupdate", "-k", str(any_server.key_path)], input=nsupdate, text=True, check=True
        )
        shown = cli("dns", "sync", db_url=plugin.db_url, env=env)
        print(shown)
        assert f"+ app.{ZONE} A {address}\n" in shown
        # a record ipledger never published, even at a name it manages, is not its to delete
        assert f"  app.{ZONE} A 192.0.2.99: not ipledger's, left alone" in shown
        assert "foreign" not in shown
        cli("dns", "sync", "--apply", db_url=plugin.db_url, env=env)
        wait_for(
            "converged",
            lambda: sorted(any_server.dig(f"app.{ZONE}")) == sorted([address, "192.0.2.99"]),
        )
        assert any_server.dig(f"foreign.{ZONE}") == ["192.0.2.98"]
        assert any_server.dig(address, "PTR") == [f"app.{ZONE}"]
        assert "0 differences" in cli("dns", "sync", db_url=plugin.db_url, env=env)
    finally:
        plugin.stop()


def test_the_dns_benchmark_runs_both_sides_and_prints_their_ratio(bind):
    """`ipledger bench --dns` against a real BIND: the numbers are printed, not asserted."""
    from driver.bench.dns import run_dns

    lines: list[str] = []
    ratios = run_dns(True, bind.address, str(bind.key_path), out=lines.append, zone=ZONE)
    print("\n" + "\n".join(lines))
    assert set(ratios) == {
        "RequestAddress p50",
        "RequestAddress p99",
        "ReleaseAddress p50",
        "ReleaseAddress p99",
        "mean",
    }
    assert any(line.startswith("  outbox emptied") for line in lines), lines


def cli_run(*args: str, db_url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driver", *args, "--db", db_url],
        capture_output=True,
        text=True,
        env=dict(os.environ, **env),
        timeout=60,
    )


def test_a_dns_server_given_by_name_is_resolved_and_published_to(tmp_path, bind):
    plugin = serve(tmp_path, bind, IPLEDGER_DNS_SERVER=f"localhost:{bind.port}")
    try:
        pool_id = docker_pool(plugin, "192.0.2.0/24")
        address = container(plugin, pool_id, "byname")
        wait_for("published", lambda: bind.dig(f"byname.{ZONE}") == [address])
    finally:
        plugin.stop()


def test_a_ptr_the_server_cannot_take_never_holds_back_the_a_record_nor_its_removal(tmp_path, bind):
    """198.51.100.0/24's reverse zone is not served: its PTRs fail, its A records do not wait."""
    plugin = serve(tmp_path, bind)
    try:
        pool_id = docker_pool(plugin, "198.51.100.0/24")
        first = container(plugin, pool_id, "web1")
        wait_for("the A record added", lambda: bind.dig(f"web1.{ZONE}") == [first])
        release(plugin, pool_id, first)
        wait_for("the A record removed", lambda: bind.dig(f"web1.{ZONE}") == [])
        second = container(plugin, pool_id, "web1")
        wait_for("the name added again", lambda: bind.dig(f"web1.{ZONE}") == [second])
        names = cli("dns", "names", db_url=plugin.db_url)
        assert re.search(rf"web1\.{ZONE}\s+{second}\s+published, PTR pending", names), names
        status = json.loads(cli("dns", "status", "--json", db_url=plugin.db_url))
        print(status)
        assert [z["failure"] for z in status] == ["no-reverse-zone"]
        assert "100.51.198.in-addr.arpa" in status[0]["last_error"]
    finally:
        plugin.stop()


def test_sync_reports_a_zone_it_cannot_transfer_and_compares_the_others(tmp_path, bind):
    plugin = serve(tmp_path, bind)
    env = {"IPLEDGER_DNS_SERVER": bind.address, "IPLEDGER_DNS_TSIG": str(bind.key_path)}
    try:
        pool_id = docker_pool(plugin, "192.0.2.0/24", {"ipledger.dns_zone": ZONE})
        address = container(plugin, pool_id, "app")
        wait_for("app published", lambda: bind.dig(f"app.{ZONE}") == [address])
        lost = docker_pool(plugin, "198.51.100.0/24", {"ipledger.dns_zone": "lost.example.test"})
        container(plugin, lost, "nowhere")
        subprocess.run(
            ["nsupdate", "-k", str(bind.key_path)],
            input=f"server 127.0.0.1 {bind.port}\nzone {ZONE}\nupdate delete app.{ZONE} A\nsend\n",
            text=True,
            check=True,
        )
        shown = cli_run("dns", "sync", db_url=plugin.db_url, env=env)
        print(shown.stdout, shown.stderr)
        assert shown.returncode != 0
        assert f"+ app.{ZONE} A {address}" in shown.stdout
        assert "lost.example.test" in shown.stderr
        assert "NOTAUTH" in shown.stderr or "REFUSED" in shown.stderr
        assert "Traceback" not in shown.stderr
    finally:
        plugin.stop()


def claimed(db_url: str) -> int:
    import sqlite3

    with sqlite3.connect(db_url.removeprefix("sqlite:///"), timeout=10) as db:
        query = "select count(*) from dns_outbox where claimed_until is not null"
        return int(db.execute(query).fetchone()[0])


def test_changes_claimed_when_ipledger_is_killed_are_sent_at_once_after_its_restart(tmp_path, bind):
    """A server that takes the connection and never answers: each batch is claimed while the
    publisher waits for it; killed then, the restarted serve (same host) takes them back."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", free_port()))
    silent.listen(64)
    silent_at = f"127.0.0.1:{silent.getsockname()[1]}"
    plugin = serve(tmp_path, bind, IPLEDGER_DNS_SERVER=silent_at)
    try:
        pool_id = docker_pool(plugin, "192.0.2.0/24", {"ipledger.dns_zone": ZONE})
        addresses = {container(plugin, pool_id, f"c{i}"): f"c{i}.{ZONE}" for i in range(5)}
        wait_for("a batch claimed", lambda: claimed(plugin.db_url) > 0)
        plugin.kill()
        assert claimed(plugin.db_url) > 0
    finally:
        silent.close()
    plugin.env["IPLEDGER_DNS_SERVER"] = bind.address
    plugin.start()
    try:
        # a claim is kept 120 s: sent within 30 s only when taken back at start
        wait_for(
            "the claimed changes published",
            lambda: forward(bind) == {(n, a) for a, n in addresses.items()},
        )
    finally:
        plugin.stop()

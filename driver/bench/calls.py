"""Docker-like clients of the plugin socket, timed: the floor, sequential and concurrent calls."""

from __future__ import annotations

import multiprocessing
import time

from driver.adapters.plugin_client import PluginClient
from driver.bench.stats import percentile


def floor(sock: str, rounds: int) -> list[float]:
    """Latencies (ms) of /Plugin.Activate, which touches no database: the transport's floor."""
    latencies = []
    with PluginClient(sock, keepalive=True) as client:
        for _ in range(rounds):
            t0 = time.perf_counter()
            client.call("/Plugin.Activate")
            latencies.append((time.perf_counter() - t0) * 1000)
    return latencies


def sequential(sock: str, pool_id: str, rounds: int) -> tuple[list[float], list[float]]:
    """RequestAddress then ReleaseAddress, one after the other; their latencies in ms."""
    with PluginClient(sock, keepalive=True) as client:
        return _request_release(client, pool_id, rounds)


def _timed_request(client: PluginClient, pool_id: str) -> tuple[str, float]:
    """One dynamic RequestAddress: the CIDR answer and its latency in ms."""
    t0 = time.perf_counter()
    status, answer = client.call(
        "RequestAddress", {"PoolID": pool_id, "Address": "", "Options": {}}
    )
    elapsed = (time.perf_counter() - t0) * 1000
    if status != 200:
        raise RuntimeError(f"RequestAddress failed: {answer}")
    return str(answer["Address"]), elapsed


def _request_release(
    client: PluginClient, pool_id: str, rounds: int
) -> tuple[list[float], list[float]]:
    requests, releases = [], []
    for _ in range(rounds):
        address, elapsed = _timed_request(client, pool_id)
        t1 = time.perf_counter()
        client.call("ReleaseAddress", {"PoolID": pool_id, "Address": address.split("/")[0]})
        releases.append((time.perf_counter() - t1) * 1000)
        requests.append(elapsed)
    return requests, releases


def _allocate(args: tuple[str, str, int]) -> tuple[list[str], list[float]]:
    sock, pool_id, count = args
    with PluginClient(sock, keepalive=True) as client:
        return _allocations(client, pool_id, count)


def _allocations(client: PluginClient, pool_id: str, count: int) -> tuple[list[str], list[float]]:
    got, latencies = [], []
    for _ in range(count):
        address, elapsed = _timed_request(client, pool_id)
        got.append(address)
        latencies.append(elapsed)
    return got, latencies


def concurrent(
    sock: str | list[str], pool_id: str, clients: int, per_client: int
) -> tuple[float, float, int, int]:
    """``clients`` processes allocating at once, spread over the sockets given: (allocations/s,
    p99 ms, handed out, duplicates)."""
    sockets = [sock] if isinstance(sock, str) else sock
    jobs = [(sockets[i % len(sockets)], pool_id, per_client) for i in range(clients)]
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        t0 = time.perf_counter()
        results = pool.map(_allocate, jobs)
        wall = time.perf_counter() - t0
    addresses = [a for got, _ in results for a in got]
    latencies = [x for _, lat in results for x in lat]
    return (
        len(addresses) / wall,
        percentile(latencies, 99),
        len(addresses),
        len(addresses) - len(set(addresses)),
    )

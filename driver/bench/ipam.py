"""``ipledger bench``: the real server (gunicorn, unix socket, SQLite) under a Docker-like client.

Prints one table per measurement. Nothing here asserts a time: the numbers are for the README.
The ledger is pre-filled through the same tables the driver uses (bulk inserts of leases and of
the free ranges between them), not through a million HTTP calls.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import netaddr
from sqlalchemy import Engine, delete, insert, select

from driver.adapters.plugin_client import PluginClient
from driver.config import Settings
from driver.storage.engine import make_engine
from driver.storage.models import free_ranges, leases, pools
from driver.storage.rows import pack
from driver.storage.schema import migrate
from driver.storage.store import Store
from driver.usecases.ipam import Ipam

FULL_COUNTS = (1_000, 100_000, 1_000_000)
QUICK_COUNTS = (1_000, 10_000)
# a hole every HOLE_EVERY addresses, so that the free ranges are many, as after real churn
HOLE_EVERY = 50


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# --- pre-filling the ledger --------------------------------------------------------------


def prefill(engine: Engine, cidr: str, count: int, filler_base: str = "10.0.0.0/8") -> str:
    """Create pool ``cidr`` and make the database hold ``count`` leases in all.

    The pool itself holds as many as fit in 90% of it, with a hole every HOLE_EVERY addresses;
    the rest go to /16 filler pools carved from ``filler_base``. Returns the pool's PoolID.
    """
    ipam = Ipam(Store(engine), Settings().default_pools)
    pool_id = ipam.request_pool("LocalDefault", cidr, "", {}, ":" in cidr).pool_id
    network = netaddr.IPNetwork(cidr)
    capacity = min(network.size - 2, 1 << 62)
    here = min(count, int(capacity * 0.9))
    _fill(engine, pool_id, network, here)
    rest = count - here
    fillers = netaddr.IPNetwork(filler_base).subnet(16)
    while rest > 0:
        filler = next(fillers)
        filler_id = ipam.request_pool("LocalDefault", str(filler), "", {}, False).pool_id
        chunk = min(rest, 60_000)
        _fill(engine, filler_id, filler, chunk)
        rest -= chunk
    return pool_id


def _fill(engine: Engine, pool_id: str, network: netaddr.IPNetwork, count: int) -> None:
    """Lease ``count`` addresses from the bottom of the pool, leaving regular holes."""
    first = int(network.first) + 1
    with engine.begin() as c:
        subnet_id = c.execute(select(pools.c.subnet_id).where(pools.c.id == pool_id)).scalar_one()
        c.execute(delete(free_ranges).where(free_ranges.c.subnet_id == subnet_id))
        now = datetime.now(UTC)
        batch: list[dict[str, object]] = []
        holes: list[dict[str, object]] = []
        leased, address = 0, first
        while leased < count:
            if (address - first) % HOLE_EVERY == HOLE_EVERY - 1:
                holes.append(
                    {"subnet_id": subnet_id, "first": pack(address), "last": pack(address)}
                )
            else:
                batch.append(
                    {
                        "subnet_id": subnet_id,
                        "address": pack(address),
                        "pool_id": pool_id,
                        "kind": "endpoint",
                        "mac": None,
                        "name": None,
                        "created_at": now,
                    }
                )
                leased += 1
            address += 1
            if len(batch) >= 50_000:
                c.execute(insert(leases), batch)
                batch.clear()
        if batch:
            c.execute(insert(leases), batch)
        last = int(network.last) - (1 if network.version == 4 else 0)
        holes.append({"subnet_id": subnet_id, "first": pack(address), "last": pack(last)})
        c.execute(insert(free_ranges), holes)


# --- the server ----------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    socket: str
    started_in: float

    def worker_pids(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
        ).stdout
        return [int(p) for p in out.split()]

    def worker_rss_mb(self) -> list[float]:
        sizes = []
        for pid in self.worker_pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(int(line.split()[1]) / 1024)
        return sizes


@contextmanager
def server(
    workdir: Path,
    db_url: str,
    workers: int,
    host_id: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """``ipledger serve`` on a socket of its own; yields once it has answered."""
    sock = str(workdir / f"bench-{host_id or ''}{workers}.sock")
    env = dict(os.environ, IPLEDGER_LOG_LEVEL="warning", **(extra_env or {}))
    if host_id is not None:
        env["IPLEDGER_HOST_ID"] = host_id
    started = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "driver",
            "serve",
            "--socket",
            sock,
            "--db",
            db_url,
            "--workers",
            str(workers),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    client = PluginClient(sock, timeout=10)
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError("ipledger serve exited during start-up")
            try:
                if client.call("/Plugin.Activate")[0] == 200:
                    break
            except OSError:
                time.sleep(0.005)
        yield Server(process, sock, time.monotonic() - started)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


# --- the measurements ----------------------------------------------------------------------


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


# --- the whole run -------------------------------------------------------------------------


def run(quick: bool, out: Callable[[str], None] = print) -> dict[str, object]:
    """Run every measurement, print the tables, and return the raw numbers."""
    counts = QUICK_COUNTS if quick else FULL_COUNTS
    rounds = 300 if quick else 2_000
    per_client = 100 if quick else 600
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="ipledger-bench-") as tmp:
        workdir = Path(tmp)
        out(
            f"# ipledger bench ({'quick' if quick else 'full'}): {os.cpu_count()} CPUs, "
            f"SQLite WAL synchronous=NORMAL, gunicorn gthread"
        )
        out("")
        out("## Sequential RequestAddress + ReleaseAddress (ms), and over Plugin.Activate")
        out("(Activate: the transport's floor, gunicorn + Flask + the unix socket, measured on")
        out(" the same server and client just before; goals: p50 <= 1.3x, p99 <= 2x)")
        out(
            f"{'pool':<16}{'leases in db':>14}{'act p50':>9}{'req p50':>9}{'req p99':>9}"
            f"{'rel p50':>9}{'req/act':>8}{'rel/act':>8}{'p99/act':>8}{'start s':>8}{'RSS MB':>7}"
        )
        seq: dict[tuple[str, int], float] = {}
        ratios: dict[str, tuple[float, float, float]] = {}
        for cidr in ("172.16.0.0/16", "2001:db8::/64", "2001:db8::/32"):
            for count in counts:
                db = workdir / f"seq-{len(seq)}.db"
                engine = make_engine(f"sqlite:///{db}")
                migrate(engine)
                pool_id = prefill(engine, cidr, count)
                engine.dispose()
                with server(workdir, f"sqlite:///{db}", 1) as s:
                    base = floor(s.socket, rounds)
                    requests, releases = sequential(s.socket, pool_id, rounds)
                    rss = max(s.worker_rss_mb())
                act = statistics.median(base)
                p50 = statistics.median(requests)
                rel = statistics.median(releases)
                seq[(cidr, count)] = p50
                results.setdefault("floor_p50", act)
                vs_floor = (p50 / act, rel / act, percentile(requests, 99) / percentile(base, 99))
                ratios[f"{cidr} {count}"] = vs_floor
                out(
                    f"{cidr:<16}{count:>14,}{act:>9.3f}{p50:>9.3f}{percentile(requests, 99):>9.3f}"
                    f"{rel:>9.3f}{vs_floor[0]:>8.2f}{vs_floor[1]:>8.2f}{vs_floor[2]:>8.2f}"
                    f"{s.started_in:>8.2f}{rss:>7.1f}"
                )
                db.unlink()
        results["ratios"] = ratios
        results["sequential_p50"] = {f"{c} {n}": v for (c, n), v in seq.items()}
        out("")
        out("## p50 at the largest count / p50 at 1,000 leases")
        for cidr in ("172.16.0.0/16", "2001:db8::/64", "2001:db8::/32"):
            ratio = seq[(cidr, counts[-1])] / seq[(cidr, counts[0])]
            out(f"{cidr:<16}{ratio:>8.2f}")
        out("")
        out("## Concurrent RequestAddress, every address checked for duplicates")
        out(
            f"{'workers':>8}{'clients':>8}{'alloc/s':>10}{'p99 ms':>9}{'handed out':>12}{'dups':>6}"
        )
        conc = []
        for workers in (1, 2):
            for clients in (1, 4, 8):
                db = workdir / f"conc-{workers}-{clients}.db"
                engine = make_engine(f"sqlite:///{db}")
                migrate(engine)
                pool_id = prefill(engine, "2001:db8::/64", 1_000)
                engine.dispose()
                with server(workdir, f"sqlite:///{db}", workers) as s:
                    rate, p99, total, dups = concurrent(s.socket, pool_id, clients, per_client)
                conc.append((workers, clients, rate, p99, total, dups))
                out(f"{workers:>8}{clients:>8}{rate:>10.0f}{p99:>9.2f}{total:>12,}{dups:>6}")
                db.unlink()
        results["concurrent"] = conc
    return results


SHARED_BENCH_POOL = "2001:db8:1::/64"


def run_postgres(url: str, quick: bool, out: Callable[[str], None] = print) -> dict[str, object]:
    """Three instances (own sockets and host ids) on one PostgreSQL ledger, one shared pool."""
    rounds = 300 if quick else 2_000
    per_client = 50 if quick else 400
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    results: dict[str, object] = {}
    request = {
        "AddressSpace": "LocalDefault",
        "Pool": SHARED_BENCH_POOL,
        "Options": {"ipledger.shared": "bench"},
    }
    pool_id = f"shared/bench/LocalDefault/{SHARED_BENCH_POOL}"
    with (
        tempfile.TemporaryDirectory(prefix="ipledger-bench-") as tmp,
        server(Path(tmp), url, 2, "bench-a") as a,
        server(Path(tmp), url, 2, "bench-b") as b,
        server(Path(tmp), url, 2, "bench-c") as c,
    ):
        sockets = [a.socket, b.socket, c.socket]
        for sock in sockets:
            status, answer = PluginClient(sock).call("RequestPool", request)
            if status != 200:
                raise RuntimeError(f"RequestPool failed: {answer}")
        out(
            f"# ipledger bench on PostgreSQL ({'quick' if quick else 'full'}): "
            f"{os.cpu_count()} CPUs, 3 instances x 2 gunicorn workers, one shared pool"
        )
        out("")
        out("## Sequential RequestAddress + ReleaseAddress on one instance (ms)")
        requests, releases = sequential(a.socket, pool_id, rounds)
        results["sequential"] = (
            statistics.median(requests),
            percentile(requests, 99),
            statistics.median(releases),
        )
        out(f"{'req p50':>10}{'req p99':>10}{'rel p50':>10}")
        out(
            f"{statistics.median(requests):>10.3f}{percentile(requests, 99):>10.3f}"
            f"{statistics.median(releases):>10.3f}"
        )
        out("")
        out("## Concurrent RequestAddress over the three instances, checked for duplicates")
        out(f"{'clients':>8}{'alloc/s':>10}{'p99 ms':>9}{'handed out':>12}{'dups':>6}")
        conc = []
        for clients in (3, 6, 12):
            rate, p99, total, dups = concurrent(sockets, pool_id, clients, per_client)
            conc.append((clients, rate, p99, total, dups))
            out(f"{clients:>8}{rate:>10.0f}{p99:>9.2f}{total:>12,}{dups:>6}")
        results["concurrent"] = conc
    return results

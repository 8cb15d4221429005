"""``ipledger bench``: the real server (gunicorn, unix socket, SQLite or PostgreSQL) under a
Docker-like client, measured into rows that :mod:`driver.bench.render` prints.

Nothing here asserts a time: the numbers are for the README.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from driver.adapters.plugin_client import PluginClient
from driver.bench import render
from driver.bench.calls import concurrent, floor, sequential
from driver.bench.prefill import prefill
from driver.bench.server import server
from driver.bench.stats import percentile
from driver.storage.engine import make_engine
from driver.storage.schema import migrate

FULL_COUNTS = (1_000, 100_000, 1_000_000)
QUICK_COUNTS = (1_000, 10_000)
CIDRS = ("172.16.0.0/16", "2001:db8::/64", "2001:db8::/32")
SHARED_BENCH_POOL = "2001:db8:1::/64"

Out = Callable[[str], None]


@dataclass(frozen=True)
class SequentialRow:
    """RequestAddress + ReleaseAddress one after the other, beside Activate on the same server."""

    cidr: str
    leases: int
    activate_p50: float
    activate_p99: float
    request_p50: float
    request_p99: float
    release_p50: float
    started_s: float
    rss_mb: float

    @property
    def over_floor(self) -> tuple[float, float, float]:
        """Request p50, release p50 and request p99 over Activate's."""
        return (
            self.request_p50 / self.activate_p50,
            self.release_p50 / self.activate_p50,
            self.request_p99 / self.activate_p99,
        )


@dataclass(frozen=True)
class ConcurrentRow:
    """Clients allocating at once, every address checked for duplicates."""

    workers: int
    clients: int
    rate: float
    p99: float
    handed_out: int
    duplicates: int


def _ledger(workdir: Path, name: str, cidr: str, count: int) -> tuple[str, str]:
    """A new SQLite ledger holding ``count`` leases: its URL and the pool's PoolID."""
    url = f"sqlite:///{workdir / name}"
    engine = make_engine(url)
    migrate(engine)
    pool_id = prefill(engine, cidr, count)
    engine.dispose()
    return url, pool_id


def sequential_rows(counts: tuple[int, ...], rounds: int, workdir: Path) -> Iterator[SequentialRow]:
    for number, (cidr, count) in enumerate((c, n) for c in CIDRS for n in counts):
        url, pool_id = _ledger(workdir, f"seq-{number}.db", cidr, count)
        with server(workdir, url, 1) as s:
            base = floor(s.socket, rounds)
            requests, releases = sequential(s.socket, pool_id, rounds)
            rss = max(s.worker_rss_mb())
        yield SequentialRow(
            cidr,
            count,
            statistics.median(base),
            percentile(base, 99),
            statistics.median(requests),
            percentile(requests, 99),
            statistics.median(releases),
            s.started_in,
            rss,
        )
        Path(url.removeprefix("sqlite:///")).unlink()


def concurrent_rows(per_client: int, workdir: Path) -> Iterator[ConcurrentRow]:
    for workers in (1, 2):
        for clients in (1, 4, 8):
            url, pool_id = _ledger(workdir, f"conc-{workers}-{clients}.db", "2001:db8::/64", 1_000)
            with server(workdir, url, workers) as s:
                rate, p99, total, dups = concurrent(s.socket, pool_id, clients, per_client)
            yield ConcurrentRow(workers, clients, rate, p99, total, dups)
            Path(url.removeprefix("sqlite:///")).unlink()


def results(seq: list[SequentialRow], conc: list[ConcurrentRow]) -> dict[str, object]:
    """The raw numbers, keyed as callers of :func:`run` read them."""
    return {
        "floor_p50": seq[0].activate_p50,
        "ratios": {f"{r.cidr} {r.leases}": r.over_floor for r in seq},
        "sequential_p50": {f"{r.cidr} {r.leases}": r.request_p50 for r in seq},
        "concurrent": [
            (r.workers, r.clients, r.rate, r.p99, r.handed_out, r.duplicates) for r in conc
        ],
    }


def run(quick: bool, out: Out = print) -> dict[str, object]:
    """Run every measurement on SQLite, print the tables as rows come, return the numbers."""
    counts = QUICK_COUNTS if quick else FULL_COUNTS
    seq: list[SequentialRow] = []
    conc: list[ConcurrentRow] = []
    with tempfile.TemporaryDirectory(prefix="ipledger-bench-") as tmp:
        render.emit(out, render.sqlite_head(quick))
        for row in sequential_rows(counts, 300 if quick else 2_000, Path(tmp)):
            seq.append(row)
            out(render.sequential_row(row))
        render.emit(out, render.growth(seq, CIDRS, counts))
        render.emit(out, render.concurrent_head())
        for conc_row in concurrent_rows(100 if quick else 600, Path(tmp)):
            conc.append(conc_row)
            out(render.concurrent_row(conc_row))
    return results(seq, conc)


@dataclass(frozen=True)
class PostgresSequential:
    request_p50: float
    request_p99: float
    release_p50: float


def _shared_pool(sockets: list[str]) -> str:
    """The one shared pool, asked for through every instance: its PoolID."""
    request = {
        "AddressSpace": "LocalDefault",
        "Pool": SHARED_BENCH_POOL,
        "Options": {"ipledger.shared": "bench"},
    }
    for sock in sockets:
        status, answer = PluginClient(sock).call("RequestPool", request)
        if status != 200:
            raise RuntimeError(f"RequestPool failed: {answer}")
    return f"shared/bench/LocalDefault/{SHARED_BENCH_POOL}"


def run_postgres(url: str, quick: bool, out: Out = print) -> dict[str, object]:
    """Three instances (own sockets and host ids) on one PostgreSQL ledger, one shared pool."""
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    with (
        tempfile.TemporaryDirectory(prefix="ipledger-bench-") as tmp,
        server(Path(tmp), url, 2, "bench-a") as a,
        server(Path(tmp), url, 2, "bench-b") as b,
        server(Path(tmp), url, 2, "bench-c") as c,
    ):
        sockets = [a.socket, b.socket, c.socket]
        pool_id = _shared_pool(sockets)
        render.emit(out, render.postgres_head(quick))
        requests, releases = sequential(a.socket, pool_id, 300 if quick else 2_000)
        seq = PostgresSequential(
            statistics.median(requests), percentile(requests, 99), statistics.median(releases)
        )
        render.emit(out, render.postgres_sequential(seq))
        conc = []
        for clients in (3, 6, 12):
            rate, p99, total, dups = concurrent(sockets, pool_id, clients, 50 if quick else 400)
            conc.append(ConcurrentRow(6, clients, rate, p99, total, dups))
            out(render.postgres_concurrent_row(conc[-1]))
    return {
        "sequential": (seq.request_p50, seq.request_p99, seq.release_p50),
        "concurrent": [(r.clients, r.rate, r.p99, r.handed_out, r.duplicates) for r in conc],
    }

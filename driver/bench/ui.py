"""``ipledger bench --ui``: how long the status page takes to answer, as the pool fills up.

``ipledger ui`` is started on a ledger pre-filled through its own tables with a pool of N leases
(an IPv6 /64, so that a million fit), and each page is fetched over HTTP, whole, a number of
times, into rows that :mod:`driver.bench.render` prints. Nothing here asserts a time: the
numbers are for the docs.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from driver.bench import render
from driver.bench.prefill import prefill
from driver.storage.engine import make_engine
from driver.storage.schema import migrate

FULL_COUNTS = (1_000, 100_000, 1_000_000)
QUICK_COUNTS = (1_000, 10_000)
CIDR = "2001:db8:ee::/64"


def _fetch_ms(url: str, rounds: int) -> tuple[float, int]:
    """p50 ms of fetching ``url`` whole, and the size of the answer."""
    times, size = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as answer:
            size = len(answer.read())
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), size


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(db_url: str, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "driver", "ui", "--listen", f"127.0.0.1:{port}", "--db", db_url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/?format=json", timeout=5) as r:
                r.read()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("ipledger ui did not start")


@dataclass(frozen=True)
class UiRow:
    """p50 ms of each page at one number of leases, and the pool map's size."""

    leases: int
    overview: float
    pool: float
    json: float
    history: float
    map_bytes: int


def _row(workdir: Path, count: int, rounds: int) -> UiRow:
    """Every page of ``ipledger ui`` on a ledger whose pool holds ``count`` leases."""
    db = workdir / f"ui-{count}.db"
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    pool_id = prefill(engine, CIDR, count)
    engine.dispose()
    port = _free_port()
    process = _serve(f"sqlite:///{db}", port)
    try:
        base = f"http://127.0.0.1:{port}"
        overview, _ = _fetch_ms(f"{base}/", rounds)
        pool, size = _fetch_ms(f"{base}/pool/{pool_id}", rounds)
        twin, _ = _fetch_ms(f"{base}/pool/{pool_id}?format=json", rounds)
        history, _ = _fetch_ms(f"{base}/history", rounds)
    finally:
        process.terminate()
        process.wait(10)
    return UiRow(count, overview, pool, twin, history, size)


def run_ui(quick: bool, out: Callable[[str], None] = print) -> dict[int, dict[str, float]]:
    """Measure every page as the pool fills, print the table as rows come, return them."""
    counts = QUICK_COUNTS if quick else FULL_COUNTS
    rounds = 5 if quick else 15
    render.emit(out, render.ui_head(quick, rounds))
    results: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="ipledger-bench-ui-") as tmp:
        for count in counts:
            row = _row(Path(tmp), count, rounds)
            out(render.ui_row(row))
            results[count] = {
                "overview": row.overview,
                "pool": row.pool,
                "json": row.json,
                "history": row.history,
            }
    return results

"""``ipledger bench --dns``: the per-call cost of publishing leases in DNS, side by side.

Two runs of the same real server (gunicorn, unix socket, SQLite) and the same calls, Docker 29's
RequestAddress with the container's name and its ReleaseAddress: one on a pool without a zone
and no DNS server, one on a pool with ``ipledger.dns_zone`` whose publisher sends each change to
the DNS server given (or, without one, to a port where none listens: the changes then wait in
the outbox, retried, as while a DNS server is down). Measured into :class:`DnsRuns`, printed
by :mod:`driver.bench.render` with their ratio; asserts nothing.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from driver.adapters.plugin_client import PluginClient
from driver.bench import render
from driver.bench.server import server
from driver.bench.stats import percentile
from driver.storage.engine import make_engine
from driver.storage.schema import migrate
from driver.storage.store import Store
from driver.usecases.dns import DnsStatus

ZONE = "bench.example.test"
NOWHERE = "127.0.0.1:9"  # the discard port: nothing answers DNS there


def _calls(sock: str, pool_id: str, rounds: int) -> tuple[list[float], list[float]]:
    """Named RequestAddress then ReleaseAddress, ``rounds`` times; their latencies in ms."""
    requests, releases = [], []
    with PluginClient(sock, keepalive=True) as client:
        for i in range(rounds):
            options = {"com.docker.network.endpoint.name": f"bench-{i}"}
            t0 = time.perf_counter()
            status, answer = client.call(
                "RequestAddress", {"PoolID": pool_id, "Address": "", "Options": options}
            )
            requests.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                raise RuntimeError(f"RequestAddress failed: {answer}")
            t1 = time.perf_counter()
            client.call(
                "ReleaseAddress",
                {"PoolID": pool_id, "Address": str(answer["Address"]).split("/")[0]},
            )
            releases.append((time.perf_counter() - t1) * 1000)
    return requests, releases


def _one_run(
    workdir: Path, dns: dict[str, str] | None, rounds: int, zone: str = ZONE
) -> tuple[list[float], list[float], float | None]:
    """The calls' latencies, and the seconds the publisher took to empty the outbox after
    them (None when DNS is off, or the outbox did not empty within a minute)."""
    db_url = f"sqlite:///{workdir}/ledger.db"
    migrate(make_engine(db_url))
    with server(workdir, db_url, 2, extra_env=dns) as running:
        client = PluginClient(running.socket, timeout=10)
        pool = {
            "AddressSpace": "LocalDefault",
            "Pool": "10.77.0.0/16",
            "Options": {"ipledger.dns_zone": zone} if dns else {},
        }
        status, answer = client.call("RequestPool", pool)
        if status != 200:
            raise RuntimeError(f"RequestPool failed: {answer}")
        _calls(running.socket, answer["PoolID"], 20)  # warm-up
        requests, releases = _calls(running.socket, answer["PoolID"], rounds)
        drained = _drained(db_url) if dns else None
    return requests, releases, drained


def _drained(db_url: str, within: float = 60) -> float | None:
    status = DnsStatus(Store(make_engine(db_url)))
    started = time.monotonic()
    while time.monotonic() - started < within:
        if not status.zones():
            return time.monotonic() - started
        time.sleep(0.05)
    return None


@dataclass(frozen=True)
class DnsRun:
    """One side's latencies (ms), and the seconds the outbox took to empty after them."""

    requests: list[float]
    releases: list[float]
    drained: float | None


@dataclass(frozen=True)
class DnsRuns:
    """Both sides of ``ipledger bench --dns``: DNS publishing off and on."""

    rounds: int
    zone: str
    server: str | None  # None: a port where no DNS server listens
    off: DnsRun
    on: DnsRun

    def percentiles(self) -> list[tuple[str, float, float]]:
        """(what, off, on) for each call's p50 and p99."""
        return [
            (
                f"{label} p{q}",
                percentile(getattr(self.off, part), q),
                percentile(getattr(self.on, part), q),
            )
            for label, part in (("RequestAddress", "requests"), ("ReleaseAddress", "releases"))
            for q in (50, 99)
        ]

    def means(self) -> tuple[float, float]:
        """The mean per call, off and on."""
        return (
            statistics.mean(self.off.requests + self.off.releases),
            statistics.mean(self.on.requests + self.on.releases),
        )

    def ratios(self) -> dict[str, float]:
        """On over off, for each percentile and for the mean."""
        mean_off, mean_on = self.means()
        return {what: on / off for what, off, on in self.percentiles()} | {
            "mean": mean_on / mean_off
        }


def run_dns(
    quick: bool,
    dns_server: str | None,
    dns_tsig: str | None,
    out: Callable[[str], None] = print,
    zone: str = ZONE,
) -> dict[str, float]:
    """Both sides measured, then printed; returns the ratios on/off."""
    rounds = 200 if quick else 2000
    dns = {"IPLEDGER_DNS_SERVER": dns_server or NOWHERE}
    if dns_tsig:
        dns["IPLEDGER_DNS_TSIG"] = dns_tsig
    with tempfile.TemporaryDirectory(prefix="ipledger-bench-dns.") as tmp:
        (Path(tmp) / "off").mkdir()
        (Path(tmp) / "on").mkdir()
        off = DnsRun(*_one_run(Path(tmp) / "off", None, rounds))
        on = DnsRun(*_one_run(Path(tmp) / "on", dns, rounds, zone))
    runs = DnsRuns(rounds, zone, dns_server, off, on)
    render.emit(out, render.dns_runs(runs, NOWHERE))
    return runs.ratios()

"""``ipledger bench --dns``: the per-call cost of publishing leases in DNS, side by side.

Two runs of the same real server (gunicorn, unix socket, SQLite) and the same calls, Docker 29's
RequestAddress with the container's name and its ReleaseAddress: one on a pool without a zone
and no DNS server, one on a pool with ``ipledger.dns_zone`` whose publisher sends each change to
the DNS server given (or, without one, to a port where none listens: the changes then wait in
the outbox, retried, as while a DNS server is down). Prints both and their ratio; asserts
nothing.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from driver.adapters.plugin_client import PluginClient
from driver.bench.ipam import percentile, server
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


def run_dns(
    quick: bool,
    dns_server: str | None,
    dns_tsig: str | None,
    out: Callable[[str], None] = print,
    zone: str = ZONE,
) -> dict[str, float]:
    rounds = 200 if quick else 2000
    dns = {"IPLEDGER_DNS_SERVER": dns_server or NOWHERE}
    if dns_tsig:
        dns["IPLEDGER_DNS_TSIG"] = dns_tsig
    with tempfile.TemporaryDirectory(prefix="ipledger-bench-dns.") as tmp:
        (Path(tmp) / "off").mkdir()
        (Path(tmp) / "on").mkdir()
        off = _one_run(Path(tmp) / "off", None, rounds)
        on = _one_run(Path(tmp) / "on", dns, rounds, zone)
    where = dns_server or f"{NOWHERE} (no DNS server: changes wait in the outbox)"
    out(f"DNS publishing: {rounds} named RequestAddress + ReleaseAddress, 2 workers, SQLite")
    out(f"  DNS on: pool with ipledger.dns_zone={zone}, IPLEDGER_DNS_SERVER={where}")
    out(f"  {'':24}{'DNS off':>12}{'DNS on':>12}{'on/off':>9}")
    ratios: dict[str, float] = {}
    for label, off_ms, on_ms in (
        ("RequestAddress", off[0], on[0]),
        ("ReleaseAddress", off[1], on[1]),
    ):
        for q in (50, 99):
            a, b = percentile(off_ms, q), percentile(on_ms, q)
            ratios[f"{label} p{q}"] = b / a
            out(f"  {label + f' p{q} (ms)':24}{a:12.2f}{b:12.2f}{b / a:9.2f}")
    mean_off = statistics.mean(off[0] + off[1])
    mean_on = statistics.mean(on[0] + on[1])
    ratios["mean"] = mean_on / mean_off
    out(f"  {'mean per call (ms)':24}{mean_off:12.2f}{mean_on:12.2f}{mean_on / mean_off:9.2f}")
    if dns_server:
        drained = on[2]
        out(
            f"  outbox emptied {drained:.2f} s after the last call"
            if drained is not None
            else "  outbox not emptied within 60 s of the last call"
        )
    return ratios

"""The benchmarks' tables: each measured row or result turned into the lines printed."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from driver.bench.cni import CniRow
    from driver.bench.dns import DnsRuns
    from driver.bench.ipam import ConcurrentRow, PostgresSequential, SequentialRow
    from driver.bench.ui import UiRow


def emit(out: Callable[[str], None], lines: Iterable[str]) -> None:
    for line in lines:
        out(line)


def _mode(quick: bool) -> str:
    return "quick" if quick else "full"


def sqlite_head(quick: bool) -> list[str]:
    return [
        f"# ipledger bench ({_mode(quick)}): {os.cpu_count()} CPUs, "
        f"SQLite WAL synchronous=NORMAL, gunicorn gthread",
        "",
        "## Sequential RequestAddress + ReleaseAddress (ms), and over Plugin.Activate",
        "(Activate: the transport's floor, gunicorn + Flask + the unix socket, measured on",
        " the same server and client just before; goals: p50 <= 1.3x, p99 <= 2x)",
        f"{'pool':<16}{'leases in db':>14}{'act p50':>9}{'req p50':>9}{'req p99':>9}"
        f"{'rel p50':>9}{'req/act':>8}{'rel/act':>8}{'p99/act':>8}{'start s':>8}{'RSS MB':>7}",
    ]


def sequential_row(r: SequentialRow) -> str:
    req, rel, p99 = r.over_floor
    return (
        f"{r.cidr:<16}{r.leases:>14,}{r.activate_p50:>9.3f}{r.request_p50:>9.3f}"
        f"{r.request_p99:>9.3f}{r.release_p50:>9.3f}{req:>8.2f}{rel:>8.2f}{p99:>8.2f}"
        f"{r.started_s:>8.2f}{r.rss_mb:>7.1f}"
    )


def growth(rows: list[SequentialRow], cidrs: Iterable[str], counts: tuple[int, ...]) -> list[str]:
    """Each pool's p50 at the largest count over its p50 at the smallest."""
    p50 = {(r.cidr, r.leases): r.request_p50 for r in rows}
    return [
        "",
        "## p50 at the largest count / p50 at 1,000 leases",
        *(f"{c:<16}{p50[(c, counts[-1])] / p50[(c, counts[0])]:>8.2f}" for c in cidrs),
    ]


def concurrent_head() -> list[str]:
    return [
        "",
        "## Concurrent RequestAddress, every address checked for duplicates",
        f"{'workers':>8}{'clients':>8}{'alloc/s':>10}{'p99 ms':>9}{'handed out':>12}{'dups':>6}",
    ]


def concurrent_row(r: ConcurrentRow) -> str:
    return (
        f"{r.workers:>8}{r.clients:>8}{r.rate:>10.0f}{r.p99:>9.2f}"
        f"{r.handed_out:>12,}{r.duplicates:>6}"
    )


def postgres_head(quick: bool) -> list[str]:
    return [
        f"# ipledger bench on PostgreSQL ({_mode(quick)}): "
        f"{os.cpu_count()} CPUs, 3 instances x 2 gunicorn workers, one shared pool",
        "",
        "## Sequential RequestAddress + ReleaseAddress on one instance (ms)",
    ]


def postgres_sequential(r: PostgresSequential) -> list[str]:
    return [
        f"{'req p50':>10}{'req p99':>10}{'rel p50':>10}",
        f"{r.request_p50:>10.3f}{r.request_p99:>10.3f}{r.release_p50:>10.3f}",
        "",
        "## Concurrent RequestAddress over the three instances, checked for duplicates",
        f"{'clients':>8}{'alloc/s':>10}{'p99 ms':>9}{'handed out':>12}{'dups':>6}",
    ]


def postgres_concurrent_row(r: ConcurrentRow) -> str:
    return f"{r.clients:>8}{r.rate:>10.0f}{r.p99:>9.2f}{r.handed_out:>12,}{r.duplicates:>6}"


def cni_head(quick: bool, rounds: int) -> list[str]:
    return [
        f"# ipledger bench --cni ({_mode(quick)}): {os.cpu_count()} CPUs",
        "",
        f"## ADD and DEL, each a plugin process as the runtime runs it, p50 ms ({rounds} rounds)",
        f"{'leases in range':>16}{'ipledger ADD':>14}{'ipledger DEL':>14}"
        f"{'host-local ADD':>16}{'host-local DEL':>16}{'ADD host-local/ipledger':>25}",
    ]


def cni_row(r: CniRow) -> str:
    return (
        f"{r.leases:>16,}{r.ipledger_add:>14.1f}{r.ipledger_del:>14.1f}"
        f"{r.host_local_add:>16.1f}{r.host_local_del:>16.1f}"
        f"{r.host_local_add / r.ipledger_add:>25.2f}"
    )


def cni_flatness(rows: list[CniRow]) -> list[str]:
    """ipledger's ADD at the most leases over at the fewest."""
    first, last = rows[0], rows[-1]
    flat = last.ipledger_add / first.ipledger_add
    return ["", f"ipledger ADD p50 at {last.leases:,} leases / at {first.leases:,}: {flat:.2f}"]


def ui_head(quick: bool, rounds: int) -> list[str]:
    return [
        f"# ipledger bench --ui ({_mode(quick)}): {os.cpu_count()} CPUs, SQLite",
        "",
        f"## Each page fetched whole over HTTP from ipledger ui, p50 ms ({rounds} rounds)",
        f"{'leases in pool':>15}{'overview':>10}{'pool map':>10}{'pool JSON':>11}"
        f"{'history':>9}{'map KB':>8}",
    ]


def ui_row(r: UiRow) -> str:
    return (
        f"{r.leases:>15,}{r.overview:>10.1f}{r.pool:>10.1f}{r.json:>11.1f}{r.history:>9.1f}"
        f"{r.map_bytes / 1024:>8.0f}"
    )


def dns_runs(r: DnsRuns, nowhere: str) -> list[str]:
    where = r.server or f"{nowhere} (no DNS server: changes wait in the outbox)"
    mean_off, mean_on = r.means()
    lines = [
        f"DNS publishing: {r.rounds} named RequestAddress + ReleaseAddress, 2 workers, SQLite",
        f"  DNS on: pool with ipledger.dns_zone={r.zone}, IPLEDGER_DNS_SERVER={where}",
        f"  {'':24}{'DNS off':>12}{'DNS on':>12}{'on/off':>9}",
        *(f"  {what + ' (ms)':24}{a:12.2f}{b:12.2f}{b / a:9.2f}" for what, a, b in r.percentiles()),
        f"  {'mean per call (ms)':24}{mean_off:12.2f}{mean_on:12.2f}{mean_on / mean_off:9.2f}",
    ]
    if r.server:
        lines.append(
            f"  outbox emptied {r.on.drained:.2f} s after the last call"
            if r.on.drained is not None
            else "  outbox not emptied within 60 s of the last call"
        )
    return lines

"""``ipledger bench --cni``: a CNI IPAM call as the runtime sees it (one process per ADD and
DEL), for ipledger and for the reference host-local side by side, as the range fills up.

Both are pre-filled with the same number of leases in one IPv6 /64 range: ipledger's ledger
through its own tables, host-local's data directory with a file per address as host-local writes
it. Each round is a new container: ADD, then DEL, each a process run with the CNI environment.
Measured into rows that :mod:`driver.bench.render` prints; nothing here asserts a time: the
numbers are for the docs.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import netaddr
from sqlalchemy import Engine, delete, insert, select

from driver.bench import render
from driver.bench.server import server
from driver.domain.cni import Attachment, parse_network
from driver.entrypoints.install import install_cni_plugin
from driver.storage.engine import make_engine
from driver.storage.models import free_ranges, leases, pools
from driver.storage.rows import pack
from driver.storage.schema import migrate
from driver.storage.store import Store
from driver.usecases.cni import CniCalls

HOST_LOCAL = Path("/usr/lib/cni/host-local")
SUBNET = "2001:db8:cb::/64"
FULL_COUNTS = (100, 1_000, 10_000, 100_000)
QUICK_COUNTS = (100, 1_000)


def network_config(ipam_type: str, **more: Any) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "bench",
        "type": "bridge",
        "ipam": {"type": ipam_type, "ranges": [[{"subnet": SUBNET}]], **more},
    }


def prefill_ledger(engine: Engine, count: int) -> None:
    """The network's pool, made by a first ADD, then ``count`` leases in all, bottom up."""
    network = parse_network(network_config("ipledger"))
    cni = CniCalls(Store(engine), ())
    cni.add(network, Attachment("bench", "prefill-0", "eth0"), "container prefill-0")
    cni_range = network.range_sets[0][0]
    pool_id = str(cni_range.pool_id(None))
    first = cni_range.first + 1  # after the gateway
    now = datetime.now(UTC)
    with engine.begin() as c:
        subnet_id = c.execute(select(pools.c.subnet_id).where(pools.c.id == pool_id)).scalar_one()
        c.execute(delete(free_ranges).where(free_ranges.c.subnet_id == subnet_id))
        c.execute(delete(leases).where(leases.c.kind == "cni"))
        for start in range(0, count, 50_000):
            c.execute(
                insert(leases),
                [
                    {
                        "subnet_id": subnet_id,
                        "address": pack(first + i),
                        "pool_id": pool_id,
                        "kind": "cni",
                        "mac": None,
                        "name": f"container prefill-{i}",
                        "created_at": now,
                        "host_id": "bench",
                        "cni_attachment": f"bench/prefill-{i}/eth0",
                    }
                    for i in range(start, min(count, start + 50_000))
                ],
            )
        c.execute(
            insert(free_ranges).values(
                subnet_id=subnet_id, first=pack(first + count), last=pack(cni_range.last)
            )
        )


def prefill_host_local(data_dir: Path, count: int) -> None:
    """host-local's store: a file per address (container ID, CRLF, ifname), and the last one."""
    directory = data_dir / "bench"
    directory.mkdir(parents=True)
    first = int(netaddr.IPNetwork(SUBNET).first) + 2  # after ::0 and the gateway ::1
    for i in range(count):
        (directory / str(netaddr.IPAddress(first + i, 6))).write_text(f"prefill-{i}\r\neth0")
    last = netaddr.IPAddress(first + count - 1, 6)
    (directory / "last_reserved_ip.0").write_text(str(last))


def timed_calls(plugin: Path, config: dict[str, Any], rounds: int) -> tuple[float, float]:
    """p50 ms of ADD and of DEL, each its own process, a new container each round."""
    adds: list[float] = []
    dels: list[float] = []
    stdin = json.dumps(config).encode()
    for i in range(rounds):
        for command, latencies in (("ADD", adds), ("DEL", dels)):
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "CNI_COMMAND": command,
                "CNI_CONTAINERID": f"bench-{i}",
                "CNI_NETNS": "/var/run/netns/bench",
                "CNI_IFNAME": "eth0",
                "CNI_PATH": str(plugin.parent),
            }
            started = time.perf_counter()
            done = subprocess.run([str(plugin)], input=stdin, capture_output=True, env=env)
            latencies.append((time.perf_counter() - started) * 1000)
            if done.returncode != 0:
                raise RuntimeError(
                    f"{plugin.name} {command}: {(done.stdout or done.stderr).decode()}"
                )
    return statistics.median(adds), statistics.median(dels)


@dataclass(frozen=True)
class CniRow:
    """p50 ms of ADD and DEL, ipledger's and host-local's, at one number of leases."""

    leases: int
    ipledger_add: float
    ipledger_del: float
    host_local_add: float
    host_local_del: float


def _row(workdir: Path, plugin: Path, count: int, rounds: int) -> CniRow:
    """Both plugins on a range holding ``count`` leases."""
    db = workdir / f"cni-{count}.db"
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    prefill_ledger(engine, count)
    engine.dispose()
    with server(workdir, f"sqlite:///{db}", 1) as s:
        ours = timed_calls(
            plugin, network_config("ipledger", ipledger={"socket": s.socket}), rounds
        )
    data_dir = workdir / f"host-local-{count}"
    prefill_host_local(data_dir, count)
    theirs = timed_calls(HOST_LOCAL, network_config("host-local", dataDir=str(data_dir)), rounds)
    return CniRow(count, *ours, *theirs)


def run_cni(quick: bool, out: Callable[[str], None] = print) -> dict[int, dict[str, float]]:
    """Measure both plugins as the range fills, print the table as rows come, return them."""
    counts = QUICK_COUNTS if quick else FULL_COUNTS
    rounds = 20 if quick else 60
    if not HOST_LOCAL.exists():
        raise RuntimeError(f"{HOST_LOCAL} not found: apt-get install containernetworking-plugins")
    rows: list[CniRow] = []
    render.emit(out, render.cni_head(quick, rounds))
    with tempfile.TemporaryDirectory(prefix="ipledger-bench-cni-") as tmp:
        plugin = install_cni_plugin(Path(tmp) / "bin")
        for count in counts:
            rows.append(_row(Path(tmp), plugin, count, rounds))
            out(render.cni_row(rows[-1]))
    render.emit(out, render.cni_flatness(rows))
    return {
        r.leases: {
            "ipledger_add": r.ipledger_add,
            "ipledger_del": r.ipledger_del,
            "host_local_add": r.host_local_add,
            "host_local_del": r.host_local_del,
        }
        for r in rows
    }

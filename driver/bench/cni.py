"""``ipledger bench --cni``: a CNI IPAM call as the runtime sees it (one process per ADD and
DEL), for ipledger and for the reference host-local side by side, as the range fills up.

Both are pre-filled with the same number of leases in one IPv6 /64 range: ipledger's ledger
through its own tables, host-local's data directory with a file per address as host-local writes
it. Each round is a new container: ADD, then DEL, each a process run with the CNI environment.
Nothing here asserts a time: the numbers are for the docs.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import netaddr
from sqlalchemy import Engine, delete, insert, select

from driver.bench.ipam import server
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


def run_cni(quick: bool, out: Callable[[str], None] = print) -> dict[int, dict[str, float]]:
    counts = QUICK_COUNTS if quick else FULL_COUNTS
    rounds = 20 if quick else 60
    if not HOST_LOCAL.exists():
        raise RuntimeError(f"{HOST_LOCAL} not found: apt-get install containernetworking-plugins")
    results: dict[int, dict[str, float]] = {}
    out(f"# ipledger bench --cni ({'quick' if quick else 'full'}): {os.cpu_count()} CPUs")
    out("")
    out(f"## ADD and DEL, each a plugin process as the runtime runs it, p50 ms ({rounds} rounds)")
    out(
        f"{'leases in range':>16}{'ipledger ADD':>14}{'ipledger DEL':>14}"
        f"{'host-local ADD':>16}{'host-local DEL':>16}{'ADD host-local/ipledger':>25}"
    )
    with tempfile.TemporaryDirectory(prefix="ipledger-bench-cni-") as tmp:
        workdir = Path(tmp)
        plugin = install_cni_plugin(workdir / "bin")
        for count in counts:
            db = workdir / f"cni-{count}.db"
            engine = make_engine(f"sqlite:///{db}")
            migrate(engine)
            prefill_ledger(engine, count)
            engine.dispose()
            with server(workdir, f"sqlite:///{db}", 1) as s:
                config = network_config("ipledger", ipledger={"socket": s.socket})
                ours = timed_calls(plugin, config, rounds)
            data_dir = workdir / f"host-local-{count}"
            prefill_host_local(data_dir, count)
            theirs = timed_calls(
                HOST_LOCAL, network_config("host-local", dataDir=str(data_dir)), rounds
            )
            results[count] = {
                "ipledger_add": ours[0],
                "ipledger_del": ours[1],
                "host_local_add": theirs[0],
                "host_local_del": theirs[1],
            }
            out(
                f"{count:>16,}{ours[0]:>14.1f}{ours[1]:>14.1f}{theirs[0]:>16.1f}"
                f"{theirs[1]:>16.1f}{theirs[0] / ours[0]:>25.2f}"
            )
    out("")
    flat = results[counts[-1]]["ipledger_add"] / results[counts[0]]["ipledger_add"]
    out(f"ipledger ADD p50 at {counts[-1]:,} leases / at {counts[0]:,}: {flat:.2f}")
    return results

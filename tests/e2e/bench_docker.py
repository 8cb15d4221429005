"""The Docker-level cost of ipledger: `docker run --rm` on an ipledger network vs a built-in one.

    python -m tests.e2e.bench_docker [--runs N] [--engine 20.10|26.1|28.5]

Starts an isolated dockerd and `ipledger serve` as a legacy plugin, then times `docker run --rm`
on two bridge networks, interleaved (built-in, ipledger, built-in, ...), and prints the medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from tests.e2e.engines import engine
from tests.e2e.harness import DockerDaemon, PluginProcess

IMAGE = "busybox-local:latest"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--engine", default="28.5")
    args = parser.parse_args()
    daemon = DockerDaemon(engine(args.engine))
    workdir = Path(tempfile.mkdtemp(prefix="ipledger-bench-docker-"))
    plugin = PluginProcess(f"ipl-{uuid.uuid4().hex[:6]}", f"sqlite:///{workdir}/l.db", workdir)
    daemon.start()
    plugin.start()
    try:
        daemon.make_busybox_image()
        daemon.docker("network", "create", "--subnet", "198.51.100.0/24", "bench-builtin")
        daemon.docker(
            "network",
            "create",
            "--ipam-driver",
            plugin.name,
            "--subnet",
            "203.0.113.0/24",
            "bench-ipledger",
        )
        times: dict[str, list[float]] = {"bench-builtin": [], "bench-ipledger": []}
        for network in times:  # warm-up
            daemon.docker("run", "--rm", "--network", network, IMAGE, "true")
        for _ in range(args.runs):
            for network, seen in times.items():
                t0 = time.perf_counter()
                daemon.docker("run", "--rm", "--network", network, IMAGE, "true")
                seen.append((time.perf_counter() - t0) * 1000)
        builtin = statistics.median(times["bench-builtin"])
        ours = statistics.median(times["bench-ipledger"])
        print(f"## docker run --rm, Docker {daemon.version}, {args.runs} runs each, interleaved")
        print(f"{'network':<16}{'median ms':>10}{'p90 ms':>9}")
        for network, seen in times.items():
            p90 = sorted(seen)[int(0.9 * (len(seen) - 1))]
            print(
                f"{network.removeprefix('bench-'):<16}{statistics.median(seen):>10.1f}{p90:>9.1f}"
            )
        print(f"ipledger / built-in: {ours / builtin:.3f}")
    finally:
        daemon.stop()
        plugin.stop()
        daemon.cleanup()


if __name__ == "__main__":
    main()

"""``ipledger serve`` as the benchmarks run it: a real gunicorn on a unix socket of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from driver.adapters.plugin_client import PluginClient


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

"""Real parts for end-to-end tests: an isolated dockerd, and `ipledger serve` as a legacy plugin."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import netaddr
import pytest
from sqlalchemy import create_engine, select

from driver.adapters.plugin_client import PluginClient
from driver.storage.models import leases, pools
from driver.storage.rows import unpack
from tests.e2e.engines import Engine

PLUGIN_DIR = Path("/run/docker/plugins")


class DockerDaemon:
    """A dockerd with its own roots and socket, started and stopped by the tests."""

    def __init__(self, engine: Engine, *, netns: str | None = None, tag: str = "") -> None:
        self.engine = engine
        self.version = engine.version
        # started with nsenter, not `ip netns exec`: that remounts /sys, and dockerd then
        # fails with "Devices cgroup isn't mounted"
        self.in_network = ("nsenter", f"--net=/run/netns/{netns}") if netns else ()
        # unix socket paths are limited to 107 bytes: keep the root short
        prefix = f"dk-{tag}-" if tag else f"dk-{engine.short}-"
        self.root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        self.socket = self.root / "docker.sock"
        self.log_path = self.root / "dockerd.log"
        # the engine's own helpers (docker-proxy) first, then bookworm's containerd and runc
        path = os.pathsep.join([os.path.dirname(engine.dockerd), os.environ.get("PATH", "")])
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.socket}", PATH=path)
        self.process: subprocess.Popen[bytes] | None = None
        self.cli_binary = engine.cli

    @property
    def major_minor(self) -> tuple[int, int]:
        major, minor = self.version.split(".")[:2]
        return int(major), int(minor)

    def start(self) -> None:
        r = self.root
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    *self.in_network,
                    self.engine.dockerd,
                    "--data-root",
                    f"{r}/data",
                    "--exec-root",
                    f"{r}/exec",
                    "--pidfile",
                    f"{r}/pid",
                    "-H",
                    f"unix://{self.socket}",
                    "--storage-driver",
                    "vfs",
                    "--iptables=false",
                    "--ip-masq=false",
                    "--bridge=none",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited: {self.log_tail()}")
            if self.docker("info", check=False).returncode == 0:
                return
            time.sleep(0.3)
        raise RuntimeError(f"dockerd did not answer within 60 s: {self.log_tail()}")

    def stop(self, clean: bool = True) -> None:
        if self.process is None:
            return
        if clean:
            self.remove_all()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None
        deadline = time.monotonic() + 10
        while (self.root / "pid").exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    def remove_all(self) -> None:
        """Remove every container and user network (dockerd leaves bridges behind otherwise)."""
        ids = self.docker("ps", "-aq", check=False).stdout.split()
        if ids:
            self.docker("rm", "-f", *ids, check=False)
        networks = self.docker(
            "network", "ls", "-q", "--filter", "type=custom", check=False
        ).stdout.split()
        if networks:
            self.docker("network", "rm", *networks, check=False)

    def restart(self) -> None:
        """Stop and start the daemon, keeping its containers and networks."""
        self.stop(clean=False)
        self.start()

    @property
    def mac_cli(self) -> str:
        """The CLI that passes --mac-address the way this daemon takes it: sid's sends it per
        network, which needs API 1.44 (Docker 25); Debian's own 20.10 CLI sends it the old way."""
        return self.cli_binary if self.major_minor >= (25, 0) else "/usr/bin/docker"

    def docker(
        self, *args: str, check: bool = True, timeout: float = 120, cli: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [cli or self.cli_binary, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def fails(self, *args: str) -> str:
        """Run a docker command that must fail; return its error output."""
        result = self.docker(*args, check=False)
        assert result.returncode != 0, f"docker {' '.join(args)} unexpectedly succeeded"
        return result.stderr.strip()

    def make_busybox_image(self, tag: str = "busybox-local:latest") -> str:
        image = self.root / "img"
        (image / "bin").mkdir(parents=True, exist_ok=True)
        shutil.copy("/bin/busybox", image / "bin" / "busybox")
        for applet in ("sh", "ip", "sleep", "cat", "true", "hostname"):
            link = image / "bin" / applet
            if not link.exists():
                link.symlink_to("busybox")
        tar = subprocess.run(["tar", "-C", str(image), "-c", "."], capture_output=True, check=True)
        subprocess.run(
            [self.cli_binary, "import", "-", tag],
            input=tar.stdout,
            env=self.env,
            capture_output=True,
            check=True,
        )
        return tag

    def container_addresses(self, container: str) -> dict[str, tuple[str, str]]:
        """network name -> (IPv4 address, IPv6 address) as Docker has them."""
        out = self.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", container).stdout
        return {
            name: (n["IPAddress"], n["GlobalIPv6Address"]) for name, n in json.loads(out).items()
        }

    def running_addresses(self, network: str) -> dict[str, str]:
        """container name -> IPv4 address, for the running containers on `network`."""
        out = self.docker("network", "inspect", "-f", "{{json .Containers}}", network).stdout
        return {c["Name"]: c["IPv4Address"].split("/")[0] for c in json.loads(out).values()}

    def network_ipam(self, network: str) -> list[dict[str, str]]:
        out = self.docker("network", "inspect", "-f", "{{json .IPAM.Config}}", network).stdout
        return list(json.loads(out))

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def cleanup(self) -> None:
        # Docker 28 leaves exec/netns/default bind-mounted after it stops: unmount what is
        # left under the root, or the root stays behind
        with open("/proc/mounts") as mounts:
            left = [
                line.split()[1] for line in mounts if line.split()[1].startswith(f"{self.root}/")
            ]
        for mount in reversed(left):
            subprocess.run(["umount", mount], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need(condition: bool, why: str) -> None:
    """Skip a test whose real parts are missing; in CI, where they must be there, fail it."""
    if condition:
        return
    if os.environ.get("IPLEDGER_REQUIRE_E2E") or os.environ.get("CI"):
        pytest.fail(f"end-to-end prerequisite missing in CI: {why}")
    pytest.skip(why)


class PluginProcess:
    """`ipledger serve` under gunicorn, as a legacy plugin at /run/docker/plugins/NAME.sock."""

    def __init__(
        self,
        name: str,
        db_url: str,
        workdir: Path,
        workers: int = 2,
        extra_env: dict[str, str] | None = None,
        socket: str | None = None,
    ) -> None:
        self.name = name
        self.socket = socket or str(PLUGIN_DIR / f"{name}.sock")
        self.db_url = db_url
        self.log_path = workdir / f"{name}.log"
        self.workers = workers
        self.env = dict(os.environ, **(extra_env or {}))
        self.process: subprocess.Popen[bytes] | None = None
        self.client = PluginClient(self.socket, timeout=10)

    def start(self, wait: bool = True) -> float:
        """Start the server; return the seconds until it first answered."""
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "driver",
                    "serve",
                    "--socket",
                    self.socket,
                    "--db",
                    self.db_url,
                    "--workers",
                    str(self.workers),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        if not wait:
            return 0.0
        deadline = started + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ipledger exited: {self.log_tail()}")
            try:
                if self.client.call("/Plugin.Activate")[0] == 200:
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"ipledger did not answer within 15 s: {self.log_tail()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole server, master and workers alike."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        self.process.wait(30)
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.kill(signal.SIGTERM)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def leases(self) -> dict[str, set[str]]:
        """Pool CIDR -> addresses leased in it, read straight from the database."""
        engine = create_engine(self.db_url)
        try:
            with engine.connect() as c:
                cidrs = {row.id: row.cidr for row in c.execute(select(pools.c.id, pools.c.cidr))}
                held: dict[str, set[str]] = {cidr: set() for cidr in cidrs.values()}
                for pool_id, address in c.execute(select(leases.c.pool_id, leases.c.address)):
                    cidr = cidrs[pool_id]
                    version = netaddr.IPNetwork(cidr).version
                    held[cidr].add(str(netaddr.IPAddress(unpack(address), version)))
                return held
        finally:
            engine.dispose()


@contextlib.contextmanager
def bounded_plugin(name: str, db_url: str, workdir: Path, bound: float) -> Iterator[PluginProcess]:
    """A server on a socket in ``workdir`` whose calls are bounded by ``bound`` seconds."""
    plugin = PluginProcess(
        name,
        db_url,
        workdir,
        socket=str(workdir / "ipl.sock"),
        extra_env={"IPLEDGER_CALL_TIMEOUT": str(bound)},
    )
    plugin.start()
    try:
        yield plugin
    finally:
        plugin.stop()


def timed(client: PluginClient, method: str, body: dict[str, Any]) -> tuple[float, int, Any]:
    """A call's seconds, status and answer."""
    started = time.monotonic()
    status, answer = client.call(method, body)
    return time.monotonic() - started, status, answer

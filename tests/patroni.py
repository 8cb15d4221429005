"""A throwaway Patroni cluster for the tests: one etcd and two PostgreSQL members on loopback,
synchronous replication on, as docs/several-hosts.md sets one up.

Debian's `patroni` and `etcd-server` packages provide the programs (tests/run.sh installs them);
everything lives under one /tmp/iplha-* directory, and every process it starts has that
directory on its command line, so .ci/run's safety net can find a leftover.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.pg import binaries

ETCD_CLIENT, ETCD_PEER = 23710, 23711


@dataclass(frozen=True)
class Member:
    name: str
    pg_port: int
    rest_port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.pg_port}"


MEMBERS = (Member("n1", 55410, 18010), Member("n2", 55411, 18011))


def member_config(root: Path, member: Member) -> str:
    """The member's YAML, as in docs/several-hosts.md (JSON is YAML too)."""
    data = root / member.name
    config = {
        "scope": "iplha",
        "name": member.name,
        "restapi": {
            "listen": f"127.0.0.1:{member.rest_port}",
            "connect_address": f"127.0.0.1:{member.rest_port}",
        },
        "etcd3": {"hosts": f"127.0.0.1:{ETCD_CLIENT}"},
        "bootstrap": {
            "dcs": {
                "ttl": 10,
                "loop_wait": 2,
                "retry_timeout": 5,
                "maximum_lag_on_failover": 1048576,
                "synchronous_mode": True,
                "postgresql": {
                    "use_pg_rewind": True,
                    "parameters": {
                        "wal_log_hints": "on",
                        "max_connections": 100,
                        "shared_buffers": "32MB",
                    },
                },
            },
            "initdb": [{"encoding": "UTF8"}, {"auth": "trust"}],
        },
        "postgresql": {
            "pg_hba": [
                "local all all trust",
                "host all all 127.0.0.1/32 trust",
                "host replication all 127.0.0.1/32 trust",
            ],
            "listen": member.address,
            "connect_address": member.address,
            "data_dir": str(data / "data"),
            "bin_dir": str(binaries()),
            "pgpass": str(data / "pgpass"),
            "authentication": {
                "superuser": {"username": "postgres"},
                "replication": {"username": "replicator", "password": "rep"},
                "rewind": {"username": "rewinder", "password": "rew"},
            },
            "parameters": {"unix_socket_directories": str(data)},
        },
    }
    return json.dumps(config, indent=2)


class PatroniCluster:
    """etcd and two Patroni members; :meth:`destroy` kills everything and removes the files."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="iplha-patroni-"))
        self.root.chmod(0o755)  # the postgres user reaches its members' directories
        self.etcd: subprocess.Popen[bytes] | None = None
        self.patroni: dict[str, subprocess.Popen[bytes]] = {}

    def _spawn(self, name: str, *command: str) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("ab")
        with log:
            return subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd="/",
                start_new_session=True,
            )

    def start(self) -> None:
        peer, client = f"http://127.0.0.1:{ETCD_PEER}", f"http://127.0.0.1:{ETCD_CLIENT}"
        self.etcd = self._spawn(
            "etcd",
            "etcd",
            "--name=e1",
            f"--data-dir={self.root}/etcd-data",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=e1={peer}",
            "--initial-cluster-state=new",
        )
        for member in MEMBERS:
            directory = self.root / member.name
            directory.mkdir(mode=0o700)
            shutil.chown(directory, "postgres", "postgres")
            (self.root / f"{member.name}.yml").write_text(member_config(self.root, member))
            self.start_member(member)
        self.wait_healthy(90)

    def start_member(self, member: Member) -> None:
        self.patroni[member.name] = self._spawn(
            member.name,
            "runuser",
            "-u",
            "postgres",
            "--",
            "patroni",
            str(self.root / f"{member.name}.yml"),
        )

    def cluster(self) -> list[dict[str, object]]:
        """The members as Patroni's REST API lists them (from any member that answers)."""
        for member in MEMBERS:
            url = f"http://127.0.0.1:{member.rest_port}/cluster"
            with (
                contextlib.suppress(OSError, ValueError),
                urllib.request.urlopen(url, timeout=2) as answer,
            ):
                return list(json.load(answer)["members"])
        return []

    def roles(self) -> dict[str, str]:
        return {
            str(m["name"]): str(m["role"]) for m in self.cluster() if m.get("state") == "running"
        }

    def leader(self) -> Member | None:
        for name, role in self.roles().items():
            if role == "leader":
                return next(m for m in MEMBERS if m.name == name)
        return None

    def wait_healthy(self, timeout: float) -> Member:
        """Wait for a leader and a synchronous standby, both running; the leader."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sorted(self.roles().values()) == ["leader", "sync_standby"]:
                leader = self.leader()
                if leader is not None:
                    return leader
            time.sleep(0.5)
        raise TimeoutError(f"no healthy Patroni cluster in {timeout} s: {self.cluster()}")

    def url(self, database: str = "postgres") -> str:
        """The multi-host URL a client follows the leader with."""
        hosts = "&".join(f"host={m.address}" for m in MEMBERS)
        return f"postgresql+psycopg://postgres@/{database}?{hosts}&target_session_attrs=read-write"

    def switchover(self, candidate: Member) -> None:
        leader = self.leader()
        assert leader is not None
        subprocess.run(
            [
                "patronictl",
                "-c",
                str(self.root / f"{leader.name}.yml"),
                "switchover",
                "--leader",
                leader.name,
                "--candidate",
                candidate.name,
                "--force",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def postmaster_pid(self, member: Member) -> int | None:
        """Patroni 3 detaches the postmaster: its PID is only in postmaster.pid."""
        try:
            first = (self.root / member.name / "data" / "postmaster.pid").read_text().split()
        except OSError:
            return None
        return int(first[0]) if first else None

    def kill_member(self, member: Member) -> None:
        """The node is lost: kill -9 its Patroni and its postmaster."""
        process = self.patroni.pop(member.name, None)
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        pid = self.postmaster_pid(member)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def destroy(self) -> None:
        for member in MEMBERS:
            self.kill_member(member)
        if self.etcd is not None:
            self.etcd.terminate()
            try:
                self.etcd.wait(10)
            except subprocess.TimeoutExpired:
                self.etcd.kill()
                self.etcd.wait(10)
        # the postmasters' children go when their parent does; wait until they let go the files
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _running_under(self.root):
            time.sleep(0.2)
        shutil.rmtree(self.root, ignore_errors=True)


def _running_under(root: Path) -> bool:
    """Whether a process still runs with ``root`` on its command line."""
    mark = str(root).encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if mark in (entry / "cmdline").read_bytes():
                    return True
    return False

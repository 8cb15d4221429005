"""A private PostgreSQL cluster for the tests: its own data directory and unix socket, no TCP.

Debian's `postgresql` package provides the binaries (tests/run.sh installs it); the cluster runs
as the `postgres` user, trusts local connections, and is removed when the tests end.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from driver.storage.engine import make_engine
from driver.storage.schema import migrate

# where the test processes of one machine lock what they share (see NetworkedPostgres)
LOCKS = Path("/run/lock/ipledger-tests")


def binaries() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3])
    )
    return Path(found[-1]).parent if found else None


class PostgresCluster:
    def __init__(self) -> None:
        bin_dir = binaries()
        if bin_dir is None:
            raise FileNotFoundError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="ipl-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "run"
        self.log = self.root / "postgres.log"
        self.port = 5432 + (os.getpid() % 1000) + 1
        self.socket_dir.mkdir()
        shutil.chown(self.root, "postgres")
        shutil.chown(self.socket_dir, "postgres")
        self._as_postgres(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "--auth=trust",
            "-U",
            "postgres",
            "--encoding=UTF8",
            "--no-sync",
        )

    def _as_postgres(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.IN_NETWORK, "runuser", "-u", "postgres", "--", *args],
            check=True,
            capture_output=True,
            text=True,
            cwd="/",
        )

    # where the server listens besides its unix socket ('' for nowhere), and the command prefix
    # that puts it in its network
    LISTEN = "''"
    IN_NETWORK: tuple[str, ...] = ()

    def start(self, durable: bool = False) -> None:
        """Start the server; the tests run it without fsync, the benchmark with (durable)."""
        options = (
            f"-c listen_addresses={self.LISTEN} -c unix_socket_directories={self.socket_dir} "
            f"-c port={self.port} -c max_connections=200"
        )
        if not durable:
            options += " -c fsync=off"
        self.durable = durable
        self._as_postgres(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start(self.durable)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}&port={self.port}"

    def _admin(self, sql: str) -> None:
        engine = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as c:
                c.execute(text(sql))
        finally:
            engine.dispose()

    def new_database(self, template: str | None = "ipledger_template") -> str:
        """A new, migrated database (copied from a migrated template) and its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        if template is None:
            self._admin(f"CREATE DATABASE {name}")
        else:
            self._ensure_template(template)
            self._admin(f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.url(name)

    def _ensure_template(self, template: str) -> None:
        if getattr(self, "_template_ready", False):
            return
        self._admin(f"DROP DATABASE IF EXISTS {template}")
        self._admin(f"CREATE DATABASE {template}")
        engine = make_engine(self.url(template))
        migrate(engine)
        engine.dispose()
        self._template_ready = True

    def drop_database(self, url: str) -> None:
        name = make_url(url).database
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        # best effort, not a wait that fails: a server that crashed leaves its pid file behind,
        # and the directory goes either way
        deadline = time.monotonic() + 10
        while (self.data / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)


class NetworkedPostgres(PostgresCluster):
    """A cluster in a network namespace of its own, reached over a veth pair (a /30 of
    192.0.2.224/27, a documentation range) as a remote ledger is; its unix socket, which no
    namespace cuts, serves the tests' own sessions. Faults are made with iptables in that
    namespace or by taking the link down, and healed again.

    Several test processes (the lanes of tests/run.sh) may each run one at once: each takes a
    /30 of its own, held by a file lock for as long as the cluster lives."""

    SLOTS = 8  # /30s from 192.0.2.252/30 down

    def __init__(self) -> None:
        super().__init__()
        self._slot_lock, slot = _network_slot(self.SLOTS)
        base = 252 - 4 * slot
        self.HOST, self.SERVER = f"192.0.2.{base + 1}", f"192.0.2.{base + 2}"
        tag = f"{os.getpid() % 100000}"
        self.netns = f"iplpg{tag}"
        self.IN_NETWORK = ("ip", "netns", "exec", self.netns)
        self.LISTEN = self.SERVER
        self.veth = f"iplv{tag}"
        peer = f"{self.veth}n"
        # a run that was killed leaves its veth with these addresses behind (the lock, which is
        # ours now, tells that no live cluster has them): remove it
        stale = subprocess.run(
            ["ip", "-o", "addr", "show", "to", f"{self.HOST}/30"], capture_output=True, text=True
        ).stdout.split()
        if len(stale) > 1:
            subprocess.run(["ip", "link", "del", stale[1].split("@")[0]], capture_output=True)
        for command in (
            ["ip", "netns", "add", self.netns],
            ["ip", "link", "add", self.veth, "type", "veth", "peer", "name", peer],
            ["ip", "link", "set", peer, "netns", self.netns],
            ["ip", "addr", "add", f"{self.HOST}/30", "dev", self.veth],
            ["ip", "link", "set", self.veth, "up"],
            [
                "ip",
                "netns",
                "exec",
                self.netns,
                "ip",
                "addr",
                "add",
                f"{self.SERVER}/30",
                "dev",
                peer,
            ],
            ["ip", "netns", "exec", self.netns, "ip", "link", "set", peer, "up"],
            ["ip", "netns", "exec", self.netns, "ip", "link", "set", "lo", "up"],
        ):
            subprocess.run(command, check=True, capture_output=True)
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {self.HOST}/32 trust\n")

    def tcp_url(self, database: str) -> str:
        """The URL of a database over the network, as a remote host reaches it."""
        return f"postgresql+psycopg://postgres@{self.SERVER}:{self.port}/{database}"

    def drop_packets(self) -> None:
        """Every packet to PostgreSQL's port is dropped, silently: a partition."""
        self._iptables("-I")

    def heal(self) -> None:
        self._iptables("-D")

    def heal_quietly(self) -> None:
        """Undo every fault a failed test may have left."""
        with contextlib.suppress(subprocess.CalledProcessError):
            while True:
                self._iptables("-D")
        self.link(up=True)

    def _iptables(self, action: str) -> None:
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.netns,
                "iptables",
                "-w",
                action,
                "INPUT",
                "-p",
                "tcp",
                "--dport",
                str(self.port),
                "-j",
                "DROP",
            ],
            check=True,
            capture_output=True,
        )

    def link(self, up: bool) -> None:
        subprocess.run(
            ["ip", "link", "set", self.veth, "up" if up else "down"],
            check=True,
            capture_output=True,
        )

    def destroy(self) -> None:
        super().destroy()
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        self._slot_lock.close()


def _network_slot(slots: int) -> tuple[IO[str], int]:
    """The first of `slots` network slots no other process holds, and its held lock."""
    LOCKS.mkdir(parents=True, exist_ok=True)
    for slot in range(slots):
        lock = open(LOCKS / f"networked-postgres-{slot}.lock", "w")  # noqa: SIM115 (held on)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        return lock, slot
    raise RuntimeError(f"all {slots} networked PostgreSQL slots are taken ({LOCKS})")

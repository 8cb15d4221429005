"""A swarm of two Docker 28.5 hosts on one PostgreSQL ledger, each host in a network namespace.

The namespaces hang on a bridge in a third one (the hub), where PostgreSQL listens: nothing of
the test is in the machine's own network. Both hosts run ipledger as the managed plugin, named
with its tag (swarm resolves an IPAM driver only so), on the same ledger.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from driver.adapters.plugin_client import PluginClient
from tests.e2e.engines import engine
from tests.e2e.harness import DockerDaemon, need
from tests.pg import PostgresCluster, binaries
from tests.waiting import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.full]

REPO = Path(__file__).resolve().parents[2]
NAME = "ipledger-swarm:latest"
IMAGE = "busybox-local:latest"
HUB, HOSTS = "iplsw-hub", {"a": "iplsw-a", "b": "iplsw-b"}
BRIDGE = "iplsw-br"
# the hosts' network (a documentation range), only inside the test's namespaces
HUB_ADDRESS = "192.0.2.1"
ADDRESSES = {"a": "192.0.2.2", "b": "192.0.2.3"}
OVERLAY = "198.51.100.0/24"


def ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)


def in_hub(*args: str) -> None:
    ip("netns", "exec", HUB, "ip", *args)


@contextlib.contextmanager
def hub_network() -> Iterator[None]:
    """The hub namespace with a bridge, and a namespace per host on a veth into it."""
    for ns in (HUB, *HOSTS.values()):
        ip("netns", "del", ns, check=False)
    try:
        ip("netns", "add", HUB)
        in_hub("link", "add", BRIDGE, "type", "bridge")
        in_hub("addr", "add", f"{HUB_ADDRESS}/24", "dev", BRIDGE)
        for ns in ("lo", BRIDGE):
            in_hub("link", "set", ns, "up")
        for host, ns in HOSTS.items():
            ip("netns", "add", ns)
            outer, inner = f"iplsw-{host}0", f"iplsw-{host}1"
            ip(
                "link",
                "add",
                outer,
                "netns",
                HUB,
                "type",
                "veth",
                "peer",
                "name",
                inner,
                "netns",
                ns,
            )
            in_hub("link", "set", outer, "master", BRIDGE, "up")
            inside = ("netns", "exec", ns, "ip")
            ip(*inside, "addr", "add", f"{ADDRESSES[host]}/24", "dev", inner)
            ip(*inside, "link", "set", inner, "up")
            ip(*inside, "link", "set", "lo", "up")
        yield
    finally:
        # the bridge and the veths go with their namespaces
        for ns in (*HOSTS.values(), HUB):
            ip("netns", "del", ns, check=False)


class HubPostgres(PostgresCluster):
    """PostgreSQL listening in the hub, where both hosts reach it over TCP; the test's own
    sessions use its unix socket."""

    IN_NETWORK = ("ip", "netns", "exec", HUB)
    LISTEN = HUB_ADDRESS

    def __init__(self) -> None:
        super().__init__()
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write("host all all 192.0.2.0/24 trust\n")

    def tcp_url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@{HUB_ADDRESS}:{self.port}/{database}"


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90) -> Any:
    return wait_until(check, timeout, what, 0.5)


class Ledger:
    """The shared ledger, read over PostgreSQL's unix socket."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with self.engine.connect() as c:
            return [tuple(r) for r in c.execute(text(sql)).all()]

    def pools(self, cidr: str) -> list[tuple[str, str]]:
        """(owner, pool id) of every pool of ``cidr``, in any space."""
        return self.rows(f"SELECT owner, id FROM pools WHERE cidr = '{cidr}' ORDER BY id, owner")

    def leases(self, cidr: str) -> list[tuple[str, str]]:
        """(pool id, kind) of every lease in a pool of ``cidr``."""
        return self.rows(
            "SELECT l.pool_id, l.kind FROM leases l JOIN subnets s ON s.id = l.subnet_id "
            f"WHERE s.cidr = '{cidr}' ORDER BY l.pool_id"
        )


@pytest.fixture(scope="module")
def swarm_parts(tmp_path_factory) -> Iterator[tuple[dict[str, DockerDaemon], Ledger, str]]:
    """Two dockerd in their namespaces, the plugin built on one and installed on both, on one
    ledger in PostgreSQL: (daemons, ledger, the ledger's URL for the test's own sessions)."""
    need(os.geteuid() == 0, "needs root for network namespaces and dockerd")
    need(binaries() is not None, "PostgreSQL is not installed (tests/run.sh installs it)")
    dockerd = engine("28.5")
    with contextlib.ExitStack() as stack:
        stack.enter_context(hub_network())
        pg = HubPostgres()
        stack.callback(pg.destroy)
        pg.start()
        url = pg.new_database()
        database = make_url(url).database
        assert database is not None
        daemons: dict[str, DockerDaemon] = {}
        for host, ns in HOSTS.items():
            daemon = DockerDaemon(dockerd, netns=ns, tag=f"iplsw-{host}")
            stack.callback(daemon.cleanup)
            stack.callback(daemon.stop)
            stack.callback(daemon.docker, "swarm", "leave", "--force", check=False)
            daemon.start()
            daemon.make_busybox_image()
            daemons[host] = daemon
        install_plugin(daemons, pg.tcp_url(database), tmp_path_factory.mktemp("iplsw-data"))
        ledger = Ledger(url)
        stack.callback(ledger.engine.dispose)
        yield daemons, ledger, url


def install_plugin(daemons: dict[str, DockerDaemon], db_url: str, data: Path) -> None:
    """Build the plugin on host a, create it from the same files on host b, set and enable."""
    a = daemons["a"]
    bin_dir = a.root / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").symlink_to(a.cli_binary)
    env = dict(a.env, PATH=f"{bin_dir}:{a.env['PATH']}")

    def run(*args: str) -> str:
        done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout.strip()

    base = run("bash", "plugin/base-image.sh")
    run("bash", "plugin/build.sh", "--base", base, NAME)
    daemons["b"].docker("plugin", "create", NAME, str(REPO / "plugin" / "build" / "plugin"))
    for host, daemon in daemons.items():
        daemon.docker(
            "plugin",
            "set",
            NAME,
            f"data.source={data}",
            f"IPLEDGER_DB={db_url}",
            f"IPLEDGER_HOST_ID=host-{host}",
            "IPLEDGER_WORKERS=1",
        )
        daemon.docker("plugin", "enable", NAME)


def node_id(daemon: DockerDaemon) -> str:
    return daemon.docker("info", "-f", "{{.Swarm.NodeID}}").stdout.strip()


def leader(daemon: DockerDaemon) -> str | None:
    """The node id of the swarm's leader as ``daemon`` (a manager) sees it."""
    out = daemon.docker(
        "node", "ls", "--format", "{{.ID}} {{.ManagerStatus}}", check=False
    ).stdout.split("\n")
    return next((line.split()[0] for line in out if line.endswith(" Leader")), None)


def form_swarm(a: DockerDaemon, b: DockerDaemon) -> None:
    a.docker(
        "swarm",
        "init",
        "--advertise-addr",
        ADDRESSES["a"],
        "--listen-addr",
        f"{ADDRESSES['a']}:2377",
    )
    token = a.docker("swarm", "join-token", "-q", "worker").stdout.strip()
    b.docker(
        "swarm",
        "join",
        "--token",
        token,
        "--advertise-addr",
        ADDRESSES["b"],
        "--listen-addr",
        f"{ADDRESSES['b']}:2377",
        f"{ADDRESSES['a']}:2377",
    )


def plugin_socket(daemon: DockerDaemon) -> str:
    plugin = daemon.docker("plugin", "inspect", "-f", "{{.Id}}", NAME).stdout.strip()
    # dockerd on Linux keeps managed plugins' sockets under /run/docker/plugins, whatever its
    # --exec-root (unix socket paths are short)
    found = glob.glob(f"/run/docker/plugins/{plugin}/ipledger.sock")
    found += glob.glob(f"{daemon.root}/exec/plugins/{plugin}/ipledger.sock")
    assert found, f"no socket of plugin {plugin}"
    return found[0]


def gc(daemon: DockerDaemon, url: str, host: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driver", "gc", "--db", url, "--grace", "0s", "--apply"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DOCKER_HOST": f"unix://{daemon.socket}", "IPLEDGER_HOST_ID": host},
    )


def run_on(daemon: DockerDaemon, name: str, network: str = "ov") -> str:
    daemon.docker("run", "-d", "--name", name, "--network", network, IMAGE, "sleep", "600")
    return daemon.container_addresses(name)[network][0]


def test_an_overlay_network_keeps_one_pool_through_a_leader_change_and_leaves_nothing(
    swarm_parts,
):
    started = time.monotonic()
    daemons, ledger, url = swarm_parts
    a, b = daemons["a"], daemons["b"]
    form_swarm(a, b)
    a.docker(
        "network", "create", "-d", "overlay", "--attachable", "--ipam-driver", NAME,
        "--subnet", OVERLAY, "ov",
    )  # fmt: skip
    on_a, on_b = run_on(a, "sw-a"), run_on(b, "sw-b")
    addresses = {on_a, on_b}
    assert len(addresses) == 2 and all(x.startswith("198.51.100.") for x in addresses)
    wait_for("sw-a to reach sw-b over the overlay", lambda: reaches(a, "sw-a", on_b), 30)
    assert [p for p in ledger.pools(OVERLAY) if p[1].startswith("GlobalDefault/")] == [
        ("swarm", f"GlobalDefault/{OVERLAY}")
    ]

    # the leader moves from a to b
    b_id, a_id = node_id(b), node_id(a)
    a.docker("node", "promote", b_id)
    wait_for("b to be a manager", lambda: leader(b) is not None)
    b.docker("node", "demote", a_id)
    wait_for("b to lead", lambda: leader(b) == b_id)
    # b's allocator runs: a new container gets its address from it
    addresses.add(wait_for("a container started on b", lambda: try_run(b, "sw-b2")))
    assert len(addresses) == 3
    global_pools = [p for p in ledger.pools(OVERLAY) if p[1].startswith("GlobalDefault/")]
    assert global_pools == [("swarm", f"GlobalDefault/{OVERLAY}")]
    kinds = [kind for pool, kind in ledger.leases(OVERLAY) if pool.startswith("GlobalDefault/")]
    assert kinds.count("gateway") == 1, kinds
    # b asked again for every address the swarm holds, and found each lease
    assert ledger.rows("SELECT count(*) FROM leases WHERE restoring") == [(0,)]

    for daemon, names in ((a, ("sw-a",)), (b, ("sw-b", "sw-b2"))):
        daemon.docker("rm", "-f", *names)
    # the containers' attachment tasks go a moment after the containers
    wait_for("ov to be removed", lambda: removed(b, "ov"))
    wait_for("the ledger to hold nothing of the overlay network", lambda: not ledger.pools(OVERLAY))
    assert ledger.leases(OVERLAY) == []

    # gc on the leader judges the swarm's pools: a pool whose network is gone is reclaimed, the
    # pool of a network that exists is kept
    b.docker(
        "network", "create", "-d", "overlay", "--attachable", "--ipam-driver", NAME,
        "--subnet", "203.0.113.0/25", "ov2",
    )  # fmt: skip
    client = PluginClient(plugin_socket(b))
    status, answer = client.call(
        "RequestPool", {"AddressSpace": "GlobalDefault", "Pool": "203.0.113.128/25"}
    )
    assert status == 200, answer
    client.close()
    on_worker = gc(a, url, "host-a")
    assert on_worker.returncode == 0, on_worker.stdout + on_worker.stderr
    assert "not a swarm manager" in on_worker.stdout + on_worker.stderr
    assert len(ledger.pools("203.0.113.128/25")) == 1
    on_leader = gc(b, url, "host-b")
    assert on_leader.returncode == 0, on_leader.stdout + on_leader.stderr
    assert "GlobalDefault/203.0.113.128/25" in on_leader.stdout
    assert "GlobalDefault/203.0.113.0/25" not in on_leader.stdout
    assert ledger.pools("203.0.113.128/25") == []
    assert ledger.pools("203.0.113.0/25") == [("swarm", "GlobalDefault/203.0.113.0/25")]
    wait_for("ov2 to be removed", lambda: removed(b, "ov2"))
    wait_for("the ledger to hold nothing of ov2", lambda: not ledger.pools("203.0.113.0/25"))
    print(f"swarm test: {time.monotonic() - started:.0f} s after the plugin was installed")


def try_run(daemon: DockerDaemon, name: str) -> str | None:
    """Start a container on ``ov``; None (and nothing left) while the swarm cannot attach it."""
    done = daemon.docker(
        "run", "-d", "--name", name, "--network", "ov", IMAGE, "sleep", "600", check=False
    )
    if done.returncode != 0:
        daemon.docker("rm", "-f", name, check=False)
        return None
    return str(
        json.loads(
            daemon.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", name).stdout
        )["ov"]["IPAddress"]
    )


def removed(daemon: DockerDaemon, network: str) -> bool:
    return daemon.docker("network", "rm", network, check=False).returncode == 0


def reaches(daemon: DockerDaemon, container: str, address: str) -> bool:
    ping = ("busybox", "ping", "-c", "1", "-W", "2", address)
    return daemon.docker("exec", container, *ping, check=False).returncode == 0

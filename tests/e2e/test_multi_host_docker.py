"""Two real Docker daemons (different versions, own roots), each with its own ipledger, one
PostgreSQL ledger: a macvlan network shared across them gets distinct addresses on both."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from sqlalchemy import create_engine, select

from driver.storage.models import leases
from tests.e2e.engines import engine
from tests.e2e.harness import DockerDaemon, PluginProcess, need

pytestmark = pytest.mark.docker

IMAGE = "busybox-local"


@pytest.fixture
def wire():
    """A veth pair: the one L2 segment both "hosts" sit on."""
    a, b = f"ipl{uuid.uuid4().hex[:6]}a", f"ipl{uuid.uuid4().hex[:6]}b"
    subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
    for end in (a, b):
        subprocess.run(["ip", "link", "set", end, "up"], check=True)
    yield a, b
    subprocess.run(["ip", "link", "del", a], check=False)


@pytest.fixture
def daemons():
    started = []
    try:
        for version in ("26.1", "28.5"):
            try:
                found = engine(version)
            except (OSError, subprocess.CalledProcessError) as e:
                need(False, f"Docker {version} could not be fetched: {e}")
            daemon = DockerDaemon(found)
            daemon.start()
            daemon.make_busybox_image()
            started.append(daemon)
        yield started
    finally:
        for daemon in started:
            daemon.stop()
            daemon.cleanup()


def test_two_docker_hosts_on_one_shared_pool_give_their_containers_distinct_addresses(
    tmp_path, postgres, wire, daemons
):
    url = postgres.new_database(template=None)
    plugins = [
        PluginProcess(
            f"ipl-h{i}-{uuid.uuid4().hex[:4]}",
            url,
            tmp_path,
            extra_env={"IPLEDGER_HOST_ID": f"docker-host-{i}"},
        )
        for i in range(2)
    ]
    try:
        for plugin in plugins:
            plugin.start()
        addresses: dict[str, str] = {}
        gateways = set()
        for i, (daemon, plugin, parent) in enumerate(zip(daemons, plugins, wire, strict=True)):
            daemon.docker(
                "network",
                "create",
                "-d",
                "macvlan",
                "-o",
                f"parent={parent}",
                "--subnet",
                "198.51.100.0/24",
                "--ipam-driver",
                plugin.name,
                "--ipam-opt",
                "ipledger.shared=lan",
                "lan",
            )
            gateways |= {c["Gateway"] for c in daemon.network_ipam("lan") if c.get("Gateway")}
            for n in range(3):
                daemon.docker(
                    "run", "-d", "--name", f"c{i}{n}", "--network", "lan", IMAGE, "sleep", "600"
                )
            for name, address in daemon.running_addresses("lan").items():
                addresses[f"{daemon.version}/{name}"] = address
        assert len(addresses) == 6
        assert len(set(addresses.values())) == 6, addresses
        assert gateways <= {"198.51.100.1"}
        ledger = create_engine(url)
        with ledger.connect() as c:
            hosts = sorted(c.execute(select(leases.c.host_id)).scalars())
        ledger.dispose()
        # three containers of each host, and the one gateway of the segment
        assert hosts.count("docker-host-0") == 4 and hosts.count("docker-host-1") == 3
        # gc on each host judges its own leases in the shared pool: a lease made on host 0 that
        # no container uses is a leak there, and none of host 1's business
        pool_id = "shared/lan/LocalDefault/198.51.100.0/24"
        stray = (
            plugins[0]
            .client.call("RequestAddress", {"PoolID": pool_id})[1]["Address"]
            .split("/")[0]
        )
        for daemon, plugin, expected in zip(daemons, plugins, ([stray], []), strict=True):
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "driver",
                    "gc",
                    "--db",
                    url,
                    "--driver",
                    plugin.name,
                    "--grace",
                    "0s",
                ],
                capture_output=True,
                text=True,
                timeout=120,
                env={**plugin.env, "DOCKER_HOST": f"unix://{daemon.socket}"},
            )
            assert result.returncode == 0, result.stderr
            leaked = [
                line.split()[2] for line in result.stdout.splitlines() if line.startswith("lease ")
            ]
            assert leaked == expected, result.stdout
        for daemon in daemons:
            daemon.remove_all()
        ledger = create_engine(url)
        with ledger.connect() as c:
            assert c.execute(select(leases.c.address)).all() == []
        ledger.dispose()
    finally:
        for daemon in daemons:
            daemon.remove_all()
        for plugin in plugins:
            plugin.stop()
        postgres.drop_database(url)

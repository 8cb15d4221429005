"""Two nodes on one PostgreSQL ledger making a shared CNI network's pool at their first ADDs,
several at once on each node, as containerd starts a node's pods (seen with containerd's CRI
plugin: one pod of the second node was refused "Pool overlaps ... already used by a network on
host node-2", its own host)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.cni.harness import Runtime
from tests.e2e.harness import PluginProcess

pytestmark = pytest.mark.full


@pytest.fixture
def shared_ledger(postgres):
    url = postgres.new_database()
    yield url
    postgres.drop_database(url)


@pytest.fixture
def two_nodes(shared_ledger, tmp_path: Path):
    servers = []
    for i in (1, 2):
        workdir = tmp_path / f"n{i}"
        workdir.mkdir()
        server = PluginProcess(
            f"n{i}",
            shared_ledger,
            workdir,
            socket=str(workdir / "ipl.sock"),
            extra_env={"IPLEDGER_HOST_ID": f"node-{i}"},
        )
        servers.append(server)
        server.start()
    yield servers
    for server in servers:
        server.stop()


def test_concurrent_first_adds_on_two_nodes_of_a_shared_network_all_get_an_address(
    cni: Runtime, two_nodes
):
    failures, addresses = [], []
    for round_ in range(4):  # each round a new network, whose pool no node has made yet
        name = f"pods-{uuid.uuid4().hex[:6]}"
        subnet = f"198.51.100.{64 * round_}/26"

        def add(job: tuple[PluginProcess, int], name=name, subnet=subnet):
            server, i = job
            config = {
                "cniVersion": "1.0.0",
                "name": name,
                "type": "bridge",
                "ipam": {
                    "type": "ipledger",
                    "ranges": [[{"subnet": subnet}]],
                    "ipledger": {"socket": server.socket, "shared": name},
                },
            }
            return cni.run("ipledger", "ADD", config, container=f"{server.name}-{i}")

        jobs = [(server, i) for i in range(8) for server in two_nodes]
        with ThreadPoolExecutor(16) as pool:
            for outcome in pool.map(add, jobs):
                if outcome.code:
                    failures.append(outcome.answer)
                else:
                    addresses.append(outcome.answer["ips"][0]["address"])
    assert failures == []
    assert len(set(addresses)) == len(addresses) == 64

"""Docker and CNI on one ledger: a Docker network and a CNI network draw from one shared pool
(``ipledger.shared=lan``) and no address is given twice."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from driver.entrypoints.install import install_cni_plugin
from driver.storage.store import open_store
from driver.usecases.admin import Admin
from tests.cni.harness import REFERENCE_PLUGINS, runtime
from tests.e2e.harness import need

pytestmark = pytest.mark.docker

SUBNET = "203.0.113.0/24"
POOL = f"shared/lan/LocalDefault/{SUBNET}"


def test_a_docker_network_and_a_cni_network_share_a_pool_and_never_an_address(
    dockerd, plugin, names, tmp_path: Path
):
    need(os.geteuid() == 0 and (REFERENCE_PLUGINS / "bridge").exists(), "CNI plugins, as root")
    net = f"{names}-lan"
    dockerd.docker(
        "network",
        "create",
        "--ipam-driver",
        plugin.name,
        "--subnet",
        SUBNET,
        "--ipam-opt",
        "ipledger.shared=lan",
        net,
    )
    docker_addresses = []
    for i in range(2):
        dockerd.docker(
            "run",
            "-d",
            "--name",
            f"{names}-d{i}",
            "--network",
            net,
            "busybox-local",
            "sleep",
            "600",
        )
        docker_addresses.append(dockerd.container_addresses(f"{names}-d{i}")[net][0])

    install_cni_plugin(tmp_path / "cni-bin")
    bridge = f"iplcni{uuid.uuid4().hex[:6]}"
    config = {
        "cniVersion": "1.0.0",
        "name": "lan-cni",
        "type": "bridge",
        "bridge": bridge,
        # Docker's bridge has the gateway address on this host already
        "isGateway": False,
        "ipMasq": False,
        "ipam": {
            "type": "ipledger",
            "ranges": [[{"subnet": SUBNET}]],
            "ipledger": {"shared": "lan", "socket": plugin.socket},
        },
    }
    with runtime(tmp_path / "cni-bin", REFERENCE_PLUGINS) as cni:
        cni.links.append(bridge)
        cni_addresses = []
        for i in range(3):
            netns = cni.netns()
            outcome = cni.run("bridge", "ADD", config, f"cni-{i}", netns)
            assert outcome.code == 0, outcome.answer
            seen = cni.addresses_in(netns)
            assert seen == [outcome.answer["ips"][0]["address"]]
            cni_addresses.append(seen[0].split("/")[0])
        dockerd.docker(
            "run", "-d", "--name", f"{names}-d2", "--network", net, "busybox-local", "sleep", "600"
        )
        docker_addresses.append(dockerd.container_addresses(f"{names}-d2")[net][0])

        handed_out = docker_addresses + cni_addresses
        assert len(set(handed_out)) == len(handed_out) == 6, handed_out

        store = open_store(plugin.db_url)
        try:
            lines = Admin(store).reports.addresses(POOL)
        finally:
            store.dispose()
        kinds = {line.address: (line.kind, line.detail) for line in lines}
        for i, address in enumerate(cni_addresses):
            assert kinds[address] == ("cni", f"CNI lan-cni/cni-{i}/eth0")
        for address in docker_addresses:
            assert kinds[address][0] == "endpoint"
        for i in range(3):
            assert cni.run("bridge", "DEL", config, f"cni-{i}", cni.namespaces[i]).code == 0

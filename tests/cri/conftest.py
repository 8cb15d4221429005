from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from driver.storage.store import open_store
from driver.usecases.admin import Admin
from tests.cri.harness import Containerd, cni_bin_dir, conflist, sandbox_image
from tests.cri.versions import VERSIONS, Release, release
from tests.e2e.harness import PluginProcess, need

SUBNET = "203.0.113.64/26"


class Node:
    """A Kubernetes node as far as pod networking goes: `ipledger serve`, the CNI bin and conf
    dirs, and containerd's CRI plugin on a conflist whose IPAM is ipledger."""

    def __init__(
        self,
        name: str,
        release: Release,
        workdir: Path,
        image: Path,
        cni_bin: Path,
        db_url: str,
        network: str | None = None,
        subnet: str = SUBNET,
        env: dict[str, str] | None = None,
        **options: Any,
    ) -> None:
        workdir.mkdir(parents=True)
        # a network of its own unless named: its NAT rules are told apart by that name
        self.network = network or f"pods-{uuid.uuid4().hex[:6]}"
        self.subnet = subnet
        # the node's DEL spool: the plugin (its conflist) and the server read the same directory
        self.spool = str(workdir / "cni-spool")
        self.server = PluginProcess(
            name,
            db_url,
            workdir,
            socket=str(workdir / "ipl.sock"),
            extra_env={"IPLEDGER_CNI_SPOOL": self.spool, **(env or {})},
        )
        self.containerd: Containerd | None = None
        self.release, self.image, self.cni_bin, self.options = release, image, cni_bin, options
        # iplcnik: the CRI tests' bridges (the suite's cleanup removes iplcni* leftovers)
        self.bridge = f"iplcnik{uuid.uuid4().hex[:8]}"
        self.conf_dir = workdir / "cni-conf"
        self.conf_dir.mkdir()

    def start(self) -> None:
        self.server.start()
        self.write_conflist(**self.options)
        self.containerd = Containerd(self.release, self.cni_bin, self.conf_dir, self.image)
        self.cri = self.containerd.cri

    def write_conflist(self, **options: Any) -> None:
        config = conflist(
            self.network, self.bridge, self.subnet, self.server.socket, spool=self.spool, **options
        )
        (self.conf_dir / f"10-{self.network}.conflist").write_text(json.dumps(config))

    def lines(self) -> list[Any]:
        store = open_store(self.server.db_url)
        try:
            reports = Admin(store).reports
            pools = [
                r.pool.id for r in reports.pools() if str(r.pool.subnet.network) == self.subnet
            ]
            return [line for pool in pools[:1] for line in reports.addresses(pool)]
        finally:
            store.dispose()

    def leases(self) -> dict[str, str]:
        """address -> attachment of each CNI lease of the subnet, as `ipledger leases` reads."""
        return {
            line.address: str(line.detail)
            for line in self.lines()
            if line.state == "leased" and line.kind == "cni"
        }

    def nat_rules(self) -> list[str]:
        """The bridge plugin's ipMasq rules for this network's pods (comment names the net)."""
        out = subprocess.run(
            ["iptables", "-w", "-t", "nat", "-S"], capture_output=True, text=True, check=True
        ).stdout
        return [line for line in out.splitlines() if f'name: \\"{self.network}\\"' in line]

    def stop_pods(self) -> None:
        """Every pod deleted through containerd (so that CNI DEL runs), containerd gone."""
        if self.containerd is not None:
            self.containerd.cleanup()

    def cleanup(self) -> None:
        """What a failed DEL left: NAT rules of the network, the bridge. Only once every node
        sharing the network has stopped its pods: the rules are found by the network's name."""
        self.server.stop()
        remove_nat_rules(self.nat_rules())
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


def remove_nat_rules(rules: list[str]) -> None:
    """Whatever a failed DEL left: the POSTROUTING jumps, then the pods' chains."""
    chains = set()
    for rule in rules:
        words = shlex.split(rule)
        if words[0] == "-A" and words[1] == "POSTROUTING":
            subprocess.run(["iptables", "-w", "-t", "nat", "-D", *words[1:]], capture_output=True)
            if "-j" in words:
                chains.add(words[words.index("-j") + 1])
    for chain in chains:
        subprocess.run(["iptables", "-w", "-t", "nat", "-F", chain], capture_output=True)
        subprocess.run(["iptables", "-w", "-t", "nat", "-X", chain], capture_output=True)


@pytest.fixture(scope="session", params=VERSIONS, ids=lambda v: f"containerd{v}")
def containerd_release(request: pytest.FixtureRequest) -> Release:
    need(os.geteuid() == 0, "needs root to run containerd")
    need(shutil.which("containerd") is not None, "containerd missing (apt-get install docker.io)")
    need((Path("/usr/lib/cni") / "bridge").exists(), "apt-get install containernetworking-plugins")
    need(Path("/bin/busybox").exists(), "busybox-static missing (apt-get install busybox-static)")
    need(shutil.which("iptables") is not None, "iptables missing (apt-get install iptables)")
    try:
        found = release(request.param)
    except (OSError, subprocess.CalledProcessError) as error:
        need(False, f"containerd {request.param} unavailable: {error}")
        raise
    assert found.version.startswith(f"{request.param}."), found
    return found


@pytest.fixture(scope="session")
def pause_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sandbox_image(tmp_path_factory.mktemp("pause"))


@pytest.fixture(scope="session")
def cni_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The nodes' CNI bin dir: the reference plugins, and ipledger put in by install-cni."""
    return cni_bin_dir(tmp_path_factory.mktemp("cni") / "bin")


@pytest.fixture
def make_node(
    containerd_release: Release, pause_image: Path, cni_bin: Path, tmp_path: Path
) -> Iterator[Callable[..., Node]]:
    """Nodes on demand: each with its own ipledger serve (an SQLite ledger unless db_url)."""
    nodes: list[Node] = []

    def make(name: str = "n1", db_url: str | None = None, **options: Any) -> Node:
        url = db_url or f"sqlite:///{tmp_path}/{name}.db"
        node = Node(name, containerd_release, tmp_path / name, pause_image, cni_bin, url, **options)
        nodes.append(node)
        node.start()
        return node

    yield make
    try:
        for node in nodes:
            node.stop_pods()
    finally:
        for node in nodes:
            node.cleanup()


@pytest.fixture
def node(make_node: Callable[..., Node]) -> Node:
    return make_node()

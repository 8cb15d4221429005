"""Podman with its CNI backend runs containers on a network whose IPAM is ipledger."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from driver.entrypoints.install import install_cni_plugin
from driver.storage.store import open_store
from driver.usecases.admin import Admin
from tests.e2e.harness import PluginProcess, need

IMAGE = "busybox-local:latest"
POOL = "LocalDefault/198.51.100.0/24"


class Podman:
    """``podman`` with a root, run root, CNI config dir and plugin dirs of the test's own."""

    def __init__(self, workdir: Path, plugin_dirs: list[Path]) -> None:
        self.workdir = workdir
        self.networks = workdir / "cni-net"
        self.networks.mkdir()
        conf = workdir / "containers.conf"
        dirs = ", ".join(f'"{d}"' for d in plugin_dirs)
        conf.write_text(
            f'[network]\nnetwork_backend = "cni"\ncni_plugin_dirs = [{dirs}]\n'
            f'network_config_dir = "{self.networks}"\n'
        )
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CONTAINERS_CONF": str(conf)}
        # podman refuses a run root of more than 50 characters: pytest's tmp_path is longer
        self.state = Path(tempfile.mkdtemp(prefix="iplpm-", dir="/tmp"))
        self.bridges: list[str] = []

    def __call__(
        self, *args: str, check: bool = True, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        command = [
            "podman",
            "--root",
            str(self.state / "root"),
            "--runroot",
            str(self.state / "run"),
            "--storage-driver",
            "vfs",
            "--network-backend",
            "cni",
            "--cni-config-dir",
            str(self.networks),
            *args,
        ]
        done = subprocess.run(command, env=self.env, input=stdin, capture_output=True, timeout=120)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)}: {done.stderr.decode()[-2000:]}")
        return done

    def network(self, name: str, subnet: str, socket: str) -> None:
        bridge = f"iplcni{uuid.uuid4().hex[:6]}"
        self.bridges.append(bridge)
        conflist = {
            "cniVersion": "1.0.0",
            "name": name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": True,
                    "ipMasq": False,
                    "ipam": {
                        "type": "ipledger",
                        "ranges": [[{"subnet": subnet}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "ipledger": {"socket": socket},
                    },
                }
            ],
        }
        (self.networks / f"{name}.conflist").write_text(json.dumps(conflist))

    def run(self, network: str, *command: str) -> str:
        """A detached container on ``network``; its ID."""
        return (
            self(
                "run",
                "-d",
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
                "--network",
                network,
                IMAGE,
                *command,
            )
            .stdout.decode()
            .strip()
        )

    def cleanup(self) -> None:
        self("rm", "-af", "-t", "0", check=False)
        self("system", "reset", "-f", check=False)
        shutil.rmtree(self.state, ignore_errors=True)
        for bridge in self.bridges:
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)


@pytest.fixture
def podman(cni_plugins: Path, tmp_path: Path) -> Iterator[Podman]:
    need(shutil.which("podman") is not None, "podman not installed (apt-get install podman)")
    install_cni_plugin(tmp_path / "cni-bin")
    runtime = Podman(tmp_path, [tmp_path / "cni-bin", cni_plugins])
    image = tmp_path / "image"
    (image / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", image / "bin" / "busybox")
    for applet in ("sh", "ip", "sleep"):
        (image / "bin" / applet).symlink_to("busybox")
    tar = subprocess.run(["tar", "-C", str(image), "-c", "."], capture_output=True, check=True)
    runtime("import", "-", IMAGE, stdin=tar.stdout)
    try:
        yield runtime
    finally:
        runtime.cleanup()


def cni_leases(server: PluginProcess) -> dict[str, str]:
    """address -> the attachment of each CNI lease of the pool."""
    store = open_store(server.db_url)
    try:
        lines = Admin(store).reports.addresses(POOL)
    finally:
        store.dispose()
    return {line.address: str(line.detail) for line in lines if line.kind == "cni"}


def test_podman_containers_get_the_addresses_ipledger_records_and_rm_releases_them(
    podman, ipledger_server
):
    podman.network("shop", "198.51.100.0/24", ipledger_server.socket)
    first = podman.run("shop", "sleep", "600")
    second = podman.run("shop", "sleep", "600")
    leases = cni_leases(ipledger_server)
    assert leases == {
        "198.51.100.2": f"CNI shop/{first}/eth0",
        "198.51.100.3": f"CNI shop/{second}/eth0",
    }
    seen = podman("exec", first, "ip", "-o", "-4", "addr", "show", "eth0").stdout.decode()
    assert "198.51.100.2/24" in seen
    podman("rm", "-f", "-t", "0", first)
    assert cni_leases(ipledger_server) == {"198.51.100.3": f"CNI shop/{second}/eth0"}
    third = podman.run("shop", "sleep", "600")
    assert cni_leases(ipledger_server)["198.51.100.2"] == f"CNI shop/{third}/eth0"


# -- a conflist of an older CNI version, as many deployed ones are


def old_network(podman: Podman, name: str, socket: str) -> None:
    """A 0.3.1 conflist; its bridge's name starts with ``iplcniv``, which no other test's does
    (theirs are ``iplcni`` and hexadecimal), so that two test runs at once never meet."""
    bridge = f"iplcniv{uuid.uuid4().hex[:6]}"
    podman.bridges.append(bridge)
    conflist = {
        "cniVersion": "0.3.1",
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": False,
                "ipam": {
                    "type": "ipledger",
                    "ranges": [[{"subnet": POOL.split("/", 1)[1]}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "ipledger": {"socket": socket},
                },
            }
        ],
    }
    (podman.networks / f"{name}.conflist").write_text(json.dumps(conflist))


def test_a_0_3_1_conflist_gives_podmans_containers_their_addresses_and_rm_releases_them(
    podman: Podman, ipledger_server: PluginProcess
):
    old_network(podman, "legacy", ipledger_server.socket)
    first = podman.run("legacy", "sleep", "600")
    assert cni_leases(ipledger_server) == {"198.51.100.2": f"CNI legacy/{first}/eth0"}
    seen = podman("exec", first, "ip", "-o", "-4", "addr", "show", "eth0").stdout.decode()
    assert "198.51.100.2/24" in seen
    podman("rm", "-f", "-t", "0", first)
    assert cni_leases(ipledger_server) == {}

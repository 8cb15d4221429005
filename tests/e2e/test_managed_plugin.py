"""ipledger as a managed plugin: built with plugin/build.sh, installed, set, enabled, upgraded.

Runs on the newest tested engine (28.5.2). There is no registry here, so the base image is made
from Debian packages by plugin/base-image.sh, and the upgrade is the registry-less one that
plugin/build.sh --replace does.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.e2e.engines import engine
from tests.e2e.harness import DockerDaemon, need
from tests.waiting import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
NAME = "ipledger-e2e:v1"
IMAGE = "busybox-local:latest"


class PluginBuilder:
    def __init__(self, daemon: DockerDaemon) -> None:
        self.daemon = daemon
        bin_dir = daemon.root / "bin"
        bin_dir.mkdir(exist_ok=True)
        if not (bin_dir / "docker").exists():
            (bin_dir / "docker").symlink_to(daemon.cli_binary)
        self.env = dict(daemon.env, PATH=f"{bin_dir}:{daemon.env['PATH']}")

    def run(self, *args: str) -> str:
        result = subprocess.run(
            args, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout.strip()

    def base_image(self) -> str:
        return self.run("bash", "plugin/base-image.sh")

    def build(self, base: str, *flags: str) -> None:
        self.run("bash", "plugin/build.sh", "--base", base, *flags, NAME)


@pytest.fixture(scope="module")
def newest() -> Iterator[DockerDaemon]:
    need(os.geteuid() == 0, "needs root to run dockerd")
    daemon = DockerDaemon(engine("28.5"))
    daemon.start()
    daemon.make_busybox_image()
    yield daemon
    daemon.docker("swarm", "leave", "--force", check=False)
    daemon.stop()
    daemon.cleanup()


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_data_path_port() -> int:
    """A free UDP port that Docker accepts as a VXLAN data path port (1024-49151).

    The kernel's ephemeral ports run above 49151, so free_port() cannot be used here.
    """
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 49152)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free UDP port between 20000 and 49151")


def ledger(data: Path) -> list[tuple[str, str]]:
    """(pool id, kind) of every lease in the plugin's database on the host."""
    db = create_engine(f"sqlite:///{data}/ipledger.db")
    with db.connect() as c:
        rows = c.execute(text("SELECT pool_id, kind FROM leases ORDER BY pool_id, kind")).all()
    db.dispose()
    return [tuple(r) for r in rows]


@pytest.fixture(scope="module")
def built(newest: DockerDaemon) -> tuple[PluginBuilder, str]:
    """The plugin built once from a debootstrapped base: (builder, base image)."""
    builder = PluginBuilder(newest)
    base = builder.base_image()
    builder.build(base)
    return builder, base


def test_the_managed_plugin_installs_serves_and_upgrades_without_losing_a_lease(
    newest, built, tmp_path
):
    builder, base = built
    if newest.docker("plugin", "inspect", NAME, check=False).returncode != 0:
        builder.build(base)
    data = tmp_path / "data"
    data.mkdir()
    newest.docker("plugin", "set", NAME, f"data.source={data}", "IPLEDGER_WORKERS=1")
    started = time.monotonic()
    newest.docker("plugin", "enable", NAME)
    enable_seconds = time.monotonic() - started
    assert enable_seconds < 9.5

    newest.docker("network", "create", "--ipam-driver", NAME, "--subnet", "198.51.100.0/24", "mp")
    newest.docker("run", "-d", "--name", "mp-a", "--network", "mp", IMAGE, "sleep", "600")
    newest.docker(
        "run",
        "-d",
        "--name",
        "mp-b",
        "--network",
        "mp",
        "--ip",
        "198.51.100.77",
        IMAGE,
        "sleep",
        "600",
    )
    before = newest.running_addresses("mp")
    assert before == {"mp-a": "198.51.100.2", "mp-b": "198.51.100.77"}
    assert (data / "ipledger.db").stat().st_mode & 0o077 == 0
    assert len(ledger(data)) == 3

    # disable (forced: a network uses it), rebuild, replace, set again, enable
    newest.docker("plugin", "disable", "-f", NAME)
    error = newest.fails("run", "--rm", "--network", "mp", IMAGE, "true")
    assert NAME in error or "plugin" in error.lower()
    builder.build(base, "--replace")
    newest.docker("plugin", "set", NAME, f"data.source={data}")
    newest.docker("plugin", "enable", NAME)

    assert newest.running_addresses("mp") == before
    assert len(ledger(data)) == 3
    newest.docker("run", "-d", "--name", "mp-c", "--network", "mp", IMAGE, "sleep", "600")
    assert newest.running_addresses("mp")["mp-c"] == "198.51.100.3"
    newest.docker("rm", "-f", "mp-a")
    newest.docker("run", "-d", "--name", "mp-d", "--network", "mp", IMAGE, "sleep", "600")
    assert newest.running_addresses("mp")["mp-d"] == "198.51.100.2"

    # gc on the host finds the plugin's networks by the plugin's name, without being told it,
    # and so never takes the live pool for a leak
    gc = subprocess.run(
        [
            sys.executable,
            "-m",
            "driver",
            "gc",
            "--db",
            f"sqlite:///{data}/ipledger.db",
            "--grace",
            "0s",
            "--apply",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DOCKER_HOST": f"unix://{newest.socket}"},
    )
    assert gc.returncode == 0, gc.stdout + gc.stderr
    assert "1 Docker networks use " in gc.stdout and NAME in gc.stdout.split(";")[0]
    assert "no leaks" in gc.stdout
    assert len(ledger(data)) == 4

    # swarm: the manager allocates in the global address space, the node in the local one
    # ports of their own, so that the test never meets another swarm on this machine
    newest.docker(
        "swarm",
        "init",
        "--advertise-addr",
        "127.0.0.1",
        "--listen-addr",
        f"127.0.0.1:{free_port(socket.SOCK_STREAM)}",
        "--data-path-port",
        str(free_data_path_port()),
    )
    newest.docker(
        "network",
        "create",
        "-d",
        "overlay",
        "--attachable",
        "--ipam-driver",
        NAME,
        "--subnet",
        "203.0.113.0/24",
        "ov",
    )
    newest.docker("run", "-d", "--name", "ov-a", "--network", "ov", IMAGE, "sleep", "600")
    spaces = {pool_id.split("/")[0] for pool_id, _ in ledger(data) if "203.0.113.0/24" in pool_id}
    assert spaces == {"GlobalDefault", "LocalDefault"}
    assert newest.container_addresses("ov-a")["ov"][0].startswith("203.0.113.")
    newest.docker("rm", "-f", "ov-a")
    newest.docker("network", "rm", "ov")
    newest.docker("swarm", "leave", "--force")
    newest.remove_all()
    newest.docker("plugin", "disable", "-f", NAME)
    newest.docker("plugin", "rm", "-f", NAME)


@pytest.fixture
def registry(tmp_path) -> Iterator[str]:
    """Debian's docker-registry on a loopback port of its own (Docker trusts 127.0.0.0/8)."""
    binary = shutil.which("docker-registry")
    need(binary is not None, "docker-registry not installed (tests/run.sh installs it)")
    port = free_port(socket.SOCK_STREAM)
    config = tmp_path / "registry.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/registry\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    process = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_until(listening, 10, f"docker-registry to listen on 127.0.0.1:{port}")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.usefixtures("built")
def test_install_from_a_registry_asks_for_its_privileges_and_upgrades_in_place(
    newest, registry, tmp_path
):
    plugin_dir = REPO / "plugin" / "build" / "plugin"
    v1, v2 = f"{registry}/ipledger:v1", f"{registry}/ipledger:v2"
    # Docker's plugin store refuses a second plugin with the same layer: one at a time
    newest.docker("plugin", "rm", "-f", NAME, check=False)
    for ref in (v1, v2):
        if ref == v2:
            config = json.loads((plugin_dir / "config.json").read_text())
            config["description"] += " (v2)"
            (plugin_dir / "config.json").write_text(json.dumps(config))
        newest.docker("plugin", "create", ref, str(plugin_dir))
        newest.docker("plugin", "push", ref)
        newest.docker("plugin", "rm", ref)

    data = tmp_path / "data"
    data.mkdir()
    prompt = subprocess.run(
        [newest.cli_binary, "plugin", "install", v1, f"data.source={data}"],
        input="y\n",
        env=newest.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert prompt.returncode == 0, prompt.stderr
    print(prompt.stdout)
    assert f'Plugin "{v1}" is requesting the following privileges:' in prompt.stdout
    assert " - network: [host]" in prompt.stdout
    assert " - mount: [/var/lib/ipledger]" in prompt.stdout

    newest.docker("network", "create", "--ipam-driver", v1, "--subnet", "203.0.113.0/24", "rg")
    newest.docker("run", "-d", "--name", "rg-a", "--network", "rg", IMAGE, "sleep", "600")
    before = newest.running_addresses("rg")
    newest.docker("plugin", "disable", "-f", v1)
    # the CLI asks "Plugin images do not match, are you sure?" since the repositories differ
    upgrade = subprocess.run(
        [newest.cli_binary, "plugin", "upgrade", "--grant-all-permissions", v1, v2],
        input="y\n",
        env=newest.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    assert "Upgraded plugin" in upgrade.stdout, upgrade.stdout
    # an upgrade takes the new config.json's mounts: the data source must be set again
    newest.docker("plugin", "set", v1, f"data.source={data}")
    newest.docker("plugin", "enable", v1)
    reference = newest.docker("plugin", "inspect", "-f", "{{.PluginReference}}", v1).stdout.strip()
    assert reference == v2
    assert newest.running_addresses("rg") == before
    newest.docker("run", "-d", "--name", "rg-b", "--network", "rg", IMAGE, "sleep", "600")
    assert newest.running_addresses("rg")["rg-b"] == "203.0.113.3"
    newest.docker("rm", "-f", "rg-a", "rg-b")
    newest.docker("network", "rm", "rg")
    newest.docker("plugin", "disable", v1)
    newest.docker("plugin", "rm", v1)

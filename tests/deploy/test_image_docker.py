"""The DaemonSet's image, built by deploy/kubernetes/build-image.sh on a real dockerd and run as
the DaemonSet runs it: the init container's command installs the plugin into a mounted
directory that the host (the "node") then runs, and the main container's command serves on a
socket in a mounted directory that the installed plugin reaches.

No registry is reachable here: the base image is debootstrapped from Debian's packages
(plugin/base-image.sh) and the wheels come from PyPI. The commands, environment and security
settings are read from daemonset.yaml, so that the test runs what the manifest says.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from driver.adapters.plugin_client import PluginClient
from tests.e2e.engines import engine
from tests.e2e.harness import DockerDaemon, free_port, need

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "kubernetes"


def _pod_spec() -> dict[str, Any]:
    daemonset = yaml.safe_load((DEPLOY / "daemonset.yaml").read_text())
    return dict(daemonset["spec"]["template"]["spec"])


def _container(kind: str, name: str) -> dict[str, Any]:
    return next(c for c in _pod_spec()[kind] if c["name"] == name)


def _docker_run_flags(container: dict[str, Any], host_dirs: dict[str, Path]) -> list[str]:
    """docker run's flags for a container of the manifest: its mounts (each hostPath volume as
    a directory of the test), security settings and plain environment."""
    volumes = {v["name"]: v for v in _pod_spec()["volumes"]}
    flags = ["--network", "host"]  # hostNetwork
    context = container.get("securityContext", {})
    if context.get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    for capability in context.get("capabilities", {}).get("drop", []):
        flags += ["--cap-drop", capability]
    if context.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    if "runAsUser" in context:
        flags += ["--user", str(context["runAsUser"])]
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            flags += ["--tmpfs", mount["mountPath"]]
        else:
            source = host_dirs[volume["hostPath"]["path"]]
            source.mkdir(parents=True, exist_ok=True)
            flags += ["-v", f"{source}:{mount['mountPath']}"]
    for variable in container.get("env", []):
        if "value" in variable:
            flags += ["-e", f"{variable['name']}={variable['value']}"]
    return flags


@pytest.fixture(scope="module")
def daemon() -> Iterator[DockerDaemon]:
    need(os.geteuid() == 0, "needs root to run dockerd")
    need(shutil.which("dockerd") is not None, "dockerd not installed (apt-get install docker.io)")
    need(shutil.which("debootstrap") is not None, "debootstrap not installed")
    started = DockerDaemon(engine("28.5"))
    started.start()
    yield started
    started.stop()
    started.cleanup()


@pytest.fixture(scope="module")
def image(daemon: DockerDaemon) -> Iterator[str]:
    """The image, built by the script the docs give; removed afterwards with its base."""
    bin_dir = daemon.root / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").symlink_to(daemon.cli_binary)
    env = dict(daemon.env, PATH=f"{bin_dir}:{daemon.env['PATH']}")
    tag = f"ipledger-k8s-e2e:{uuid.uuid4().hex[:8]}"
    built = subprocess.run(
        ["bash", str(DEPLOY / "build-image.sh"), tag],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    assert f"built {tag}" in built.stdout
    yield tag
    daemon.docker("rmi", "-f", tag, "ipledger-base:bookworm", check=False)


@pytest.fixture
def node() -> Iterator[Path]:
    """The node's file system: short, for the unix socket's path limit."""
    root = Path(tempfile.mkdtemp(prefix="ipl-k8s-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _plugin(
    plugin: Path, command: str, config: dict[str, Any], container_id: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run the installed plugin on the host as a runtime does, with no Python on PATH."""
    env = {"CNI_COMMAND": command, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    if container_id:
        env.update(CNI_CONTAINERID=container_id, CNI_IFNAME="eth0", CNI_NETNS="/proc/1/ns/net")
    return subprocess.run(
        [str(plugin)],
        input=json.dumps(config),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_image_installs_the_plugin_into_the_node_and_serves_on_the_nodes_socket(
    daemon, image, node
):
    host_dirs = {
        "/opt/cni/bin": node / "opt-cni-bin",
        "/run/ipledger": node / "run",
        "/var/lib/ipledger": node / "lib",
        "/var/lib/ipledger/cni-spool": node / "lib" / "cni-spool",
    }

    # the init container: its command as the manifest gives it
    init = _container("initContainers", "install-cni")
    command = init["command"]
    daemon.docker(
        "run",
        "--rm",
        *_docker_run_flags(init, host_dirs),
        "--entrypoint",
        command[0],
        image,
        *command[1:],
        timeout=300,
    )
    plugin = host_dirs["/opt/cni/bin"] / "ipledger"
    assert plugin.is_file() and os.access(plugin, os.X_OK)
    version = _plugin(plugin, "VERSION", {"cniVersion": "1.0.0", "name": "pods"})
    assert version.returncode == 0, version.stdout + version.stderr
    assert "1.0.0" in json.loads(version.stdout)["supportedVersions"]

    # the main container: it serves on the node's socket
    serve = _container("containers", "ipledger")
    port = free_port()  # the manifest's 9466 may be taken on this shared machine
    name = f"ipl-k8s-{uuid.uuid4().hex[:6]}"
    daemon.docker(
        "run",
        "-d",
        "--name",
        name,
        *_docker_run_flags(serve, host_dirs),
        "-e",
        f"IPLEDGER_METRICS_ADDR=127.0.0.1:{port}",
        "-e",
        "IPLEDGER_HOST_ID=node-a",
        "--entrypoint",
        serve["command"][0],
        image,
        *serve["command"][1:],
    )
    try:
        env = {e["name"]: e.get("value") for e in serve["env"]}
        socket_path = host_dirs["/run/ipledger"] / Path(env["IPLEDGER_SOCKET"]).name
        client = PluginClient(str(socket_path), timeout=5)
        deadline = time.monotonic() + 60
        answer = None
        while time.monotonic() < deadline:
            try:
                answer = client.call("/Plugin.Activate")
                break
            except OSError:
                time.sleep(0.3)
        logs = daemon.docker("logs", name, check=False)
        assert answer is not None, f"no answer on {socket_path}: {logs.stdout}{logs.stderr}"
        assert answer == (200, {"Implements": ["IpamDriver"]})

        # the plugin the init container installed reaches it, from the host
        network = {
            "cniVersion": "1.1.0",
            "name": "pods",
            "type": "bridge",
            "ipam": {
                "type": "ipledger",
                "ranges": [[{"subnet": "203.0.113.0/24"}]],
                "ipledger": {"socket": str(socket_path)},
            },
        }
        status = _plugin(plugin, "STATUS", network)
        assert status.returncode == 0, status.stdout + status.stderr
        added = _plugin(plugin, "ADD", network, container_id="k8s-e2e-1")
        assert added.returncode == 0, added.stdout + added.stderr
        assert json.loads(added.stdout)["ips"] == [
            {"address": "203.0.113.2/24", "gateway": "203.0.113.1"}
        ]
        deleted = _plugin(plugin, "DEL", network, container_id="k8s-e2e-1")
        assert deleted.returncode == 0, deleted.stdout + deleted.stderr
        # the ledger is on the node, in SQLite (no Secret)
        assert (host_dirs["/var/lib/ipledger"] / "ipledger.db").is_file()

        # the manifest's probes pass in the running container
        for probe in ("livenessProbe", "readinessProbe"):
            result = daemon.docker("exec", name, *serve[probe]["exec"]["command"], check=False)
            assert result.returncode == 0, f"{probe}: {result.stdout}{result.stderr}"
    finally:
        # as kubelet stops it: SIGTERM, then the grace period
        grace = str(_pod_spec()["terminationGracePeriodSeconds"])
        daemon.docker("stop", "-t", grace, name, check=False)
        daemon.docker("rm", "-f", name, check=False)
    # the socket is removed when ipledger stops
    assert not socket_path.exists()


def test_the_saved_image_imports_into_containerd_under_the_name_kubelet_asks_for(
    daemon, image, node
):
    """docs/cni.md's `docker save` and `ctr -n k8s.io images import`, on the containerd that
    this dockerd runs: the image is then known by the name a pod spec's `image: NAME:TAG`
    resolves to (docker.io/library/NAME:TAG)."""
    ctr = shutil.which("ctr")
    need(ctr is not None, "ctr not installed (apt-get install containerd)")
    sockets = sorted(daemon.root.glob("exec/**/containerd.sock"))
    need(bool(sockets), f"no containerd socket under {daemon.root}/exec")
    archive = node / "image.tar"
    daemon.docker("save", "-o", str(archive), image, timeout=600)
    env = dict(os.environ, CONTAINERD_SNAPSHOTTER="native")
    address = ["--address", str(sockets[0]), "-n", "k8s.io"]
    imported = subprocess.run(
        [str(ctr), *address, "images", "import", str(archive)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
    listed = subprocess.run(
        [str(ctr), *address, "images", "ls", "-q"], capture_output=True, text=True, check=True
    ).stdout.split()
    try:
        assert f"docker.io/library/{image}" in listed, listed
    finally:
        subprocess.run(
            [str(ctr), *address, "images", "rm", f"docker.io/library/{image}"],
            capture_output=True,
            check=False,
        )

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.engines import VERSIONS, engine
from tests.e2e.harness import DockerDaemon, PluginProcess, need


@pytest.fixture(scope="session", params=VERSIONS, ids=lambda v: f"docker-{v}")
def dockerd(request: pytest.FixtureRequest) -> Iterator[DockerDaemon]:
    """A real dockerd of each tested version in turn (one at a time: pytest groups by param)."""
    need(os.geteuid() == 0, "needs root to run dockerd")
    need(shutil.which("dockerd") is not None, "dockerd not installed (apt-get install docker.io)")
    need(os.path.exists("/bin/busybox"), "busybox-static not installed")
    try:
        found = engine(request.param)
    except (OSError, subprocess.CalledProcessError) as e:
        need(False, f"Docker {request.param} could not be fetched: {e}")
        raise
    daemon = DockerDaemon(found)
    daemon.start()
    daemon.make_busybox_image()
    yield daemon
    daemon.stop()
    daemon.cleanup()


@pytest.fixture
def plugin(tmp_path) -> Iterator[PluginProcess]:
    name = f"ipl-{uuid.uuid4().hex[:8]}"
    server = PluginProcess(name, f"sqlite:///{tmp_path}/ledger.db", tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def names(dockerd: DockerDaemon) -> Iterator[str]:
    """A unique prefix for one test's networks and containers, all removed after the test.

    Ask for it after `plugin`, so that the cleanup runs while the plugin still serves.
    """
    yield f"t{uuid.uuid4().hex[:6]}"
    dockerd.remove_all()


@pytest.fixture
def parent_links() -> Iterator[tuple[str, str]]:
    """Two parent links for macvlan networks, the ends of a veth pair (no dummy module needed)."""
    a, b = f"ipl{uuid.uuid4().hex[:6]}a", f"ipl{uuid.uuid4().hex[:6]}b"
    subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
    for end in (a, b):
        subprocess.run(["ip", "link", "set", end, "up"], check=True)
    yield a, b
    subprocess.run(["ip", "link", "del", a], check=False)

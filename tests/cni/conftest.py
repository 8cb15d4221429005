from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from driver.entrypoints.install import install_cni_plugin
from tests.cni.harness import REFERENCE_PLUGINS, Runtime, runtime
from tests.e2e.harness import PluginProcess, need


@pytest.fixture(scope="session")
def cni_plugins() -> Path:
    """The reference CNI plugins (Debian's containernetworking-plugins), run as root."""
    need(os.geteuid() == 0, "needs root to create network namespaces")
    need(
        (REFERENCE_PLUGINS / "bridge").exists(),
        "containernetworking-plugins not installed (apt-get install containernetworking-plugins)",
    )
    return REFERENCE_PLUGINS


@pytest.fixture
def ipledger_server(tmp_path: Path) -> Iterator[PluginProcess]:
    """``ipledger serve`` on a socket of its own, with an SQLite ledger."""
    server = PluginProcess(
        "ipl-cni", f"sqlite:///{tmp_path}/ledger.db", tmp_path, socket=str(tmp_path / "ipl.sock")
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cni(cni_plugins: Path, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime that finds the reference plugins and ipledger (installed by install-cni)."""
    install_cni_plugin(tmp_path / "cni-bin")
    with runtime(tmp_path / "cni-bin", cni_plugins) as done:
        yield done

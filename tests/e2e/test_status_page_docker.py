"""The status page stays right while Docker changes the ledger: a real dockerd creates networks
and containers, and the page, served by ``ipledger serve`` beside its metrics, is reloaded."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import DockerDaemon, PluginProcess, free_port

pytestmark = pytest.mark.docker


@pytest.fixture
def served(tmp_path) -> Iterator[PluginProcess]:
    port = free_port()
    server = PluginProcess(
        f"ipl-{uuid.uuid4().hex[:8]}",
        f"sqlite:///{tmp_path}/ledger.db",
        tmp_path,
        extra_env={"IPLEDGER_METRICS_ADDR": str(port)},
    )
    server.start()
    server.port = port  # type: ignore[attr-defined]
    yield server
    server.stop()


def legend(browser: Any) -> dict[str, int]:
    return {
        item.get_attribute("data-state"): int(
            item.find_element("css selector", ".count").text.replace(",", "")
        )
        for item in browser.find_elements("css selector", "#legend li")
    }


def test_the_page_follows_docker_as_it_creates_and_removes_containers(
    dockerd: DockerDaemon, served: PluginProcess, browser: Any
):
    names = f"t{uuid.uuid4().hex[:6]}"
    try:
        dockerd.docker(
            "network",
            "create",
            "--ipam-driver",
            served.name,
            "--subnet",
            "203.0.113.0/24",
            f"{names}-web",
        )
        base = f"http://127.0.0.1:{served.port}"  # type: ignore[attr-defined]
        page = f"{base}/pool/LocalDefault/203.0.113.0/24"
        browser.get(page)
        assert legend(browser)["gateway"] == 1 and legend(browser)["endpoint"] == 0
        for i in range(3):
            dockerd.docker(
                "run",
                "-d",
                "--name",
                f"{names}-c{i}",
                "--network",
                f"{names}-web",
                "busybox-local",
                "sleep",
                "600",
            )
        browser.refresh()
        assert legend(browser)["endpoint"] == 3
        shown = {
            cell.get_attribute("data-address")
            for cell in browser.find_elements("css selector", "#map rect.s-endpoint")
        }
        running = set(dockerd.running_addresses(f"{names}-web").values())
        assert shown == running
        dockerd.docker("rm", "-f", f"{names}-c1")
        browser.refresh()
        assert legend(browser)["endpoint"] == 2
        browser.get(base + "/")
        row = browser.find_element(
            "css selector", '#pools tr[data-pool="LocalDefault/203.0.113.0/24"]'
        )
        assert row.find_elements("css selector", "td")[3].text == "3"  # the gateway and two
        browser.get(f"{base}/history?pool=LocalDefault/203.0.113.0/24")
        actions = [
            r.find_elements("css selector", "td")[2].text
            for r in browser.find_elements("css selector", "#history tr.event")
        ]
        assert actions[0] == "release" and actions.count("allocate") == 4
    finally:
        dockerd.remove_all()

"""Restarts and failures of either side lose nothing: Docker's view and the ledger agree."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from tests.waiting import wait_until

pytestmark = pytest.mark.docker

IMAGE = "busybox-local:latest"


def agree(dockerd, plugin, network: str, cidr: str, gateway: str) -> dict[str, str]:
    """Assert the ledger holds exactly the gateway and the running containers' addresses."""
    running = dockerd.running_addresses(network)
    addresses = list(running.values())
    assert len(addresses) == len(set(addresses)), f"an address is held twice: {running}"
    assert plugin.leases().get(cidr, set()) == {gateway, *addresses}
    return running


def test_a_dockerd_restart_keeps_every_address_consistent(dockerd, plugin, names):
    net = f"{names}-n"
    dockerd.docker(
        "network", "create", "--ipam-driver", plugin.name, "--subnet", "198.51.100.0/24", net
    )
    for c in ("a", "b"):
        dockerd.docker(
            "run",
            "-d",
            "--restart",
            "always",
            "--name",
            f"{names}-{c}",
            "--network",
            net,
            IMAGE,
            "sleep",
            "600",
        )
    dockerd.docker("run", "-d", "--name", f"{names}-c", "--network", net, IMAGE, "sleep", "600")
    before = agree(dockerd, plugin, net, "198.51.100.0/24", "198.51.100.1")
    assert len(before) == 3

    dockerd.restart()
    wait_until(
        lambda: len(dockerd.running_addresses(net)) >= 2,
        30,
        "the --restart always containers to run again",
        0.5,
    )
    after = agree(dockerd, plugin, net, "198.51.100.0/24", "198.51.100.1")
    # the --restart always containers came back; the other one stopped and gave its address back
    assert set(after) == {f"{names}-a", f"{names}-b"}
    dockerd.docker("run", "-d", "--name", f"{names}-d", "--network", net, IMAGE, "sleep", "600")
    final = agree(dockerd, plugin, net, "198.51.100.0/24", "198.51.100.1")
    assert final[f"{names}-d"] not in after.values()


def test_a_sigkill_during_a_loop_of_docker_run_leaves_docker_and_the_ledger_agreeing(
    dockerd, plugin, names
):
    net = f"{names}-n"
    dockerd.docker(
        "network", "create", "--ipam-driver", plugin.name, "--subnet", "203.0.113.0/24", net
    )
    results: list[int] = []

    def loop() -> None:
        for i in range(12):
            r = dockerd.docker(
                "run",
                "-d",
                "--name",
                f"{names}-{i}",
                "--network",
                net,
                IMAGE,
                "sleep",
                "600",
                check=False,
            )
            results.append(r.returncode)

    runner = threading.Thread(target=loop)
    runner.start()
    wait_until(lambda: len(results) >= 3, 300, "the first three docker runs", 0.05)
    plugin.kill(signal.SIGKILL)
    time.sleep(0.5)  # not a wait: docker run keeps calling while ipledger is down a moment
    plugin.start()
    runner.join(300)
    assert not runner.is_alive()
    running = agree(dockerd, plugin, net, "203.0.113.0/24", "203.0.113.1")
    # Docker retries a call that could not connect, so the runs bridge the restart
    assert len(running) == results.count(0) >= 10


def test_while_ipledger_is_down_docker_fails_clearly_and_nothing_is_half_done(
    dockerd, plugin, names
):
    plugin.kill(signal.SIGKILL)
    result = dockerd.docker(
        "network",
        "create",
        "--ipam-driver",
        plugin.name,
        "--subnet",
        "198.51.100.0/24",
        f"{names}-down",
        check=False,
    )
    assert result.returncode != 0
    assert f"/run/docker/plugins/{plugin.name}.sock" in result.stderr
    assert f"{names}-down" not in dockerd.docker("network", "ls", "--format", "{{.Name}}").stdout
    plugin.start()
    assert plugin.leases() == {}
    dockerd.docker(
        "network",
        "create",
        "--ipam-driver",
        plugin.name,
        "--subnet",
        "198.51.100.0/24",
        f"{names}-down",
    )

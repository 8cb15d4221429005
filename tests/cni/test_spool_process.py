"""DEL while ``ipledger serve`` is down: the real ``ipledger-cni`` process spools the release on
the node and answers success; the real server applies the spool when it is back. The bridge
plugin removes the veth before it calls IPAM DEL, so a DEL that fails is retried without the veth
and the ipMasq NAT chain is never removed: DEL must not fail. No root needed: the quick lane."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import PluginProcess

ROOT = Path(__file__).parents[2]


def plugin(command: str, conf: dict[str, Any], container: str, ifname: str = "eth0") -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "driver.entrypoints.cni_plugin"],
        input=json.dumps(conf).encode(),
        capture_output=True,
        env={
            "PATH": "/usr/bin:/bin",
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container,
            "CNI_IFNAME": ifname,
            "CNI_NETNS": "/var/run/netns/none",
            "CNI_PATH": "/nowhere",
        },
        timeout=60,
        cwd=ROOT,
    )
    assert b"Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "driver", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def node(tmp_path: Path) -> Iterator[dict[str, Any]]:
    spool = tmp_path / "spool"
    env = dict(os.environ, IPLEDGER_CNI_SPOOL=str(spool), IPLEDGER_DB=f"sqlite:///{tmp_path}/l.db")
    server = PluginProcess(
        "h-spool",
        env["IPLEDGER_DB"],
        tmp_path,
        extra_env={"IPLEDGER_CNI_SPOOL": str(spool)},
        socket=str(tmp_path / "ipl.sock"),
    )
    server.start()
    conf = {
        "cniVersion": "1.0.0",
        "name": "spooled",
        "type": "bridge",
        "ipam": {
            "type": "ipledger",
            "ranges": [[{"subnet": "203.0.113.0/24", "gateway": "203.0.113.1"}]],
            "ipledger": {"socket": server.socket, "spool": str(spool)},
        },
    }
    yield {"server": server, "conf": conf, "spool": spool, "env": env}
    server.stop()


def test_a_del_while_the_server_is_down_succeeds_shows_pending_and_is_applied_at_start(node):
    server, conf, env = node["server"], node["conf"], node["env"]
    code, result = plugin("ADD", conf, "pod-a")
    assert code == 0 and result["ips"][0]["address"] == "203.0.113.2/24"
    server.stop()

    code, answer = plugin("DEL", conf, "pod-a")
    assert (code, answer) == (0, None)
    # the retry a runtime makes succeeds as well, and the release is recorded once
    assert plugin("DEL", conf, "pod-a") == (0, None)
    assert len([p for p in node["spool"].iterdir() if p.suffix == ".del"]) == 1
    # CHECK and ADD still say: try again later
    assert plugin("CHECK", conf, "pod-a")[1]["code"] == 11
    assert plugin("ADD", conf, "pod-b")[1]["code"] == 11

    shown = cli(env, "leases", "203.0.113.0/24")
    line = next(line for line in shown.splitlines() if line.startswith("203.0.113.2 "))
    assert "release pending" in line, shown

    server.start()
    assert "203.0.113.2" not in server.leases()["203.0.113.0/24"]
    assert [p for p in node["spool"].iterdir() if p.suffix in (".del", ".applying")] == []
    history = cli(env, "history", "203.0.113.2")
    assert "spool-release" in history and "203.0.113.2" in history, history


def test_an_add_on_a_running_server_applies_the_networks_spool_first(node, tmp_path):
    """A DEL spooled in a spool directory the server does not read at start (the conflist
    names it): the next ADD of the network applies it first, so the re-created attachment gets
    a lease of its own, and the spool is empty."""
    server, conf = node["server"], node["conf"]
    other = tmp_path / "other-spool"
    own = {"socket": server.socket, "spool": str(other)}
    named = dict(conf, ipam=dict(conf["ipam"], ipledger=own))
    assert plugin("ADD", named, "pod-a")[0] == 0
    server.stop()
    assert plugin("DEL", named, "pod-a") == (0, None)
    assert plugin("ADD", named, "pod-a")[1]["code"] == 11
    server.start()
    assert len(list(other.glob("*.del"))) == 1  # not the server's spool: left at start
    code, result = plugin("ADD", named, "pod-b")
    assert code == 0 and result["ips"][0]["address"] == "203.0.113.2/24"  # pod-a's, released
    assert list(other.iterdir()) == []
    code, result = plugin("ADD", named, "pod-a")
    assert code == 0 and result["ips"][0]["address"] == "203.0.113.3/24"
    assert plugin("CHECK", named, "pod-a") == (0, None)

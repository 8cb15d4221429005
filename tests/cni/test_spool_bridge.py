"""The reference ``bridge`` plugin with ``ipMasq: true`` and ipledger as its IPAM, DEL while
``ipledger serve`` is down. The bridge plugin (1.1.1) removes the container's veth, then calls
IPAM DEL, then removes the NAT chain of the addresses it read from the veth: when IPAM DEL
failed, the runtime's retry found no veth and the chain and its POSTROUTING rule stayed on the
node for good. ipledger-cni now spools the release and answers success. Needs root, iptables."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from driver.adapters.spool import Spool
from driver.storage.store import open_store
from driver.usecases.admin import Admin
from tests.cni.harness import Runtime, bridge_config
from tests.e2e.harness import PluginProcess, need

V4 = [{"subnet": "203.0.113.0/24", "rangeStart": "203.0.113.10", "rangeEnd": "203.0.113.40"}]
V4_POOL = "LocalDefault/203.0.113.0/24/203.0.113.10-203.0.113.40"


def nat_rules(container: str) -> list[str]:
    """The POSTROUTING rules (and the chains) the bridge plugin made for ``container``."""
    out = subprocess.run(
        ["iptables", "-w", "-t", "nat", "-S"], check=True, capture_output=True, text=True
    ).stdout
    # iptables -S escapes the comment's quotes: id: \"CONTAINER\"
    return [line for line in out.splitlines() if f'id: \\"{container}\\"' in line]


def remove_nat(container: str) -> None:
    """Clean up after a failed run: the rules and chains named for ``container``."""
    for rule in nat_rules(container):
        fields = rule.split()
        if fields[0] == "-A":
            subprocess.run(["iptables", "-w", "-t", "nat", "-D", *_unquoted(rule)[1:]])
            if "-j" in fields:
                chain = fields[fields.index("-j") + 1]
                if chain.startswith("CNI-"):
                    subprocess.run(["iptables", "-w", "-t", "nat", "-F", chain])
                    subprocess.run(["iptables", "-w", "-t", "nat", "-X", chain])


def _unquoted(rule: str) -> list[str]:
    import shlex

    return shlex.split(rule)


@pytest.fixture
def node(cni: Runtime, tmp_path: Path) -> Iterator[dict[str, object]]:
    need(shutil.which("iptables") is not None, "iptables not installed")
    spool = tmp_path / "spool"
    server = PluginProcess(
        "h-spool",
        f"sqlite:///{tmp_path}/ledger.db",
        tmp_path,
        extra_env={"IPLEDGER_CNI_SPOOL": str(spool)},
        socket=str(tmp_path / "ipl.sock"),
    )
    server.start()
    tag = uuid.uuid4().hex[:6]
    bridge, netns, container = f"iplcnis{tag}", f"iplcnis-{tag}", f"h-spool-{tag}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    cni.namespaces.append(netns)
    cni.links.append(bridge)
    config = bridge_config(f"spool-{tag}", bridge, [V4], socket=server.socket, spool=str(spool))
    config["ipMasq"] = True
    try:
        yield {
            "server": server,
            "config": config,
            "netns": netns,
            "container": container,
            "spool": spool,
        }
    finally:
        server.stop()
        remove_nat(container)


def test_a_del_while_the_server_is_down_succeeds_and_leaves_no_nat_chain_on_the_node(cni, node):
    server, config = node["server"], node["config"]
    netns, container = str(node["netns"]), str(node["container"])
    assert isinstance(server, PluginProcess) and isinstance(config, dict)
    added = cni.run("bridge", "ADD", config, container, netns)
    assert added.code == 0, added.answer
    assert added.answer["ips"][0]["address"] == "203.0.113.10/24"
    assert any("POSTROUTING" in rule and "203.0.113.10" in rule for rule in nat_rules(container))

    server.stop()
    first = cni.run("bridge", "DEL", config, container, netns)
    spooled = [r.attachment for r in Spool(str(node["spool"])).pending()]
    server.start()
    if first.code != 0:  # what the runtime does: DEL again, later (its veth gone by now)
        cni.run("bridge", "DEL", config, container, netns)

    assert nat_rules(container) == [], json.dumps(first.answer)
    assert first.code == 0, first.answer
    assert spooled == [f"{config['name']}/{container}/eth0"]
    store = open_store(server.db_url)
    try:
        admin = Admin(store)
        kinds = [line.kind for line in admin.reports.addresses(V4_POOL) if line.state == "leased"]
        history = admin.reports.history(address="203.0.113.10")
    finally:
        store.dispose()
    assert kinds == ["gateway"]
    assert "spool-release" in [event.action for event in history]
    assert list(Path(str(node["spool"])).glob("*.del")) == []

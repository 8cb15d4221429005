"""Older conflists with Debian's bridge plugin (1.1.1, CNI 0.1.0 to 1.0.0) delegating to ipledger:
a 0.3.1 conflist as a runtime runs it (libcni puts the list's name and cniVersion in the plugin's
config), and single 0.2.0 and 0.1.0 configs. Names start with ``iplcniv`` (never another
test's: theirs are ``iplcni`` and hexadecimal)."""

from __future__ import annotations

import subprocess
import uuid
from typing import Any

import pytest

from tests.cni.harness import Runtime
from tests.cni.test_bridge import V4, V4_POOL, V6, leased


@pytest.fixture
def bridge(cni: Runtime) -> str:
    name = f"iplcniv{uuid.uuid4().hex[:6]}"
    cni.links.append(name)
    return name


def netns(cni: Runtime) -> str:
    name = f"iplcniv-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    cni.namespaces.append(name)
    return name


def conflist(version: str, bridge: str, socket: str, *range_sets: list[dict[str, Any]]) -> dict:
    """A conflist as written in /etc/cni/net.d, the bridge plugin's entry with ipledger's ipam."""
    return {
        "cniVersion": version,
        "name": "old",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": False,
                "ipam": {
                    "type": "ipledger",
                    "ranges": list(range_sets),
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dns": {"nameservers": ["192.0.2.53"]},
                    "ipledger": {"socket": socket},
                },
            },
            {"type": "tuning", "sysctl": {}},
        ],
    }


def plugin_config(listed: dict[str, Any], index: int = 0) -> dict[str, Any]:
    """What libcni hands a conflist's plugin: its entry, with the list's name and cniVersion."""
    return dict(listed["plugins"][index], name=listed["name"], cniVersion=listed["cniVersion"])


def test_a_0_3_1_conflist_runs_add_and_del_through_the_bridge_in_0_3_1s_format(
    cni, bridge, ipledger_server
):
    listed = conflist("0.3.1", bridge, ipledger_server.socket, V4, V6)
    config = plugin_config(listed)
    ns = netns(cni)
    outcome = cni.run("bridge", "ADD", config, "ctr-1", ns)
    assert outcome.code == 0, outcome.answer
    assert outcome.answer["cniVersion"] == "0.3.1"
    assert [(ip["version"], ip["address"]) for ip in outcome.answer["ips"]] == [
        ("4", "203.0.113.10/24"),
        ("6", "2001:db8:c1::2/64"),
    ]
    assert cni.addresses_in(ns) == ["203.0.113.10/24", "2001:db8:c1::2/64"]
    assert [a for a, kind, _ in leased(ipledger_server, V4_POOL) if kind == "cni"] == [
        "203.0.113.10"
    ]
    # the chain's next plugin gets the bridge's result as prevResult, as libcni passes it on
    tuned = dict(plugin_config(listed, 1), prevResult=outcome.answer)
    assert cni.run("tuning", "ADD", tuned, "ctr-1", ns).code == 0
    # DEL in the list's order reversed, as libcni runs it; the lease goes
    assert cni.run("tuning", "DEL", plugin_config(listed, 1), "ctr-1", ns).code == 0
    deleted = cni.run("bridge", "DEL", config, "ctr-1", ns)
    assert deleted.code == 0, deleted.answer
    assert leased(ipledger_server, V4_POOL) == [("203.0.113.1", "gateway", None)]
    assert cni.run("bridge", "DEL", config, "ctr-1", ns).code == 0  # again: still fine


@pytest.mark.parametrize("version", ["0.2.0", "0.1.0"])
def test_a_single_config_of_0_2_0_or_0_1_0_gives_the_container_its_address(
    cni, bridge, ipledger_server, version
):
    listed = conflist(version, bridge, ipledger_server.socket, V4, V6)
    config = plugin_config(listed)  # a .conf file: the network config itself
    ns = netns(cni)
    outcome = cni.run("bridge", "ADD", config, "ctr-1", ns)
    assert outcome.code == 0, outcome.answer
    assert outcome.answer["cniVersion"] == version
    assert outcome.answer["ip4"]["ip"] == "203.0.113.10/24"
    assert outcome.answer["ip6"]["ip"] == "2001:db8:c1::2/64"
    assert cni.addresses_in(ns) == ["203.0.113.10/24", "2001:db8:c1::2/64"]
    deleted = cni.run("bridge", "DEL", config, "ctr-1", ns)
    assert deleted.code == 0, deleted.answer
    assert leased(ipledger_server, V4_POOL) == [("203.0.113.1", "gateway", None)]


def test_check_on_a_0_3_1_config_is_code_1_as_host_local_answers_it(cni, ipledger_server):
    config = plugin_config(conflist("0.3.1", "unused0", ipledger_server.socket, V4))
    ns = netns(cni)
    ours = cni.run("ipledger", "CHECK", config, "ctr-1", ns)
    theirs = cni.run(
        "host-local",
        "CHECK",
        dict(config, ipam={"type": "host-local", "ranges": [V4], "dataDir": "/nonexistent"}),
        "ctr-1",
        ns,
    )
    assert (ours.code, ours.error_code) == (theirs.code, theirs.error_code) == (1, 1)
    assert ours.answer["cniVersion"] == "0.3.1"
    assert "CHECK is not in CNI 0.3.1" in ours.answer["msg"]


def test_ipledger_answers_the_configured_dns_where_host_local_answers_none(
    cni, ipledger_server, tmp_path
):
    config = plugin_config(conflist("0.3.1", "unused0", ipledger_server.socket, V4))
    ns = netns(cni)
    ours = cni.run("ipledger", "ADD", config, "ctr-dns", ns)
    host_local = {"type": "host-local", "ranges": [V4], "dataDir": str(tmp_path / "host-local")}
    host_local.update(routes=config["ipam"]["routes"], dns=config["ipam"]["dns"])
    theirs = cni.run("host-local", "ADD", dict(config, ipam=host_local), "ctr-dns", ns)
    assert (ours.code, theirs.code) == (0, 0), (ours.answer, theirs.answer)
    assert ours.answer["dns"] == {"nameservers": ["192.0.2.53"]}
    assert theirs.answer["dns"] == {}
    # the same result otherwise, in 0.3.1's format
    assert dict(ours.answer, dns={}) == theirs.answer

"""The reference ``bridge`` plugin delegating to ipledger, in network namespaces, as containerd
runs it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from driver.storage.store import open_store
from driver.usecases.admin import Admin
from tests.cni.harness import Runtime, bridge_config
from tests.e2e.harness import PluginProcess
from tests.waiting import wait_until

V4 = [{"subnet": "203.0.113.0/24", "rangeStart": "203.0.113.10", "rangeEnd": "203.0.113.40"}]
V6 = [{"subnet": "2001:db8:c1::/64"}]
V4_POOL = "LocalDefault/203.0.113.0/24/203.0.113.10-203.0.113.40"


@pytest.fixture
def bridge(cni: Runtime) -> str:
    name = f"iplcni{uuid.uuid4().hex[:6]}"
    cni.links.append(name)
    return name


def leased(server: PluginProcess, pool_id: str) -> list[tuple[str, str | None, str | None]]:
    store = open_store(server.db_url)
    try:
        lines = Admin(store).reports.addresses(pool_id)
    finally:
        store.dispose()
    return [(line.address, line.kind, line.detail) for line in lines if line.state == "leased"]


def sent_and_waiting(plugin: Path) -> bool:
    """Whether a process running ``plugin`` has a connected unix socket whose sent bytes no one
    has read yet: it has sent its call and waits for the answer."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):  # a process that ended meanwhile
            if str(plugin).encode() in cmdline.read_bytes():
                pids.append(cmdline.parent.name)
    # with a state filter, ss leaves out the State column: Netid Recv-Q Send-Q ...
    sockets = subprocess.run(["ss", "-xpH", "state", "established"], capture_output=True, text=True)
    return any(
        int(line.split()[2]) > 0 and any(f"pid={pid}," in line for pid in pids)
        for line in sockets.stdout.splitlines()
    )


def added(cni: Runtime, config: dict[str, Any], container: str, netns: str) -> dict[str, Any]:
    outcome = cni.run("bridge", "ADD", config, container, netns)
    assert outcome.code == 0, outcome.answer
    return outcome.answer


def test_add_check_and_del_round_trip_and_the_container_has_the_address_ipledger_recorded(
    cni, bridge, ipledger_server
):
    config = bridge_config("blue", bridge, [V4], socket=ipledger_server.socket)
    netns = cni.netns()
    result = added(cni, config, "ctr-1", netns)
    assert [ip["address"] for ip in result["ips"]] == ["203.0.113.10/24"]
    assert cni.addresses_in(netns) == ["203.0.113.10/24"]
    assert leased(ipledger_server, V4_POOL) == [
        ("203.0.113.1", "gateway", None),
        ("203.0.113.10", "cni", "CNI blue/ctr-1/eth0"),
    ]
    check = cni.run("bridge", "CHECK", dict(config, prevResult=result), "ctr-1", netns)
    assert check.code == 0, check.answer
    assert cni.run("bridge", "DEL", config, "ctr-1", netns).code == 0
    assert cni.run("bridge", "DEL", config, "ctr-1", netns).code == 0  # again: still fine
    assert leased(ipledger_server, V4_POOL) == [("203.0.113.1", "gateway", None)]
    # CHECK of an attachment that holds nothing: the IPAM plugin, as the runtime runs it
    gone = cni.run("ipledger", "CHECK", config, "ctr-1", netns)
    assert (gone.code, gone.error_code) == (1, 3)


def test_dual_stack_gives_the_container_an_address_of_each_family(cni, bridge, ipledger_server):
    config = bridge_config("dual", bridge, [V4, V6], socket=ipledger_server.socket)
    netns = cni.netns()
    added(cni, config, "ctr-1", netns)
    assert cni.addresses_in(netns) == ["203.0.113.10/24", "2001:db8:c1::2/64"]


def test_many_containers_get_distinct_addresses_until_the_range_is_full(
    cni, bridge, ipledger_server
):
    small = [{"subnet": "203.0.113.0/24", "rangeStart": "203.0.113.10", "rangeEnd": "203.0.113.12"}]
    config = bridge_config("small", bridge, [small], socket=ipledger_server.socket)
    namespaces = [cni.netns() for _ in range(4)]
    got = [
        added(cni, config, f"ctr-{i}", netns)["ips"][0]["address"]
        for i, netns in enumerate(namespaces[:3])
    ]
    assert got == ["203.0.113.10/24", "203.0.113.11/24", "203.0.113.12/24"]
    full = cni.run("bridge", "ADD", config, "ctr-3", namespaces[3])
    assert full.code != 0 and full.error_code == 100, full.answer
    assert cni.run("bridge", "DEL", config, "ctr-3", namespaces[3]).code == 0  # as runtimes do
    assert cni.run("bridge", "DEL", config, "ctr-1", namespaces[1]).code == 0
    assert added(cni, config, "ctr-3", namespaces[3])["ips"][0]["address"] == "203.0.113.11/24"


def test_a_repeated_add_answers_the_same_lease_and_gc_releases_what_the_runtime_no_longer_has(
    cni, ipledger_server
):
    config = bridge_config("gcnet", "unused0", [V4], version="1.1.0", socket=ipledger_server.socket)
    first = cni.run("ipledger", "ADD", config, "ctr-1")
    assert cni.run("ipledger", "ADD", config, "ctr-1").answer == first.answer
    cni.run("ipledger", "ADD", config, "ctr-2")
    valid = {"cni.dev/valid-attachments": [{"containerID": "ctr-2", "ifname": "eth0"}]}
    assert cni.run("ipledger", "GC", dict(config, **valid), "").code == 0
    assert [a for a, kind, _ in leased(ipledger_server, V4_POOL) if kind == "cni"] == [
        "203.0.113.11"
    ]


def test_with_the_server_stopped_add_fails_with_try_again_later_naming_the_socket_and_status_50(
    cni, bridge, ipledger_server
):
    config = bridge_config("down", bridge, [V4], socket=ipledger_server.socket)
    # STATUS is CNI 1.1's, which Debian's bridge predates: the runtime asks ipledger itself
    status_config = dict(config, cniVersion="1.1.0")
    assert cni.run("ipledger", "STATUS", status_config, "").code == 0
    ipledger_server.stop()
    netns = cni.netns()
    outcome = cni.run("bridge", "ADD", config, "ctr-1", netns)
    assert outcome.code != 0 and outcome.error_code == 11, outcome.answer
    assert ipledger_server.socket in outcome.answer["msg"]
    status = cni.run("ipledger", "STATUS", status_config, "")
    assert (status.code, status.error_code) == (1, 50)
    ipledger_server.start()
    assert cni.run("bridge", "DEL", config, "ctr-1", netns).code == 0  # the runtime cleans up
    # Debian's bridge (1.1.1) cannot reuse a bridge whose first ADD failed before it got its
    # address ("could not set bridge's mac"): start from a new one, as a new node would
    subprocess.run(["ip", "link", "del", bridge], check=True)
    assert added(cni, config, "ctr-1", netns)["ips"][0]["address"] == "203.0.113.10/24"


def test_a_server_killed_in_the_middle_of_an_add_gets_try_again_later_and_leaks_nothing(
    cni, bridge, ipledger_server
):
    config = bridge_config("midway", bridge, [V4], socket=ipledger_server.socket)
    netns = cni.netns()
    assert ipledger_server.process is not None
    os.killpg(ipledger_server.process.pid, signal.SIGSTOP)  # it accepts nothing more
    with ThreadPoolExecutor(1) as background:
        pending = background.submit(cni.run, "bridge", "ADD", config, "ctr-1", netns)
        try:
            wait_until(
                lambda: sent_and_waiting(cni.plugin_dirs[0] / "ipledger"),
                30,
                "ipledger's CNI plugin to send its ADD to the stopped server",
            )
        finally:  # a stopped server would outlive a failed wait
            ipledger_server.kill(signal.SIGKILL)
        outcome = pending.result(timeout=30)
    assert outcome.code != 0 and outcome.error_code == 11, outcome.answer
    ipledger_server.start()
    assert cni.run("bridge", "DEL", config, "ctr-1", netns).code == 0  # as the runtime does
    store = open_store(ipledger_server.db_url)
    try:
        assert Admin(store).reports.pools() == []  # the ADD wrote nothing, not even its pool
    finally:
        store.dispose()
    subprocess.run(["ip", "link", "del", bridge], check=True)  # see the test above
    assert added(cni, config, "ctr-1", netns)["ips"][0]["address"] == "203.0.113.10/24"


def test_del_after_a_server_restart_releases_the_lease(cni, bridge, ipledger_server):
    config = bridge_config("restart", bridge, [V4], socket=ipledger_server.socket)
    netns = cni.netns()
    added(cni, config, "ctr-1", netns)
    ipledger_server.stop()
    ipledger_server.start()
    assert cni.run("bridge", "DEL", config, "ctr-1", netns).code == 0
    assert [kind for _, kind, _ in leased(ipledger_server, V4_POOL)] == ["gateway"]


def test_a_bad_config_fails_with_code_7_naming_the_field(cni, bridge, ipledger_server):
    bad = [{"subnet": "203.0.113.0/24", "rangeStart": "198.51.100.10"}]
    config = bridge_config("bad", bridge, [bad], socket=ipledger_server.socket)
    outcome = cni.run("bridge", "ADD", config, "ctr-1", cni.netns())
    assert outcome.error_code == 7, outcome.answer
    assert "ipam.ranges[0][0].rangeStart" in outcome.answer["msg"]


def test_install_cni_writes_an_executable_plugin_that_answers_version(cni, tmp_path: Path):
    version = cni.run("ipledger", "VERSION", {"cniVersion": "1.0.0"}, "")
    assert version.answer == {
        "cniVersion": "1.0.0",
        "supportedVersions": ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    }

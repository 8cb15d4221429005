"""containerd's CRI plugin runs pod sandboxes on a bridge network whose IPAM is ipledger,
driven over gRPC as kubelet drives it (Debian's containerd 1.6, trixie's 1.7, sid's 2.1)."""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.waiting import wait_until

pytestmark = [pytest.mark.full, pytest.mark.slow]


def test_a_pod_gets_the_address_the_ledger_leases_it_and_deleting_the_pod_releases_it(node):
    sandbox = node.cri.run("web-0", namespace="shop")
    ip = node.cri.ip(sandbox)
    assert node.leases() == {ip: f"CNI {node.network}/{sandbox}/eth0"}
    assert node.cri.status(sandbox).state == node.cri.api.SANDBOX_READY

    node.cri.stop(sandbox)
    assert node.leases() == {}
    assert node.nat_rules() == []
    node.cri.remove(sandbox)
    assert node.leases() == {}
    assert node.cri.sandboxes() == []


def run_pods(cri, names, namespace="default"):
    """RunPodSandbox for each name, four at a time as kubelet's pod workers do; name -> ID."""
    with ThreadPoolExecutor(4) as pool:
        ids = pool.map(lambda name: cri.run(name, namespace=namespace), names)
        return dict(zip(names, ids, strict=True))


def delete_pods(cri, sandboxes):
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(cri.delete, sandboxes))


def addresses(cri, sandboxes):
    """sandbox ID -> the pod's address, as PodSandboxStatus reports it."""
    return {sandbox: cri.ip(sandbox) for sandbox in sandboxes}


def attachments(node, pods):
    """What the ledger should hold for these pods: address -> attachment."""
    return {ip: f"CNI {node.network}/{sandbox}/eth0" for sandbox, ip in pods.items()}


def test_pods_keep_their_leases_across_an_ipledger_restart_and_a_new_pod_gets_a_free_address(
    node,
):
    before = addresses(node.cri, run_pods(node.cri, ["a", "b", "c"]).values())
    node.server.kill()  # as a crash or an upgrade does
    node.server.start()
    assert node.leases() == attachments(node, before)

    after = addresses(node.cri, run_pods(node.cri, ["d", "e"]).values())
    both = before | after
    assert len(set(both.values())) == 5  # no address twice
    assert node.leases() == attachments(node, both)
    delete_pods(node.cri, both)
    assert node.leases() == {}


def test_pods_keep_their_leases_and_addresses_across_a_containerd_restart(node):
    pods = addresses(node.cri, run_pods(node.cri, ["a", "b", "c"]).values())
    node.containerd.restart()
    assert addresses(node.cri, pods) == pods  # containerd reads them back from its store
    assert all(node.cri.status(sandbox).state == node.cri.api.SANDBOX_READY for sandbox in pods)
    assert node.leases() == attachments(node, pods)

    more = addresses(node.cri, run_pods(node.cri, ["d"]).values())
    assert set(more.values()).isdisjoint(pods.values())
    delete_pods(node.cri, [*pods, *more])
    assert node.leases() == {}
    assert node.nat_rules() == []


def test_statefulset_pods_get_their_addresses_back_through_churn_with_hold_by_pod(make_node):
    """StatefulSet pods web-0...web-9 deleted and recreated under their names (new UIDs, new
    sandboxes) get the addresses they had, and a pod of another name created between two rounds
    never takes one of those held addresses. 100 StatefulSet pods in all on Debian's containerd
    1.6 (some 80 s here), 30 on the others; IPLEDGER_CRI_CHURN sets the number for all."""
    node = make_node(hold="10m", hold_by="pod")
    names = [f"web-{i}" for i in range(10)]
    default = "100" if node.release.wanted == "1.6" else "30"
    rounds = max(1, int(os.environ.get("IPLEDGER_CRI_CHURN", default)) // len(names))
    first = run_pods(node.cri, names, namespace="shop")
    owned = {name: node.cri.ip(sandbox) for name, sandbox in first.items()}
    assert len(set(owned.values())) == len(names)
    assert node.leases() == attachments(node, addresses(node.cri, first.values()))
    pods, others = first, set()
    for round_ in range(1, rounds):
        delete_pods(node.cri, pods.values())
        assert node.leases() == {}
        other = node.cri.run(f"job-{round_}", namespace="shop")
        others.add(node.cri.ip(other))
        assert others.isdisjoint(owned.values())
        pods = run_pods(node.cri, names, namespace="shop")
        assert {name: node.cri.ip(sandbox) for name, sandbox in pods.items()} == owned
        node.cri.delete(other)
        assert node.leases() == attachments(node, addresses(node.cri, pods.values()))
    delete_pods(node.cri, pods.values())
    held = {line.address for line in node.lines() if line.state == "held"}
    assert held == set(owned.values()) | others  # each held for its pod's name


@pytest.fixture
def shared_ledger(postgres):
    """One PostgreSQL database for the nodes of a cluster (created before their servers, so
    dropped after them)."""
    url = postgres.new_database()
    yield url
    postgres.drop_database(url)


def test_two_nodes_drawing_from_one_shared_pool_never_give_an_address_twice(
    shared_ledger, make_node
):
    network = f"pods-{uuid.uuid4().hex[:6]}"  # the cluster's pod network, on both nodes
    nodes = [
        make_node(
            f"n{i}",
            db_url=shared_ledger,
            env={"IPLEDGER_HOST_ID": f"node-{i}"},
            network=network,
            shared=network,
        )
        for i in (1, 2)
    ]
    with ThreadPoolExecutor(2) as pool:
        placed = list(
            pool.map(lambda n: run_pods(n.cri, [f"{n.server.name}-{i}" for i in range(6)]), nodes)
        )
    pods = {}
    for node, sandboxes in zip(nodes, placed, strict=True):
        pods |= addresses(node.cri, sandboxes.values())
    assert len(set(pods.values())) == 12
    assert nodes[0].leases() == nodes[1].leases() == attachments(nodes[0], pods)

    # churn on one node while the other adds pods
    with ThreadPoolExecutor(2) as pool:
        deleted = pool.submit(delete_pods, nodes[0].cri, placed[0].values())
        added = pool.submit(run_pods, nodes[1].cri, [f"more-{i}" for i in range(4)])
        deleted.result()
        more = addresses(nodes[1].cri, added.result().values())
    live = {s: ip for s, ip in pods.items() if s not in placed[0].values()} | more
    assert len(set(live.values())) == 10
    assert nodes[0].leases() == attachments(nodes[0], live)


def test_a_pod_stopped_while_ipledger_serve_is_down_stops_and_its_lease_is_released_once_serve_is_back(
    node,
):
    sandbox = node.cri.run("web-0")
    assert node.nat_rules()  # the bridge plugin's ipMasq chain for the pod
    node.server.stop()
    try:
        node.cri.stop(sandbox)  # kubelet's call must succeed
    finally:
        node.server.start()
    wait_until(lambda: node.leases() == {}, 10, "the stopped pod's lease to be released", 0.2)
    assert node.nat_rules() == []
    node.cri.remove(sandbox)

"""deploy/kubernetes: every manifest holds against Kubernetes' own schemas, offline.

The schemas are the ones kubernetes-validate ships (strict: an unknown or misspelt field is an
error, as `kubectl apply --validate=strict` makes it); nothing is fetched. The DaemonSet is also
held to what ipledger and the node need of it, and the example conflists to ipledger's config.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import kubernetes_validate  # the test extra: pip install -e '.[test]'
import pytest
import yaml

from driver.domain.cni import parse_network

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
# the oldest Kubernetes still in the field that these manifests are held to, and the newest
# the package ships
VERSIONS = ("1.30", "1.33")
MANIFESTS = sorted(DEPLOY.glob("*.yaml"))


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _daemonset() -> dict[str, Any]:
    (found,) = [d for p in MANIFESTS for d in _documents(p) if d["kind"] == "DaemonSet"]
    return found


def test_there_are_manifests_to_validate():
    assert {p.name for p in MANIFESTS} >= {"daemonset.yaml", "secret-postgres.example.yaml"}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_each_manifest_validates_against_the_kubernetes_schemas_offline(path, version, monkeypatch):
    # no network at all: a schema fetched from somewhere would fail here
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the validation tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    for document in _documents(path):
        validated = kubernetes_validate.validate(document, version, strict=True)
        assert validated == version, f"{path.name} validated against {validated}, not {version}"


def test_a_manifest_with_a_misspelt_field_is_caught_so_the_validation_can_fail():
    document = _daemonset()
    document["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(document, VERSIONS[0], strict=True)


def _containers(kind: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in _daemonset()["spec"]["template"]["spec"][kind]}


def _mounts(container: dict[str, Any]) -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}


def _host_paths() -> dict[str, str]:
    volumes = _daemonset()["spec"]["template"]["spec"]["volumes"]
    return {v["name"]: v["hostPath"]["path"] for v in volumes if "hostPath" in v}


def test_the_daemonset_serves_on_the_node_network_with_its_socket_on_the_node():
    spec = _daemonset()["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True  # the pod network's IPAM cannot wait for the pod network
    assert {"operator": "Exists"} in spec["tolerations"]
    serve = _containers("containers")["ipledger"]
    env = {e["name"]: e for e in serve["env"]}
    socket_path = env["IPLEDGER_SOCKET"]["value"]
    assert _host_paths()[_mounts(serve)[str(Path(socket_path).parent)]] == str(
        Path(socket_path).parent
    )
    # the example conflists name that socket
    for conflist in DEPLOY.glob("cni/*.conflist"):
        ipam = json.loads(conflist.read_text())["plugins"][0]["ipam"]
        assert ipam["ipledger"]["socket"] == socket_path, conflist.name


def test_the_daemonset_takes_the_database_from_an_optional_secret_and_keeps_sqlite_on_the_node():
    serve = _containers("containers")["ipledger"]
    env = {e["name"]: e for e in serve["env"]}
    ref = env["IPLEDGER_DB"]["valueFrom"]["secretKeyRef"]
    assert ref["optional"] is True
    (secret,) = _documents(DEPLOY / "secret-postgres.example.yaml")
    assert (secret["metadata"]["name"], secret["metadata"]["namespace"]) == (
        ref["name"],
        _daemonset()["metadata"]["namespace"],
    )
    assert secret["stringData"][ref["key"]].startswith("postgresql+psycopg://")
    # without the Secret: the default SQLite ledger, on the node
    assert _host_paths()[_mounts(serve)["/var/lib/ipledger"]] == "/var/lib/ipledger"


def test_the_daemonset_mounts_the_cni_spool_where_the_node_plugin_writes_it():
    serve = _containers("containers")["ipledger"]
    env = {e["name"]: e.get("value") for e in serve["env"]}
    spool = "/var/lib/ipledger/cni-spool"
    # the same path in the container and on the node: the plugin runs on the node
    assert spool in env.values()
    assert _host_paths()[_mounts(serve)[spool]] == spool


def test_the_init_container_installs_a_self_contained_plugin_into_the_nodes_cni_bin():
    init = _containers("initContainers")["install-cni"]
    command = init["command"]
    assert command[:3] == ["ipledger", "install-cni", "--self-contained"]
    assert _host_paths()[_mounts(init)[command[-1]]] == "/opt/cni/bin"


def test_both_containers_run_the_same_image_with_a_read_only_root_and_no_capabilities():
    containers = [*_containers("initContainers").values(), *_containers("containers").values()]
    assert len({c["image"] for c in containers}) == 1
    for c in containers:
        context = c["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        assert context.get("privileged", False) is False


@pytest.mark.parametrize("name", ["10-ipledger.conflist", "10-ipledger-0.3.1.conflist"])
def test_the_example_conflists_are_a_bridge_whose_ipam_is_ipledger(name):
    conflist = json.loads((DEPLOY / "cni" / name).read_text())
    bridge = conflist["plugins"][0]
    assert bridge["type"] == "bridge" and bridge["ipam"]["type"] == "ipledger"
    # ipledger reads the IPAM section as it would at ADD (the version aside: 0.3.1 is the
    # variant for runtimes whose other conflists say 0.3.1)
    network = parse_network(dict(bridge, cniVersion="1.0.0", name=conflist["name"]))
    assert network.name == "pods"


def test_the_conflist_variants_differ_only_in_their_cni_version():
    versions = {}
    for name in ("10-ipledger.conflist", "10-ipledger-0.3.1.conflist"):
        conflist = json.loads((DEPLOY / "cni" / name).read_text())
        versions[conflist.pop("cniVersion")] = conflist
    assert set(versions) == {"1.0.0", "0.3.1"}
    assert versions["1.0.0"] == versions["0.3.1"]

"""containerd's CRI plugin runs pod sandboxes on a bridge network whose IPAM is ipledger,
driven over gRPC as kubelet drives it (Debian's containerd 1.6, trixie's 1.7, sid's 2.1)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.full, pytest.mark.slow]


def test_a_pod_gets_the_address_the_ledger_leases_it_and_deleting_the_pod_releases_it(node):
    sandbox = node.cri.run("web-0", namespace="shop")
    ip = node.cri.ip(sandbox)
    assert node.leases() == {ip: f"CNI pods/{sandbox}/eth0"}
    assert node.cri.status(sandbox).state == node.cri.api.SANDBOX_READY

    node.cri.stop(sandbox)
    assert node.leases() == {}
    assert node.nat_rules() == []
    node.cri.remove(sandbox)
    assert node.leases() == {}
    assert node.cri.sandboxes() == []

"""What stands where a lease's MAC would: the MAC, or a CNI lease's attachment and pod."""

from __future__ import annotations

import pytest

from driver.domain.cni import (
    event_attachment,
    event_detail,
    event_pod,
    hold_key,
    holder_shown,
    parse_network,
    pod_of,
)
from driver.domain.errors import InvalidRequest


def test_a_mac_is_shown_as_it_is_and_a_lease_with_neither_shows_nothing():
    assert holder_shown("02:42:c6:33:64:aa", None, "web") == "02:42:c6:33:64:aa"
    assert holder_shown(None, None, "CNI network lan") is None


def test_a_cni_lease_shows_its_attachment_and_the_pod_it_is_held_for():
    assert holder_shown(None, "lan/c1/eth0", "container c1") == "lan/c1/eth0"
    assert holder_shown(None, "lan/c1/eth0", "pod shop/web-0") == "lan/c1/eth0 (pod shop/web-0)"


def test_a_cni_event_names_its_attachment_first_in_its_detail_and_older_releases_did_not():
    assert event_attachment("cni", "lan/c1/eth0") == "lan/c1/eth0"
    assert event_attachment("cni", "lan/c1/eth0, parked for 600s") == "lan/c1/eth0"
    assert event_attachment("cni", "parked for 600s") is None  # written before item 5
    assert event_attachment("endpoint", "a/b/c") is None
    assert event_attachment("cni", None) is None


def test_the_pod_the_lease_records_is_shown_whatever_its_name_says():
    assert holder_shown(None, "lan/c1/eth0", "container c1", "shop/web-0") == (
        "lan/c1/eth0 (pod shop/web-0)"
    )
    assert holder_shown(None, "lan/c1/eth0", "pod shop/web-0", "shop/web-0") == (
        "lan/c1/eth0 (pod shop/web-0)"
    )
    assert holder_shown("02:42:c6:33:64:aa", None, None, "shop/web-0") == "02:42:c6:33:64:aa"


def test_a_cni_events_detail_names_the_pod_last_and_gives_it_back_whatever_it_holds():
    detail = event_detail("lan/c1/eth0", "shop/a, pod b", "parked for 600s")
    assert detail == "lan/c1/eth0, parked for 600s, pod shop/a, pod b"
    assert event_attachment("cni", detail) == "lan/c1/eth0"
    assert event_pod("cni", detail) == "shop/a, pod b"
    assert event_detail("lan/c1/eth0", None, None) == "lan/c1/eth0"
    assert event_pod("cni", "lan/c1/eth0, parked for 600s") is None
    assert event_pod("endpoint", "lan/c1/eth0, pod shop/web-0") is None
    assert event_pod("cni", None) is None


def test_the_pod_is_read_from_cni_args_and_refused_when_longer_than_kubernetes_allows():
    assert pod_of({"K8S_POD_NAMESPACE": "shop", "K8S_POD_NAME": "web-0"}) == "shop/web-0"
    assert pod_of({"K8S_POD_NAME": "web-0"}) is None
    with pytest.raises(InvalidRequest, match="K8S_POD_NAMESPACE has 64 characters"):
        pod_of({"K8S_POD_NAMESPACE": "n" * 64, "K8S_POD_NAME": "web-0"})
    network = parse_network(
        {
            "cniVersion": "1.0.0",
            "name": "lan",
            "ipam": {"type": "ipledger", "subnet": "203.0.113.0/24"},
        }
    )
    args = {"K8S_POD_NAMESPACE": "shop", "K8S_POD_NAME": "web-0"}
    assert hold_key(network, "c1", args) == "container c1"

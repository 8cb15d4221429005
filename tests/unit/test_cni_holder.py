"""What stands where a lease's MAC would: the MAC, or a CNI lease's attachment and pod."""

from __future__ import annotations

from driver.domain.cni import event_attachment, holder_shown


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

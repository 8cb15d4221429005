"""CNI's config and identities, with no database: host-local's format, ipledger's options, and
every refusal naming its field."""

from __future__ import annotations

from typing import Any

import netaddr
import pytest

from driver.domain.cni import Attachment, hold_key, parse_args, parse_network
from driver.domain.errors import InvalidRequest
from driver.domain.pools import PoolId, Reuse


def ip(text: str) -> int:
    return int(netaddr.IPAddress(text))


def config(**ipam: Any) -> dict[str, Any]:
    section = {"type": "ipledger", "ranges": [[{"subnet": "203.0.113.0/24"}]], **ipam}
    return {"cniVersion": "1.0.0", "name": "lan", "type": "bridge", "ipam": section}


def test_a_host_local_config_reads_with_its_ranges_routes_and_dns():
    network = parse_network(
        config(
            ranges=[
                [
                    {
                        "subnet": "203.0.113.0/24",
                        "rangeStart": "203.0.113.10",
                        "rangeEnd": "203.0.113.20",
                        "gateway": "203.0.113.254",
                    }
                ],
                [{"subnet": "2001:db8::/64"}],
            ],
            routes=[{"dst": "0.0.0.0/0"}],
            dns={"nameservers": ["192.0.2.53"]},
        )
    )
    v4, v6 = network.range_sets
    assert (v4[0].first, v4[0].last, v4[0].gateway) == (
        ip("203.0.113.10"),
        ip("203.0.113.20"),
        ip("203.0.113.254"),
    )
    assert str(v6[0].pool_id(None)) == "LocalDefault/2001:db8::/64"
    assert v6[0].gateway == int(v6[0].subnet.network.first) + 1  # host-local's default
    assert network.routes == ({"dst": "0.0.0.0/0"},)
    assert network.dns == {"nameservers": ["192.0.2.53"]}


def test_a_range_is_a_pool_whose_sub_pool_is_first_dash_last_and_reads_back():
    network = parse_network(
        config(ranges=[[{"subnet": "203.0.113.0/24", "rangeStart": "203.0.113.10"}]])
    )
    pool_id = network.range_sets[0][0].pool_id("lan")
    assert str(pool_id) == "shared/lan/LocalDefault/203.0.113.0/24/203.0.113.10-203.0.113.254"
    assert PoolId.parse(str(pool_id)) == pool_id


def test_host_locals_older_single_subnet_form_is_read_too():
    section = config()
    del section["ipam"]["ranges"]
    section["ipam"]["subnet"] = "198.51.100.0/24"
    assert parse_network(section).range_sets[0][0].subnet.cidr == "198.51.100.0/24"


def test_ipledgers_own_options_set_the_reuse_policy_and_the_shared_pool():
    network = parse_network(
        config(ipledger={"reuse": "serial", "quarantine": "10m", "hold": "1h", "shared": "lan"})
    )
    assert network.policy.reuse == Reuse.SERIAL
    assert (network.policy.quarantine_s, network.policy.hold_s) == (600, 3600)
    assert network.shared == "lan"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda c: c.update(cniVersion="0.5.0"), "cniVersion"),
        (lambda c: c.update(name="a/b"), "name"),
        (lambda c: c.pop("ipam"), "ipam"),
        (lambda c: c["ipam"].update(ranges=[]), "ipam.ranges"),
        (lambda c: c["ipam"].update(ranges=[[{"subnet": "nope"}]]), "ipam.ranges[0][0].subnet"),
        (
            lambda c: c["ipam"]["ranges"][0][0].update(rangeStart="198.51.100.5"),
            "ipam.ranges[0][0].rangeStart",
        ),
        (
            lambda c: c["ipam"]["ranges"][0][0].update(gateway="203.0.113.0"),
            "ipam.ranges[0][0].gateway",
        ),
        (
            lambda c: c["ipam"]["ranges"][0][0].update(
                rangeStart="203.0.113.20", rangeEnd="203.0.113.10"
            ),
            "ipam.ranges[0][0]",
        ),
        (
            lambda c: c["ipam"].update(
                ranges=[[{"subnet": "203.0.113.0/24"}], [{"subnet": "198.51.100.0/24"}]]
            ),
            "ipam.ranges[1]",
        ),
        (
            lambda c: c["ipam"].update(
                ranges=[[{"subnet": "203.0.113.0/24"}, {"subnet": "2001:db8::/64"}]]
            ),
            "ipam.ranges[0]",
        ),
        (lambda c: c["ipam"].update(routes=[{"gw": "203.0.113.1"}]), "ipam.routes"),
        (lambda c: c["ipam"].update(ipledger={"colour": "red"}), "ipam.ipledger.colour"),
        (lambda c: c["ipam"].update(ipledger={"reuse": "random"}), "ipam.ipledger"),
        (lambda c: c["ipam"].update(ipledger={"shared": "a b"}), "ipam.ipledger"),
        (lambda c: c["ipam"].update(ipledger={"hold_by": "node"}), "ipam.ipledger.hold_by"),
    ],
)
def test_a_bad_config_is_refused_naming_the_field(change, field):
    section = config()
    change(section)
    with pytest.raises(InvalidRequest) as refused:
        parse_network(section)
    assert field in refused.value.message


def test_an_attachment_is_network_container_and_ifname_and_reads_back():
    attachment = Attachment("lan", "0123abcd", "eth0")
    assert str(attachment) == "lan/0123abcd/eth0"
    assert Attachment.parse(str(attachment)) == attachment


def test_a_released_address_is_held_for_the_pod_when_the_config_says_so_and_the_runtime_names_it():
    by_pod = parse_network(config(ipledger={"hold": "1h", "hold_by": "pod"}))
    by_container = parse_network(config(ipledger={"hold": "1h"}))
    pod = parse_args("IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=db-0")
    assert hold_key(by_pod, "c1", pod) == "pod shop/db-0"
    assert hold_key(by_pod, "c1", {}) == "container c1"
    assert hold_key(by_container, "c1", pod) == "container c1"


def test_cni_args_that_are_not_key_value_pairs_are_refused():
    with pytest.raises(InvalidRequest, match="CNI_ARGS"):
        parse_args("K8S_POD_NAME")

"""Every CNI version in the field, through ipledger's CNI endpoints: each ADD result in its
version's format (as host-local 1.1.1 prints it), and DEL and CHECK where the version has them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.test_cni_api import Cni, cni_config, leases_of

POOL = "LocalDefault/203.0.113.0/24"


@pytest.fixture
def cni(plugin):
    return Cni(plugin)


def dual_stack(version: str | None) -> dict[str, Any]:
    config = cni_config([{"subnet": "203.0.113.0/24"}], [{"subnet": "2001:db8:7::/64"}])
    config["ipam"]["routes"] = [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "2001:db8:7::9"}]
    config["ipam"]["dns"] = {"nameservers": ["192.0.2.53"]}
    if version is None:
        del config["cniVersion"]
    else:
        config["cniVersion"] = version
    return config


@pytest.mark.parametrize("version", ["1.1.0", "1.0.0"])
def test_from_1_0_0_on_an_ips_entry_has_no_version(cni, version):
    status, answer = cni.call("Add", dual_stack(version))
    assert status == 200, answer
    assert answer["result"] == {
        "cniVersion": version,
        "ips": [
            {"address": "203.0.113.2/24", "gateway": "203.0.113.1"},
            {"address": "2001:db8:7::2/64", "gateway": "2001:db8:7::1"},
        ],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "2001:db8:7::9"}],
        "dns": {"nameservers": ["192.0.2.53"]},
    }


@pytest.mark.parametrize("version", ["0.4.0", "0.3.1", "0.3.0"])
def test_up_to_0_4_0_each_ips_entry_says_its_ip_version(cni, version):
    status, answer = cni.call("Add", dual_stack(version))
    assert status == 200, answer
    assert answer["result"] == {
        "cniVersion": version,
        "ips": [
            {"version": "4", "address": "203.0.113.2/24", "gateway": "203.0.113.1"},
            {"version": "6", "address": "2001:db8:7::2/64", "gateway": "2001:db8:7::1"},
        ],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "2001:db8:7::9"}],
        "dns": {"nameservers": ["192.0.2.53"]},
    }


@pytest.mark.parametrize("version", ["0.2.0", "0.1.0"])
def test_0_1_0_and_0_2_0_answer_ip4_and_ip6_each_with_the_routes_of_its_family(cni, version):
    status, answer = cni.call("Add", dual_stack(version))
    assert status == 200, answer
    assert answer["result"] == {
        "cniVersion": version,
        "ip4": {"ip": "203.0.113.2/24", "gateway": "203.0.113.1", "routes": [{"dst": "0.0.0.0/0"}]},
        "ip6": {
            "ip": "2001:db8:7::2/64",
            "gateway": "2001:db8:7::1",
            "routes": [{"dst": "::/0", "gw": "2001:db8:7::9"}],
        },
        "dns": {"nameservers": ["192.0.2.53"]},
    }


def test_a_config_without_cni_version_is_0_1_0_as_libcni_reads_it(cni):
    status, answer = cni.call("Add", dual_stack(None))
    assert status == 200, answer
    assert answer["result"]["cniVersion"] == "0.1.0"
    assert answer["result"]["ip4"]["ip"] == "203.0.113.2/24"


def test_an_ipv4_only_0_2_0_result_has_no_ip6_and_a_family_without_routes_no_routes(cni):
    config = dict(cni_config(), cniVersion="0.2.0")
    del config["ipam"]["routes"]
    status, answer = cni.call("Add", config)
    assert status == 200, answer
    assert answer["result"] == {
        "cniVersion": "0.2.0",
        "ip4": {"ip": "203.0.113.2/24", "gateway": "203.0.113.1"},
        "dns": {},
    }


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.0", "0.3.1"])
def test_del_of_an_older_version_releases_the_lease(cni, settings, version):
    config = dict(cni_config(), cniVersion=version)
    assert cni.call("Add", config)[0] == 200
    assert [kind for _, kind, _ in leases_of(settings, POOL)] == ["gateway", "cni"]
    assert cni.call("Del", config)[0] == 200
    assert [kind for _, kind, _ in leases_of(settings, POOL)] == ["gateway"]


def test_a_whole_conflist_on_stdin_is_refused_saying_what_the_runtime_passes(cni):
    conflist = {
        "cniVersion": "0.3.1",
        "name": "lan",
        "plugins": [{"type": "bridge", "ipam": cni_config()["ipam"]}],
    }
    status, answer = cni.call("Add", conflist)
    assert (status, answer["CniCode"]) == (400, 7)
    assert "plugins" in answer["Err"] and "one plugin's config" in answer["Err"]

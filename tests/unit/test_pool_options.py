"""ipledger's network options without their prefix: refused, naming the option meant."""

from __future__ import annotations

import pytest

from driver.domain.errors import InvalidRequest
from driver.domain.pools import ReusePolicy, reuse_policy


@pytest.mark.parametrize(
    ("key", "meant"),
    [
        ("hold", "ipledger.hold"),
        ("quarantine", "ipledger.quarantine"),
        ("reuse", "ipledger.reuse"),
        ("shared", "ipledger.shared"),
        ("Hold", "ipledger.hold"),
        ("ipledger-hold", "ipledger.hold"),
        ("ipledger_quarantine", "ipledger.quarantine"),
    ],
)
def test_an_option_of_ipledger_without_its_prefix_is_refused_naming_the_right_key(key, meant):
    with pytest.raises(InvalidRequest) as refused:
        reuse_policy({key: "10m"})
    assert refused.value.message == (
        f"option {key!r} is not read: ipledger's options take their prefix, {meant}=10m"
    )


def test_docker_options_and_other_names_pass():
    assert (
        reuse_policy({"com.docker.network.ipam.serial": "false", "foo": "1", "holder": "x"})
        == ReusePolicy()
    )

"""A release replayed after a lost commit that may have been made (asked on a promoted standby)
leaves alone what someone leased since its first attempt: the first attempt freed it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from driver.domain.errors import AddressInUse
from driver.storage.outage import REPLAYED_SINCE

POOL_ID = "LocalDefault/198.51.100.0/24"


def replaying_since(moment: datetime):
    class Replay:
        def __enter__(self):
            self.token = REPLAYED_SINCE.set(moment)

        def __exit__(self, *_):
            REPLAYED_SINCE.reset(self.token)

    return Replay()


def test_a_replayed_release_leaves_a_lease_made_since_its_first_attempt_to_its_new_holder(ipam):
    ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {}, False)
    first_attempt = datetime.now(UTC) - timedelta(seconds=10)
    address = ipam.request_address(POOL_ID, "", {}).split("/")[0]  # leased again since
    with replaying_since(first_attempt):
        assert ipam.release_address(POOL_ID, address) is False
    with pytest.raises(AddressInUse):  # still leased to its new holder
        ipam.request_address(POOL_ID, address, {})


def test_a_replayed_release_still_releases_a_lease_older_than_its_first_attempt(ipam):
    ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {}, False)
    address = ipam.request_address(POOL_ID, "", {}).split("/")[0]
    with replaying_since(datetime.now(UTC) + timedelta(seconds=1)):
        assert ipam.release_address(POOL_ID, address) is True


def test_a_replayed_pool_release_leaves_a_pool_made_since_by_another_network(ipam):
    first_attempt = datetime.now(UTC) - timedelta(seconds=10)
    ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {}, False)
    with replaying_since(first_attempt):
        ipam.release_pool(POOL_ID)
    assert ipam.request_address(POOL_ID, "", {}).startswith("198.51.100.")  # the pool is there

"""A lease's DNS changes are queued in the lease's own transaction (the outbox), on SQLite and
PostgreSQL: added when a named lease is made in a pool with a zone, removed when released."""

from __future__ import annotations

import pytest

from driver.domain.cni import Attachment, parse_network
from driver.domain.dns import DnsAction, DnsChange, DnsFailure
from driver.domain.errors import AddressInUse, InvalidRequest
from driver.usecases.cni import CniCalls
from driver.usecases.dns import DnsPublishing

ZONE = {"ipledger.dns_zone": "apps.example.test"}
NAMED = {"com.docker.network.endpoint.name": "web1"}


def queued(ipam) -> list[DnsChange]:
    with ipam.store.reading() as ledger:
        return ledger.queued_dns()


def test_a_named_lease_in_a_pool_with_a_zone_queues_its_record_and_its_release_removes_it(ipam):
    pool = ipam.request_pool("LocalDefault", "192.0.2.0/24", "", ZONE, False).pool_id
    address = ipam.request_address(pool, "", NAMED).split("/")[0]
    ipam.release_address(pool, address)
    assert queued(ipam) == [
        DnsChange(DnsAction.ADD, "web1.apps.example.test", "apps.example.test", address, False),
        DnsChange(DnsAction.REMOVE, "web1.apps.example.test", "apps.example.test", address, False),
    ]


def test_a_pool_without_a_zone_and_leases_without_a_name_queue_nothing(ipam):
    plain = ipam.request_pool("LocalDefault", "192.0.2.0/25", "", {}, False).pool_id
    ipam.request_address(plain, "", NAMED)
    zoned = ipam.request_pool("LocalDefault", "198.51.100.0/24", "", ZONE, False).pool_id
    ipam.request_address(zoned, "", {})  # no endpoint name: an older engine
    ipam.request_address(
        zoned, "198.51.100.254", {"RequestAddressType": "com.docker.network.gateway"}
    )
    assert queued(ipam) == []


def test_a_refused_lease_queues_nothing(ipam):
    pool = ipam.request_pool("LocalDefault", "192.0.2.0/24", "", ZONE, False).pool_id
    ipam.request_address(pool, "192.0.2.9", NAMED)
    with pytest.raises(AddressInUse):
        ipam.request_address(pool, "192.0.2.9", {"com.docker.network.endpoint.name": "web2"})
    assert [c.name for c in queued(ipam)] == ["web1.apps.example.test"]


def test_a_container_name_that_is_no_dns_label_is_made_one(ipam):
    pool = ipam.request_pool("LocalDefault", "192.0.2.0/24", "", ZONE, False).pool_id
    ipam.request_address(pool, "", {"com.docker.network.endpoint.name": "My_App.1"})
    assert [c.name for c in queued(ipam)] == ["my-app-1.apps.example.test"]


def test_a_reverse_pool_queues_its_ptr_as_a_change_of_its_own(ipam):
    options = {**ZONE, "ipledger.dns_reverse": "true"}
    pool = ipam.request_pool("LocalDefault", "2001:db8:23::/64", "", options, True).pool_id
    ipam.request_address(pool, "", NAMED)
    forward, ptr = queued(ipam)
    assert (forward.records, forward.forward, forward.reverse) == ("AAAA", True, False)
    assert (ptr.records, ptr.forward, ptr.reverse) == ("PTR", False, True)
    assert {forward.address, ptr.address} == {"2001:db8:23::1"}


def test_a_failing_ptr_holds_back_the_names_later_ptr_only_and_never_its_a_record(ipam):
    options = {**ZONE, "ipledger.dns_reverse": "true"}
    pool = ipam.request_pool("LocalDefault", "192.0.2.0/24", "", options, False).pool_id
    address = ipam.request_address(pool, "", NAMED).split("/")[0]
    ipam.release_address(pool, address)
    server = FakeServer({"PTR": DnsFailure.NO_ZONE})
    publishing = DnsPublishing(ipam.store, server, "host/1/a", Rejected)
    publishing.publish_due()
    publishing.publish_due()
    assert [(c.action, c.records) for c in server.sent if c.forward] == [
        (DnsAction.ADD, "A"),
        (DnsAction.REMOVE, "A"),
    ]
    # the PTR's removal waits behind its failed add, as a name's changes are ordered
    assert [(c.action, c.records) for c in queued(ipam)] == [
        (DnsAction.ADD, "PTR"),
        (DnsAction.REMOVE, "PTR"),
    ]
    with ipam.store.reading() as ledger:
        assert ledger.published_records() == []


def test_a_restarted_publisher_takes_back_the_claims_of_its_hosts_earlier_process(ipam):
    pool = ipam.request_pool("LocalDefault", "192.0.2.0/24", "", ZONE, False).pool_id
    ipam.request_address(pool, "", NAMED)
    with ipam.store.transaction() as ledger:
        assert len(ledger.claim_dns("host-a/41/old", ledger.clock(), 120, 10)) == 1
    other = DnsPublishing(ipam.store, FakeServer({}), "host-b/7/x", Rejected)
    other.start()
    assert not other.due()  # another host's claim is its own until it ends
    again = DnsPublishing(ipam.store, FakeServer({}), "host-a/42/new", Rejected)
    again.start()
    assert again.publish_due().published == 1


@pytest.mark.parametrize(
    ("options", "wrong"),
    [
        ({"ipledger.dns_zone": "apps..example"}, "invalid ipledger.dns_zone 'apps..example'"),
        ({"ipledger.dns_zone": "a.test", "ipledger.dns_reverse": "maybe"}, "ipledger.dns_reverse"),
        ({"ipledger.dns_reverse": "true"}, "needs ipledger.dns_zone"),
    ],
)
def test_a_malformed_dns_option_is_refused_naming_it_and_makes_no_pool(ipam, options, wrong):
    with pytest.raises(InvalidRequest, match=wrong):
        ipam.request_pool("LocalDefault", "192.0.2.0/24", "", options, False)
    assert ipam.request_pool("LocalDefault", "192.0.2.0/24", "", {}, False)


def test_a_pods_lease_is_published_as_pod_dot_namespace_and_its_del_removes_it(ipam):
    conf = {
        "cniVersion": "1.0.0",
        "name": "pods",
        "type": "bridge",
        "ipam": {
            "type": "ipledger",
            "ranges": [[{"subnet": "203.0.113.0/26"}], [{"subnet": "2001:db8:23::/64"}]],
            "ipledger": {"dns_zone": "apps.example.test", "dns_reverse": True},
        },
    }
    cni = CniCalls(ipam.store, (), ipam.host_id)
    attachment = Attachment("pods", "c1", "eth0")
    cni.add(parse_network(conf), attachment, "container c1", pod="shop/web-0")
    cni.delete(attachment)
    changes = [(c.action, c.name, c.rdtype, c.reverse) for c in queued(ipam)]
    name = "web-0.shop.apps.example.test"
    assert sorted(changes) == sorted(
        [
            (DnsAction.ADD, name, "A", False),
            (DnsAction.ADD, name, "AAAA", False),
            (DnsAction.REMOVE, name, "A", False),
            (DnsAction.REMOVE, name, "AAAA", False),
            (DnsAction.ADD, name, "A", True),  # their PTRs
            (DnsAction.ADD, name, "AAAA", True),
            (DnsAction.REMOVE, name, "A", True),
            (DnsAction.REMOVE, name, "AAAA", True),
        ]
    )
    assert [c[0] for c in changes][:4] == [DnsAction.ADD] * 4


def test_a_released_pool_removes_the_records_of_the_leases_docker_left_in_it(ipam):
    pool = ipam.request_pool("LocalDefault", "192.0.2.0/24", "", ZONE, False).pool_id
    address = ipam.request_address(pool, "", NAMED).split("/")[0]
    ipam.release_pool(pool)
    assert [(c.action, c.address) for c in queued(ipam)] == [
        (DnsAction.ADD, address),
        (DnsAction.REMOVE, address),
    ]


def test_a_lease_made_without_a_name_is_published_once_named_from_dockers_api(ipam):
    pool = ipam.request_pool("LocalDefault", "192.0.2.0/24", "", ZONE, False).pool_id
    address = ipam.request_address(pool, "", {}).split("/")[0]  # Docker 28: no name sent
    assert queued(ipam) == []
    assert ipam.name_lease(pool, address, "web_1") == "web-1.apps.example.test"
    assert ipam.name_lease(pool, address, "other") is None  # named already
    ipam.release_address(pool, address)
    assert [(c.action, c.name) for c in queued(ipam)] == [
        (DnsAction.ADD, "web-1.apps.example.test"),
        (DnsAction.REMOVE, "web-1.apps.example.test"),
    ]


def test_a_names_later_change_waits_until_its_earlier_one_is_published_whoever_claims_them(ipam):
    pool = ipam.request_pool("LocalDefault", "192.0.2.0/24", "", ZONE, False).pool_id
    web1 = ipam.request_address(pool, "", NAMED).split("/")[0]
    ipam.request_address(pool, "", {"com.docker.network.endpoint.name": "web2"})
    ipam.release_address(pool, web1)
    with ipam.store.transaction() as ledger:
        a = ledger.claim_dns("a", 100.0, 60, 10)
    with ipam.store.transaction() as ledger:
        b = ledger.claim_dns("b", 100.0, 60, 10)
    # a took the first change of each name; web1's removal waits behind its addition
    assert [(q.change.action, q.change.name) for q in a] == [
        (DnsAction.ADD, "web1.apps.example.test"),
        (DnsAction.ADD, "web2.apps.example.test"),
    ]
    assert b == []
    with ipam.store.transaction() as ledger:
        assert ledger.published_dns(a[0], "a", 101.0)
    with ipam.store.transaction() as ledger:
        (removal,) = ledger.claim_dns("b", 101.0, 60, 10)
    assert (removal.change.action, removal.change.name) == (DnsAction.REMOVE, a[0].change.name)


def test_an_expired_claim_is_taken_over_and_its_late_publisher_records_nothing(ipam):
    pool = ipam.request_pool("LocalDefault", "192.0.2.0/24", "", ZONE, False).pool_id
    ipam.request_address(pool, "", NAMED)
    with ipam.store.transaction() as ledger:
        (first,) = ledger.claim_dns("a", 100.0, 60, 10)
    with ipam.store.transaction() as ledger:
        assert ledger.claim_dns("b", 159.0, 60, 10) == []
        (taken,) = ledger.claim_dns("b", 161.0, 60, 10)
    with ipam.store.transaction() as ledger:
        assert not ledger.published_dns(first, "a", 162.0)
        assert ledger.published_dns(taken, "b", 162.0)
    assert queued(ipam) == []


class FakeServer:
    """A DNS server that fails as told: unit tests of the publisher only."""

    where = "fake"

    def __init__(self, failures):
        self.failures = failures
        self.sent = []

    def publish(self, change):
        failure = self.failures.get(change.name)
        if not change.forward:
            failure = failure or self.failures.get("PTR")
        if failure is not None:
            raise Rejected(failure, f"{failure} for {change.name}")
        self.sent.append(change)


class Rejected(Exception):
    def __init__(self, failure, message):
        super().__init__(message)
        self.failure, self.message = failure, message


def test_a_failure_retrying_cannot_fix_keeps_only_that_change_and_the_rest_is_published(ipam):
    from driver.domain.dns import DnsFailure
    from driver.usecases.dns import DnsPublishing, DnsStatus

    pool = ipam.request_pool("LocalDefault", "192.0.2.0/24", "", ZONE, False).pool_id
    for name in ("web1", "web2", "web3"):
        ipam.request_address(pool, "", {"com.docker.network.endpoint.name": name})
    server = FakeServer({"web2.apps.example.test": DnsFailure.REFUSED})
    publishing = DnsPublishing(ipam.store, server, "p", Rejected)
    outcome = publishing.publish_due()
    assert (outcome.published, outcome.failed) == (2, 1)
    (zone,) = DnsStatus(ipam.store).zones()
    assert (zone.pending, zone.failing, zone.failure) == (1, 1, "refused")
    assert publishing.failures == {("apps.example.test", "refused"): 1}
    assert not publishing.due()  # not retried at once: it waits 10 minutes, or a restart
    assert publishing.start() == 1
    assert publishing.due()


def test_an_unreachable_server_keeps_the_whole_batch_for_a_retry_with_backoff(ipam):
    from driver.domain.dns import DnsFailure
    from driver.usecases.dns import DnsPublishing

    pool = ipam.request_pool("LocalDefault", "192.0.2.0/24", "", ZONE, False).pool_id
    for name in ("web1", "web2", "web3"):
        ipam.request_address(pool, "", {"com.docker.network.endpoint.name": name})
    down = FakeServer({f"web{i}.apps.example.test": DnsFailure.UNREACHABLE for i in (1, 2, 3)})
    publishing = DnsPublishing(ipam.store, down, "p", Rejected)
    assert publishing.publish_due().failed == 3
    assert down.sent == []
    assert len(queued(ipam)) == 3 and not publishing.due()
    with ipam.store.transaction() as ledger:  # the backoff of 1 s has passed
        ledger.retry_dns_now()
    up = FakeServer({})
    assert DnsPublishing(ipam.store, up, "p", Rejected).publish_due().published == 3
    assert [c.name for c in up.sent] == [f"web{i}.apps.example.test" for i in (1, 2, 3)]
    assert queued(ipam) == []

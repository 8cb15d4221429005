"""Docker's IpamDriver API through the Flask test client, with raw bodies and no Content-Type."""

import pytest

POOL = {
    "AddressSpace": "LocalDefault",
    "Pool": "192.0.2.0/24",
    "SubPool": "",
    "Options": {},
    "V6": False,
}


def err(message):
    return {"Err": message, "Error": message}


def test_activation_announces_an_ipam_driver(plugin):
    assert plugin.raw("/Plugin.Activate") == (200, {"Implements": ["IpamDriver"]})


def test_capabilities_ask_for_the_mac_address_and_no_replay(plugin):
    assert plugin.call("GetCapabilities") == (
        200,
        {"RequiresMACAddress": True, "RequiresRequestReplay": False},
    )


def test_default_address_spaces_are_two_distinct_names(plugin):
    assert plugin.call("GetDefaultAddressSpaces") == (
        200,
        {"LocalDefaultAddressSpace": "LocalDefault", "GlobalDefaultAddressSpace": "GlobalDefault"},
    )


def test_a_pool_and_an_address_round_trip(plugin):
    assert plugin.call("RequestPool", POOL) == (
        200,
        {"PoolID": "LocalDefault/192.0.2.0/24", "Pool": "192.0.2.0/24", "Data": {}},
    )
    assert plugin.call(
        "RequestAddress",
        {
            "PoolID": "LocalDefault/192.0.2.0/24",
            "Address": "",
            "Options": {"RequestAddressType": "com.docker.network.gateway"},
        },
    ) == (200, {"Address": "192.0.2.1/24", "Data": {}})
    assert plugin.call(
        "RequestAddress",
        {"PoolID": "LocalDefault/192.0.2.0/24", "Address": "192.0.2.9", "Options": None},
    ) == (200, {"Address": "192.0.2.9/24", "Data": {}})
    assert plugin.call(
        "ReleaseAddress", {"PoolID": "LocalDefault/192.0.2.0/24", "Address": "192.0.2.9"}
    ) == (200, {})
    assert plugin.call("ReleasePool", {"PoolID": "LocalDefault/192.0.2.0/24"}) == (200, {})


def test_options_null_and_missing_optional_keys_are_normal(plugin):
    assert plugin.call("RequestPool", {"AddressSpace": "LocalDefault", "Options": None})[0] == 200


@pytest.mark.parametrize(
    ("method", "body", "status", "message"),
    [
        ("RequestPool", b"", 400, "empty request body: expected a JSON object"),
        (
            "RequestPool",
            b"{",
            400,
            "request body is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        ("RequestPool", b"[]", 400, "request body must be a JSON object, not list"),
        ("RequestPool", b'{"Pool": "192.0.2.0/24"}', 400, "missing AddressSpace in request body"),
        ("RequestPool", b'{"AddressSpace": 4}', 400, "AddressSpace must be a string, not int 4"),
        (
            "RequestPool",
            b'{"AddressSpace": "LocalDefault", "V6": "yes"}',
            400,
            'V6 must be true or false, not str "yes"',
        ),
        (
            "RequestPool",
            b'{"AddressSpace": "LocalDefault", "Options": []}',
            400,
            "Options must be an object of strings or null, not list []",
        ),
        (
            "RequestPool",
            b'{"AddressSpace": "LocalDefault", "Options": {"a": 1}}',
            400,
            "Options['a'] must be a string, not int 1",
        ),
        (
            "RequestPool",
            b'{"AddressSpace": "LocalDefault", "Pool": "banana"}',
            400,
            "invalid pool 'banana': expected a CIDR such as 192.0.2.0/24",
        ),
        ("RequestAddress", b'{"Address": ""}', 400, "missing PoolID in request body"),
        (
            "RequestAddress",
            b'{"PoolID": "LocalDefault/203.0.113.0/24"}',
            404,
            "pool 'LocalDefault/203.0.113.0/24' not found",
        ),
        ("ReleaseAddress", b'{"PoolID": "x"}', 400, "missing Address in request body"),
        ("ReleasePool", b'{"PoolID": ""}', 400, "PoolID must not be empty"),
    ],
)
def test_bad_requests_get_a_non_200_and_an_err_naming_the_problem(
    plugin, method, body, status, message
):
    assert plugin.raw(f"/IpamDriver.{method}", body) == (status, err(message))


def test_a_conflict_is_a_409_with_the_builtin_wording(plugin):
    plugin.call("RequestPool", POOL)
    plugin.call("RequestAddress", {"PoolID": "LocalDefault/192.0.2.0/24", "Address": "192.0.2.9"})
    assert plugin.call(
        "RequestAddress", {"PoolID": "LocalDefault/192.0.2.0/24", "Address": "192.0.2.9"}
    ) == (
        409,
        err("Address already in use: 192.0.2.9 (held by an auxiliary address in 192.0.2.0/24)"),
    )
    status, body = plugin.call("RequestPool", POOL)
    assert status == 409
    assert body["Err"].startswith(
        "Pool overlaps with other one on this address space: 192.0.2.0/24 overlaps 192.0.2.0/24 "
        "in address space LocalDefault: pool LocalDefault/192.0.2.0/24 holds 1 lease"
    )


def test_unknown_endpoints_and_methods_answer_json(plugin):
    assert plugin.raw("/IpamDriver.Bogus", b"{}") == (
        404,
        err("unknown endpoint '/IpamDriver.Bogus': not an IpamDriver call"),
    )
    response = plugin.client.get("/IpamDriver.RequestPool")
    assert response.status_code == 405
    assert response.get_json() == err("GET is not allowed on '/IpamDriver.RequestPool': use POST")


def test_a_body_over_64_kib_is_refused(plugin):
    status, body = plugin.raw(
        "/IpamDriver.RequestPool", b'{"AddressSpace": "' + b"x" * 70000 + b'"}'
    )
    assert (status, body) == (413, err("request body too large: at most 65536 bytes"))


def test_an_unexpected_failure_is_a_500_without_a_traceback(plugin, monkeypatch, caplog):
    ipam = plugin.client.application.extensions["ipledger"]
    monkeypatch.setattr(ipam, "request_pool", lambda *a: 1 / 0)
    status, body = plugin.call("RequestPool", POOL)
    assert (status, body) == (
        500,
        err("internal error in ipledger (ZeroDivisionError); see the plugin's log"),
    )
    assert "Traceback" in caplog.text  # the log has it, Docker does not


def test_a_recreated_endpoint_with_the_same_docker_29_name_gets_its_address_back_within_the_hold(
    plugin,
):
    pool = {**POOL, "Options": {"ipledger.hold": "10m"}}
    pool_id = plugin.call("RequestPool", pool)[1]["PoolID"]

    def request(mac, name):
        options = {
            "com.docker.network.endpoint.macaddress": mac,
            "com.docker.network.endpoint.name": name,
        }
        return plugin.call(
            "RequestAddress", {"PoolID": pool_id, "Address": "", "Options": options}
        )[1]["Address"]

    db = request("02:00:00:00:00:01", "db")
    assert plugin.call("ReleaseAddress", {"PoolID": pool_id, "Address": db.split("/")[0]}) == (
        200,
        {},
    )
    assert request("02:00:00:00:00:02", "web") != db
    assert request("02:00:00:00:00:03", "db") == db


def test_a_bad_reuse_option_is_answered_with_an_error_naming_it(plugin):
    status, body = plugin.call(
        "RequestPool", {**POOL, "Options": {"ipledger.quarantine": "a while"}}
    )
    assert status == 400
    assert (
        body["Err"]
        == "invalid ipledger.quarantine 'a while': expected a duration such as 60s, 15m, 2h or 7d"
    )


def test_a_whole_space_pool_given_with_a_non_zero_address_is_static_and_blocks_the_rest(plugin):
    # Docker 29 reads a pool as size-only only when its address as given is all-zero
    whole = dict(POOL, Pool="f656::/0", V6=True)
    assert plugin.call("RequestPool", whole) == (
        200,
        {"PoolID": "LocalDefault/::/0", "Pool": "::/0", "Data": {}},
    )
    inside = dict(POOL, Pool="f656::5e2:0:3740/123", V6=True)
    status, body = plugin.call("RequestPool", inside)
    assert status == 409
    assert body["Err"].startswith(
        "Pool overlaps with other one on this address space: f656::5e2:0:3740/123 overlaps ::/0"
    )


def test_a_size_only_ipv6_pool_of_one_address_is_refused(plugin):
    status, body = plugin.call("RequestPool", dict(POOL, Pool="::/128", V6=True))
    assert status == 400
    assert body["Err"] == (
        "invalid size-only pool ::/128: an IPv6 /128 has no usable address "
        "(its only address is the subnet's first, which is never handed out)"
    )
    # nothing was made: a default IPv6 pool is still the first one
    assert plugin.call("RequestPool", dict(POOL, Pool="", V6=True))[1]["Pool"] == "fd42:1edb::/64"


def test_a_release_through_a_sibling_pool_is_refused_naming_the_holder(plugin):
    a = dict(POOL, SubPool="192.0.2.0/25")
    b = dict(POOL, SubPool="192.0.2.128/25")
    a_id = plugin.call("RequestPool", a)[1]["PoolID"]
    b_id = plugin.call("RequestPool", b)[1]["PoolID"]
    assert plugin.call("RequestAddress", {"PoolID": b_id, "Address": "192.0.2.200"})[0] == 200
    assert plugin.call("ReleaseAddress", {"PoolID": a_id, "Address": "192.0.2.200"}) == (
        409,
        err(
            "Address already in use: 192.0.2.200 (held by an auxiliary address in pool "
            "LocalDefault/192.0.2.0/24/192.0.2.128/25; pool LocalDefault/192.0.2.0/24/192.0.2.0/25 "
            "does not hold it, so it cannot release it)"
        ),
    )
    # still held: a static request for it through either pool is refused
    assert plugin.call("RequestAddress", {"PoolID": a_id, "Address": "192.0.2.200"})[0] == 409
    assert plugin.call("ReleaseAddress", {"PoolID": b_id, "Address": "192.0.2.200"}) == (200, {})

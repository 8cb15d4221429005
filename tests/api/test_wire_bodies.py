"""Docker's bodies as declared structs: Docker's quirks kept, every refusal naming the field."""

import json

import pytest

from tests.api.test_cni_api import Cni, cni_config
from tests.api.test_protocol import POOL, err
from tests.integration.test_ledger import snapshot

POOL_ID = "LocalDefault/192.0.2.0/24"


def test_fields_docker_may_add_are_ignored_wherever_they_are(plugin):
    body = {**POOL, "Future": {"deep": [1, 2.5, None, {"x": "y"}]}, "Big": 2**70}
    assert plugin.call("RequestPool", body) == (
        200,
        {"PoolID": POOL_ID, "Pool": "192.0.2.0/24", "Data": {}},
    )


def test_docker_29s_endpoint_name_option_is_just_another_string(plugin):
    plugin.call("RequestPool", POOL)
    options = {
        "com.docker.network.endpoint.macaddress": "02:42:c0:00:02:05",
        "com.docker.network.endpoint.name": "web",
    }
    assert plugin.call("RequestAddress", {"PoolID": POOL_ID, "Options": options}) == (
        200,
        {"Address": "192.0.2.1/24", "Data": {}},
    )


def test_null_stands_for_an_absent_field(plugin):
    body = {"AddressSpace": "LocalDefault", "Pool": None, "SubPool": None, "V6": None}
    assert plugin.call("RequestPool", body)[0] == 200
    status, answer = plugin.call("RequestAddress", {"PoolID": None})
    assert (status, answer) == (400, err("missing PoolID in request body"))


def test_a_null_body_on_a_call_without_fields_is_an_empty_one(plugin):
    assert plugin.raw("/IpamDriver.GetCapabilities", b"null")[0] == 200
    assert plugin.raw("/IpamDriver.GetCapabilities", b"[1]") == (
        400,
        err("request body must be a JSON object, not list"),
    )


@pytest.mark.parametrize(
    ("method", "body", "message"),
    [
        ("RequestPool", b"null", "request body must be a JSON object, not NoneType"),
        ("RequestPool", b'"x"', "request body must be a JSON object, not str"),
        ("RequestPool", b'{"AddressSpace": ""}', "AddressSpace must not be empty"),
        (
            "RequestPool",
            b'{"AddressSpace": "LocalDefault", "Pool": "' + b"x" * 300 + b'"}',
            "Pool is too long (300 characters, at most 255)",
        ),
        (
            "RequestPool",
            b'{"AddressSpace": "LocalDefault", "V6": 1e999}',
            "V6 must be true or false, not float Infinity",
        ),
        (
            "RequestAddress",
            b'{"PoolID": "x", "Options": {"a": "b", "c": null}}',
            "Options['c'] must be a string, not NoneType null",
        ),
        ("RequestAddress", b'{"PoolID": ["x"]}', 'PoolID must be a string, not list ["x"]'),
        (
            "ReleaseAddress",
            b'{"PoolID": "x", "Address": false}',
            "Address must be a string, not bool false",
        ),
        (
            "RequestPool",
            b'{"AddressSpace": "LocalDefault", "V6": NaN}',
            "request body is not valid JSON: JSON is malformed: invalid character (byte 39)",
        ),
        (
            "RequestPool",
            b'{"AddressSpace": "a\\udcff"}',
            "AddressSpace is not Unicode text: 'a\\udcff'",
        ),
    ],
)
def test_a_body_that_does_not_fit_its_struct_is_refused_naming_the_field(
    plugin, method, body, message
):
    assert plugin.raw(f"/IpamDriver.{method}", body) == (400, err(message))


@pytest.mark.parametrize("field", ["AddressSpace", "Pool", "Future"])
def test_deep_nesting_in_any_field_is_refused_as_json_not_a_crash(plugin, field):
    nested = b"[" * 20_000 + b"]" * 20_000
    body = b'{"AddressSpace": "LocalDefault", "' + field.encode() + b'": ' + nested + b"}"
    status, answer = plugin.raw("/IpamDriver.RequestPool", body)
    assert status == 400
    assert answer["Err"].startswith("request body is not valid JSON: maximum recursion depth")


@pytest.fixture
def cni(plugin):
    return Cni(plugin)


@pytest.mark.parametrize(
    ("command", "more", "message"),
    [
        ("Add", {"containerId": None}, "missing containerId in request body"),
        ("Del", {"ifname": ""}, "ifname must not be empty"),
        ("Check", {"containerId": 7}, "containerId must be a string, not int 7"),
        (
            "Add",
            {"args": ["K8S_POD_NAME=web"]},
            'args must be a string, not list ["K8S_POD_NAME=web"]',
        ),
        ("Add", {"args": "x" * 4097}, "args is too long (4097 characters, at most 4096)"),
    ],
)
def test_a_cni_call_that_does_not_fit_its_struct_is_refused_with_code_7(
    cni, engine, command, more, message
):
    before = snapshot(engine)
    status, answer = cni.call(command, cni_config(), **more)
    assert (status, answer) == (400, {**err(message), "CniCode": 7})
    assert snapshot(engine) == before


def test_gc_and_status_need_no_attachment_and_ignore_fields_they_do_not_read(cni):
    body = {"config": {**cni_config(), "cni.dev/valid-attachments": []}, "Future": [1]}
    assert cni.plugin.raw("/Cni.Gc", json.dumps(body)) == (200, {})
    assert cni.plugin.raw("/Cni.Status", json.dumps({"config": cni_config()})) == (200, {})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"AddressSpace": 4, "AddressSpace": "LocalDefault"}', "AddressSpace is given twice"),
        (b'{"AddressSpace": "LocalDefault", "V6": true, "V6": "x"}', "V6 is given twice"),
        (
            b'{"AddressSpace": "LocalDefault", "Options": {"a": 1, "a": "b"}}',
            "Options['a'] is given twice",
        ),
    ],
)
def test_a_refused_body_that_names_a_field_twice_says_so_rather_than_guess(plugin, body, message):
    assert plugin.raw("/IpamDriver.RequestPool", body) == (400, err(message))

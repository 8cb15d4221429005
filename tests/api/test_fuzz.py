"""Hostile bodies on every endpoint: a clear non-200 {"Err"}, never a 500, never a change of state."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.examples import examples
from tests.integration.test_ledger import snapshot

ENDPOINTS = ["RequestPool", "ReleasePool", "RequestAddress", "ReleaseAddress"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
addresses = st.sampled_from(
    [
        "",
        "192.0.2.1",
        "192.0.2.1/24",
        "192.0.2.256",
        "fe80::1%eth0",
        "2001:db8::1",
        "::ffff:192.0.2.1",
        "10.1",
        "0x7f000001",
        " 192.0.2.1",
        "192.0.2.1\n",
        "٣.٣.٣.٣",
        "2001:db8::/129",
        "x" * 300,
    ]
)
cidrs = st.sampled_from(
    [
        "",
        "192.0.2.0/24",
        "192.0.2.7/24",
        "192.0.2.0/33",
        "2001:db8::/64",
        "0.0.0.0/24",
        "::/56",
        "192.0.2.0",
        "192.0.2.0/-1",
        "2001:db8::/24x",
        "banana",
        "192.0.2.0/24/25",
        "0.0.0.0/0",
    ]
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "AddressSpace": st.sampled_from(["LocalDefault", "GlobalDefault", "local", ""])
        | json_values,
        "Pool": cidrs | json_values,
        "SubPool": cidrs | json_values,
        "Options": st.none()
        | st.dictionaries(st.text(max_size=30), st.text(max_size=30) | json_values, max_size=3),
        "V6": st.booleans() | json_values,
        "PoolID": st.sampled_from(["LocalDefault/198.51.100.0/24", "nope", ""]) | json_values,
        "Address": addresses | json_values,
    },
)


def setup_pool(plugin):
    plugin.call("RequestPool", {"AddressSpace": "LocalDefault", "Pool": "198.51.100.0/24"})
    plugin.call("RequestAddress", {"PoolID": "LocalDefault/198.51.100.0/24", "Address": ""})


@settings(
    max_examples=examples(400),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(endpoint=st.sampled_from(ENDPOINTS), body=bodies)
def test_structured_but_hostile_bodies_never_crash_the_driver(plugin, engine, endpoint, body):
    setup_pool(plugin)
    before = snapshot(engine)
    status, answer = plugin.raw(f"/IpamDriver.{endpoint}", json.dumps(body))
    assert status != 500, answer
    if status == 200:
        return
    assert 400 <= status < 500 and set(answer) == {"Err", "Error"} and answer["Err"]
    assert "Traceback" not in answer["Err"]
    assert snapshot(engine) == before


@settings(
    max_examples=examples(300),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    endpoint=st.sampled_from([*ENDPOINTS, "GetCapabilities"]),
    raw=st.binary(max_size=200)
    | st.text(max_size=200).map(str.encode)
    | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_arbitrary_bytes_get_a_json_answer_and_change_nothing(plugin, engine, endpoint, raw):
    setup_pool(plugin)
    before = snapshot(engine)
    response = plugin.client.post(f"/IpamDriver.{endpoint}", data=raw)
    answer = json.loads(response.get_data())
    assert response.status_code != 500, answer
    if response.status_code != 200:
        assert answer["Err"]
        assert snapshot(engine) == before


def test_deeply_nested_json_is_refused_cleanly(plugin):
    status, answer = plugin.raw("/IpamDriver.RequestPool", "[" * 50_000 + "]" * 50_000)
    assert status in (400, 413) and answer["Err"]

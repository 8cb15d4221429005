"""The DNS rules: a pool's options, the name a lease is published under, the TSIG key file, how
failures are retried."""

from __future__ import annotations

import pytest

from driver.config import Settings, SettingsError, parse_dns_server, read_tsig_key
from driver.domain.dns import (
    CONFIG_RETRY_S,
    DnsFailure,
    DnsPolicy,
    NameSource,
    dns_label,
    dns_policy,
    lease_dns_name,
    recorded_policy,
    retry_delay,
)
from driver.domain.errors import InvalidRequest

ZONE = DnsPolicy("apps.example.test")


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("web1", "web1"),
        ("Web_1", "web-1"),
        ("my.app", "my-app"),
        ("--x--", "x"),
        ("a  b", "a-b"),
        ("ünïcode", "n-code"),
        ("x" * 70, "x" * 63),
        ("a" * 62 + "-b", "a" * 62),
        ("___", None),
        ("", None),
    ],
)
def test_a_name_is_made_a_dns_label_by_the_documented_rule(text, label):
    assert dns_label(text) == label


def test_a_pod_is_published_as_pod_dot_namespace_in_the_pools_zone():
    name = lease_dns_name(ZONE, NameSource(pod="shop/web-0"))
    assert name == "web-0.shop.apps.example.test"


def test_a_container_and_a_reservation_are_published_under_their_name_and_label():
    assert lease_dns_name(ZONE, NameSource(container="/db_1")) == "db-1.apps.example.test"
    assert lease_dns_name(ZONE, NameSource(label="Printer 2")) == "printer-2.apps.example.test"


def test_nothing_is_published_without_a_zone_a_name_or_a_name_left_after_the_rule():
    assert lease_dns_name(None, NameSource(container="web")) is None
    assert lease_dns_name(ZONE, NameSource()) is None
    assert lease_dns_name(ZONE, NameSource(container="___")) is None
    assert lease_dns_name(ZONE, NameSource(pod="ns/___")) is None


def test_a_full_name_longer_than_253_characters_is_not_published():
    deep = DnsPolicy(".".join(["z" * 60] * 4))  # 243 characters
    assert lease_dns_name(deep, NameSource(container="a" * 10)) is None
    assert len(lease_dns_name(deep, NameSource(container="a" * 9)) or "") == 253


def test_the_pool_options_give_the_zone_lower_case_without_its_final_dot():
    policy = dns_policy({"ipledger.dns_zone": "Apps.Example.TEST.", "ipledger.dns_reverse": "1"})
    assert policy == DnsPolicy("apps.example.test", True)
    assert dns_policy({}) is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ipledger.dns_zone": "a b"}, "invalid ipledger.dns_zone 'a b'"),
        ({"ipledger.dns_zone": "-a.test"}, "invalid ipledger.dns_zone '-a.test'"),
        ({"ipledger.dns_zone": "x.test", "ipledger.dns_reverse": "on"}, "expected true or false"),
        ({"ipledger.dns_reverse": "true"}, "needs ipledger.dns_zone"),
    ],
)
def test_malformed_pool_options_are_refused_naming_them(options, message):
    with pytest.raises(InvalidRequest, match=message):
        dns_policy(options)


def test_a_pool_recorded_without_a_zone_publishes_nothing_and_costs_no_parse():
    assert recorded_policy('{"com.docker.network.ipam.serial": "true"}') is None
    assert recorded_policy('{"ipledger.dns_zone": "a.test"}') == DnsPolicy("a.test")
    assert recorded_policy("not json ipledger.dns_zone") is None


def test_failures_the_server_may_get_over_are_retried_with_backoff_others_every_ten_minutes():
    delays = [retry_delay(n, DnsFailure.UNREACHABLE) for n in (1, 2, 3, 10, 50)]
    assert delays == [1.0, 2.0, 4.0, 300.0, 300.0]
    for failure in (DnsFailure.BAD_KEY, DnsFailure.REFUSED, DnsFailure.NOTAUTH):
        assert not failure.retryable
        assert retry_delay(1, failure) == CONFIG_RETRY_S


KEY = 'key "ipledger-key" {\n\talgorithm hmac-sha256;\n\tsecret "c2VjcmV0c2VjcmV0c2VjcmV0";\n};\n'


def write_private(path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)


def test_a_key_file_as_tsig_keygen_writes_it_is_read(tmp_path):
    path = tmp_path / "key.conf"
    write_private(path, "# made by tsig-keygen\n" + KEY)
    key = read_tsig_key(str(path))
    assert (key.name, key.algorithm, key.secret) == (
        "ipledger-key",
        "hmac-sha256",
        "c2VjcmV0c2VjcmV0c2VjcmV0",
    )
    assert "c2Vj" not in repr(key)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must hold one key as tsig-keygen writes it"),
        (KEY + KEY, "found 2"),
        (KEY.replace("hmac-sha256", "rot13"), "has algorithm 'rot13'"),
        (KEY.replace("c2VjcmV0c2VjcmV0c2VjcmV0", "not base64!"), "no valid base64 secret"),
    ],
)
def test_a_malformed_key_file_is_refused_naming_the_file_and_the_fault(tmp_path, text, message):
    path = tmp_path / "key.conf"
    write_private(path, text)
    with pytest.raises(SettingsError, match=message) as refused:
        Settings.from_env({"IPLEDGER_DNS_TSIG": str(path)})
    assert str(path) in str(refused.value)


def test_a_secret_holding_two_slashes_is_not_taken_for_a_comment(tmp_path):
    path = tmp_path / "key.conf"
    write_private(path, KEY.replace("c2VjcmV0c2VjcmV0c2VjcmV0", "c2Vj//8a") + "// note\n")
    assert read_tsig_key(str(path)).secret == "c2Vj//8a"


def test_a_key_file_every_user_may_read_is_refused_with_the_fix_and_one_of_its_group_is_taken(
    tmp_path,
):
    path = tmp_path / "key.conf"
    write_private(path, KEY)
    path.chmod(0o644)
    with pytest.raises(SettingsError, match="readable by every user") as refused:
        Settings.from_env({"IPLEDGER_DNS_TSIG": str(path)})
    assert f"chmod 600 {path}" in str(refused.value)
    assert "IPLEDGER_DNS_TSIG" in str(refused.value)
    path.chmod(0o640)  # root:bind 0640, as Debian's /etc/bind keys
    assert read_tsig_key(str(path)).name == "ipledger-key"


def test_an_unreadable_key_file_is_refused_naming_it(tmp_path):
    with pytest.raises(SettingsError, match=r"cannot read the key file .*missing\.conf"):
        read_tsig_key(str(tmp_path / "missing.conf"))


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("dns.example.test", ("dns.example.test", 53)),
        ("192.0.2.53:5353", ("192.0.2.53", 5353)),
        ("[2001:db8::53]:5300", ("2001:db8::53", 5300)),
        ("2001:db8::53", ("2001:db8::53", 53)),
        ("localhost:25553", ("localhost", 25553)),
        ("ns1.example.test", ("ns1.example.test", 53)),
        ("[::1]:53", ("::1", 53)),
        ("NS1.Example.Test.", ("NS1.Example.Test.", 53)),
    ],
)
def test_the_dns_server_is_host_and_port_53_by_default(text, parsed):
    assert parse_dns_server(text) == parsed


@pytest.mark.parametrize(
    "text",
    ["host:0", "host:99999", "host:x", ":53", "bad host", "[::1", "[::1]x", "[ns1]:53", "a:b:c"],
)
def test_a_malformed_dns_server_is_refused(text):
    with pytest.raises(SettingsError, match="IPLEDGER_DNS_SERVER"):
        parse_dns_server(text)


def test_dns_is_off_by_default_with_a_ttl_of_60():
    settings = Settings.from_env({})
    assert (settings.dns_server, settings.dns_tsig, settings.dns_ttl) == (None, None, 60)
    with pytest.raises(SettingsError, match="IPLEDGER_DNS_TTL"):
        Settings.from_env({"IPLEDGER_DNS_TTL": "-1"})


def test_serve_refuses_to_start_with_an_unreadable_key_file_naming_it(tmp_path):
    from click.testing import CliRunner

    from driver.entrypoints.cli import main

    missing = tmp_path / "missing.conf"
    result = CliRunner().invoke(
        main,
        ["serve", "--socket", str(tmp_path / "s.sock"), "--db", f"sqlite:///{tmp_path}/l.db"],
        env={"IPLEDGER_DNS_TSIG": str(missing)},
    )
    assert result.exit_code == 1
    assert f"IPLEDGER_DNS_TSIG: cannot read the key file '{missing}'" in result.output
    assert not (tmp_path / "l.db").exists()

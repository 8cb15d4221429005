import pytest

from driver.config import Settings, SettingsError, socket_passed_by_systemd


def test_defaults_are_the_documented_ones():
    s = Settings.from_env({})
    assert (s.socket, s.db_url, s.workers, s.log_level) == (
        "/run/docker/plugins/ipledger.sock",
        "sqlite:////var/lib/ipledger/ipledger.db",
        2,
        "info",
    )
    assert [(str(p.base), p.size) for p in s.default_pools] == [
        ("10.128.0.0/9", 24),
        ("fd42:1edb::/32", 64),
    ]
    assert s.driver_name == "ipledger"


def test_flags_override_the_environment():
    s = Settings.from_env(
        {"IPLEDGER_SOCKET": "/run/docker/plugins/a.sock", "IPLEDGER_WORKERS": "3"},
        socket="/run/docker/plugins/b.sock",
        workers=None,
    )
    assert (s.socket, s.workers, s.driver_name) == ("/run/docker/plugins/b.sock", 3, "b")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IPLEDGER_WORKERS": "0"}, "IPLEDGER_WORKERS must be a positive integer, not '0'"),
        ({"IPLEDGER_LOG_LEVEL": "loud"}, "IPLEDGER_LOG_LEVEL 'loud' is not a log level"),
        ({"IPLEDGER_DEFAULT_POOLS": "nope"}, "IPLEDGER_DEFAULT_POOLS is not JSON"),
        ({"IPLEDGER_DEFAULT_POOLS": "[]"}, "IPLEDGER_DEFAULT_POOLS must be a non-empty JSON list"),
        (
            {"IPLEDGER_DEFAULT_POOLS": '[{"base": "10.0.0.0/8"}]'},
            'must be {"base": CIDR, "size": N}',
        ),
        (
            {"IPLEDGER_DEFAULT_POOLS": '[{"base": "10.0.0.0/8", "size": 33}]'},
            "size must be an integer between 8 and 32",
        ),
        (
            {"IPLEDGER_DEFAULT_POOLS": '[{"base": "10.0.0/8", "size": 24}]'},
            "invalid default pool base",
        ),
        ({"IPLEDGER_SQLITE_SYNCHRONOUS": "sometimes"}, "must be OFF, NORMAL, FULL or EXTRA"),
        ({"IPLEDGER_LOG_FORMAT": "xml"}, "IPLEDGER_LOG_FORMAT 'xml' must be text or json"),
        (
            {"IPLEDGER_METRICS_ADDR": "localhost:http"},
            "IPLEDGER_METRICS_ADDR 'localhost:http' must be PORT or HOST:PORT",
        ),
        ({"IPLEDGER_METRICS_ADDR": "70000"}, "with a port 1-65535"),
        ({"IPLEDGER_HOST_ID": "h" * 65}, "IPLEDGER_HOST_ID must be 1 to 64 characters"),
        (
            {"IPLEDGER_HOST_ID": "web\x1b[31m\n"},
            "IPLEDGER_HOST_ID 'web\\x1b[31m\\n' must not hold control characters",
        ),
    ],
)
def test_a_bad_setting_is_named_in_the_error(env, message):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("9469", ("127.0.0.1", 9469)),
        (":9469", ("127.0.0.1", 9469)),
        ("0.0.0.0:9469", ("0.0.0.0", 9469)),
        ("[::1]:9469", ("::1", 9469)),
    ],
)
def test_the_metrics_listener_is_off_by_default_and_on_loopback_for_a_bare_port(text, address):
    assert Settings.from_env({}).metrics_addr is None
    assert Settings.from_env({"IPLEDGER_METRICS_ADDR": text}).metrics_addr == address


def test_the_host_id_is_the_machine_id_unless_set():
    from driver.config import default_host_id

    assert Settings.from_env({}).host_id == default_host_id() != ""
    assert Settings.from_env({"IPLEDGER_HOST_ID": "host-a"}).host_id == "host-a"


@pytest.mark.parametrize("value", ["relative/spool", "/a\0b"])
def test_a_cni_spool_that_is_no_absolute_path_is_refused_naming_the_variable(value):
    with pytest.raises(SettingsError, match="IPLEDGER_CNI_SPOOL"):
        Settings.from_env({"IPLEDGER_CNI_SPOOL": value})


def test_a_socket_passed_by_systemd_is_told_by_listen_fds():
    assert socket_passed_by_systemd({}) is False
    assert socket_passed_by_systemd({"LISTEN_FDS": "1", "LISTEN_PID": "7"}) is True

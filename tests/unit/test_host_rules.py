"""The rules of a ledger's hosts: when a host is stale, when retiring it is refused, admitting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from driver.config import Settings, SettingsError
from driver.domain.errors import HostRetired, HostSeenRecently, InvalidRequest
from driver.domain.hosts import (
    HEARTBEAT_S,
    HOST_NAME_LENGTH,
    STALE_AFTER_S,
    Host,
    HostState,
    age_shown,
    check_host_name,
)

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def host(seen_ago: float | None, state: HostState = HostState.ACTIVE, name: str = "alpha") -> Host:
    seen = None if seen_ago is None else NOW - timedelta(seconds=seen_ago)
    return Host("id-1", name, "0.2.0", NOW - timedelta(days=1), seen, state)


def test_a_host_is_stale_after_three_missed_heartbeats():
    assert STALE_AFTER_S == 3 * HEARTBEAT_S
    assert host(0).seen_recently(NOW)
    assert host(STALE_AFTER_S).seen_recently(NOW)
    assert not host(STALE_AFTER_S + 1).seen_recently(NOW)


def test_a_host_never_seen_is_not_seen_recently_and_has_no_age():
    assert not host(None).seen_recently(NOW)
    assert host(None).age(NOW) is None


def test_a_heartbeat_from_a_clock_ahead_counts_as_now():
    assert host(-30).age(NOW) == timedelta(0)
    assert host(-30).seen_recently(NOW)


def test_retiring_a_host_seen_recently_is_refused_naming_its_age_and_the_fix():
    with pytest.raises(HostSeenRecently, match=r"alpha \(id-1\) was seen 10 s ago.*--force"):
        host(10).check_retirable(NOW, force=False)


def test_retiring_a_host_seen_recently_is_allowed_when_forced():
    host(10).check_retirable(NOW, force=True)


@pytest.mark.parametrize("seen_ago", [None, STALE_AFTER_S + 1, 86400.0])
def test_retiring_a_stale_or_never_seen_host_is_allowed(seen_ago):
    host(seen_ago).check_retirable(NOW, force=False)


def test_retiring_a_retired_host_is_refused_even_when_forced():
    with pytest.raises(InvalidRequest, match="retired already"):
        host(1000, HostState.RETIRED).check_retirable(NOW, force=True)


def test_a_retired_host_is_refused_naming_the_admit_command():
    with pytest.raises(HostRetired, match=r"ipledger hosts admit id-1$") as refused:
        host(1, HostState.RETIRED).check_serving()
    assert refused.value.status == 403


def test_an_active_host_is_served():
    host(1).check_serving()


def test_a_host_named_as_its_id_is_labelled_once():
    assert host(1, name="id-1").label == "id-1"
    assert host(1).label == "alpha (id-1)"


@pytest.mark.parametrize("name", ["", "x" * (HOST_NAME_LENGTH + 1), "a\0b"])
def test_a_host_name_out_of_bounds_or_with_nul_is_refused(name):
    with pytest.raises(InvalidRequest, match="host name"):
        check_host_name(name)


def test_a_host_name_with_control_characters_is_kept_as_it_is():
    assert check_host_name("web\x1b[31m1") == "web\x1b[31m1"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "never"), (5, "5s"), (59, "59s"), (60, "1m"), (7200, "2h"), (3 * 86400, "3d")],
)
def test_an_age_reads_in_its_largest_unit(seconds, shown):
    assert age_shown(None if seconds is None else timedelta(seconds=seconds)) == shown


def test_the_host_name_defaults_to_the_host_name_and_may_be_set():
    import os

    assert Settings.from_env({}).host_name == os.uname().nodename
    assert Settings.from_env({"IPLEDGER_HOST_NAME": "rack 3, web-1"}).host_name == "rack 3, web-1"


def test_a_host_name_setting_too_long_is_named_in_the_error():
    with pytest.raises(SettingsError, match="IPLEDGER_HOST_NAME"):
        Settings.from_env({"IPLEDGER_HOST_NAME": "x" * (HOST_NAME_LENGTH + 1)})

"""`ipledger serve --help` lists every setting, with its variable, from driver/config.py."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from driver.config import SETTINGS, Settings
from driver.entrypoints.cli import main

# a value other than the default for each variable, to show that it reaches its field
EXAMPLES = {
    "IPLEDGER_SOCKET": "/run/docker/plugins/other.sock",
    "IPLEDGER_DB": "sqlite:////tmp/other.db",
    "IPLEDGER_WORKERS": "3",
    "IPLEDGER_THREADS": "7",
    "IPLEDGER_LOG_LEVEL": "debug",
    "IPLEDGER_DEFAULT_POOLS": '[{"base": "10.0.0.0/8", "size": 20}]',
    "IPLEDGER_SQLITE_SYNCHRONOUS": "FULL",
    "IPLEDGER_BUSY_TIMEOUT_MS": "1234",
    "IPLEDGER_CALL_TIMEOUT": "2.5",
    "IPLEDGER_HOST_ID": "host-b",
    "IPLEDGER_LOG_FORMAT": "json",
    "IPLEDGER_METRICS_ADDR": "9999",
    "IPLEDGER_CNI_SPOOL": "/srv/ipledger/spool",
    "IPLEDGER_HOST_NAME": "rack-3-web-1",
    "IPLEDGER_DNS_SERVER": "192.0.2.53:5300",
    "IPLEDGER_DNS_TSIG": str(Path(__file__).parents[1] / "data" / "dns-tsig.key"),
    "IPLEDGER_DNS_TTL": "300",
}


@pytest.fixture(autouse=True)
def private_key(tmp_path, monkeypatch):
    """The example key, readable by its owner only (git keeps it 0644; such a key is refused)."""
    path = tmp_path / "dns-tsig.key"
    path.write_text(Path(EXAMPLES["IPLEDGER_DNS_TSIG"]).read_text())
    path.chmod(0o600)
    monkeypatch.setitem(EXAMPLES, "IPLEDGER_DNS_TSIG", str(path))


def help_text() -> str:
    result = CliRunner().invoke(main, ["serve", "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output


def test_every_field_of_the_settings_has_one_documented_variable():
    assert [s.field for s in SETTINGS] == [f.name for f in dataclasses.fields(Settings)]
    assert len({s.variable for s in SETTINGS}) == len(SETTINGS)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.variable)
def test_each_documented_variable_sets_its_field_and_its_documented_default_is_the_default(
    setting,
):
    default = Settings.from_env({})
    changed = Settings.from_env({setting.variable: EXAMPLES[setting.variable]})
    assert getattr(changed, setting.field) != getattr(default, setting.field)
    if setting.default not in (
        "off",
        "/etc/machine-id",
        "the host name",
    ):  # not values: what the default is
        documented = Settings.from_env({setting.variable: setting.default})
        assert getattr(documented, setting.field) == getattr(default, setting.field)


def test_serve_help_lists_every_setting_with_its_variable_and_default():
    text = help_text()
    for setting in SETTINGS:
        assert setting.variable in text
        assert setting.default in text
        if setting.flag:
            assert re.search(rf"{setting.flag}\b.*\[{setting.variable}", text, re.S)


def test_the_readme_lists_every_setting():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for setting in SETTINGS:
        assert f"`{setting.variable}`" in readme

"""The example alert rules are valid and fire when they should (promtool, from Debian's prometheus)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).parents[2] / "plugin" / "prometheus"
CACHED = Path("/var/cache/ipledger-tests/prometheus/usr/bin/promtool")


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool") or (str(CACHED) if CACHED.exists() else None)
    if found is None:
        if os.environ.get("IPLEDGER_REQUIRE_E2E"):
            pytest.fail("promtool missing: tests/run.sh unpacks Debian's prometheus package")
        pytest.skip("promtool not installed")
    return found


def test_the_alert_rules_file_is_valid(promtool):
    result = subprocess.run(
        [promtool, "check", "rules", "ipledger.rules.yml"],
        cwd=RULES,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


def test_the_alerts_fire_on_a_filling_pool_churn_leaks_and_a_lost_ledger(promtool):
    result = subprocess.run(
        [promtool, "test", "rules", "ipledger.rules.test.yml"],
        cwd=RULES,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_only_use_metrics_ipledger_exports(ipam):
    import re

    from prometheus_client import CollectorRegistry

    from driver.observability.metrics import DnsCollector, LedgerCollector, Metrics
    from driver.usecases.admin import Admin

    ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {}, False)
    Admin(ipam.store, ipam.host_id).housekeeping.record_findings(
        [
            type(
                "F",
                (),
                {
                    "what": "lease",
                    "pool_id": "LocalDefault/198.51.100.0/24",
                    "address": "198.51.100.9",
                    "detail": "test",
                },
            )()
        ]
    )
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.allocations.labels("p").inc()
    metrics.releases.labels("p").inc()
    metrics.errors.labels("e", "StorageUnavailable").inc()
    registry.register(LedgerCollector(Admin(ipam.store, ipam.host_id)))
    registry.register(DnsCollector(_FailingZone(), lambda: {("z", "bad-key"): 1}))
    exported = {sample.name for family in registry.collect() for sample in family.samples}
    used = set(re.findall(r"\bipledger_[a-z_]+", (RULES / "ipledger.rules.yml").read_text()))
    assert used <= exported


class _FailingZone:
    """The outbox of one zone whose change the server rejected."""

    def zones(self):
        from driver.storage.dns_outbox import ZoneQueue

        return [ZoneQueue("z", 1, 0.0, 1, "bad-key", "the server does not know the key")]

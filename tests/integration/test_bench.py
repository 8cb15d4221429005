"""The benchmark runs in its quick mode on every CI run, so that it cannot rot (no time asserted)."""

import pytest

from driver.bench.ipam import run

pytestmark = [pytest.mark.slow, pytest.mark.full]


def test_the_quick_benchmark_prints_every_table_and_finds_no_duplicate():
    lines: list[str] = []
    results = run(quick=True, out=lines.append)
    text = "\n".join(lines)
    for heading in (
        "## Sequential RequestAddress + ReleaseAddress (ms)",
        "## Concurrent RequestAddress, every address checked for duplicates",
    ):
        assert heading in text
    assert len(results["sequential_p50"]) == 6
    assert len(results["ratios"]) == 6, "each run is measured against Activate side by side"
    concurrent = results["concurrent"]
    assert [(w, c) for w, c, *_ in concurrent] == [(1, 1), (1, 4), (1, 8), (2, 1), (2, 4), (2, 8)]
    assert all(dups == 0 and total == clients * 100 for _, clients, _, _, total, dups in concurrent)


def test_the_quick_postgresql_benchmark_runs_three_instances_and_finds_no_duplicate(postgres):
    from driver.bench.ipam import run_postgres

    url = postgres.new_database(template=None)
    lines: list[str] = []
    try:
        results = run_postgres(url, quick=True, out=lines.append)
    finally:
        postgres.drop_database(url)
    assert "## Concurrent RequestAddress over the three instances, checked for duplicates" in lines
    assert [(clients, total, dups) for clients, _, _, total, dups in results["concurrent"]] == [
        (3, 150, 0),
        (6, 300, 0),
        (12, 600, 0),
    ]

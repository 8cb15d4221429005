"""The benchmark runs in its quick mode on every CI run, so that it cannot rot (no time asserted)."""

import pytest

from driver.bench import run

pytestmark = pytest.mark.slow


def test_the_quick_benchmark_prints_every_table_and_finds_no_duplicate():
    lines: list[str] = []
    results = run(quick=True, out=lines.append)
    text = "\n".join(lines)
    for heading in ("## Sequential RequestAddress + ReleaseAddress (ms)",
                    "## Concurrent RequestAddress, every address checked for duplicates"):
        assert heading in text
    assert len(results["sequential_p50"]) == 6
    concurrent = results["concurrent"]
    assert [(w, c) for w, c, *_ in concurrent] == [(1, 1), (1, 4), (1, 8), (2, 1), (2, 4), (2, 8)]
    assert all(dups == 0 and total == clients * 100 for _, clients, _, _, total, dups in concurrent)

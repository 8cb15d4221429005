"""How many examples a hypothesis test tries: all of them in the full lane (tests/run.sh), a third
in the quick lane (plain `pytest`), which must stay a few minutes long on a shared 2-core machine.
"""

from __future__ import annotations

import os

# tests/run.sh sets it; plain `pytest` does not (tests/conftest.py: the two lanes)
FULL_LANE = bool(os.environ.get("IPLEDGER_REQUIRE_E2E"))


def examples(full: int) -> int:
    """`full` in the full lane, a third of it (at least 10) in the quick lane."""
    return full if FULL_LANE else max(10, full // 3)

"""The containerd releases the CRI tests run against, fetched and cached on first use.

1.6 is Debian bookworm's `containerd` (pulled in by docker.io, installed by tests/run.sh). 1.7
and 2.1 are the `containerd` packages of Debian trixie and sid, unpacked with `dpkg -x` into
the tests' cache (tests/debian_cache.py; never installed) and put first in PATH, so that their own
`containerd-shim-runc-v2` and `ctr` are used; runc is bookworm's.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests import debian_cache

SUITES = {"1.7": "trixie", "2.1": "sid"}
VERSIONS = ("1.6", "1.7", "2.1")


@dataclass(frozen=True)
class Release:
    wanted: str  # "1.6", "1.7", "2.1"
    bin_dir: Path  # containerd, containerd-shim-runc-v2 and ctr are here
    version: str  # what the binary says it is, e.g. "1.7.24"


def unpacked(suite: str) -> Path:
    """Download and unpack Debian `suite`'s containerd package into the cache, once."""
    return debian_cache.unpacked(f"containerd-{suite}", suite, ("containerd",)) / "usr" / "bin"


def version_of(containerd: Path) -> str:
    """ "containerd github.com/containerd/containerd 1.7.24~ds1 ..." -> "1.7.24"."""
    out = subprocess.run(
        [str(containerd), "--version"], capture_output=True, text=True, check=True
    ).stdout
    return out.split()[2].lstrip("v").split("~")[0].split("+")[0]


def release(wanted: str) -> Release:
    """That containerd release, fetched first if it is not cached yet."""
    bin_dir = Path("/usr/bin") if wanted == "1.6" else unpacked(SUITES[wanted])
    containerd = bin_dir / "containerd"
    if not containerd.exists():
        raise FileNotFoundError(f"{containerd} missing (apt-get install containerd)")
    return Release(wanted, bin_dir, version_of(containerd))

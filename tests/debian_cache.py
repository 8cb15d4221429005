"""Debian packages the tests run without installing them: downloaded from a suite's archive and
unpacked with `dpkg -x` into a cache (/var/cache/ipledger-tests, or IPLEDGER_TEST_CACHE).

tests/e2e/engines.py (Docker 26.1 and 28.5, sid's docker CLI, docker-compose) and
tests/cri/versions.py (containerd 1.7 and 2.1) take theirs from here. tests/run.sh fetches them
all once before the lanes start (`python -m tests.debian_cache`); each unpacking also holds a
file lock, so that two pytest processes wanting the same package never unpack it at once.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

CACHE = Path(os.environ.get("IPLEDGER_TEST_CACHE", "/var/cache/ipledger-tests"))


def unpacked(name: str, suite: str, packages: tuple[str, ...]) -> Path:
    """The root `packages` of Debian `suite` are unpacked into, under CACHE/`name`; downloaded
    and unpacked on first use."""
    directory = CACHE / name
    root = directory / "root"
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = [p for p in packages if not list(directory.glob(f"{p}_*.deb"))]
        if missing:
            _download(directory, suite, missing)
        for package in packages:
            marker = directory / f".unpacked-{package}"
            if not marker.exists():
                deb = sorted(directory.glob(f"{package}_*.deb"))[-1]
                subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
                marker.touch()
    return root


def _download(directory: Path, suite: str, packages: list[str]) -> None:
    """Download `packages` from `suite` with apt's lists kept in `directory`, apart from the
    system's."""
    (directory / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    sources = directory / "sources.list"
    sources.write_text(f"deb http://deb.debian.org/debian {suite} main\n")
    options = [
        "-o",
        f"Dir::Etc::SourceList={sources}",
        "-o",
        "Dir::Etc::SourceParts=/dev/null",
        "-o",
        f"Dir::State::Lists={directory / 'lists'}",
    ]
    subprocess.run(["apt-get", *options, "-qq", "update"], check=True, capture_output=True)
    subprocess.run(
        ["apt-get", *options, "-qq", "download", *packages],
        cwd=directory,
        check=True,
        capture_output=True,
    )


def fetch_all() -> None:
    """Fetch everything the tests unpack, so that the lanes find it ready."""
    from tests.cri.versions import SUITES, release
    from tests.e2e.engines import VERSIONS, compose, engine

    for version in VERSIONS:
        print(f"Docker {version}: {engine(version).dockerd}")
    print(f"docker-compose: {compose()}")
    for wanted in SUITES:
        print(f"containerd {wanted}: {release(wanted).bin_dir}")


if __name__ == "__main__":
    fetch_all()

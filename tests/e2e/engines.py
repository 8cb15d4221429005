"""The Docker engines the end-to-end tests run against, fetched and cached on first use.

20.10.24 is Debian bookworm's `docker.io` (installed by tests/run.sh). 26.1.5 and 28.5.2 are the
`dockerd` binaries from Debian trixie's and sid's `docker.io` packages, unpacked with `dpkg -x`
into the tests' cache (tests/debian_cache.py) and run on bookworm's containerd and runc; the CLI
for all of them is sid's `docker-cli` (28.5.2), which negotiates the API version down for older
daemons. Nothing is installed into the system's package state.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests import debian_cache


@dataclass(frozen=True)
class Engine:
    version: str
    dockerd: str
    cli: str

    @property
    def short(self) -> str:
        return self.version.replace(".", "")[:4]


def unpacked(suite: str, packages: tuple[str, ...]) -> Path:
    """Download and unpack `packages` from Debian `suite` into the cache, once."""
    return debian_cache.unpacked(f"docker-{suite}", suite, packages)


def cli() -> str:
    return str(unpacked("sid", ("docker.io", "docker-cli")) / "usr" / "bin" / "docker")


def compose() -> str:
    """Compose v2 from Debian trixie's docker-compose package, unpacked like dockerd."""
    plugins = unpacked("trixie", ("docker-compose",)) / "usr" / "libexec" / "docker"
    return str(plugins / "cli-plugins" / "docker-compose")


def _version_of(dockerd: str) -> str:
    """What the binary says it is ("Docker version 28.5.2+dfsg4, build ..." -> "28.5.2")."""
    out = subprocess.run([dockerd, "--version"], capture_output=True, text=True, check=True).stdout
    return out.split()[2].split("+")[0].rstrip(",")


def engine(version: str) -> Engine:
    """The engine of that version, fetching it first if it is not cached yet.

    Debian's suites move on: the version reported is the binary's own, and a test that depends
    on a version checks it, so that a newer engine is never taken for the one named here.
    """
    if version == "20.10":
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            raise FileNotFoundError("dockerd 20.10 missing: apt-get install docker.io")
    else:
        suite = {"26.1": "trixie", "28.5": "sid"}[version]
        dockerd = str(unpacked(suite, ("docker.io",)) / "usr" / "sbin" / "dockerd")
    return Engine(_version_of(dockerd), dockerd, cli())


VERSIONS = ("20.10", "26.1", "28.5")

"""The host service: systemd units for ipledger, installed with the right ExecStart."""

from __future__ import annotations

import shlex
import sys
from importlib import resources
from pathlib import Path

UNITS = ("ipledger.socket", "ipledger.service")
SHIPPED_EXEC_START = "ExecStart=/usr/local/bin/ipledger serve"


def render_units(python: str = sys.executable) -> dict[str, str]:
    """The unit files, with ExecStart running this installation's ipledger."""
    exec_start = f"ExecStart={shlex.quote(python)} -m driver serve"
    texts = {}
    for name in UNITS:
        text = resources.files("driver.entrypoints.units").joinpath(name).read_text()
        texts[name] = text.replace(SHIPPED_EXEC_START, exec_start)
    return texts


def install_units(unit_dir: Path, python: str = sys.executable) -> list[Path]:
    """Write the units into ``unit_dir`` (0644); return their paths."""
    unit_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_units(python).items():
        path = unit_dir / name
        path.write_text(text)
        path.chmod(0o644)
        written.append(path)
    return written

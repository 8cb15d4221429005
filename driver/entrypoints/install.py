"""The host's side: systemd units for ipledger with the right ExecStart, and the CNI plugin."""

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


def render_cni_launcher(python: str = sys.executable) -> str:
    """The CNI plugin's executable: this installation's ``ipledger-cni``, started without
    ``site`` (``-S``, about half of Python's start-up) and with the path to this ``driver``
    package alone, since the plugin needs nothing outside the standard library."""
    package_root = Path(__file__).resolve().parents[2]
    return (
        f"#!{python} -SE\n"
        '"""ipledger\'s CNI IPAM plugin (written by ipledger install-cni)."""\n'
        "import sys\n"
        f"sys.path.insert(0, {str(package_root)!r})\n"
        "from driver.entrypoints.cni_plugin import main\n"
        "main()\n"
    )


def install_cni_plugin(plugin_dir: Path, name: str = "ipledger") -> Path:
    """Write the plugin into ``plugin_dir`` as ``name`` (0755); its path."""
    plugin_dir.mkdir(parents=True, exist_ok=True)
    path = plugin_dir / name
    staged = plugin_dir / f".{name}.new"
    staged.write_text(render_cni_launcher())
    staged.chmod(0o755)
    staged.replace(path)  # a runtime running the plugin meanwhile sees the old or the new one
    return path

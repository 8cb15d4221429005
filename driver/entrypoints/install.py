"""The host's side: systemd units for ipledger with the right ExecStart, and the CNI plugin."""

from __future__ import annotations

import os
import shlex
import sys
from importlib import resources
from pathlib import Path

UNITS = ("ipledger.socket", "ipledger.service")
SHIPPED_EXEC_START = "ExecStart=/usr/local/bin/ipledger serve"
# what the service's hardening hides: ProtectHome=yes and PrivateTmp=yes
HOMES = ("/home", "/root", "/run/user")
PRIVATE_TMP = ("/tmp", "/var/tmp")


class InstallError(Exception):
    """The units cannot be written for this installation; the message says why."""


def installation_paths(python: str = sys.executable) -> list[str]:
    """What the service reads to run ipledger: the interpreter, its prefixes, the ``driver``
    package and the directories on its import path."""
    paths = [python, os.path.realpath(python), sys.prefix, sys.base_prefix, sys.exec_prefix]
    paths.append(str(Path(__file__).resolve().parents[2]))  # an editable install's sources
    paths += [entry for entry in sys.path if os.path.isabs(entry) and os.path.exists(entry)]
    return paths


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root + "/") for root in roots)


def _readable_paths(paths: list[str]) -> list[str]:
    """The directories under a home that the service must see, with none inside another;
    or the reason why no unit can run this installation."""
    needed: set[str] = set()
    for path in paths:
        path = os.path.abspath(path)
        if os.path.basename(os.path.dirname(path)) == "bin":
            path = os.path.dirname(os.path.dirname(path))  # an interpreter: its whole prefix
        if _under(path, PRIVATE_TMP):
            raise InstallError(
                f"ipledger is installed under {path}: the service gets a private /tmp "
                "(PrivateTmp=yes) and /tmp does not survive a reboot; install it elsewhere, "
                "e.g. python3 -m venv /opt/ipledger && /opt/ipledger/bin/pip install ."
            )
        if not _under(path, HOMES):
            continue
        if any(c.isspace() or c in "\"'\\" for c in path):
            raise InstallError(
                f"ipledger is installed under {path!r}, which the service must be able to read "
                "(ProtectHome hides it) and which cannot be named in a unit file: install it "
                "in a path without spaces or quotes"
            )
        needed.add(path)
    return [
        path for path in sorted(needed) if not any(path.startswith(other + "/") for other in needed)
    ]


def render_units(python: str = sys.executable, paths: list[str] | None = None) -> dict[str, str]:
    """The unit files, with ExecStart running this installation's ipledger; where it lives in a
    home directory, the service sees that much of it, read-only (ProtectHome=tmpfs and
    BindReadOnlyPaths) instead of no home at all."""
    readable = _readable_paths(installation_paths(python) if paths is None else paths)
    exec_start = f"ExecStart={shlex.quote(python)} -m driver serve"
    texts = {}
    for name in UNITS:
        text = resources.files("driver.entrypoints.units").joinpath(name).read_text()
        text = text.replace(SHIPPED_EXEC_START, exec_start)
        if readable:
            text = text.replace(
                "ProtectHome=yes\n",
                "# ipledger is installed in a home directory: only that much of it, read-only\n"
                "ProtectHome=tmpfs\n"
                f"BindReadOnlyPaths={' '.join(readable)}\n",
            )
        texts[name] = text
    return texts


def install_units(unit_dir: Path, python: str = sys.executable) -> list[Path]:
    """Write the units into ``unit_dir`` (0644); return their paths."""
    texts = render_units(python)  # refused before anything is written
    unit_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in texts.items():
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

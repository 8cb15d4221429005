"""``install-cni --self-contained``: the CNI plugin with a Python runtime of its own.

A Kubernetes node runs the plugin from its CNI bin directory, outside the DaemonSet's
container: the node has neither the image's ``/opt/ipledger`` nor, maybe, any Python. So this
install copies beside the plugin what it needs from this installation: the interpreter, the
dynamic loader and libraries it and its extension modules link (as the loader resolves them), the
standard library (without its tests, IDLE, Tk and site-packages) and the ``driver`` package.
The plugin is a ``/bin/sh`` launcher that runs that interpreter through that loader, found
relative to the launcher's own path, so it works wherever the node mounts the directory.

An upgrade writes a new runtime directory, then swaps the launcher (a rename), then removes
the older runtimes: a runtime that runs the plugin meanwhile runs the old one or the new one.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

# the parts of the standard library the plugin never needs (most of its size)
SKIPPED = {
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "distutils",
    "site-packages",
    "dist-packages",
    "__phello__",
}
_LIBRARY = re.compile(r"^\s*(\S+) => (/\S+) \(0x[0-9a-f]+\)$")


class BundleError(Exception):
    """This installation cannot be copied into a self-contained plugin; the message says why."""


def elf_interpreter(binary: Path) -> Path:
    """The dynamic loader an ELF executable names (its PT_INTERP)."""
    with open(binary, "rb") as f:
        ident = f.read(16)
        if ident[:4] != b"\x7fELF":
            raise BundleError(f"{binary} is not an ELF executable")
        bits64, order = ident[4] == 2, "<" if ident[5] == 1 else ">"
        header = f.read(48 if bits64 else 36)
        if bits64:
            phoff, phentsize, phnum = (
                struct.unpack_from(order + "Q", header, 16)[0],
                *struct.unpack_from(order + "HH", header, 38),
            )
        else:
            phoff, phentsize, phnum = (
                struct.unpack_from(order + "I", header, 12)[0],
                *struct.unpack_from(order + "HH", header, 26),
            )
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            entry = f.read(phentsize)
            kind = struct.unpack_from(order + "I", entry, 0)[0]
            if kind != 3:  # PT_INTERP
                continue
            if bits64:
                offset, size = (
                    struct.unpack_from(order + "Q", entry, 8)[0],
                    struct.unpack_from(order + "Q", entry, 32)[0],
                )
            else:
                offset, size = (
                    struct.unpack_from(order + "I", entry, 4)[0],
                    struct.unpack_from(order + "I", entry, 16)[0],
                )
            f.seek(offset)
            return Path(f.read(size).rstrip(b"\0").decode())
    raise BundleError(f"{binary} is statically linked or names no loader")


def linked_libraries(loader: Path, objects: list[Path]) -> dict[str, Path]:
    """soname -> file, for every library the loader resolves for ``objects``."""
    found: dict[str, Path] = {}
    for obj in objects:
        listing = subprocess.run(
            [str(loader), "--list", str(obj)], capture_output=True, text=True, check=False
        )
        for line in listing.stdout.splitlines():
            match = _LIBRARY.match(line)
            if match:
                found.setdefault(match.group(1), Path(match.group(2)))
    return found


def _ignore(directory: str, names: list[str]) -> set[str]:
    skipped = {n for n in names if n in SKIPPED or n.startswith(("config-", "_tkinter"))}
    skipped |= {n for n in names if ".opt-" in n and n.endswith(".pyc")}
    return skipped


def build_runtime(target: Path) -> Path:
    """Copy this installation's interpreter, libraries, standard library and ``driver`` into
    ``target``; the path of the script that runs the plugin."""
    python = Path(os.path.realpath(sys.executable))
    loader = elf_interpreter(python)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if not (stdlib / "os.py").is_file():
        raise BundleError(f"the standard library is not at {stdlib}")
    dynload = [p for p in sorted(stdlib.glob("lib-dynload/*.so")) if not _ignore("", [p.name])]
    (target / "bin").mkdir(parents=True)
    lib = target / "lib"
    lib.mkdir()
    shutil.copy2(python, target / "bin" / version)
    shutil.copy2(loader, lib / loader.name)
    for soname, path in linked_libraries(loader, [python, *dynload]).items():
        shutil.copy2(path, lib / soname)
    # the layout the interpreter looks for, relative to itself: ../lib/pythonX.Y/os.py
    shutil.copytree(stdlib, lib / version, ignore=_ignore, symlinks=False)
    package = Path(__file__).resolve().parents[1]
    shutil.copytree(
        package, target / "driver", ignore=shutil.ignore_patterns("__pycache__", "ui", "units")
    )
    script = target / "ipledger-cni.py"
    script.write_text(
        '"""ipledger\'s CNI IPAM plugin, run by the launcher beside this runtime."""\n'
        "from driver.entrypoints.cni_plugin import main\n"
        "main()\n"
    )
    return script


def render_launcher(runtime: str, loader: str, version: str) -> str:
    return (
        "#!/bin/sh\n"
        "# ipledger's CNI IPAM plugin (written by ipledger install-cni --self-contained): runs\n"
        f"# the Python runtime in {runtime}/ beside it, through that runtime's own loader.\n"
        f'r="$(dirname -- "$0")/{runtime}"\n'
        f'exec "$r/lib/{loader}" --library-path "$r/lib" "$r/bin/{version}" -SE '
        '"$r/ipledger-cni.py" "$@"\n'
    )


def install_self_contained(plugin_dir: Path, name: str = "ipledger") -> Path:
    """Write the plugin and its runtime into ``plugin_dir``; the plugin's path."""
    plugin_dir.mkdir(parents=True, exist_ok=True)
    prefix = f".{name}-runtime-"
    runtime = f"{prefix}{time.time_ns():x}{os.getpid():x}"
    staged_runtime = plugin_dir / f"{runtime}.new"
    try:
        build_runtime(staged_runtime)
        staged_runtime.rename(plugin_dir / runtime)
    except BaseException:
        shutil.rmtree(staged_runtime, ignore_errors=True)
        raise
    loader = elf_interpreter(Path(os.path.realpath(sys.executable))).name
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    path = plugin_dir / name
    staged = plugin_dir / f".{name}.new"
    staged.write_text(render_launcher(runtime, loader, version))
    staged.chmod(0o755)
    staged.replace(path)
    for old in plugin_dir.iterdir():
        if old.name.startswith(prefix) and old.name != runtime:
            shutil.rmtree(old, ignore_errors=True)
    return path

"""The README's Usage section, run as written against a real dockerd: every command, and the
output it shows (with the differences of older engines that it names)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

README = Path(__file__).resolve().parents[2] / "README.md"


def usage_session() -> list[tuple[str, list[str]]]:
    """The ``$ command`` lines of the README's Usage section, each with the output shown."""
    text = README.read_text().split("## Usage", 1)[1].split("\nWhat it does", 1)[0]
    session: list[tuple[str, list[str]]] = []
    lines = [line[4:] for line in text.splitlines() if line.startswith("    ")]
    i = 0
    while i < len(lines):
        line = lines[i]
        assert line.startswith("$ "), f"output without a command in the README: {line!r}"
        command = line[2:]
        # a command goes on while its line ends with a backslash or with &&
        while command.endswith(("\\", "&&")):
            i += 1
            command = command.removesuffix("\\") + " " + lines[i].strip()
        output = []
        i += 1
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        session.append((command, output))
    return session


def shown(expected: str, got: str) -> bool:
    """Whether a line of real output is the README's line: ``...`` stands for the rest of the
    line, an interface index and a network ID are the daemon's own."""
    expected = re.sub(r"^\d+: ", "", expected)
    got = re.sub(r"^\d+: ", "", got)
    if re.fullmatch(r"[0-9a-f]{64}", expected):
        return re.fullmatch(r"[0-9a-f]{64}", got) is not None
    if expected.endswith(" ..."):
        return got.startswith(expected.removesuffix(" ..."))
    return got == expected


def test_the_readme_usage_runs_as_shown(dockerd, plugin, names, tmp_path):
    # `docker` on the PATH is the harness's CLI, talking to this daemon
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").symlink_to(dockerd.cli_binary)
    env = dict(dockerd.env, PATH=f"{bin_dir}{os.pathsep}{dockerd.env['PATH']}")
    older = dockerd.major_minor < (28, 0)
    try:
        run_session(env, tmp_path, plugin.name, older)
    finally:
        # the README's image has fewer commands than the one the other tests use: put it back
        dockerd.make_busybox_image()


def run_session(env: dict[str, str], cwd: Path, driver: str, older: bool) -> None:
    for command, output in usage_session():
        command = command.replace("--ipam-driver ipledger", f"--ipam-driver {driver}")
        result = subprocess.run(
            command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=120
        )
        got = [
            line
            for line in (result.stdout + result.stderr).splitlines()
            if line.strip() and not line.startswith("Run 'docker run --help'")
        ]
        if older:
            # what the README says Docker 20.10 and 26.1 print instead
            output = [
                re.sub(r" gw (\S+:\S*)$", r" gw \1/64", line).replace(
                    "failed to set up container networking: ", ""
                )
                for line in output
            ]
        if not output:
            assert result.returncode == 0, f"{command}: {result.stderr}"
            continue
        assert len(got) == len(output), f"{command}:\n{got}\nREADME:\n{output}"
        for expected, line in zip(output, got, strict=True):
            assert shown(expected, line), f"{command}:\n{line!r}\nREADME:\n{expected!r}"

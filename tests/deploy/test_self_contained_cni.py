"""`ipledger install-cni --self-contained`: a plugin that runs on a node without this
installation's Python, as the DaemonSet's init container installs it into the node's
/opt/cni/bin from the image (whose /opt/ipledger the node does not have)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from driver.entrypoints.cli import main


def _version(plugin: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    # what a runtime gives a plugin: the CNI variables and little else; no Python on PATH
    return subprocess.run(
        [str(plugin)],
        input=json.dumps({"cniVersion": "1.0.0", "name": "pods"}),
        env={"CNI_COMMAND": "VERSION", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_self_contained_plugin_answers_version_where_the_node_mounts_it_after_a_reinstall(
    tmp_path,
):
    bin_dir = tmp_path / "host" / "opt" / "cni" / "bin"
    runner = CliRunner()
    for _ in range(2):  # the init container runs again at each restart of the pod
        result = runner.invoke(main, ["install-cni", "--self-contained", str(bin_dir)])
        assert result.exit_code == 0, result.output
    plugin = bin_dir / "ipledger"
    assert os.access(plugin, os.X_OK)
    text = plugin.read_text()
    # nothing of this installation is named: not its interpreter, not its sources
    assert sys.prefix not in text and str(Path(__file__).parents[2]) not in text
    assert os.path.realpath(sys.executable) not in text
    # one runtime is left, the one the launcher runs
    runtimes = [p.name for p in bin_dir.iterdir() if p.name.startswith(".ipledger-runtime-")]
    assert len(runtimes) == 1 and runtimes[0] in text, runtimes

    # the node sees the directory at another path than the init container did
    moved = tmp_path / "node" / "cni-bin"
    moved.parent.mkdir()
    shutil.move(str(bin_dir), moved)
    answer = _version(moved / "ipledger", tmp_path)
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert "1.0.0" in json.loads(answer.stdout)["supportedVersions"]


def test_the_default_install_still_writes_the_small_launcher(tmp_path):
    result = CliRunner().invoke(main, ["install-cni", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ipledger").read_text().startswith(f"#!{sys.executable} -SE\n")
    assert not [p for p in tmp_path.iterdir() if "runtime" in p.name]

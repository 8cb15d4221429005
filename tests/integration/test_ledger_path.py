"""A ledger file, or an export, that someone else could read or redirect is refused, saying how
to fix it: a symbolic link (dangling too, in a world-writable directory), a file of another user.

Run as `ipledger ...` (click's runner) on real files; the chown tests need root.
"""

from __future__ import annotations

import json
import os
import stat

import pytest
from click.testing import CliRunner

from driver.entrypoints.cli import main
from driver.storage.engine import make_engine
from driver.storage.schema import migrate

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def shared_dir(tmp_path):
    """A world-writable directory with the sticky bit, as /tmp is."""
    where = tmp_path / "h-cli-world"
    where.mkdir()
    where.chmod(0o1777)
    return where


@pytest.fixture
def ledger(tmp_path):
    """A real, empty ledger file of this user's."""
    path = tmp_path / "real" / "ledger.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    return path


@pytest.mark.parametrize("command", [["pools"], ["check"], ["import", "-"]])
def test_a_dangling_symlink_as_the_ledger_is_refused_and_nothing_is_created(
    shared_dir, tmp_path, command
):
    target = tmp_path / "victim" / "owned.db"
    link = shared_dir / "ledger.db"
    link.symlink_to(target)
    empty_export = '{"format": "ipledger-export/1", "subnets": [], "history": []}'
    result = CliRunner().invoke(
        main, [command[0], "--db", f"sqlite:///{link}", *command[1:]], input=empty_export
    )
    assert result.exit_code == 1, result.output
    assert f"{link} is a symbolic link" in result.output
    assert f"sqlite:///{target}" in result.output  # the fix: the real path
    assert not target.exists() and not target.parent.exists()
    assert "Traceback" not in result.output


def test_a_symlink_to_a_real_ledger_is_refused_naming_the_real_path(shared_dir, ledger):
    link = shared_dir / "ledger.db"
    link.symlink_to(ledger)
    result = invoke("pools", "--db", f"sqlite:///{link}")
    assert result.exit_code == 1
    assert f"{link} is a symbolic link" in result.output
    assert f"sqlite:///{ledger}" in result.output
    assert invoke("pools", "--db", f"sqlite:///{ledger}").exit_code == 0


@needs_root
@pytest.mark.parametrize("mode", [0o666, 0o600])
def test_a_ledger_owned_by_another_user_is_refused_saying_how_to_fix_it(ledger, mode):
    os.chown(ledger, NOBODY, NOBODY)
    ledger.chmod(mode)
    result = invoke("pools", "--db", f"sqlite:///{ledger}")
    assert result.exit_code == 1
    assert f"{ledger} is owned by uid {NOBODY}" in result.output
    assert f"chown {os.geteuid()} {ledger} && chmod 600 {ledger}" in result.output
    os.chown(ledger, os.geteuid(), os.getegid())
    ledger.chmod(0o600)
    assert invoke("pools", "--db", f"sqlite:///{ledger}").exit_code == 0


def test_export_refuses_to_write_through_a_symlink(ledger, shared_dir, tmp_path):
    target = tmp_path / "victim.txt"
    target.write_text("precious")
    for link, points_to in (
        (shared_dir / "out.json", target),
        (shared_dir / "gone.json", tmp_path / "new.json"),
    ):
        link.symlink_to(points_to)
        result = invoke("export", "--db", f"sqlite:///{ledger}", "-o", str(link))
        assert result.exit_code == 1, result.output
        assert f"{link} is a symbolic link" in result.output
    assert target.read_text() == "precious"
    assert not (tmp_path / "new.json").exists()


@needs_root
def test_export_refuses_to_overwrite_a_file_another_user_owns(ledger, shared_dir):
    planted = shared_dir / "out.json"
    planted.write_text("")
    os.chown(planted, NOBODY, NOBODY)
    planted.chmod(0o666)
    result = invoke("export", "--db", f"sqlite:///{ledger}", "-o", str(planted))
    assert result.exit_code == 1
    assert f"{planted} is owned by uid {NOBODY}" in result.output
    assert planted.read_text() == ""


def test_export_to_a_plain_path_still_writes_a_private_file(ledger, tmp_path):
    out = tmp_path / "export.json"
    assert invoke("export", "--db", f"sqlite:///{ledger}", "-o", str(out)).exit_code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert json.loads(out.read_text())["subnets"] == []


def test_serve_refuses_a_symlinked_ledger_in_one_line(shared_dir, tmp_path):
    link = shared_dir / "ledger.db"
    link.symlink_to(tmp_path / "elsewhere.db")
    result = invoke("serve", "--db", f"sqlite:///{link}", "--socket", str(tmp_path / "h-cli.sock"))
    assert result.exit_code == 1
    assert f"{link} is a symbolic link" in result.output
    assert not (tmp_path / "elsewhere.db").exists()

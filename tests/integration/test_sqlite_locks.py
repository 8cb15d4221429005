"""Opening a second store on an SQLite ledger in a process that already holds one open (the
master of `ipledger serve` opens the heartbeat's, the status page's and the DNS publisher's)
must not drop the first one's locks: closing any descriptor of a file drops every POSIX lock the
process holds on it, and another process closing its connection would then take itself for the
last one, checkpoint and delete the write-ahead log under the first (lost commits, "database
disk image is malformed")."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

from sqlalchemy import text

from driver.storage.engine import make_engine


def test_a_second_store_opened_in_a_process_keeps_the_first_ones_write_ahead_log(tmp_path):
    database = tmp_path / "ledger.db"
    url = f"sqlite:///{database}"
    first = make_engine(url)
    with first.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
        connection.execute(text("INSERT INTO t VALUES (1)"))
    held = first.connect()  # stays open, as a pooled connection of a long-lived store does
    held.execute(text("SELECT x FROM t")).all()
    second = make_engine(url)  # a second store of the same process
    reader = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "c.execute('SELECT count(*) FROM t').fetchall(); c.close()"
    )
    subprocess.run([sys.executable, "-c", reader, str(database)], check=True)
    assert os.path.exists(f"{database}-wal"), "another process deleted the live write-ahead log"
    held.rollback()  # its transaction holds SQLite's write lock; its connection stays open
    with first.begin() as connection:
        connection.execute(text("INSERT INTO t VALUES (2)"))
    seen = sqlite3.connect(database).execute("SELECT count(*) FROM t").fetchone()
    assert seen == (2,)
    held.close()
    first.dispose()
    second.dispose()

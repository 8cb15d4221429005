from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import free_port

# where the tests leave their screenshots (docs/img holds copies of current ones)
SCREENSHOTS = Path(os.environ.get("IPLEDGER_SCREENSHOTS", "build/screenshots"))


class UiServer:
    """``ipledger ui`` on a loopback port of its own, against one ledger."""

    def __init__(self, db_url: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "ui.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "driver",
                    "ui",
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    "--db",
                    db_url,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2) as answer:
                    answer.read()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"ipledger ui did not start: {self.log.read_text()}"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def ui_server(settings, engine, tmp_path) -> Iterator[UiServer]:
    server = UiServer(settings.db_url, tmp_path)
    yield server
    server.stop()

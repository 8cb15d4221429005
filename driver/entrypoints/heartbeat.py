"""The heartbeat of ``ipledger serve``: its host's row in the ledger, kept fresh.

A thread of gunicorn's master process (never a worker serving calls) records every
:data:`driver.domain.hosts.HEARTBEAT_S` that the host is alive, with its name and version, and
logs when an operator retires or admits it. The refusal of a retired host's calls does not wait
for it: every write of a serving host checks the host's state in its own transaction.
"""

from __future__ import annotations

import logging
import os
import threading

from driver import __version__
from driver.config import Settings
from driver.domain.errors import IpamError
from driver.domain.hosts import HEARTBEAT_S, HostState
from driver.domain.text import printable
from driver.storage.store import Store, open_configured
from driver.usecases.hosts import Hosts

log = logging.getLogger(__name__)


class Heartbeat:
    """Beats now (at start), then every ``interval`` seconds on a daemon thread until stopped."""

    def __init__(self, settings: Settings, interval: float = HEARTBEAT_S) -> None:
        self.settings = settings
        self.interval = interval
        self.state: HostState | None = None
        # the name of another serve with this host id, warned about once per name
        self.rival: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._store: Store = open_configured(settings, bounded=True)
        # gunicorn forks its workers from this process at any time: a fork waits for a beat
        # under way, and no connection of the heartbeat stays open between beats. An SQLite
        # connection a worker inherited and closed made the master's later commits (the DNS
        # publisher's) land where no other connection saw them.
        self._no_fork = threading.Lock()
        os.register_at_fork(
            before=self._no_fork.acquire,
            after_in_parent=self._no_fork.release,
            after_in_child=self._no_fork.release,
        )

    def start(self) -> None:
        self.beat()
        self._thread = threading.Thread(target=self._run, name="ipledger-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.call_timeout + 1)
        self._store.dispose()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        """One heartbeat, bounded by the call bound; a failure is logged, and the next beat
        tries again."""
        hosts = Hosts(self._store, self.settings.host_id)
        try:
            with self._no_fork:
                try:
                    state = self._store.bounded(
                        lambda: hosts.beat(self.settings.host_name, str(__version__))
                    )
                finally:
                    self._store.engine.dispose()
        except IpamError as e:
            log.warning("heartbeat not recorded in the ledger: %s", e.message)
            return
        except Exception:  # a heartbeat must never end the thread
            log.exception("heartbeat failed")
            return
        self._noticed(state.state)
        self._rival(state.rival)

    def _rival(self, rival: str | None) -> None:
        if rival is not None and rival != self.rival:
            log.warning(
                "another ipledger serve beats with this host id (%s) as %r, while this one is "
                "%r: the hosts list flips between them; give each machine its own "
                "IPLEDGER_HOST_ID (a copied /etc/machine-id?)",
                printable(self.settings.host_id),
                printable(rival),
                printable(self.settings.host_name),
            )
        self.rival = rival

    def _noticed(self, state: HostState) -> None:
        if state == self.state:
            return
        host = self.settings.host_id
        if state == HostState.RETIRED:
            log.error(
                "this host (%s) is retired from the ledger: its calls are refused until an "
                "operator runs: ipledger hosts admit %s",
                host,
                host,
            )
        elif self.state == HostState.RETIRED:
            log.info("this host (%s) was admitted again: its calls are served", host)
        self.state = state

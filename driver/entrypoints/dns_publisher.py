"""The DNS publisher of ``ipledger serve``: a thread in gunicorn's master process (beside the
metrics listener), never in a worker answering Docker, that sends the outbox to
``IPLEDGER_DNS_SERVER``. Several serve instances on one ledger each run one; the outbox's
claims keep them from sending a change twice."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from collections.abc import Iterator

from driver.adapters.dns_server import DnsRejected, DnsServer
from driver.config import Settings
from driver.domain.errors import IpamError
from driver.domain.pools import Plans
from driver.entrypoints.docker_namer import DockerNamer
from driver.storage.ledger import Ledger
from driver.storage.store import Store, open_configured
from driver.usecases.dns import DnsPublishing

log = logging.getLogger(__name__)

# how often an idle publisher looks for new changes (workers are other processes)
POLL_S = 0.2
# after a failure the server's outage gets this long before the outbox is looked at again
IDLE_AFTER_FAILURE_S = 1.0
LONGEST_IDLE_S = 30.0


def dns_server(settings: Settings) -> DnsServer:
    assert settings.dns_server is not None
    host, port = settings.dns_server
    key = settings.dns_tsig
    return DnsServer(
        host,
        port,
        (key.name, key.algorithm, key.secret) if key is not None else None,
        settings.dns_ttl,
    )


class ForkSafeStore:
    """The publisher's store in gunicorn's master, which forks workers at any time: a fork
    waits until no transaction of the publisher is open, and no connection of it stays open
    between transactions, so that a worker never inherits an SQLite connection's locks (its
    writes would then fail with "database is locked") or a PostgreSQL connection's socket."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._open = threading.Lock()
        os.register_at_fork(
            before=self._before_fork,
            after_in_parent=self._open.release,
            after_in_child=self._open.release,
        )

    def _before_fork(self) -> None:
        self._open.acquire()
        # no transaction is open now: its pooled connections are closed, not inherited
        self.store.engine.dispose()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Ledger]:
        with self._open, self.store.transaction() as ledger:
            yield ledger

    @contextlib.contextmanager
    def reading(self) -> Iterator[Ledger]:
        with self._open, self.store.reading() as ledger:
            yield ledger


class Publisher:
    """The publisher's thread: started once serving, stopped with the server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server = dns_server(settings)
        self.name = f"{settings.host_id[:64]}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.publishing: DnsPublishing | None = None
        self.namer: DockerNamer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        store = open_configured(self.settings)
        transactions = ForkSafeStore(store)
        self.publishing = DnsPublishing(transactions, self.server, self.name, DnsRejected)
        # names of Docker's containers its engines before 29 do not send (docs/dns.md)
        plans = Plans.of(store.shared, self.settings.host_id)
        self.namer = DockerNamer(transactions, self.settings, plans)
        self._thread = threading.Thread(target=self._run, name="ipledger-dns", daemon=True)
        self._thread.start()
        log.info(
            "DNS: publishing leases to %s%s",
            self.server.where,
            f" with key {self.settings.dns_tsig.name}" if self.settings.dns_tsig else " unsigned",
        )

    def _run(self) -> None:
        publishing = self.publishing
        assert publishing is not None
        try:
            due = publishing.start()
            if due:
                log.info("DNS: %d queued changes are due now", due)
        except IpamError as e:
            log.warning("DNS: the outbox cannot be read now: %s", e.message)
        wait, unreadable = POLL_S, 0
        while not self._stop.wait(wait):
            wait = POLL_S
            try:
                if self.namer is not None:
                    self.namer.tick()
                if not publishing.due():
                    unreadable = 0
                    continue
                outcome = publishing.publish_due()
                unreadable = 0
            except IpamError as e:
                # the ledger is down: said once, then looked at less and less often
                if not unreadable:
                    log.warning("DNS: the outbox cannot be read now: %s", e.message)
                unreadable += 1
                wait = min(LONGEST_IDLE_S, IDLE_AFTER_FAILURE_S * 2 ** min(unreadable, 6))
                continue
            except Exception:
                log.exception("DNS: the publisher met an unexpected error; it goes on")
                wait = IDLE_AFTER_FAILURE_S
                continue
            if outcome.failed:
                wait = IDLE_AFTER_FAILURE_S

    def failures(self) -> dict[tuple[str, str], int]:
        """The failures met so far, by (zone, failure), for the metrics."""
        return dict(self.publishing.failures) if self.publishing is not None else {}

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.publishing is not None:
            self.publishing.stop()

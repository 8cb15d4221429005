"""The DNS publisher's helper for Docker engines that do not send a container's name: every
second at most, it names this host's Docker leases waiting for one from Docker's own API
(:mod:`driver.usecases.docker_names`). It runs in the publisher's thread, never in a request."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from driver.adapters.docker_state import DockerUnavailable, endpoints
from driver.config import Settings
from driver.domain.docker_names import Shown
from driver.domain.errors import IpamError
from driver.domain.pools import Plans
from driver.domain.text import shown
from driver.usecases.dns import Transactions
from driver.usecases.docker_names import DockerNames

log = logging.getLogger(__name__)

# how often the leases waiting for a name are looked for; a container shows within a second
INTERVAL_S = 1.0
# one call to Docker's API: a Docker that hangs delays only the names, never a request
DOCKER_TIMEOUT_S = 5.0
# after Docker could not be read, the next try; the publisher goes on meanwhile
AFTER_FAILURE_S = 10.0
# the same failure to reach Docker is logged again after this long, not at every pass
REPEAT_WARNING_S = 300.0


def docker_look(settings: Settings) -> Callable[[], Shown]:
    """Docker's endpoints in the networks of this ipledger (as served under its socket's name
    and as any managed ipledger plugin), read where the docker SDK finds Docker (DOCKER_HOST)."""
    served_as = {settings.driver_name}
    return lambda: endpoints(None, served_as, DOCKER_TIMEOUT_S)


class DockerNamer:
    """Runs :class:`DockerNames` at its interval and keeps its failures out of the loop."""

    def __init__(
        self,
        store: Transactions,
        settings: Settings,
        plans: Plans,
        look: Callable[[], Shown] | None = None,
    ) -> None:
        self.names = DockerNames(store, settings.host_id, plans, look or docker_look(settings))
        self._next = 0.0
        self._warned: tuple[str, float] | None = None

    def tick(self) -> bool:
        """One pass when it is due; whether it named a lease (changes are queued then)."""
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + INTERVAL_S
        try:
            return bool(self.names.run_once().named)
        except DockerUnavailable as e:
            # a Docker that hangs would hold the publisher for the call's bound at every pass
            self._next = time.monotonic() + AFTER_FAILURE_S
            self._warn(f"DNS: the names of Docker's containers cannot be read now: {e}", now)
        except IpamError as e:
            self._warn(f"DNS: the leases waiting for a name cannot be read now: {e.message}", now)
        return False

    def _warn(self, message: str, now: float) -> None:
        if self._warned and self._warned[0] == message and now - self._warned[1] < REPEAT_WARNING_S:
            return
        self._warned = (message, now)
        log.warning("%s", shown(message))

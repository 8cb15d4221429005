"""The operator's use cases on one ledger, by group: what ``ipledger`` and the metrics call."""

from __future__ import annotations

from driver.storage.store import Store
from driver.storage.units import StoreUnits
from driver.usecases.check import Checks
from driver.usecases.hosts import Hosts
from driver.usecases.housekeeping import Housekeeping
from driver.usecases.operator import OnLedger
from driver.usecases.reports import Reports
from driver.usecases.reservations import Reservations
from driver.usecases.transfer import Transfer


class Admin(OnLedger):
    """Every operator use case on one ledger, by group."""

    def __init__(self, store: Store, host_id: str = "local") -> None:
        super().__init__(store, host_id)
        self.reports = Reports(store, host_id)
        self.reservations = Reservations(store, host_id)
        self.transfer = Transfer(store, host_id)
        self.checks = Checks(store, host_id)
        self.housekeeping = Housekeeping(StoreUnits(store), host_id)
        self.hosts = Hosts(store, host_id)

"""Several processes and threads on one ledger (SQLite and PostgreSQL) never hand out one address twice."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from driver.config import Settings
from driver.storage.models import leases
from driver.storage.store import open_store
from driver.usecases.ipam import Ipam


def allocate_and_release(db_url: str, host_id: str, pool_id: str, count: int) -> list[str]:
    """Take `count` addresses, giving every third back at once; return those kept."""
    store = open_store(db_url)
    ipam = Ipam(store, Settings().default_pools, host_id)
    kept = []
    for i in range(count):
        address = ipam.request_address(pool_id, "", {})
        if i % 3 == 2:
            ipam.release_address(pool_id, address.split("/")[0])
        else:
            kept.append(address)
    store.dispose()
    return kept


def test_concurrent_processes_never_share_an_address(ipam, engine, settings):
    pool_id = ipam.request_pool("LocalDefault", "2001:db8::/48", "", {}, True).pool_id
    with multiprocessing.get_context("spawn").Pool(4) as workers:
        results = workers.starmap(
            allocate_and_release, [(settings.db_url, settings.host_id, pool_id, 60)] * 4
        )
    kept = [a for result in results for a in result]
    assert len(kept) == 4 * 40
    assert len(set(kept)) == len(kept)
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(leases)).scalar_one() == len(kept)
    # lowest-free with releases in between keeps the addresses packed at the bottom
    highest = max(int(a.split("/")[0].rsplit(":", 1)[1], 16) for a in kept)
    assert highest <= 4 * 60


def test_concurrent_threads_never_share_an_address(ipam, engine):
    pool_id = ipam.request_pool("LocalDefault", "192.0.2.0/24", "", {}, False).pool_id
    with ThreadPoolExecutor(8) as threads:
        got = list(threads.map(lambda _: ipam.request_address(pool_id, "", {}), range(200)))
    assert len(set(got)) == 200
    assert sorted(got, key=lambda a: int(a.split(".")[3].split("/")[0]))[-1] == "192.0.2.200/24"

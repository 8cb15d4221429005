"""The ``ipledger`` command: a thin click layer over the use cases, one module per command group.

Each module parses, calls a use case and prints (through :mod:`.render`); none decides.
"""

from __future__ import annotations

from driver.entrypoints.cli.bench import bench
from driver.entrypoints.cli.cni import cni
from driver.entrypoints.cli.dns import dns
from driver.entrypoints.cli.gc import gc
from driver.entrypoints.cli.history import history, prune_history
from driver.entrypoints.cli.hosts import hosts
from driver.entrypoints.cli.leases import leases
from driver.entrypoints.cli.pools import pools, usage
from driver.entrypoints.cli.reservations import reserve, unreserve
from driver.entrypoints.cli.root import main
from driver.entrypoints.cli.serve import install_cni, install_service, serve, ui
from driver.entrypoints.cli.transfer import check, export, import_, migrate_db

for _command in (
    serve,
    install_service,
    ui,
    install_cni,
    bench,
    pools,
    leases,
    usage,
    history,
    reserve,
    unreserve,
    export,
    import_,
    check,
    gc,
    migrate_db,
    prune_history,
    cni,
    hosts,
    dns,
):
    main.add_command(_command)

__all__ = ["main"]

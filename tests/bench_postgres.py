"""`ipledger bench --postgres` on a private, durable PostgreSQL cluster (fsync on), as in the README.

python -m tests.bench_postgres [--quick]      # as root, with Debian's postgresql installed
"""

from __future__ import annotations

import sys

from driver.bench.ipam import run_postgres
from tests.pg import PostgresCluster


def main() -> None:
    cluster = PostgresCluster()
    cluster.start(durable=True)
    try:
        run_postgres(cluster.new_database(template=None), quick="--quick" in sys.argv)
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()

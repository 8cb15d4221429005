"""The swarm's global address space: a shared ledger's GlobalDefault pools become the swarm's
(owner ``swarm``) instead of the host's whose manager asked for them, so that a new leader finds
them; and a lease remembers that a new leader has yet to ask for it again (``restoring``).

Only a host's GlobalDefault subnet that no other host also holds moves: two hosts holding the
same one (a leader change before this version made the second) cannot both become the swarm's,
and stay their hosts', for ``ipledger gc`` on a manager to reclaim once their network is gone.
An SQLite ledger's pools are ``local`` and stay so.

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# as driver.domain.pools has them today; a migration keeps its own names
SWARM, SHARED, LOCAL = "swarm", "shared", "local"
GLOBAL_SPACE = "GlobalDefault"

# a host's GlobalDefault subnets whose range no other owner's GlobalDefault subnet has
_ALONE = """
    SELECT s.id FROM subnets s
    WHERE s.space = :space AND s.owner NOT IN (:swarm, :shared, :local)
      AND NOT EXISTS (
        SELECT 1 FROM subnets o
        WHERE o.space = s.space AND o.version = s.version AND o.first = s.first
          AND o.id <> s.id AND o.owner <> :shared
      )
"""


def upgrade() -> None:
    with op.batch_alter_table("leases") as batch:
        batch.add_column(
            sa.Column("restoring", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    names = {"space": GLOBAL_SPACE, "swarm": SWARM, "shared": SHARED, "local": LOCAL}
    connection = op.get_bind()
    alone = [row[0] for row in connection.execute(sa.text(_ALONE), names)]
    for subnet_id in alone:
        connection.execute(
            sa.text("UPDATE pools SET owner = :swarm WHERE subnet_id = :id"),
            {"swarm": SWARM, "id": subnet_id},
        )
        connection.execute(
            sa.text("UPDATE subnets SET owner = :swarm WHERE id = :id"),
            {"swarm": SWARM, "id": subnet_id},
        )


def downgrade() -> None:
    raise NotImplementedError("ipledger's ledger migrates forward only")

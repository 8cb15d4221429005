"""The hosts of the ledger: name, version, heartbeat, and whether an operator retired them.

Every host that already left a trace (a served driver, a pool, a lease, an attachment) gets a
row named by its id, never seen: ``ipledger hosts`` lists it, and it may be retired at once.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# as driver.domain.hosts has it today; a migration keeps its own numbers
HOST_NAME_LENGTH = 255


def upgrade() -> None:
    hosts = op.create_table(
        "hosts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(HOST_NAME_LENGTH), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(16), nullable=False, server_default="active"),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retired_by", sa.String(255), nullable=True),
    )
    known = sa.union(
        *(
            sa.select(sa.column("host_id")).select_from(sa.table(table, sa.column("host_id")))
            for table in ("served", "leases", "pools", "attachments")
        )
    ).subquery()
    op.execute(
        hosts.insert().from_select(
            ["id", "name", "version", "first_seen"],
            sa.select(
                known.c.host_id, known.c.host_id, sa.literal(""), sa.func.current_timestamp()
            ).where(known.c.host_id.is_not(None)),
        )
    )


def downgrade() -> None:
    raise NotImplementedError("ipledger's ledger migrates forward only")

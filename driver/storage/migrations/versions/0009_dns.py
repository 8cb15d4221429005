"""Leases in DNS (issue 23): the name a lease is published under, the outbox of DNS changes
written in the lease's transaction, and the records ipledger published.

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("leases") as batch:
        batch.add_column(sa.Column("dns_name", sa.String(255), nullable=True))
    op.create_table(
        "dns_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("zone", sa.String(255), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("reverse", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("next_at", sa.Float, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        sa.Column("claimed_until", sa.Float, nullable=True),
        sa.Column("failure", sa.String(32), nullable=True),
        sa.Column("last_error", sa.String(1024), nullable=True),
    )
    op.create_index("ix_dns_outbox_name", "dns_outbox", ["name", "id"])
    op.create_table(
        "dns_records",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("address", sa.String(64), primary_key=True),
        sa.Column("zone", sa.String(255), nullable=False),
        sa.Column("reverse", sa.Boolean, nullable=False),
        sa.Column("published_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("ipledger's ledger migrates forward only")

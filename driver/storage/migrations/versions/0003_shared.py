"""Several hosts on one ledger: subnet and pool owners, shared pool attachments.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ADDRESS = sa.LargeBinary(16)
POOL_COLUMNS = (
    "id",
    "subnet_id",
    "space",
    "cidr",
    "subpool",
    "range_first",
    "range_last",
    "options",
    "created_at",
    "reuse",
    "quarantine_s",
    "hold_s",
    "host_id",
)


def upgrade() -> None:
    with op.batch_alter_table("subnets") as batch:
        batch.add_column(sa.Column("owner", sa.String(64), nullable=False, server_default="local"))
        batch.drop_index("ix_subnets_space_first")
        batch.create_index(
            "ix_subnets_owner_space_first", ["owner", "space", "version", "first"], unique=True
        )
    # The pools' key becomes (owner, id): two hosts may each have LocalDefault/198.51.100.0/24.
    op.create_table(
        "pools_new",
        sa.Column("owner", sa.String(64), primary_key=True),
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("subnet_id", sa.Integer, sa.ForeignKey("subnets.id"), nullable=False),
        sa.Column("space", sa.String(64), nullable=False),
        sa.Column("cidr", sa.String(64), nullable=False),
        sa.Column("subpool", sa.String(64), nullable=True),
        sa.Column("range_first", ADDRESS, nullable=False),
        sa.Column("range_last", ADDRESS, nullable=False),
        sa.Column("options", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reuse", sa.String(16), nullable=False, server_default="lowest"),
        sa.Column("quarantine_s", sa.Integer, nullable=False, server_default="0"),
        sa.Column("hold_s", sa.Integer, nullable=False, server_default="0"),
        sa.Column("host_id", sa.String(64), nullable=True),
    )
    columns = ", ".join(POOL_COLUMNS)
    op.execute(f"INSERT INTO pools_new (owner, {columns}) SELECT 'local', {columns} FROM pools")
    op.drop_index("ix_pools_subnet_id", "pools")
    op.drop_table("pools")
    op.rename_table("pools_new", "pools")
    op.create_index("ix_pools_subnet_id", "pools", ["subnet_id"])
    op.create_table(
        "attachments",
        sa.Column("pool_id", sa.String(200), primary_key=True),
        sa.Column("host_id", sa.String(64), primary_key=True),
        sa.Column("attached_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("ipledger's ledger migrates forward only")

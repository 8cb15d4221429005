"""The first ledger: subnets, pools, free ranges and leases.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ADDRESS = sa.LargeBinary(16)


def upgrade() -> None:
    op.create_table(
        "subnets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("space", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("cidr", sa.String(64), nullable=False),
        sa.Column("first", ADDRESS, nullable=False),
        sa.Column("last", ADDRESS, nullable=False),
        sa.Column("refs", sa.Integer, nullable=False),
        sa.Column("cursor", ADDRESS, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_subnets_space_first", "subnets", ["space", "version", "first"], unique=True)
    op.create_table(
        "pools",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("subnet_id", sa.Integer, sa.ForeignKey("subnets.id"), nullable=False),
        sa.Column("space", sa.String(64), nullable=False),
        sa.Column("cidr", sa.String(64), nullable=False),
        sa.Column("subpool", sa.String(64), nullable=True),
        sa.Column("range_first", ADDRESS, nullable=False),
        sa.Column("range_last", ADDRESS, nullable=False),
        sa.Column("options", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_pools_subnet_id", "pools", ["subnet_id"])
    op.create_table(
        "free_ranges",
        sa.Column("subnet_id", sa.Integer, sa.ForeignKey("subnets.id"), primary_key=True),
        sa.Column("first", ADDRESS, primary_key=True),
        sa.Column("last", ADDRESS, nullable=False),
    )
    op.create_index("ix_free_ranges_last", "free_ranges", ["subnet_id", "last"], unique=True)
    op.create_table(
        "leases",
        sa.Column("subnet_id", sa.Integer, sa.ForeignKey("subnets.id"), primary_key=True),
        sa.Column("address", ADDRESS, primary_key=True),
        sa.Column("pool_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("mac", sa.String(32), nullable=True),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_leases_pool_id", "leases", ["pool_id", "kind", "mac"])


def downgrade() -> None:
    for table in ("leases", "free_ranges", "pools", "subnets"):
        op.drop_table(table)

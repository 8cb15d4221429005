"""Operations: pool reuse options, host ids, reservations, parked addresses, history, findings.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ADDRESS = sa.LargeBinary(16)


def upgrade() -> None:
    with op.batch_alter_table("subnets") as batch:
        batch.add_column(sa.Column("reservations", sa.Integer, nullable=False, server_default="0"))
    with op.batch_alter_table("pools") as batch:
        batch.add_column(sa.Column("reuse", sa.String(16), nullable=False, server_default="lowest"))
        batch.add_column(sa.Column("quarantine_s", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("hold_s", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("host_id", sa.String(64), nullable=True))
    with op.batch_alter_table("leases") as batch:
        batch.add_column(sa.Column("host_id", sa.String(64), nullable=True))
    op.create_table(
        "reservations",
        sa.Column("subnet_id", sa.Integer, sa.ForeignKey("subnets.id"), primary_key=True),
        sa.Column("first", ADDRESS, primary_key=True),
        sa.Column("last", ADDRESS, nullable=False),
        sa.Column("label", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "parked",
        sa.Column("subnet_id", sa.Integer, sa.ForeignKey("subnets.id"), primary_key=True),
        sa.Column("address", ADDRESS, primary_key=True),
        sa.Column("pool_id", sa.String(200), nullable=False),
        sa.Column("mac", sa.String(32), nullable=True),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("until", sa.Float, nullable=False),
    )
    op.create_index("ix_parked_until", "parked", ["subnet_id", "until"])
    op.create_index("ix_parked_mac", "parked", ["pool_id", "mac"])
    op.create_index("ix_parked_name", "parked", ["pool_id", "name"])
    op.create_table(
        "history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("host_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("pool_id", sa.String(200), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=True),
        sa.Column("mac", sa.String(32), nullable=True),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("detail", sa.String(255), nullable=True),
    )
    op.create_index("ix_history_address", "history", ["address", "id"])
    op.create_index("ix_history_pool", "history", ["pool_id", "id"])
    op.create_table(
        "findings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("what", sa.String(16), nullable=False),
        sa.Column("pool_id", sa.String(200), nullable=False),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("detail", sa.String(255), nullable=False),
    )


def downgrade() -> None:
    for table in ("findings", "history", "parked", "reservations"):
        op.drop_table(table)
    with op.batch_alter_table("leases") as batch:
        batch.drop_column("host_id")
    with op.batch_alter_table("pools") as batch:
        for column in ("host_id", "hold_s", "quarantine_s", "reuse"):
            batch.drop_column(column)
    with op.batch_alter_table("subnets") as batch:
        batch.drop_column("reservations")

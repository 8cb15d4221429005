"""The driver names each host's ipledger serve has served the ledger under, for gc.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "served",
        sa.Column("host_id", sa.String(64), primary_key=True),
        sa.Column("driver", sa.String(255), primary_key=True),
        sa.Column("socket", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("ipledger's ledger migrates forward only")

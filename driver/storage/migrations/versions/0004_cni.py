"""CNI attachments: a lease made through CNI names its attachment (network/container/ifname).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("leases") as batch:
        batch.add_column(sa.Column("cni_attachment", sa.String(400), nullable=True))
    op.create_index("ix_leases_cni_attachment", "leases", ["cni_attachment"])


def downgrade() -> None:
    raise NotImplementedError("ipledger's ledger migrates forward only")

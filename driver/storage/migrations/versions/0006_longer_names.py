"""Longer holder names and history details: a pod's "NAMESPACE/NAME" (Kubernetes allows 63 and
253 characters) and a container ID of 255 no longer fit 255 (PostgreSQL refused them); and the
pod a CNI lease was made for (the runtime's CNI_ARGS), which the lease's name records only with
``hold_by: pod``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# as driver.domain.pools has them today; a migration keeps its own numbers
HOLDER_NAME_LENGTH = 400
DETAIL_LENGTH = 1024


def upgrade() -> None:
    for table in ("leases", "parked", "history"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column(
                "name",
                existing_type=sa.String(255),
                type_=sa.String(HOLDER_NAME_LENGTH),
                existing_nullable=True,
            )
            if table == "leases":
                batch.add_column(sa.Column("pod", sa.String(HOLDER_NAME_LENGTH), nullable=True))
            if table == "history":
                batch.alter_column(
                    "detail",
                    existing_type=sa.String(255),
                    type_=sa.String(DETAIL_LENGTH),
                    existing_nullable=True,
                )


def downgrade() -> None:
    raise NotImplementedError("ipledger's ledger migrates forward only")

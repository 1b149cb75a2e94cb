"""pending twins: "Pay" pressed again cannot store a second identical pending order

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 21:40:00

`diner_order.twin_hash` holds the request hash of an order placed without an
Idempotency-Key; a partial unique index allows one pending order per diner and hash.
An order that leaves `pending` leaves the index by itself; an order pending for longer
than the Pay-again window has its `twin_hash` cleared before a new twin is stored.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

WHERE = "status = 'pending' AND twin_hash IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("diner_order") as batch:
        batch.add_column(sa.Column("twin_hash", sa.String(length=64), nullable=True))
    op.create_index(
        "uq_order_pending_twin",
        "diner_order",
        ["diner_id", "twin_hash"],
        unique=True,
        sqlite_where=sa.text(WHERE),
        postgresql_where=sa.text(WHERE),
    )


def downgrade() -> None:
    op.drop_index("uq_order_pending_twin", table_name="diner_order")
    with op.batch_alter_table("diner_order") as batch:
        batch.drop_column("twin_hash")

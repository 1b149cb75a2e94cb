"""order answers: what a customer told "pending" was answered, and when they saw the pizza

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 10:00:00

`diner_order.deferred_status` is the HTTP status of the order's first pending answer
(503, or 202 to a client that sent `Prefer: respond-async`), recorded with `deferred_at`
where the answer is decided: incident timelines and reports say what the customer was
really answered. Older orders keep NULL ("answered pending").

`diner_order.shown_at` is when a customer who was answered pending was first shown the
order's pizza (a 200 to `POST /api/order`, or `GET /api/order/{id}` with it). "Pay"
pressed again meets an order of the same request (`uq_order_pending_twin`) while it is
pending, and now also once it is made but not yet shown: that press is answered with
the pizza instead of ordering a second one. Orders fulfilled before this revision count
as shown (the rule they were answered under let them go), so no two of them collide.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

PENDING_ONLY = "status = 'pending' AND twin_hash IS NOT NULL"
UNTIL_SHOWN = (
    "twin_hash IS NOT NULL AND (status = 'pending' OR (status = 'fulfilled'"
    " AND deferred_at IS NOT NULL AND shown_at IS NULL))"
)


def _twin_index(where: str) -> None:
    op.create_index(
        "uq_order_pending_twin",
        "diner_order",
        ["diner_id", "twin_hash"],
        unique=True,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    with op.batch_alter_table("diner_order") as batch:
        batch.add_column(sa.Column("deferred_status", sa.SmallInteger(), nullable=True))
        batch.add_column(sa.Column("shown_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.execute(
        "UPDATE diner_order SET shown_at = coalesce(finished_at, date)"
        " WHERE status = 'fulfilled' AND shown_at IS NULL"
    )
    op.drop_index("uq_order_pending_twin", table_name="diner_order")
    _twin_index(UNTIL_SHOWN)


def downgrade() -> None:
    op.drop_index("uq_order_pending_twin", table_name="diner_order")
    _twin_index(PENDING_ONLY)
    with op.batch_alter_table("diner_order") as batch:
        batch.drop_column("shown_at")
        batch.drop_column("deferred_status")

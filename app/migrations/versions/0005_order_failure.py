"""why a failed order failed, as a value: diner_order.failure

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 22:10:00

The customer's answer for a failed order depended on `last_reason` starting with
"rejected by factory". The reason is now an OrderFailure value in its own column;
orders failed before are classified here from their stored reason, once.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("diner_order") as batch:
        batch.add_column(sa.Column("failure", sa.String(length=16), nullable=True))
    orders = sa.table(
        "diner_order",
        sa.column("status", sa.String),
        sa.column("last_reason", sa.String),
        sa.column("failure", sa.String),
    )
    failed = orders.c.status == "failed"
    for prefix, failure in (
        ("rejected by factory", "rejected"),
        ("not made within ORDER_MAX_AGE_S", "expired"),
    ):
        op.execute(
            sa.update(orders)
            .where(failed, orders.c.last_reason.like(f"{prefix}%"))
            .values(failure=failure)
        )
    op.execute(
        sa.update(orders).where(failed, orders.c.failure.is_(None)).values(failure="cancelled")
    )


def downgrade() -> None:
    with op.batch_alter_table("diner_order") as batch:
        batch.drop_column("failure")

"""order trace context: the worker's retries link back to the order's first trace

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 00:40:00

`diner_order.trace_context` holds the W3C `traceparent` of the request that placed the
order (55 characters: version, trace id, span id, flags), when that request was traced.
The retry worker's attempt span carries a span link to it, so an order's trace and its
later retries are found from one another (docs/telemetry.md#traces). Older orders, and
orders placed while no trace was recorded, keep NULL: their retries have no link.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("diner_order") as batch:
        batch.add_column(sa.Column("trace_context", sa.String(length=55), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("diner_order") as batch:
        batch.drop_column("trace_context")

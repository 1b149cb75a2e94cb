"""incidents: the incident table, factory events tagged with it, orders' deferred_at

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "incident",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("opened_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("started_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("closed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("open_slot", sa.Integer(), nullable=True),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("fault", sa.Text(), nullable=False),
        sa.Column("reopened", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("open_slot"),
    )
    with op.batch_alter_table("factory_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("incident_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_factory_event_incident_id"), ["incident_id"], unique=False
        )
        batch_op.create_foreign_key(
            "fk_factory_event_incident_id", "incident", ["incident_id"], ["id"], ondelete="SET NULL"
        )
    with op.batch_alter_table("diner_order", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("deferred_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.create_index("ix_order_deferred", ["deferred_at"], unique=False)
        batch_op.create_index("ix_order_finished", ["finished_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("diner_order", schema=None) as batch_op:
        batch_op.drop_index("ix_order_finished")
        batch_op.drop_index("ix_order_deferred")
        batch_op.drop_column("deferred_at")
    with op.batch_alter_table("factory_event", schema=None) as batch_op:
        batch_op.drop_constraint("fk_factory_event_incident_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_factory_event_incident_id"))
        batch_op.drop_column("user_id")
        batch_op.drop_column("incident_id")
    op.drop_table("incident")

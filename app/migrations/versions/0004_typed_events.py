"""typed factory events; remediation links lose two columns nothing updated

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 22:00:00

Factory events gain the fields code acts on, so nothing parses `detail` (the human
sentence) any more: `breaker_from`/`breaker_to` for breaker transitions, `link` (redacted)
for a detected link. Rows written before are filled in from their detail, once, here.

`remediation_link.last_seen` and `seen_count` are dropped: they were written once at
insert (ON CONFLICT DO NOTHING) and never updated or read, so they only looked like facts.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("factory_event") as batch:
        batch.add_column(sa.Column("breaker_from", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("breaker_to", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("link", sa.Text(), nullable=True))
    events = sa.table(
        "factory_event",
        sa.column("id", sa.Integer),
        sa.column("kind", sa.String),
        sa.column("detail", sa.Text),
        sa.column("breaker_from", sa.String),
        sa.column("breaker_to", sa.String),
        sa.column("link", sa.Text),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(events.c.id, events.c.kind, events.c.detail).where(
            events.c.kind.in_(("breaker", "link_detected"))
        )
    ).all()
    for event_id, kind, detail in rows:
        # The old detail formats, read one last time: "closed -> open", "<link> (outcome x)".
        if kind == "breaker":
            old, sep, new = (detail or "").partition(" -> ")
            values = {"breaker_from": old, "breaker_to": new} if sep else {}
        else:
            values = {"link": (detail or "").split(" ")[0] or None}
        if values:
            bind.execute(sa.update(events).where(events.c.id == event_id).values(**values))
    with op.batch_alter_table("remediation_link") as batch:
        batch.drop_column("last_seen")
        batch.drop_column("seen_count")


def downgrade() -> None:
    with op.batch_alter_table("remediation_link") as batch:
        batch.add_column(
            sa.Column(
                "last_seen",
                sqlmodel.sql.sqltypes.UTCDateTime(),
                nullable=False,
                server_default=sa.func.current_timestamp(),
            )
        )
        batch.add_column(sa.Column("seen_count", sa.Integer(), nullable=False, server_default="1"))
    with op.batch_alter_table("factory_event") as batch:
        batch.drop_column("link")
        batch.drop_column("breaker_to")
        batch.drop_column("breaker_from")

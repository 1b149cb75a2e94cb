"""login attempts: sign-in counters per address and per account from one address

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 10:00:00

`login_attempt` holds one counter per subject (a client address, an account signed in
to from one address, the addresses trying one account), counted by one statement per
attempt (app/users/logins.py). It replaces `login_failure`, a row per failed sign-in
that was counted and written in two steps: its rows only ever mattered for five
minutes, so they are dropped rather than carried over.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_attempt",
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("since_ms", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("subject"),
    )
    op.create_index("ix_login_attempt_since_ms", "login_attempt", ["since_ms"], unique=False)
    for column in ("at", "client", "email"):
        op.drop_index(f"ix_login_failure_{column}", table_name="login_failure")
    op.drop_table("login_failure")


def downgrade() -> None:
    op.create_table(
        "login_failure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("at", "client", "email"):
        op.create_index(f"ix_login_failure_{column}", "login_failure", [column], unique=False)
    op.drop_index("ix_login_attempt_since_ms", table_name="login_attempt")
    op.drop_table("login_attempt")

"""ids never reused: AUTOINCREMENT on SQLite for tables whose ids others keep

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 22:30:00

SQLite hands out the highest deleted rowid again unless a table is AUTOINCREMENT: a new
account would inherit a deleted diner's order history, a new store a deleted store's
revenue. SQLite cannot change that in place, so each table is rebuilt with its data
(app.db.migrate turns foreign-key enforcement off around migrations, as SQLite's own
table-rebuild procedure requires). PostgreSQL never reuses ids: nothing to do there.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

TABLES = ("user", "menu_item", "franchise", "store", "diner_order")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": False}
        ):
            pass

"""Migrations 0004 and 0005 carry the rows written before them into the typed fields."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection
from sqlmodel import col, select
from sqlmodel.sql.sqltypes import UTCDateTime

from app import db
from app.config import Settings
from app.models import DinerOrder, FactoryEvent, Money, OrderFailure

NOW = datetime(2024, 12, 5, 14, 3, tzinfo=UTC)
EVENTS = sa.table(
    "factory_event",
    sa.column("at", UTCDateTime()),
    sa.column("kind", sa.String),
    sa.column("detail", sa.Text),
)
ORDERS = sa.table(
    "diner_order",
    sa.column("diner_id", sa.Integer),
    sa.column("franchise_id", sa.Integer),
    sa.column("store_id", sa.Integer),
    sa.column("date", UTCDateTime()),
    sa.column("status", sa.String),
    sa.column("total", Money()),
    sa.column("attempts", sa.Integer),
    sa.column("last_reason", sa.String),
)


def _as_0003_wrote_them(connection: Connection) -> None:
    command.upgrade(db._alembic_config(connection), "0003")
    connection.execute(
        EVENTS.insert(),
        [
            {"at": NOW, "kind": "breaker", "detail": "closed -> open"},
            {
                "at": NOW,
                "kind": "link_detected",
                "detail": "https://f/api/support/***/report/x (outcome unavailable)",
            },
            {"at": NOW, "kind": "operator", "detail": "user 1: breaker set to auto"},
        ],
    )
    order = {"diner_id": 1, "franchise_id": 1, "store_id": 1, "date": NOW, "attempts": 1}
    connection.execute(
        ORDERS.insert(),
        [
            {**order, "status": "failed", "total": Decimal(1), "last_reason": reason}
            for reason in (
                "rejected by factory: factory rejected the order: HTTP 400",
                "not made within ORDER_MAX_AGE_S (86400 s); not charged",
                "its store was deleted",
            )
        ]
        + [{**order, "status": "fulfilled", "total": Decimal(1), "last_reason": None}],
    )


async def test_old_rows_get_their_typed_fields(empty_database_url: str) -> None:
    engine = db.create_engine(Settings(database_url=empty_database_url).database_url)
    try:
        async with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
                await connection.commit()
            async with connection.begin():
                await connection.run_sync(_as_0003_wrote_them)
        await db.migrate(engine)
        async with db.session_factory(engine)() as session:
            events = list(await session.exec(select(FactoryEvent).order_by(col(FactoryEvent.id))))
            orders = list(await session.exec(select(DinerOrder).order_by(col(DinerOrder.id))))
    finally:
        await engine.dispose()
    breaker, link, operator = events
    assert (breaker.breaker_from, breaker.breaker_to) == ("closed", "open")
    assert link.link == "https://f/api/support/***/report/x"
    assert (operator.breaker_from, operator.link) == (None, None)
    assert [o.failure for o in orders] == [
        OrderFailure.REJECTED,
        OrderFailure.EXPIRED,
        OrderFailure.CANCELLED,
        None,
    ]

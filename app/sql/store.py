"""What the order path stores and reads, independent of the database (see app/sql/__init__)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from app.models import from_units
from app.sql.commands import (
    Claim,
    Defer,
    Expire,
    Fail,
    ForgetKey,
    ForgetTwin,
    Fulfil,
    InsertOrder,
    Release,
    Renew,
    Retry,
    Show,
    Unclaim,
    Write,
)
from app.sql.dialect import Dialect, Read
from app.sql.group_commit import GroupCommit
from app.sql.postgres import PostgresDialect
from app.sql.records import MenuRecord
from app.sql.rows import (
    ClaimedOrder,
    InsertRefused,
    MenuRow,
    NewOrder,
    PendingStats,
    PrincipalRow,
    StoredOrder,
)
from app.sql.sqlite import SqliteDialect

R = TypeVar("R")


class OrderStore:
    """The order path's statements, for one database's `Dialect`. Writes are typed
    commands (app/sql/commands.py), group-committed (`GroupCommit`)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._writes: GroupCommit[Write] = GroupCommit(dialect.flush)
        self._time = dialect.codec.time_out
        self._ids = dialect.codec.ids
        # Menu items are immutable once added (no route changes or deletes one), so a
        # row once read is the row; new items are read on first use.
        self._menu_rows: dict[int, MenuRow] = {}

    async def start(self) -> None:
        await self.dialect.start()

    async def close(self) -> None:
        await self._writes.close()
        await self.dialect.close()

    # -- reads ------------------------------------------------------------------------------

    async def _read(self, read: Read[R], **values: Any) -> list[R]:
        """``read``'s rows as its records; ``values`` its parameters, by name."""
        record = read.record
        return [record(row) for row in await self.dialect.read(read.sql, values)]

    def _at(self, value: Any) -> datetime:
        at = self._time(value)
        assert at is not None
        return at

    async def principal(self, jti: str, user_id: int) -> PrincipalRow | None:
        rows = await self.dialect.principal_rows(jti, user_id)
        if not rows:
            return None
        user = rows[0]
        roles = tuple((row.role, row.object_id) for row in rows if row.role is not None)
        return PrincipalRow(user.id, user.name, user.email, self._at(user.expires_at), roles)

    async def menu(self) -> list[MenuRow]:
        return [_menu_row(row) for row in await self._read(self.dialect.reads.menu)]

    async def menu_items(self, ids: set[int]) -> dict[int, MenuRow]:
        """The menu items among ``ids`` (unknown ids are missing from the answer)."""
        missing = [i for i in ids if i not in self._menu_rows]
        if missing:
            reads = self.dialect.reads
            for row in await self._read(reads.menu_items, ids=self._ids(missing)):
                self._menu_rows[row.id] = _menu_row(row)
        return {i: self._menu_rows[i] for i in ids if i in self._menu_rows}

    async def pending_stats(self) -> PendingStats:
        [pending] = await self._read(self.dialect.reads.pending)
        due = self._time(pending.next_due) if pending.next_due else None
        return PendingStats(int(pending.orders), self._time(pending.oldest), due)

    async def order_state(self, order_id: int) -> tuple[str, str | None] | None:
        """An order's status and pizza JWT as stored (None: no such order)."""
        rows = await self._read(self.dialect.reads.state, order_id=order_id)
        return (rows[0].status, rows[0].jwt) if rows else None

    async def find_order(
        self,
        *,
        order_id: int | None = None,
        diner_id: int | None = None,
        key: str | None = None,
        twin_hash: str | None = None,
        open_twin: bool = True,
    ) -> StoredOrder | None:
        """One order by id, by its diner's Idempotency-Key, or its diner's open twin
        (models.OPEN_TWIN; ``open_twin=False``: the newest twin, whatever its status)."""
        reads = self.dialect.reads
        if order_id is not None:
            rows = await self._read(reads.find_id, order_id=order_id)
        elif key is not None:
            rows = await self._read(reads.find_key, diner_id=diner_id, key=key)
        else:
            twin = reads.find_twin if open_twin else reads.find_last_twin
            rows = await self._read(twin, diner_id=diner_id, twin_hash=twin_hash)
        if not rows:
            return None
        row = rows[0]
        items = await self._read(reads.items_of, order_id=row.id)
        return StoredOrder(
            id=row.id,
            diner_id=row.diner_id,
            franchise_id=row.franchise_id,
            store_id=row.store_id,
            date=self._at(row.date),
            status=row.status,
            total=from_units(row.total),
            jwt=row.jwt,
            last_reason=row.last_reason,
            failure=row.failure,
            request_hash=row.request_hash,
            deferred_at=self._time(row.deferred_at),
            items=tuple((i.id, i.menu_id, i.description, from_units(i.price)) for i in items),
        )

    async def load(self, ids: list[int]) -> list[ClaimedOrder]:
        """The claimed orders still pending, with their diners and items: two statements."""
        if not ids:
            return []
        reads = self.dialect.reads
        rows = await self._read(reads.load, ids=self._ids(ids))
        items: dict[int, list[tuple[int, int, str, Decimal]]] = {row.id: [] for row in rows}
        for item in await self._read(reads.load_items, ids=self._ids(ids)):
            if item.order_id in items:
                items[item.order_id].append(
                    (item.id, item.menu_id, item.description, from_units(item.price))
                )
        return [
            ClaimedOrder(
                id=row.id,
                diner_id=row.diner_id,
                franchise_id=row.franchise_id,
                store_id=row.store_id,
                date=self._at(row.date),
                total=from_units(row.total),
                attempts=row.attempts,
                deferred_at=self._time(row.deferred_at),
                diner_name=row.name or "",
                diner_email=row.email or "",
                items=tuple(items[row.id]),
                trace_context=row.trace_context,
            )
            for row in rows
        ]

    # -- writes -----------------------------------------------------------------------------

    async def insert_order(self, order: NewOrder) -> tuple[int, list[int]] | InsertRefused:
        """Store a new pending order and its items; their ids, or why it was not stored."""
        result: tuple[int, list[int]] | InsertRefused = await self._writes.write(InsertOrder(order))
        return result

    async def fulfil(self, order_id: int, jwt: str, now: datetime) -> bool:
        """Record the pizza, if the order is still pending (one pizza per order)."""
        return bool(await self._writes.write(Fulfil(order_id, jwt, now)))

    async def fail(self, order_id: int, reason: str, now: datetime) -> bool:
        """Give the order up (the factory rejected it): failed, never charged."""
        return bool(await self._writes.write(Fail(order_id, reason, now)))

    # A write that leaves an order pending may be its customer's pending answer: `answer`
    # is that answer's HTTP status (None for the worker's), kept with the first
    # `deferred_at` (an incident's timeline says what the customer was answered).

    async def retry_later(
        self,
        order_id: int,
        reason: str,
        next_attempt_at: datetime,
        now: datetime,
        answer: int | None = None,
    ) -> bool:
        """An attempt that made no pizza: counted, retried at ``next_attempt_at``."""
        write = Retry(order_id, reason, next_attempt_at, now, answer)
        return bool(await self._writes.write(write))

    async def release(
        self, order_id: int, reason: str, now: datetime, answer: int | None = None
    ) -> bool:
        """Hand a claimed order back without counting an attempt: no call was made."""
        return bool(await self._writes.write(Release(order_id, reason, now, answer)))

    async def defer(self, order_id: int, now: datetime, answer: int | None = None) -> bool:
        """The customer is answered pending while the call runs on (`deferred_at`); False
        when the order is no longer pending (its answer was stored meanwhile)."""
        return bool(await self._writes.write(Defer(order_id, now, answer)))

    async def show(self, order_id: int, now: datetime) -> None:
        """A made order's pizza was shown to its customer (`shown_at`): "Pay" pressed
        after this is a new order."""
        await self._writes.write(Show(order_id, now))

    async def forget_key(self, order_id: int) -> None:
        """The order's Idempotency-Key has expired: it may name a new order."""
        await self._writes.write(ForgetKey(order_id))

    async def forget_twin(self, order_id: int) -> None:
        """The pending order is older than the "Pay again" window: a twin may be stored."""
        await self._writes.write(ForgetTwin(order_id))

    async def unclaim(self, ids: list[int]) -> int:
        """Shutdown: hand the leases of interrupted calls back."""
        return int(await self._writes.write(Unclaim(ids)))

    async def renew(self, ids: list[int], until: datetime) -> int:
        """Extend the leases of orders still being attempted here (pending ones only)."""
        return int(await self._writes.write(Renew(ids, until)))

    async def claim(self, limit: int, now: datetime, until: datetime) -> list[int]:
        """Lease up to ``limit`` due pending orders to this process, oldest first."""
        ids: list[int] = await self._writes.write(Claim(limit, now, until))
        return ids

    async def expire(self, cutoff: datetime, now: datetime, reason: str) -> int:
        """Fail the unclaimed pending orders placed before ``cutoff``."""
        return int(await self._writes.write(Expire(cutoff, now, reason)))


def _menu_row(row: MenuRecord) -> MenuRow:
    return MenuRow(row.id, row.title, row.description, row.image, from_units(row.price))


def open_store(database_url: str) -> OrderStore:
    """The store for this SQLAlchemy URL (sqlite+aiosqlite:// or postgresql+asyncpg://)."""
    dialect: Dialect
    if database_url.startswith("sqlite"):
        dialect = SqliteDialect(database_url)
    else:
        dialect = PostgresDialect(database_url)
    return OrderStore(dialect)

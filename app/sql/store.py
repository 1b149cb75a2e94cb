"""What the order path stores and reads, independent of the database (see app/sql/__init__)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from app.models import from_units
from app.sql.group_commit import GroupCommit
from app.sql.rows import (
    ClaimedOrder,
    InsertRefused,
    MenuRow,
    NewOrder,
    PendingStats,
    PrincipalRow,
    StoredOrder,
)


class OrderStore(ABC):
    """The order path's statements. Writes are group-committed (`GroupCommit`)."""

    def __init__(self) -> None:
        self._writes = GroupCommit(self._flush)
        # Menu items are immutable once added (no route changes or deletes one), so a
        # row once read is the row; new items are read on first use.
        self._menu_rows: dict[int, MenuRow] = {}

    @abstractmethod
    async def start(self) -> None: ...

    async def close(self) -> None:
        await self._writes.close()

    @abstractmethod
    async def _flush(self, writes: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Apply `writes` in one transaction, in order; one result each, or raise."""

    # -- reads ------------------------------------------------------------------------------
    # Each dialect gives its statements (`_reads`: principal (unless it overrides
    # `_principal_rows`), menu, menu_items, pending, state, load, load_items, items_of,
    # find_id, find_key, find_twin (an open one), find_last_twin), how
    # it runs one (`_read`), how a stored time reads back (`_time`) and how a list of ids is
    # passed (`_ids`); the rows become objects here, once for both.

    _reads: dict[str, str]

    @abstractmethod
    async def _read(self, statement: str, *args: Any) -> Sequence[Sequence[Any]]: ...

    @staticmethod
    def _time(value: Any) -> datetime | None:
        return value  # type: ignore[no-any-return]

    @staticmethod
    def _ids(ids: list[int]) -> Any:
        return ids

    def _at(self, value: Any) -> datetime:
        at = self._time(value)
        assert at is not None
        return at

    async def principal(self, jti: str, user_id: int) -> PrincipalRow | None:
        rows = await self._principal_rows(jti, user_id)
        if not rows:
            return None
        first = rows[0]
        roles = tuple((row[4], row[5]) for row in rows if row[4] is not None)
        return PrincipalRow(first[0], first[1], first[2], self._at(first[3]), roles)

    async def _principal_rows(self, jti: str, user_id: int) -> Sequence[Sequence[Any]]:
        """The session's user and roles, a row per role (the roles' columns None if none)."""
        return await self._read(self._reads["principal"], jti, user_id)

    async def menu(self) -> list[MenuRow]:
        return [_menu_row(row) for row in await self._read(self._reads["menu"])]

    async def menu_items(self, ids: set[int]) -> dict[int, MenuRow]:
        """The menu items among ``ids`` (unknown ids are missing from the answer)."""
        missing = [i for i in ids if i not in self._menu_rows]
        if missing:
            for row in await self._read(self._reads["menu_items"], self._ids(missing)):
                self._menu_rows[row[0]] = _menu_row(row)
        return {i: self._menu_rows[i] for i in ids if i in self._menu_rows}

    async def pending_stats(self) -> PendingStats:
        count, oldest, due = (await self._read(self._reads["pending"]))[0]
        return PendingStats(int(count), self._time(oldest), self._time(due) if due else None)

    async def order_state(self, order_id: int) -> tuple[str, str | None] | None:
        """An order's status and pizza JWT as stored (None: no such order)."""
        rows = await self._read(self._reads["state"], order_id)
        return (rows[0][0], rows[0][1]) if rows else None

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
        if order_id is not None:
            rows = await self._read(self._reads["find_id"], order_id)
        elif key is not None:
            rows = await self._read(self._reads["find_key"], diner_id, key)
        else:
            which = "find_twin" if open_twin else "find_last_twin"
            rows = await self._read(self._reads[which], diner_id, twin_hash)
        if not rows:
            return None
        row = rows[0]
        items = await self._read(self._reads["items_of"], row[0])
        return StoredOrder(
            id=row[0],
            diner_id=row[1],
            franchise_id=row[2],
            store_id=row[3],
            date=self._at(row[4]),
            status=row[5],
            total=from_units(row[6]),
            jwt=row[7],
            last_reason=row[8],
            failure=row[9],
            request_hash=row[10],
            deferred_at=self._time(row[11]),
            items=tuple((i[0], i[1], i[2], from_units(i[3])) for i in items),
        )

    async def load(self, ids: list[int]) -> list[ClaimedOrder]:
        """The claimed orders still pending, with their diners and items: two statements."""
        if not ids:
            return []
        rows = await self._read(self._reads["load"], self._ids(ids))
        items: dict[int, list[tuple[int, int, str, Decimal]]] = {row[0]: [] for row in rows}
        for item in await self._read(self._reads["load_items"], self._ids(ids)):
            if item[1] in items:
                items[item[1]].append((item[0], item[2], item[3], from_units(item[4])))
        return [
            ClaimedOrder(
                id=row[0],
                diner_id=row[1],
                franchise_id=row[2],
                store_id=row[3],
                date=self._at(row[4]),
                total=from_units(row[5]),
                attempts=row[6],
                deferred_at=self._time(row[7]),
                diner_name=row[8] or "",
                diner_email=row[9] or "",
                items=tuple(items[row[0]]),
                trace_context=row[10],
            )
            for row in rows
        ]

    # -- writes -----------------------------------------------------------------------------

    async def insert_order(self, order: NewOrder) -> tuple[int, list[int]] | InsertRefused:
        """Store a new pending order and its items; their ids, or why it was not stored."""
        result: tuple[int, list[int]] | InsertRefused = await self._writes.write("insert", order)
        return result

    async def fulfil(self, order_id: int, jwt: str, now: datetime) -> bool:
        """Record the pizza, if the order is still pending (one pizza per order)."""
        return bool(await self._writes.write("fulfil", order_id, jwt, now))

    async def fail(self, order_id: int, reason: str, now: datetime) -> bool:
        """Give the order up (the factory rejected it): failed, never charged."""
        return bool(await self._writes.write("fail", order_id, reason, now))

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
        write = ("retry", order_id, reason, next_attempt_at, now, answer)
        return bool(await self._writes.write(*write))

    async def release(
        self, order_id: int, reason: str, now: datetime, answer: int | None = None
    ) -> bool:
        """Hand a claimed order back without counting an attempt: no call was made."""
        return bool(await self._writes.write("release", order_id, reason, now, answer))

    async def defer(self, order_id: int, now: datetime, answer: int | None = None) -> bool:
        """The customer is answered pending while the call runs on (`deferred_at`); False
        when the order is no longer pending (its answer was stored meanwhile)."""
        return bool(await self._writes.write("defer", order_id, now, answer))

    async def show(self, order_id: int, now: datetime) -> None:
        """A made order's pizza was shown to its customer (`shown_at`): "Pay" pressed
        after this is a new order."""
        await self._writes.write("show", order_id, now)

    async def forget_key(self, order_id: int) -> None:
        """The order's Idempotency-Key has expired: it may name a new order."""
        await self._writes.write("forget_key", order_id)

    async def forget_twin(self, order_id: int) -> None:
        """The pending order is older than the "Pay again" window: a twin may be stored."""
        await self._writes.write("forget_twin", order_id)

    async def unclaim(self, ids: list[int]) -> int:
        """Shutdown: hand the leases of interrupted calls back."""
        return int(await self._writes.write("unclaim", ids))

    async def renew(self, ids: list[int], until: datetime) -> int:
        """Extend the leases of orders still being attempted here (pending ones only)."""
        return int(await self._writes.write("renew", ids, until))

    async def claim(self, limit: int, now: datetime, until: datetime) -> list[int]:
        """Lease up to ``limit`` due pending orders to this process, oldest first."""
        ids: list[int] = await self._writes.write("claim", limit, now, until)
        return ids

    async def expire(self, cutoff: datetime, now: datetime, reason: str) -> int:
        """Fail the unclaimed pending orders placed before ``cutoff``."""
        return int(await self._writes.write("expire", cutoff, now, reason))


def _menu_row(row: Sequence[Any]) -> MenuRow:
    return MenuRow(row[0], row[1], row[2], row[3], from_units(row[4]))


def open_store(database_url: str) -> OrderStore:
    """The store for this SQLAlchemy URL (sqlite+aiosqlite:// or postgresql+asyncpg://)."""
    if database_url.startswith("sqlite"):
        from app.sql.sqlite import SqliteOrderStore

        return SqliteOrderStore(database_url)
    from app.sql.postgres import PostgresOrderStore

    return PostgresOrderStore(database_url)

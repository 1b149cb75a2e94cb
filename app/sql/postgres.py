"""The order path on PostgreSQL: asyncpg's own prepared statements, writes group-committed.

asyncpg prepares each statement once per connection and keeps it. One connection is the
writer: the statements of one kind in a flush go out pipelined (`fetchmany`) as one
implicit transaction, so a flush of 30 orders costs about the round trip of one. Reads
use a small pool of their own. Each round trip counts: on this kind of machine a write
to a loopback socket was the largest single cost of an order on PostgreSQL, so the token
checks waiting at one moment are batched into one statement as the writes are. The claim is
one statement with `FOR UPDATE SKIP LOCKED`: replicas never take the same order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from itertools import groupby
from typing import Any, NamedTuple, TypeVar

import asyncpg
from sqlalchemy.engine import make_url

from app.models import OPEN_TWIN, to_units
from app.sql.commands import (
    Claim,
    Codec,
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
    statements_for,
)
from app.sql.dialect import Read, Reads, Sql, numbered, same
from app.sql.failures import store_error, unreachable
from app.sql.group_commit import GroupCommit, WriteFailed
from app.sql.records import (
    INSERTED_ORDER_COLUMNS,
    ITEM_COLUMNS,
    LOADED_COLUMNS,
    LOADED_ITEM_COLUMNS,
    MENU_COLUMNS,
    PRINCIPAL_COLUMNS,
    STATE_COLUMNS,
    STORED_COLUMNS,
    InsertedRecord,
    ItemRecord,
    LoadedItemRecord,
    LoadedRecord,
    MenuRecord,
    PendingRecord,
    StateRecord,
    StoredRecord,
)
from app.sql.rows import InsertRefused

R = TypeVar("R")
READ_POOL_SIZE = 4
_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)


def _failed(exc: BaseException) -> WriteFailed:
    return WriteFailed(store_error(exc))


def _close_if_lost(connection: asyncpg.Connection, exc: BaseException) -> None:
    """A connection that failed as a lost one is closed now, never used again.

    asyncpg may not have seen the socket close yet, or may have left the connection open
    and out of step (app/db.py): the pool would hand it to the next read (its reset sends
    nothing that would find it out), and the writer would keep it. A pool's connection
    that asyncpg saw close is given back already; its handle refuses every call.
    """
    if unreachable(exc):
        with contextlib.suppress(asyncpg.InterfaceError):
            connection.terminate()


# The token checks waiting at one moment, in one statement: check n of the arrays is
# answered by the rows whose `n` is n (none: no such session).
_PRINCIPALS = numbered(f"""
SELECT q.n, {PRINCIPAL_COLUMNS}
FROM unnest(:jtis::text[], :user_ids::int[]) WITH ORDINALITY AS q(jti, user_id, n)
JOIN auth_session AS s ON s.jti = q.jti
JOIN "user" AS u ON u.id = s.user_id AND u.id = q.user_id
LEFT JOIN user_role AS r ON r.user_id = u.id
ORDER BY q.n, r.id
""")


class NumberedPrincipal(NamedTuple):
    """A row of the batched token check: which check it answers (from 1), then its fields."""

    n: int
    id: int
    name: str
    email: str
    expires_at: Any
    role: str | None
    object_id: int | None


_IN_IDS = "= ANY(:ids::int[])"


def _read(text: str, record: Callable[[Iterable[Any]], R]) -> Read[R]:
    return Read(numbered(text), record)


def _stored(where: str) -> Read[StoredRecord]:
    return _read(f"SELECT {STORED_COLUMNS} FROM diner_order WHERE {where}", StoredRecord._make)


READS = Reads(
    menu=_read(f"SELECT {MENU_COLUMNS} FROM menu_item ORDER BY id", MenuRecord._make),
    menu_items=_read(f"SELECT {MENU_COLUMNS} FROM menu_item WHERE id {_IN_IDS}", MenuRecord._make),
    pending=_read(
        "SELECT count(*), min(date), min(greatest(next_attempt_at, claimed_until))"
        " FROM diner_order WHERE status = 'pending'",
        PendingRecord._make,
    ),
    state=_read(f"SELECT {STATE_COLUMNS} FROM diner_order WHERE id = :order_id", StateRecord._make),
    load=_read(
        f"SELECT {LOADED_COLUMNS}"
        ' FROM diner_order AS o LEFT JOIN "user" AS u ON u.id = o.diner_id'
        f" WHERE o.id {_IN_IDS} AND o.status = 'pending' ORDER BY o.id",
        LoadedRecord._make,
    ),
    load_items=_read(
        f"SELECT {LOADED_ITEM_COLUMNS} FROM order_item WHERE order_id {_IN_IDS} ORDER BY id",
        LoadedItemRecord._make,
    ),
    items_of=_read(
        f"SELECT {ITEM_COLUMNS} FROM order_item WHERE order_id = :order_id ORDER BY id",
        ItemRecord._make,
    ),
    find_id=_stored("id = :order_id"),
    find_key=_stored("diner_id = :diner_id AND idempotency_key = :key"),
    find_twin=_stored(f"diner_id = :diner_id AND twin_hash = :twin_hash AND {OPEN_TWIN}"),
    find_last_twin=_stored(
        "diner_id = :diner_id AND twin_hash = :twin_hash ORDER BY id DESC LIMIT 1"
    ),
)

# The order and its items in one statement; nothing is inserted when the store is not in
# the franchise (checked in the same transaction) or the diner's Idempotency-Key is taken.
# Every column of the order is named, from the model.
_INSERT = f"""
WITH o AS (
    INSERT INTO diner_order ({", ".join(INSERTED_ORDER_COLUMNS)})
    SELECT {", ".join(f":{name}" for name in INSERTED_ORDER_COLUMNS)}
    WHERE EXISTS (SELECT 1 FROM store WHERE id = :store_id AND franchise_id = :franchise_id)
    -- the diner's Idempotency-Key, or an open twin (uq_order_pending_twin), stored first
    ON CONFLICT DO NOTHING
    RETURNING id
), i AS (
    INSERT INTO order_item (order_id, menu_id, description, price)
    SELECT o.id, x.menu_id, x.description, x.price
    FROM o, unnest(:item_menu_ids::int[], :item_descriptions::text[], :item_prices::bigint[])
        WITH ORDINALITY AS x(menu_id, description, price, n)
    ORDER BY x.n
    RETURNING id
)
SELECT (SELECT id FROM o) AS order_id, array(SELECT id FROM i ORDER BY id) AS item_ids,
       EXISTS (SELECT 1 FROM store WHERE id = :store_id AND franchise_id = :franchise_id)
           AS store_found
"""
_PENDING_ONLY = "WHERE id = :order_id AND status = 'pending'"
# The first pending answer: its time and HTTP status, set together (SET reads the old row).
_DEFERRED = (
    "deferred_status = CASE WHEN deferred_at IS NULL THEN :answer::smallint"
    " ELSE deferred_status END, deferred_at = coalesce(deferred_at, :now)"
)


def _counted(update: str) -> Sql:
    """One row per execution (how many rows the update changed), so pipelined results
    line up with their arguments."""
    return numbered(f"WITH changed AS ({update} RETURNING 1) SELECT count(*) FROM changed")


STATEMENTS = statements_for(
    "PostgreSQL",
    {
        InsertOrder: numbered(_INSERT),
        Fulfil: _counted(
            "UPDATE diner_order SET status = 'fulfilled', jwt = :jwt, finished_at = :now,"
            f" claimed_until = NULL, attempts = attempts + 1, last_reason = NULL {_PENDING_ONLY}"
        ),
        Fail: _counted(
            "UPDATE diner_order SET status = 'failed', failure = 'rejected',"
            f" last_reason = :reason, finished_at = :now, claimed_until = NULL {_PENDING_ONLY}"
        ),
        Retry: _counted(
            "UPDATE diner_order SET attempts = attempts + 1, last_reason = :reason,"
            f" next_attempt_at = :next_attempt_at, claimed_until = NULL, {_DEFERRED}"
            f" {_PENDING_ONLY}"
        ),
        Release: _counted(
            "UPDATE diner_order SET claimed_until = NULL, last_reason = :reason,"
            f" next_attempt_at = :now, {_DEFERRED} {_PENDING_ONLY}"
        ),
        Defer: _counted(f"UPDATE diner_order SET {_DEFERRED} {_PENDING_ONLY}"),
        Show: _counted(
            "UPDATE diner_order SET shown_at = coalesce(shown_at, :now)"
            " WHERE id = :order_id AND status = 'fulfilled'"
        ),
        ForgetKey: _counted("UPDATE diner_order SET idempotency_key = NULL WHERE id = :order_id"),
        ForgetTwin: _counted("UPDATE diner_order SET twin_hash = NULL WHERE id = :order_id"),
        Unclaim: _counted(
            f"UPDATE diner_order SET claimed_until = NULL WHERE id {_IN_IDS} AND status = 'pending'"
        ),
        Renew: _counted(
            f"UPDATE diner_order SET claimed_until = :until WHERE id {_IN_IDS}"
            " AND status = 'pending'"
        ),
        # The claim: replicas never take the same order (SKIP LOCKED).
        Claim: numbered("""
UPDATE diner_order SET claimed_until = :until
WHERE id IN (
    SELECT id FROM diner_order
    WHERE status = 'pending' AND next_attempt_at <= :now
      AND (claimed_until IS NULL OR claimed_until < :now)
    ORDER BY id LIMIT :limit
    FOR UPDATE SKIP LOCKED)
RETURNING id
"""),
        Expire: _counted(
            "UPDATE diner_order SET status = 'failed', failure = 'expired', finished_at = :now,"
            " last_reason = :reason WHERE status = 'pending' AND date < :cutoff"
            " AND (claimed_until IS NULL OR claimed_until < :now)"
        ),
    },
)
CODEC = Codec(time_in=same, time_out=same, ids=same)


def _arguments(write: Write) -> list[Any]:
    """A command's arguments in its statement's order, picked by name."""
    values = write.values(CODEC)
    if isinstance(write, InsertOrder):
        items = write.order.items
        values["item_menu_ids"] = [menu_id for menu_id, _, _ in items]
        values["item_descriptions"] = [description for _, description, _ in items]
        values["item_prices"] = [to_units(price) for _, _, price in items]
    return STATEMENTS[type(write)].arguments(values)


async def _session_untouched(connection: asyncpg.Connection) -> None:
    """The read pool's reset: nothing to undo. Each read is one SELECT outside a
    transaction (no SET, LISTEN, cursor or advisory lock), so asyncpg's default reset
    (`RESET ALL; UNLISTEN *; ...` on every release, a round trip per read) was a tenth of
    the service's CPU per order. asyncpg still rolls back a transaction left open."""


class PostgresDialect:
    """The order store's PostgreSQL side (app/sql/dialect.py)."""

    reads = READS
    codec = CODEC

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._writer: asyncpg.Connection | None = None
        self._readers: asyncpg.Pool | None = None
        # Every signed-in request's token check: those waiting at one moment share one
        # statement, batched as the writes are (a lone check waits for nothing). A round
        # trip each was 8 % of an order's CPU in the service alone (py-spy); batched, 4 %.
        self._principals: GroupCommit[tuple[str, int]] = GroupCommit(self._principal_batch)

    async def start(self) -> None:
        settings = {"application_name": "jwt-pizza-orders"}
        try:
            self._writer = await asyncpg.connect(self._dsn, server_settings=settings)
            self._readers = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=READ_POOL_SIZE,
                server_settings=settings,
                reset=_session_untouched,
            )
        except _ERRORS as exc:
            raise store_error(exc) from None

    async def close(self) -> None:
        await self._principals.close()
        if self._readers is not None:
            await self._readers.close()
        if self._writer is not None:
            await self._writer.close()
        self._writer = self._readers = None

    async def _writer_connection(self) -> asyncpg.Connection:
        # A writer lost with the database (a restart) is replaced at the next flush.
        if self._writer is None or self._writer.is_closed():
            self._writer = await asyncpg.connect(
                self._dsn, server_settings={"application_name": "jwt-pizza-orders"}
            )
        return self._writer

    async def flush(self, writes: list[Write]) -> list[Any]:
        """Each run of writes of one kind is one pipeline, and so one implicit transaction
        (asyncpg sends a single Sync for it): atomic, durable when it returns, with no
        BEGIN and COMMIT round trips of its own. Runs are independent (no write waits in
        a flush on another of the same flush), so a run that fails fails its writes only,
        and a statement the server refuses fails only its own write (see `_run`).
        """
        try:
            db = await self._writer_connection()
        except _ERRORS as exc:
            raise store_error(exc) from None
        results: list[Any] = []
        for kind, group in groupby(writes, key=type):
            results.extend(await self._run(db, kind, [_arguments(write) for write in group]))
        return results

    async def _run(
        self, db: asyncpg.Connection, kind: type[Write], arguments: list[list[Any]]
    ) -> list[Any]:
        try:
            return await self._apply(db, kind, arguments)
        except asyncpg.PostgresError as exc:
            # The server going away (a restart, a failover): nothing to learn from
            # retrying one by one.
            if len(arguments) == 1 or unreachable(exc):
                _close_if_lost(db, exc)
                return [_failed(exc)] * len(arguments)
            # The server refused one statement (bad data, a constraint): the pipeline was
            # rolled back whole. Each write again on its own, so only the bad one fails
            # instead of every customer whose write shared its flush.
            return [r for args in arguments for r in await self._run(db, kind, [args])]
        except Exception as exc:  # the connection, or the driver (asyncpg's own errors)
            _close_if_lost(db, exc)
            return [_failed(exc)] * len(arguments)

    @staticmethod
    async def _apply(
        db: asyncpg.Connection, kind: type[Write], arguments: list[list[Any]]
    ) -> list[Any]:
        statement = STATEMENTS[kind].text
        if kind is Claim:
            # One statement each, so each its own transaction: a claim that failed
            # does not hide one that was made.
            claimed: list[Any] = []
            for args in arguments:
                try:
                    rows = await db.fetch(statement, *args)
                except _ERRORS as exc:
                    _close_if_lost(db, exc)
                    claimed.append(WriteFailed(store_error(exc)))
                else:
                    claimed.append(sorted(order_id for (order_id,) in rows))
            return claimed
        rows = await db.fetchmany(statement, arguments)
        if kind is InsertOrder:
            return [_inserted(InsertedRecord._make(row)) for row in rows]
        return [count for (count,) in rows]

    async def principal_rows(self, jti: str, user_id: int) -> list[NumberedPrincipal]:
        rows: list[NumberedPrincipal] = await self._principals.write((jti, user_id))
        return rows

    async def _principal_batch(self, checks: list[tuple[str, int]]) -> list[Any]:
        values = {"jtis": [jti for jti, _ in checks], "user_ids": [user for _, user in checks]}
        answers: list[list[NumberedPrincipal]] = [[] for _ in checks]
        for row in await self.read(_PRINCIPALS, values):
            principal = NumberedPrincipal._make(row)
            answers[principal.n - 1].append(principal)
        return answers

    async def read(self, sql: Sql, values: Mapping[str, Any]) -> list[asyncpg.Record]:
        assert self._readers is not None
        try:
            async with self._readers.acquire() as connection:
                try:
                    rows: list[asyncpg.Record] = await connection.fetch(
                        sql.text, *sql.arguments(values)
                    )
                except _ERRORS as exc:
                    _close_if_lost(connection, exc)
                    raise
        except _ERRORS as exc:
            raise store_error(exc) from None
        return rows


def _inserted(row: InsertedRecord) -> tuple[int, list[int]] | InsertRefused:
    if row.order_id is not None:
        return row.order_id, list(row.item_ids)
    return InsertRefused.TAKEN if row.store_found else InsertRefused.STORE_MISSING

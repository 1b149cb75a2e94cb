"""The order path on PostgreSQL: asyncpg's own prepared statements, writes group-committed.

asyncpg prepares each statement once per connection and keeps it. One connection is the
writer: the statements of one kind in a flush go out pipelined (`fetchmany`) as one
implicit transaction, so a flush of 30 orders costs about the round trip of one. Reads
use a small pool of their own. Each round trip counts: on this kind of machine a write
to a loopback socket was the largest single cost of an order on PostgreSQL, so the token
checks waiting at one moment are batched into one statement as the writes are. The claim is
one statement with `FOR UPDATE SKIP LOCKED` (resilience.md §4): replicas never take the
same order.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from app.models import OPEN_TWIN, to_units
from app.sql.failures import store_error
from app.sql.group_commit import GroupCommit, WriteFailed
from app.sql.rows import STORED_COLUMNS, InsertRefused, NewOrder
from app.sql.store import OrderStore

READ_POOL_SIZE = 4
_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
# The server going away (a restart, a failover): nothing to learn from retrying one by one.
_LOST = (
    asyncpg.AdminShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionFailureError,
)


def _failed(exc: BaseException) -> WriteFailed:
    return WriteFailed(store_error(exc))


# The token checks waiting at one moment, in one statement: row n of the arguments is
# answered by the rows whose first column is n (none: no such session).
_PRINCIPALS = """
SELECT q.n, u.id, u.name, u.email, s.expires_at, r.role, r.object_id
FROM unnest($1::text[], $2::int[]) WITH ORDINALITY AS q(jti, user_id, n)
JOIN auth_session AS s ON s.jti = q.jti
JOIN "user" AS u ON u.id = s.user_id AND u.id = q.user_id
LEFT JOIN user_role AS r ON r.user_id = u.id
ORDER BY q.n, r.id
"""
_MENU = "SELECT id, title, description, image, price FROM menu_item ORDER BY id"
_MENU_ITEMS = "SELECT id, title, description, image, price FROM menu_item WHERE id = ANY($1::int[])"
_PENDING = (
    "SELECT count(*), min(date), min(greatest(next_attempt_at, claimed_until))"
    " FROM diner_order WHERE status = 'pending'"
)
_STATE = "SELECT status, jwt FROM diner_order WHERE id = $1"
_LOAD = """
SELECT o.id, o.diner_id, o.franchise_id, o.store_id, o.date, o.total, o.attempts,
       o.deferred_at, u.name, u.email, o.trace_context
FROM diner_order AS o LEFT JOIN "user" AS u ON u.id = o.diner_id
WHERE o.id = ANY($1::int[]) AND o.status = 'pending' ORDER BY o.id
"""
_LOAD_ITEMS = (
    "SELECT id, order_id, menu_id, description, price FROM order_item"
    " WHERE order_id = ANY($1::int[]) ORDER BY id"
)

# The order and its items in one statement; nothing is inserted when the store is not in
# the franchise (checked in the same transaction) or the diner's Idempotency-Key is taken.
_INSERT = """
WITH o AS (
    INSERT INTO diner_order (diner_id, franchise_id, store_id, date, status, total, jwt,
        attempts, last_reason, next_attempt_at, claimed_until, finished_at, idempotency_key,
        request_hash, deferred_at, twin_hash, trace_context, deferred_status)
    SELECT $1, $2, $3, $4, 'pending', $5, NULL, 0, $6, $7, $8, NULL, $9, $10, $11, $15, $16,
        $17::smallint
    WHERE EXISTS (SELECT 1 FROM store WHERE id = $3 AND franchise_id = $2)
    -- the diner's Idempotency-Key, or an open twin (uq_order_pending_twin), stored first
    ON CONFLICT DO NOTHING
    RETURNING id
), i AS (
    INSERT INTO order_item (order_id, menu_id, description, price)
    SELECT o.id, x.menu_id, x.description, x.price
    FROM o, unnest($12::int[], $13::text[], $14::bigint[]) WITH ORDINALITY
        AS x(menu_id, description, price, n)
    ORDER BY x.n
    RETURNING id
)
SELECT (SELECT id FROM o), array(SELECT id FROM i ORDER BY id),
       EXISTS (SELECT 1 FROM store WHERE id = $3 AND franchise_id = $2)
"""
_PENDING_ONLY = "WHERE id = $1 AND status = 'pending'"


def _deferred(answer: str, now: str) -> str:
    """The first pending answer: its time and HTTP status, set together (SET reads the
    old row)."""
    return (
        f"deferred_status = CASE WHEN deferred_at IS NULL THEN {answer}::smallint"
        f" ELSE deferred_status END, deferred_at = coalesce(deferred_at, {now})"
    )


_FIND = {
    "id": f"SELECT {STORED_COLUMNS} FROM diner_order WHERE id = $1",
    "key": f"SELECT {STORED_COLUMNS} FROM diner_order WHERE diner_id = $1 AND idempotency_key = $2",
    "twin": f"SELECT {STORED_COLUMNS} FROM diner_order"
    f" WHERE diner_id = $1 AND twin_hash = $2 AND {OPEN_TWIN}",
    "last_twin": f"SELECT {STORED_COLUMNS} FROM diner_order"
    " WHERE diner_id = $1 AND twin_hash = $2 ORDER BY id DESC LIMIT 1",
}
_ITEMS_OF = "SELECT id, menu_id, description, price FROM order_item WHERE order_id = $1 ORDER BY id"


def _counted(update: str) -> str:
    """One row per execution (how many rows the update changed), so pipelined results
    line up with their arguments."""
    return f"WITH changed AS ({update} RETURNING 1) SELECT count(*) FROM changed"


_UPDATES = {
    "fulfil": _counted(
        "UPDATE diner_order SET status = 'fulfilled', jwt = $2, finished_at = $3,"
        f" claimed_until = NULL, attempts = attempts + 1, last_reason = NULL {_PENDING_ONLY}"
    ),
    "fail": _counted(
        "UPDATE diner_order SET status = 'failed', failure = 'rejected', last_reason = $2,"
        f" finished_at = $3, claimed_until = NULL {_PENDING_ONLY}"
    ),
    "retry": _counted(
        "UPDATE diner_order SET attempts = attempts + 1, last_reason = $2, next_attempt_at = $3,"
        f" claimed_until = NULL, {_deferred('$5', '$4')} {_PENDING_ONLY}"
    ),
    "release": _counted(
        "UPDATE diner_order SET claimed_until = NULL, last_reason = $2, next_attempt_at = $3,"
        f" {_deferred('$4', '$3')} {_PENDING_ONLY}"
    ),
    "defer": _counted(f"UPDATE diner_order SET {_deferred('$3', '$2')} {_PENDING_ONLY}"),
    "show": _counted(
        "UPDATE diner_order SET shown_at = coalesce(shown_at, $2)"
        " WHERE id = $1 AND status = 'fulfilled'"
    ),
    "forget_key": _counted("UPDATE diner_order SET idempotency_key = NULL WHERE id = $1"),
    "forget_twin": _counted("UPDATE diner_order SET twin_hash = NULL WHERE id = $1"),
    "unclaim": _counted(
        "UPDATE diner_order SET claimed_until = NULL"
        " WHERE id = ANY($1::int[]) AND status = 'pending'"
    ),
    "renew": _counted(
        "UPDATE diner_order SET claimed_until = $2 WHERE id = ANY($1::int[]) AND status = 'pending'"
    ),
    "expire": _counted(
        "UPDATE diner_order SET status = 'failed', failure = 'expired', finished_at = $2,"
        " last_reason = $3"
        " WHERE status = 'pending' AND date < $1 AND (claimed_until IS NULL OR claimed_until < $2)"
    ),
}
_CLAIM = """
UPDATE diner_order SET claimed_until = $3
WHERE id IN (
    SELECT id FROM diner_order
    WHERE status = 'pending' AND next_attempt_at <= $1
      AND (claimed_until IS NULL OR claimed_until < $1)
    ORDER BY id LIMIT $2
    FOR UPDATE SKIP LOCKED)
RETURNING id
"""


def _arguments(kind: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    if kind == "insert":
        order: NewOrder = args[0]
        return (
            order.diner_id,
            order.franchise_id,
            order.store_id,
            order.date,
            to_units(order.total),
            order.last_reason,
            order.next_attempt_at,
            order.claimed_until,
            order.idempotency_key,
            order.request_hash,
            order.deferred_at,
            [menu_id for menu_id, _, _ in order.items],
            [description for _, description, _ in order.items],
            [to_units(price) for _, _, price in order.items],
            order.twin_hash,
            order.trace_context,
            order.deferred_status,
        )
    if kind == "expire":
        cutoff, now, reason = args
        return cutoff, now, reason
    return args


async def _session_untouched(connection: asyncpg.Connection) -> None:
    """The read pool's reset: nothing to undo. Each read is one SELECT outside a
    transaction (no SET, LISTEN, cursor or advisory lock), so asyncpg's default reset
    (`RESET ALL; UNLISTEN *; ...` on every release, a round trip per read) was a tenth of
    the service's CPU per order. asyncpg still rolls back a transaction left open."""


class PostgresOrderStore(OrderStore):
    _reads = {
        "menu": _MENU,
        "menu_items": _MENU_ITEMS,
        "pending": _PENDING,
        "state": _STATE,
        "load": _LOAD,
        "load_items": _LOAD_ITEMS,
        "items_of": _ITEMS_OF,
        **{f"find_{where}": statement for where, statement in _FIND.items()},
    }

    def __init__(self, database_url: str) -> None:
        super().__init__()
        url = make_url(database_url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._writer: asyncpg.Connection | None = None
        self._readers: asyncpg.Pool | None = None
        # Every signed-in request's token check: those waiting at one moment share one
        # statement, batched as the writes are (a lone check waits for nothing). A round
        # trip each was 8 % of an order's CPU in the service alone (py-spy); batched, 4 %.
        self._principals = GroupCommit(self._principal_batch)

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
        await super().close()
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

    async def _flush(self, writes: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
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
        for kind, group in groupby(writes, key=lambda write: write[0]):
            results.extend(await self._run(db, kind, [_arguments(kind, a) for _, a in group]))
        return results

    async def _run(
        self, db: asyncpg.Connection, kind: str, arguments: list[tuple[Any, ...]]
    ) -> list[Any]:
        try:
            return await self._apply(db, kind, arguments)
        except asyncpg.PostgresError as exc:
            if len(arguments) == 1 or isinstance(exc, _LOST):
                return [_failed(exc)] * len(arguments)
            # The server refused one statement (bad data, a constraint): the pipeline was
            # rolled back whole. Each write again on its own, so only the bad one fails
            # instead of every customer whose write shared its flush.
            return [r for args in arguments for r in await self._run(db, kind, [args])]
        except Exception as exc:  # the connection, or the driver (asyncpg's own errors)
            return [_failed(exc)] * len(arguments)

    async def _apply(
        self, db: asyncpg.Connection, kind: str, arguments: list[tuple[Any, ...]]
    ) -> list[Any]:
        if kind == "insert":
            rows = await db.fetchmany(_INSERT, arguments)
            return [
                (row[0], list(row[1]))
                if row[0] is not None
                else InsertRefused.TAKEN
                if row[2]
                else InsertRefused.STORE_MISSING
                for row in rows
            ]
        if kind == "claim":
            # One statement each, so each its own transaction: a claim that failed
            # does not hide one that was made.
            claimed: list[Any] = []
            for limit, now, until in arguments:
                try:
                    rows = await db.fetch(_CLAIM, now, limit, until)
                except _ERRORS as exc:
                    claimed.append(WriteFailed(store_error(exc)))
                else:
                    claimed.append(sorted(row[0] for row in rows))
            return claimed
        rows = await db.fetchmany(_UPDATES[kind], arguments)
        return [row[0] for row in rows]

    async def _principal_rows(self, jti: str, user_id: int) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._principals.write("principal", jti, user_id)
        return rows

    async def _principal_batch(self, checks: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        rows = await self._read(
            _PRINCIPALS, [args[0] for _, args in checks], [args[1] for _, args in checks]
        )
        answers: list[list[Any]] = [[] for _ in checks]
        for row in rows:
            answers[row[0] - 1].append(row[1:])
        return answers

    async def _read(self, statement: str, *args: Any) -> list[asyncpg.Record]:
        assert self._readers is not None
        try:
            rows: list[asyncpg.Record] = await self._readers.fetch(statement, *args)
        except _ERRORS as exc:
            raise store_error(exc) from None
        return rows

"""The order path on SQLite: one writer thread owns the one writer connection.

Every order write of this process goes through that connection, a flush at a time
(`GroupCommit`), inside `BEGIN IMMEDIATE ... COMMIT`: writes never race each other for
SQLite's lock, so none sleeps in the busy handler. Reads use connections of their own
(WAL: a reader sees the last commit and never waits for the writer), see `_read`. A
flush costs one thread hop, not one per statement.

Times are stored as SQLAlchemy stores `UTCDateTime` on SQLite (naive UTC text,
`YYYY-MM-DD HH:MM:SS.ffffff`), money as integer 1e-8 units, so both APIs read each
other's rows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import make_url

from app.db import SQLITE_BUSY_TIMEOUT_MS
from app.models import OPEN_TWIN, to_units
from app.sql.failures import store_error
from app.sql.rows import STORED_COLUMNS, InsertRefused, NewOrder
from app.sql.store import OrderStore


def to_text(value: datetime | None) -> str | None:
    """A time as SQLAlchemy's SQLite dialect stores it: naive UTC text, microseconds."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def from_text(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


_PRINCIPAL = """
SELECT u.id, u.name, u.email, s.expires_at, r.role, r.object_id
FROM auth_session AS s JOIN user AS u ON u.id = s.user_id
LEFT JOIN user_role AS r ON r.user_id = u.id
WHERE s.jti = ? AND u.id = ? ORDER BY r.id
"""
_MENU = "SELECT id, title, description, image, price FROM menu_item ORDER BY id"
_MENU_ITEMS = (
    "SELECT id, title, description, image, price FROM menu_item"
    " WHERE id IN (SELECT value FROM json_each(?))"
)
_PENDING = (
    "SELECT count(*), min(date), min(max(next_attempt_at, coalesce(claimed_until, '')))"
    " FROM diner_order WHERE status = 'pending'"
)
_STATE = "SELECT status, jwt FROM diner_order WHERE id = ?"
_LOAD = """
SELECT o.id, o.diner_id, o.franchise_id, o.store_id, o.date, o.total, o.attempts,
       o.deferred_at, u.name, u.email, o.trace_context
FROM diner_order AS o LEFT JOIN user AS u ON u.id = o.diner_id
WHERE o.id IN (SELECT value FROM json_each(?)) AND o.status = 'pending' ORDER BY o.id
"""
_LOAD_ITEMS = (
    "SELECT id, order_id, menu_id, description, price FROM order_item"
    " WHERE order_id IN (SELECT value FROM json_each(?)) ORDER BY id"
)

_INSERT_ORDER = """
INSERT INTO diner_order (diner_id, franchise_id, store_id, date, status, total, jwt, attempts,
    last_reason, next_attempt_at, claimed_until, finished_at, idempotency_key, request_hash,
    twin_hash, deferred_at, trace_context, deferred_status)
SELECT ?, ?, ?, ?, 'pending', ?, NULL, 0, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?
WHERE EXISTS (SELECT 1 FROM store WHERE id = ? AND franchise_id = ?)
ON CONFLICT DO NOTHING
"""
_INSERT_ITEM = "INSERT INTO order_item (order_id, menu_id, description, price) VALUES (?, ?, ?, ?)"
_STORE_EXISTS = "SELECT 1 FROM store WHERE id = ? AND franchise_id = ?"
_PENDING_ONLY = "WHERE id = ? AND status = 'pending'"
# The first pending answer: its time and its HTTP status, set together (SET reads the old row).
_DEFERRED = (
    "deferred_status = CASE WHEN deferred_at IS NULL THEN ? ELSE deferred_status END,"
    " deferred_at = coalesce(deferred_at, ?)"
)
_FULFIL = (
    "UPDATE diner_order SET status = 'fulfilled', jwt = ?, finished_at = ?, claimed_until = NULL,"
    f" attempts = attempts + 1, last_reason = NULL {_PENDING_ONLY}"
)
_FAIL = (
    "UPDATE diner_order SET status = 'failed', failure = 'rejected', finished_at = ?,"
    f" claimed_until = NULL, last_reason = ? {_PENDING_ONLY}"
)
_RETRY = (
    "UPDATE diner_order SET attempts = attempts + 1, last_reason = ?, next_attempt_at = ?,"
    f" claimed_until = NULL, {_DEFERRED} {_PENDING_ONLY}"
)
_RELEASE = (
    "UPDATE diner_order SET claimed_until = NULL, last_reason = ?, next_attempt_at = ?,"
    f" {_DEFERRED} {_PENDING_ONLY}"
)
_DEFER = f"UPDATE diner_order SET {_DEFERRED} {_PENDING_ONLY}"
_SHOW = (
    "UPDATE diner_order SET shown_at = coalesce(shown_at, ?) WHERE id = ? AND status = 'fulfilled'"
)
_FORGET_KEY = "UPDATE diner_order SET idempotency_key = NULL WHERE id = ?"
_FORGET_TWIN = "UPDATE diner_order SET twin_hash = NULL WHERE id = ?"
_FIND = {
    "id": f"SELECT {STORED_COLUMNS} FROM diner_order WHERE id = ?",
    "key": f"SELECT {STORED_COLUMNS} FROM diner_order WHERE diner_id = ? AND idempotency_key = ?",
    "twin": f"SELECT {STORED_COLUMNS} FROM diner_order"
    f" WHERE diner_id = ? AND twin_hash = ? AND {OPEN_TWIN}",
    "last_twin": f"SELECT {STORED_COLUMNS} FROM diner_order"
    " WHERE diner_id = ? AND twin_hash = ? ORDER BY id DESC LIMIT 1",
}
_ITEMS_OF = "SELECT id, menu_id, description, price FROM order_item WHERE order_id = ? ORDER BY id"
_UNCLAIM = (
    "UPDATE diner_order SET claimed_until = NULL"
    " WHERE id IN (SELECT value FROM json_each(?)) AND status = 'pending'"
)
_RENEW = (
    "UPDATE diner_order SET claimed_until = ?"
    " WHERE id IN (SELECT value FROM json_each(?)) AND status = 'pending'"
)
_CLAIM = """
UPDATE diner_order SET claimed_until = ?
WHERE id IN (
    SELECT id FROM diner_order
    WHERE status = 'pending' AND next_attempt_at <= ?
      AND (claimed_until IS NULL OR claimed_until < ?)
    ORDER BY id LIMIT ?)
RETURNING id
"""
_EXPIRE = """
UPDATE diner_order SET status = 'failed', failure = 'expired', finished_at = ?, last_reason = ?
WHERE status = 'pending' AND date < ? AND (claimed_until IS NULL OR claimed_until < ?)
"""


# A passive checkpoint after this many flushes on the event loop (about 1 MB of WAL at
# a flush of one order, far less than that in a busy second).
CHECKPOINT_EVERY = 250


def _busy(error: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED: another connection holds what this one needs."""
    text = str(error)
    return "locked" in text or "busy" in text


def _connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(
        path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    # The same settings as the SQLAlchemy engine's (app/db.py): WAL, a busy timeout for
    # the rare write of another process or of the rest of the API, durable at each commit
    # against a crash of this process (NORMAL: the WAL is written before COMMIT returns).
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


class SqliteOrderStore(OrderStore):
    _reads = {
        "principal": _PRINCIPAL,
        "menu": _MENU,
        "menu_items": _MENU_ITEMS,
        "pending": _PENDING,
        "state": _STATE,
        "load": _LOAD,
        "load_items": _LOAD_ITEMS,
        "items_of": _ITEMS_OF,
        **{f"find_{where}": statement for where, statement in _FIND.items()},
    }

    @staticmethod
    def _time(value: Any) -> datetime | None:
        return from_text(value)

    @staticmethod
    def _ids(ids: list[int]) -> Any:
        return json.dumps(ids)  # read back with json_each: one statement for any count

    def __init__(self, database_url: str) -> None:
        super().__init__()
        self._path = make_url(database_url).database or ":memory:"
        self._writer_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._reader_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-reader")
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._inline: sqlite3.Connection | None = None  # reads on the event loop's thread
        self._inline_writer: sqlite3.Connection | None = None  # writes on it, see _flush
        self._inline_flushes = 0
        self._checkpoint: asyncio.Future[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._writer = await loop.run_in_executor(self._writer_thread, _connect, self._path)
        self._reader = await loop.run_in_executor(self._reader_thread, _connect, self._path)
        self._inline = _connect(self._path)
        self._inline.execute("PRAGMA busy_timeout=0")
        self._inline_writer = _connect(self._path)
        self._inline_writer.execute("PRAGMA busy_timeout=0")
        self._inline_writer.execute("PRAGMA wal_autocheckpoint=0")  # see _after_inline_flush
        self._checkpoint = loop.create_future()
        self._checkpoint.set_result(None)

    async def close(self) -> None:
        await super().close()
        if self._checkpoint is not None:
            await self._checkpoint
        loop = asyncio.get_running_loop()
        for connection, thread in (
            (self._writer, self._writer_thread),
            (self._reader, self._reader_thread),
        ):
            if connection is not None:
                await loop.run_in_executor(thread, connection.close)
            thread.shutdown(wait=True)
        for inline in (self._inline, self._inline_writer):
            if inline is not None:
                inline.close()
        self._writer = self._reader = self._inline = self._inline_writer = None

    # -- plumbing ---------------------------------------------------------------------------

    async def _read(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        # A read is an indexed lookup in pages the OS has cached: tens of microseconds, and
        # in WAL mode it never waits for the writer. So it runs right here, on the event
        # loop, with no busy wait at all; only if SQLite does answer "busy" (a checkpoint
        # or recovery holding its index) does it go to the reader thread, which may wait.
        assert self._inline is not None
        try:
            return self._inline.execute(statement, args).fetchall()
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise store_error(exc) from None
        except sqlite3.Error as exc:
            raise store_error(exc) from None

        def run() -> list[tuple[Any, ...]]:
            assert self._reader is not None
            return self._reader.execute(statement, args).fetchall()

        try:
            return await asyncio.get_running_loop().run_in_executor(self._reader_thread, run)
        except sqlite3.Error as exc:
            raise store_error(exc) from None

    async def _flush(self, writes: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        # Like a read, a flush runs right here: with synchronous=NORMAL a commit appends
        # to the WAL without an fsync (tens of microseconds for a flush of orders), and
        # the slow part of a WAL, the checkpoint, is done on the writer thread. Only when
        # another connection holds the write lock (another process, or the rest of the
        # API writing through SQLAlchemy) does the flush go to the writer thread to wait.
        assert self._inline_writer is not None
        try:
            results = self._write_all(self._inline_writer, writes)
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise store_error(exc) from None
        except sqlite3.Error as exc:
            raise store_error(exc) from None
        else:
            self._after_inline_flush()
            return results
        assert self._writer is not None
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._writer_thread, self._write_all, self._writer, writes
            )
        except sqlite3.Error as exc:
            raise store_error(exc) from None

    def _after_inline_flush(self) -> None:
        """Every CHECKPOINT_EVERY flushes, a passive checkpoint on the writer thread (it
        never blocks the writer, and keeps the WAL from growing without end)."""
        self._inline_flushes += 1
        assert self._checkpoint is not None
        if self._inline_flushes % CHECKPOINT_EVERY or not self._checkpoint.done():
            return
        self._checkpoint = asyncio.get_running_loop().run_in_executor(
            self._writer_thread, self._passive_checkpoint
        )

    def _passive_checkpoint(self) -> None:
        assert self._writer is not None
        try:
            self._writer.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            logging.getLogger(__name__).warning("SQLite checkpoint failed", exc_info=True)

    def _write_all(
        self, connection: sqlite3.Connection, writes: list[tuple[str, tuple[Any, ...]]]
    ) -> list[Any]:
        connection.execute("BEGIN IMMEDIATE")
        try:
            results = [self._write(connection, kind, args) for kind, args in writes]
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return results

    def _write(self, db: sqlite3.Connection, kind: str, args: tuple[Any, ...]) -> Any:
        if kind == "insert":
            return self._insert(db, args[0])
        if kind == "fulfil":
            order_id, jwt, now = args
            return db.execute(_FULFIL, (jwt, to_text(now), order_id)).rowcount
        if kind == "fail":
            order_id, reason, now = args
            return db.execute(_FAIL, (to_text(now), reason, order_id)).rowcount
        if kind == "retry":
            order_id, reason, next_at, now, answer = args
            values = (reason, to_text(next_at), answer, to_text(now), order_id)
            return db.execute(_RETRY, values).rowcount
        if kind == "release":
            order_id, reason, now, answer = args
            values = (reason, to_text(now), answer, to_text(now), order_id)
            return db.execute(_RELEASE, values).rowcount
        if kind == "defer":
            order_id, now, answer = args
            return db.execute(_DEFER, (answer, to_text(now), order_id)).rowcount
        if kind == "show":
            order_id, now = args
            return db.execute(_SHOW, (to_text(now), order_id)).rowcount
        if kind == "forget_key":
            return db.execute(_FORGET_KEY, args).rowcount
        if kind == "forget_twin":
            return db.execute(_FORGET_TWIN, args).rowcount
        if kind == "unclaim":
            return db.execute(_UNCLAIM, (json.dumps(args[0]),)).rowcount
        if kind == "renew":
            ids, until = args
            return db.execute(_RENEW, (to_text(until), json.dumps(ids))).rowcount
        if kind == "claim":
            limit, now, until = args
            stamp = to_text(now)
            rows = db.execute(_CLAIM, (to_text(until), stamp, stamp, limit)).fetchall()
            return sorted(row[0] for row in rows)
        if kind == "expire":
            cutoff, now, reason = args
            stamp = to_text(now)
            return db.execute(_EXPIRE, (stamp, reason, to_text(cutoff), stamp)).rowcount
        raise ValueError(f"unknown write {kind!r}")

    @staticmethod
    def _insert(db: sqlite3.Connection, order: NewOrder) -> tuple[int, list[int]] | InsertRefused:
        cursor = db.execute(
            _INSERT_ORDER,
            (
                order.diner_id,
                order.franchise_id,
                order.store_id,
                to_text(order.date),
                to_units(order.total),
                order.last_reason,
                to_text(order.next_attempt_at),
                to_text(order.claimed_until),
                order.idempotency_key,
                order.request_hash,
                order.twin_hash,
                to_text(order.deferred_at),
                order.trace_context,
                order.deferred_status,
                order.store_id,
                order.franchise_id,
            ),
        )
        if cursor.rowcount != 1:
            store = db.execute(_STORE_EXISTS, (order.store_id, order.franchise_id)).fetchone()
            return InsertRefused.TAKEN if store else InsertRefused.STORE_MISSING
        order_id = cursor.lastrowid
        assert order_id is not None
        item_ids = []
        for menu_id, description, price in order.items:
            item = db.execute(_INSERT_ITEM, (order_id, menu_id, description, to_units(price)))
            assert item.lastrowid is not None
            item_ids.append(item.lastrowid)
        return order_id, item_ids

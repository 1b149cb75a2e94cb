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
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.engine import make_url

from app.db import SQLITE_BUSY_TIMEOUT_MS
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
from app.sql.dialect import Read, Reads, Sql, named
from app.sql.failures import store_error
from app.sql.records import (
    INSERTED_ORDER_COLUMNS,
    ITEM_COLUMNS,
    LOADED_COLUMNS,
    LOADED_ITEM_COLUMNS,
    MENU_COLUMNS,
    PRINCIPAL_COLUMNS,
    STATE_COLUMNS,
    STORED_COLUMNS,
    ItemRecord,
    LoadedItemRecord,
    LoadedRecord,
    MenuRecord,
    PendingRecord,
    PrincipalRecord,
    StateRecord,
    StoredRecord,
)
from app.sql.rows import InsertRefused

R = TypeVar("R")


def to_text(value: datetime | None) -> str | None:
    """A time as SQLAlchemy's SQLite dialect stores it: naive UTC text, microseconds."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def from_text(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


_PRINCIPAL = named(f"""
SELECT {PRINCIPAL_COLUMNS}
FROM auth_session AS s JOIN user AS u ON u.id = s.user_id
LEFT JOIN user_role AS r ON r.user_id = u.id
WHERE s.jti = :jti AND u.id = :user_id ORDER BY r.id
""")
_IN_IDS = "IN (SELECT value FROM json_each(:ids))"  # a JSON list: one statement for any count


def _read(text: str, record: Callable[[Iterable[Any]], R]) -> Read[R]:
    return Read(named(text), record)


def _stored(where: str) -> Read[StoredRecord]:
    return _read(f"SELECT {STORED_COLUMNS} FROM diner_order WHERE {where}", StoredRecord._make)


READS = Reads(
    menu=_read(f"SELECT {MENU_COLUMNS} FROM menu_item ORDER BY id", MenuRecord._make),
    menu_items=_read(f"SELECT {MENU_COLUMNS} FROM menu_item WHERE id {_IN_IDS}", MenuRecord._make),
    pending=_read(
        "SELECT count(*), min(date), min(max(next_attempt_at, coalesce(claimed_until, '')))"
        " FROM diner_order WHERE status = 'pending'",
        PendingRecord._make,
    ),
    state=_read(f"SELECT {STATE_COLUMNS} FROM diner_order WHERE id = :order_id", StateRecord._make),
    load=_read(
        f"SELECT {LOADED_COLUMNS}"
        " FROM diner_order AS o LEFT JOIN user AS u ON u.id = o.diner_id"
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

# The order, only if its store is in its franchise; nothing on a taken Idempotency-Key or
# an open twin (uq_order_pending_twin). Every column is named, from the model.
_INSERT_ORDER = f"""
INSERT INTO diner_order ({", ".join(INSERTED_ORDER_COLUMNS)})
SELECT {", ".join(f":{name}" for name in INSERTED_ORDER_COLUMNS)}
WHERE EXISTS (SELECT 1 FROM store WHERE id = :store_id AND franchise_id = :franchise_id)
ON CONFLICT DO NOTHING
"""
_INSERT_ITEM = named(
    "INSERT INTO order_item (order_id, menu_id, description, price)"
    " VALUES (:order_id, :menu_id, :description, :price)"
)
_STORE_EXISTS = named("SELECT 1 FROM store WHERE id = :store_id AND franchise_id = :franchise_id")
_PENDING_ONLY = "WHERE id = :order_id AND status = 'pending'"
# The first pending answer: its time and its HTTP status, set together (SET reads the old row).
_DEFERRED = (
    "deferred_status = CASE WHEN deferred_at IS NULL THEN :answer ELSE deferred_status END,"
    " deferred_at = coalesce(deferred_at, :now)"
)
STATEMENTS = statements_for(
    "SQLite",
    {
        InsertOrder: named(_INSERT_ORDER),
        Fulfil: named(
            "UPDATE diner_order SET status = 'fulfilled', jwt = :jwt, finished_at = :now,"
            f" claimed_until = NULL, attempts = attempts + 1, last_reason = NULL {_PENDING_ONLY}"
        ),
        Fail: named(
            "UPDATE diner_order SET status = 'failed', failure = 'rejected', finished_at = :now,"
            f" claimed_until = NULL, last_reason = :reason {_PENDING_ONLY}"
        ),
        Retry: named(
            "UPDATE diner_order SET attempts = attempts + 1, last_reason = :reason,"
            f" next_attempt_at = :next_attempt_at, claimed_until = NULL, {_DEFERRED}"
            f" {_PENDING_ONLY}"
        ),
        Release: named(
            "UPDATE diner_order SET claimed_until = NULL, last_reason = :reason,"
            f" next_attempt_at = :now, {_DEFERRED} {_PENDING_ONLY}"
        ),
        Defer: named(f"UPDATE diner_order SET {_DEFERRED} {_PENDING_ONLY}"),
        Show: named(
            "UPDATE diner_order SET shown_at = coalesce(shown_at, :now)"
            " WHERE id = :order_id AND status = 'fulfilled'"
        ),
        ForgetKey: named("UPDATE diner_order SET idempotency_key = NULL WHERE id = :order_id"),
        ForgetTwin: named("UPDATE diner_order SET twin_hash = NULL WHERE id = :order_id"),
        Unclaim: named(
            f"UPDATE diner_order SET claimed_until = NULL WHERE id {_IN_IDS} AND status = 'pending'"
        ),
        Renew: named(
            f"UPDATE diner_order SET claimed_until = :until WHERE id {_IN_IDS}"
            " AND status = 'pending'"
        ),
        Claim: named("""
UPDATE diner_order SET claimed_until = :until
WHERE id IN (
    SELECT id FROM diner_order
    WHERE status = 'pending' AND next_attempt_at <= :now
      AND (claimed_until IS NULL OR claimed_until < :now)
    ORDER BY id LIMIT :limit)
RETURNING id
"""),
        Expire: named(
            "UPDATE diner_order SET status = 'failed', failure = 'expired', finished_at = :now,"
            " last_reason = :reason WHERE status = 'pending' AND date < :cutoff"
            " AND (claimed_until IS NULL OR claimed_until < :now)"
        ),
    },
)
CODEC = Codec(time_in=to_text, time_out=from_text, ids=json.dumps)


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


class SqliteDialect:
    """The order store's SQLite side (app/sql/dialect.py)."""

    reads = READS
    codec = CODEC

    def __init__(self, database_url: str) -> None:
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

    async def principal_rows(self, jti: str, user_id: int) -> list[PrincipalRecord]:
        rows = await self.read(_PRINCIPAL, {"jti": jti, "user_id": user_id})
        return [PrincipalRecord._make(row) for row in rows]

    async def read(self, sql: Sql, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        # A read is an indexed lookup in pages the OS has cached: tens of microseconds, and
        # in WAL mode it never waits for the writer. So it runs right here, on the event
        # loop, with no busy wait at all; only if SQLite does answer "busy" (a checkpoint
        # or recovery holding its index) does it go to the reader thread, which may wait.
        assert self._inline is not None
        try:
            return self._inline.execute(sql.text, values).fetchall()
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise store_error(exc) from None
        except sqlite3.Error as exc:
            raise store_error(exc) from None

        def run() -> list[tuple[Any, ...]]:
            assert self._reader is not None
            return self._reader.execute(sql.text, values).fetchall()

        try:
            return await asyncio.get_running_loop().run_in_executor(self._reader_thread, run)
        except sqlite3.Error as exc:
            raise store_error(exc) from None

    async def flush(self, writes: list[Write]) -> list[Any]:
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

    @staticmethod
    def _write_all(connection: sqlite3.Connection, writes: list[Write]) -> list[Any]:
        connection.execute("BEGIN IMMEDIATE")
        try:
            results = [_write(connection, write) for write in writes]
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return results


def _write(db: sqlite3.Connection, write: Write) -> Any:
    """One command's statement; an insert and a claim give back more than a count."""
    if isinstance(write, InsertOrder):
        return _insert(db, write)
    statement = STATEMENTS[type(write)].text
    if isinstance(write, Claim):
        return sorted(order_id for (order_id,) in db.execute(statement, write.values(CODEC)))
    return db.execute(statement, write.values(CODEC)).rowcount


def _insert(db: sqlite3.Connection, write: InsertOrder) -> tuple[int, list[int]] | InsertRefused:
    cursor = db.execute(STATEMENTS[InsertOrder].text, write.values(CODEC))
    order = write.order
    if cursor.rowcount != 1:
        where = {"store_id": order.store_id, "franchise_id": order.franchise_id}
        store = db.execute(_STORE_EXISTS.text, where).fetchone()
        return InsertRefused.TAKEN if store else InsertRefused.STORE_MISSING
    order_id = cursor.lastrowid
    assert order_id is not None
    item_ids = []
    for menu_id, description, price in order.items:
        values = {
            "order_id": order_id,
            "menu_id": menu_id,
            "description": description,
            "price": to_units(price),
        }
        item = db.execute(_INSERT_ITEM.text, values)
        assert item.lastrowid is not None
        item_ids.append(item.lastrowid)
    return order_id, item_ids

"""Which database errors are an outage and which are a bug.

Only a database that cannot be reached is an outage (503 "database unavailable" with
Retry-After, app/errors.py): a refused, lost, closed or out-of-step connection, a server
shutting down or not accepting connections yet, no connection slot left, a connection
refused at its start (the password, the database's name); on SQLite, its file locked by
another writer past the busy timeout, or unreadable. Whatever else a database refuses (a
constraint, a value out of range, a statement it cannot run) is a bug of the service: a
500 with an error id, logged with its traceback, so that operators and alerts see it.
"""

from __future__ import annotations

import sqlite3

import asyncpg

from app.db import out_of_step
from app.sql.rows import StoreError, StoreUnavailable

_UNREACHABLE = (
    OSError,  # refused, reset, timed out
    asyncpg.PostgresConnectionError,  # class 08, and the client's own connection failures
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    # Refused at connect: a password or a database name that is not (or no longer) right.
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
)
# SQLite names its outages only in the message of an OperationalError.
_SQLITE_UNREACHABLE = ("database is locked", "database table is locked", "busy", "unable to open")
_SQLITE_IO = "disk i/o error"


def unreachable(error: BaseException) -> bool:
    """Whether ``error``, or a driver error it wraps, says the database could not be reached."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _unreachable(current):
            return True
        # SQLAlchemy keeps the driver's error as `orig`; its asyncpg adapter raises from it.
        current = getattr(current, "orig", None) or current.__cause__
    return False


def _unreachable(error: BaseException) -> bool:
    if isinstance(error, _UNREACHABLE):
        return True
    if out_of_step(error):  # that connection is closed (app/sql/postgres.py, app/db.py)
        return True
    if isinstance(error, asyncpg.InterfaceError) and not isinstance(error, ValueError):
        # asyncpg's DataError (a value it cannot send) is an InterfaceError and a ValueError.
        text = str(error)
        return "closed" in text or "closing" in text
    if isinstance(error, sqlite3.OperationalError):
        text = str(error).lower()
        return _SQLITE_IO in text or any(part in text for part in _SQLITE_UNREACHABLE)
    return False


def driver_error(error: BaseException) -> str:
    """The driver's own error under SQLAlchemy's wrappers, as `Type: first line`: which
    outage, for a log line or a message ("database is locked" is not "locking protocol")."""
    while (inner := getattr(error, "orig", None) or error.__cause__) is not None:
        error = inner
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}"


def store_error(error: BaseException) -> StoreError:
    """``error`` as the order store raises it: `StoreUnavailable` for an outage, else
    `StoreError`; the message names the driver's error class and its own text."""
    kind = StoreUnavailable if unreachable(error) else StoreError
    return kind(f"{type(error).__name__}: {error}")

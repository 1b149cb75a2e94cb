"""What the order path's statements take and give back: plain rows, not ORM objects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum


class StoreError(Exception):
    """The database did not take or give what was asked: a bug (a statement or a value
    it refused) unless it is a `StoreUnavailable`.

    The message names the driver's error class and its own text, never a statement's
    values: those can be secrets.
    """


class StoreUnavailable(StoreError):
    """The database could not be reached (refused or lost connection, a server shutting
    down, SQLite's file locked or unreadable): an outage, not a bug (app/sql/failures.py)."""


class InsertRefused(Enum):
    STORE_MISSING = "store_missing"  # the store is not (or no longer) in this franchise
    # Stored first by another request: this diner's Idempotency-Key, or the open twin of
    # a keyless order ("Pay" pressed again: pending, or made but not yet shown).
    TAKEN = "taken"


@dataclass(frozen=True, slots=True)
class PrincipalRow:
    """A signed-in session's user and roles, read in one statement."""

    user_id: int
    name: str
    email: str
    expires_at: datetime
    roles: tuple[tuple[str, int | None], ...]


@dataclass(frozen=True, slots=True)
class MenuRow:
    id: int
    title: str
    description: str
    image: str
    price: Decimal


@dataclass(slots=True)
class NewOrder:
    """An order as it is inserted (status pending, no attempt yet)."""

    diner_id: int
    franchise_id: int
    store_id: int
    date: datetime
    total: Decimal
    idempotency_key: str | None
    request_hash: str
    twin_hash: str | None  # set for a keyless order: one open twin per diner and hash
    next_attempt_at: datetime
    claimed_until: datetime | None
    last_reason: str | None
    deferred_at: datetime | None
    items: Sequence[tuple[int, str, Decimal]]  # menu id, description, price
    # The placing request's W3C traceparent, when it was traced (the retries link to it).
    trace_context: str | None = None
    # With deferred_at: the HTTP status of that pending answer (503, or 202).
    deferred_status: int | None = None


@dataclass(frozen=True, slots=True)
class ClaimedOrder:
    """A pending order leased to this process by the worker, with its diner and items."""

    id: int
    diner_id: int
    franchise_id: int
    store_id: int
    date: datetime
    total: Decimal
    attempts: int
    deferred_at: datetime | None
    diner_name: str
    diner_email: str
    items: tuple[tuple[int, int, str, Decimal], ...]  # item id, menu id, description, price
    trace_context: str | None = None  # the placing request's traceparent, if traced


@dataclass(frozen=True, slots=True)
class StoredOrder:
    """An order as stored, with its items: what a replay or a twin answers with."""

    id: int
    diner_id: int
    franchise_id: int
    store_id: int
    date: datetime
    status: str
    total: Decimal
    jwt: str | None
    last_reason: str | None
    failure: str | None
    request_hash: str | None
    deferred_at: datetime | None
    items: tuple[tuple[int, int, str, Decimal], ...]  # item id, menu id, description, price


# The columns a StoredOrder is read from, in its order (both dialects).
STORED_COLUMNS = (
    "id, diner_id, franchise_id, store_id, date, status, total, jwt, last_reason, failure,"
    " request_hash, deferred_at"
)


@dataclass(frozen=True, slots=True)
class PendingStats:
    count: int
    oldest: datetime | None  # the oldest pending order's date
    next_due: datetime | None  # when the next pending order may be tried (or its lease ends)

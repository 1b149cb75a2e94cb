"""The order path's writes, one typed command each, and the values they bind.

A command is what the store asks for (`Fulfil(order_id, jwt, now)`): an immutable
NamedTuple, built for every write in less than half the time of a frozen dataclass. Each
dialect has the statement that does it, found by the command's class (app/sql/sqlite.py,
app/sql/postgres.py), and binds `values(codec)`: the statement's parameters by name,
built here once for both databases. A dialect that lacks a command's statement fails
at import (`statements_for`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from app.models import OrderStatus, to_units
from app.sql.rows import NewOrder


@dataclass(frozen=True, slots=True)
class Codec:
    """How values the driver cannot take as they are travel to and from it."""

    time_in: Callable[[datetime | None], Any]
    time_out: Callable[[Any], datetime | None]
    ids: Callable[[list[int]], Any]


class InsertOrder(NamedTuple):
    """Store a new pending order and its items, unless its store is not in its franchise
    or its Idempotency-Key or open twin was stored first (`InsertRefused`)."""

    order: NewOrder

    def values(self, codec: Codec) -> dict[str, Any]:
        """Every column of the new order (records.INSERTED_ORDER_COLUMNS)."""
        order, time = self.order, codec.time_in
        return {
            "diner_id": order.diner_id,
            "franchise_id": order.franchise_id,
            "store_id": order.store_id,
            "date": time(order.date),
            "status": OrderStatus.PENDING.value,
            "total": to_units(order.total),
            "jwt": None,
            "attempts": 0,
            "last_reason": order.last_reason,
            "failure": None,
            "next_attempt_at": time(order.next_attempt_at),
            "claimed_until": time(order.claimed_until),
            "finished_at": None,
            "idempotency_key": order.idempotency_key,
            "request_hash": order.request_hash,
            "twin_hash": order.twin_hash,
            "deferred_at": time(order.deferred_at),
            "deferred_status": order.deferred_status,
            "shown_at": None,
            "trace_context": order.trace_context,
        }


class Fulfil(NamedTuple):
    """Record the pizza, if the order is still pending (one pizza per order)."""

    order_id: int
    jwt: str
    now: datetime

    def values(self, codec: Codec) -> dict[str, Any]:
        return {"order_id": self.order_id, "jwt": self.jwt, "now": codec.time_in(self.now)}


class Fail(NamedTuple):
    """Give a pending order up (the factory rejected it)."""

    order_id: int
    reason: str
    now: datetime

    def values(self, codec: Codec) -> dict[str, Any]:
        return {"order_id": self.order_id, "reason": self.reason, "now": codec.time_in(self.now)}


class Retry(NamedTuple):
    """An attempt that made no pizza: counted, tried again at ``next_attempt_at``.
    ``answer``: the HTTP status of the customer's pending answer, if this is it."""

    order_id: int
    reason: str
    next_attempt_at: datetime
    now: datetime
    answer: int | None

    def values(self, codec: Codec) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "reason": self.reason,
            "next_attempt_at": codec.time_in(self.next_attempt_at),
            "now": codec.time_in(self.now),
            "answer": self.answer,
        }


class Release(NamedTuple):
    """Hand a claimed order back, due now, without counting an attempt."""

    order_id: int
    reason: str
    now: datetime
    answer: int | None

    def values(self, codec: Codec) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "reason": self.reason,
            "now": codec.time_in(self.now),
            "answer": self.answer,
        }


class Defer(NamedTuple):
    """The customer is answered pending while the factory call runs on."""

    order_id: int
    now: datetime
    answer: int | None

    def values(self, codec: Codec) -> dict[str, Any]:
        return {"order_id": self.order_id, "now": codec.time_in(self.now), "answer": self.answer}


class Show(NamedTuple):
    """A made order's pizza was shown to its customer (the first time counts)."""

    order_id: int
    now: datetime

    def values(self, codec: Codec) -> dict[str, Any]:
        return {"order_id": self.order_id, "now": codec.time_in(self.now)}


class ForgetKey(NamedTuple):
    """The order's Idempotency-Key has expired: it may name a new order."""

    order_id: int

    def values(self, codec: Codec) -> dict[str, Any]:
        return {"order_id": self.order_id}


class ForgetTwin(NamedTuple):
    """The order is older than the "Pay again" window: a twin of it may be stored."""

    order_id: int

    def values(self, codec: Codec) -> dict[str, Any]:
        return {"order_id": self.order_id}


class Unclaim(NamedTuple):
    """Hand the leases of the pending ones among ``ids`` back."""

    ids: list[int]

    def values(self, codec: Codec) -> dict[str, Any]:
        return {"ids": codec.ids(self.ids)}


class Renew(NamedTuple):
    """Extend the leases of the pending ones among ``ids`` to ``until``."""

    ids: list[int]
    until: datetime

    def values(self, codec: Codec) -> dict[str, Any]:
        return {"ids": codec.ids(self.ids), "until": codec.time_in(self.until)}


class Claim(NamedTuple):
    """Lease up to ``limit`` due pending orders, oldest first; their ids."""

    limit: int
    now: datetime
    until: datetime

    def values(self, codec: Codec) -> dict[str, Any]:
        time = codec.time_in
        return {"limit": self.limit, "now": time(self.now), "until": time(self.until)}


class Expire(NamedTuple):
    """Fail the unclaimed pending orders placed before ``cutoff``."""

    cutoff: datetime
    now: datetime
    reason: str

    def values(self, codec: Codec) -> dict[str, Any]:
        time = codec.time_in
        return {"cutoff": time(self.cutoff), "now": time(self.now), "reason": self.reason}


Write = (
    InsertOrder
    | Fulfil
    | Fail
    | Retry
    | Release
    | Defer
    | Show
    | ForgetKey
    | ForgetTwin
    | Unclaim
    | Renew
    | Claim
    | Expire
)
WRITES: tuple[type[Write], ...] = Write.__args__

S = TypeVar("S")


def statements_for(dialect: str, statements: Mapping[type[Write], S]) -> dict[type[Write], S]:
    """A dialect's statement per command, checked to cover every command exactly."""
    missing = [kind.__name__ for kind in WRITES if kind not in statements]
    extra = [kind.__name__ for kind in statements if kind not in WRITES]
    if missing or extra:
        raise LookupError(f"{dialect} statements: missing {missing}, unknown {extra}")
    return dict(statements)

"""Database tables (SQLModel). The schema itself is owned by the Alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

MONEY_SCALE = 10**8  # BTC has eight decimals


class Money(TypeDecorator[Decimal]):
    """Exact money: a Decimal kept as an integer count of 1e-8 units.

    SQLite has no exact decimal type, and an integer sums exactly in SQL on both
    SQLite and PostgreSQL, so totals never pass through a binary float.
    """

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else to_units(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else from_units(value)


def to_units(value: Any) -> int:
    """Money as stored: an integer count of 1e-8 BTC."""
    return int((Decimal(str(value)) * MONEY_SCALE).to_integral_value())


def from_units(value: Any) -> Decimal:
    return Decimal(int(value)) / MONEY_SCALE


def utcnow() -> datetime:
    """Aware UTC; SQLModel's UTCDateTime stores it as UTC on both databases."""
    return datetime.now(UTC)


# Ids that other rows keep as plain numbers (orders keep diner, store, franchise and menu
# ids; the factory keeps order ids) must never be handed out twice: SQLite reuses the
# highest deleted rowid unless the table is AUTOINCREMENT. PostgreSQL never reuses them.
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


class Role(StrEnum):
    DINER = "diner"
    FRANCHISEE = "franchisee"
    ADMIN = "admin"


class OrderStatus(StrEnum):
    PENDING = "pending"
    FULFILLED = "fulfilled"
    FAILED = "failed"


class User(SQLModel, table=True):
    __table_args__ = NEVER_REUSE_IDS
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(100), nullable=False))
    email: str = Field(sa_column=Column(String(254), nullable=False, unique=True))
    password_hash: str = Field(sa_column=Column(String(255), nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class UserRole(SQLModel, table=True):
    __tablename__ = "user_role"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    role: str = Field(sa_column=Column(String(20), nullable=False))
    object_id: int | None = Field(default=None, index=True)


class AuthSession(SQLModel, table=True):
    """One signed-in token; deleting the row revokes the token at once."""

    __tablename__ = "auth_session"
    jti: str = Field(sa_column=Column(String(64), primary_key=True))
    user_id: int = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    expires_at: datetime
    created_at: datetime = Field(default_factory=utcnow)


class LoginAttempt(SQLModel, table=True):
    """One sign-in counter of app/users/logins.py: the attempts one subject (a client
    address, an account from one address, the addresses trying one account) made in the
    window that started at `since_ms`.

    `subject` is a hash: the table holds no email and no address. Times are Unix
    milliseconds, compared as integers in the one statement that counts an attempt on
    either database.
    """

    __tablename__ = "login_attempt"
    subject: str = Field(sa_column=Column(String(64), primary_key=True))
    since_ms: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    attempts: int = Field(sa_column=Column(Integer, nullable=False))


class AppSetting(SQLModel, table=True):
    """Values the service generates once and shares between workers (dev JWT secret)."""

    __tablename__ = "app_setting"
    key: str = Field(sa_column=Column(String(64), primary_key=True))
    value: str = Field(sa_column=Column(Text, nullable=False))


class MenuItem(SQLModel, table=True):
    __tablename__ = "menu_item"
    __table_args__ = NEVER_REUSE_IDS
    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(sa_column=Column(String(100), nullable=False))
    description: str = Field(sa_column=Column(String(500), nullable=False))
    image: str = Field(sa_column=Column(String(500), nullable=False))
    price: Decimal = Field(sa_column=Column(Money, nullable=False))


class Franchise(SQLModel, table=True):
    __table_args__ = NEVER_REUSE_IDS
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(100), nullable=False, unique=True))


class Store(SQLModel, table=True):
    __table_args__ = NEVER_REUSE_IDS
    id: int | None = Field(default=None, primary_key=True)
    franchise_id: int = Field(foreign_key="franchise.id", index=True, ondelete="CASCADE")
    name: str = Field(sa_column=Column(String(100), nullable=False))


class OrderFailure(StrEnum):
    """Why a failed order was given up: what the customer's answer says depends on it."""

    REJECTED = "rejected"  # the factory refused it (4xx): never retried
    EXPIRED = "expired"  # not made within ORDER_MAX_AGE_S
    CANCELLED = "cancelled"  # its store, franchise or diner was deleted


# The orders "Pay" pressed again meets (app/orders/placement.py): keyless, and pending, or
# made after their customer was answered pending but not yet shown to them.
OPEN_TWIN = (
    "twin_hash IS NOT NULL AND (status = 'pending' OR (status = 'fulfilled'"
    " AND deferred_at IS NOT NULL AND shown_at IS NULL))"
)


class DinerOrder(SQLModel, table=True):
    """An order. Franchise, store and diner are plain ids, not foreign keys, so that
    history and revenue survive a deletion (the order is failed, never dropped)."""

    __tablename__ = "diner_order"
    __table_args__ = (
        UniqueConstraint("diner_id", "idempotency_key", name="uq_order_idempotency"),
        Index("ix_order_due", "status", "next_attempt_at"),
        Index("ix_order_diner", "diner_id", "id"),
        Index("ix_order_store", "store_id", "status"),
        # An incident's impact is read over these two (app/incidents/impact.py).
        Index("ix_order_deferred", "deferred_at"),
        Index("ix_order_finished", "finished_at"),
        # "Pay" pressed again: one open twin per diner and request (app/orders/placement.py).
        Index(
            "uq_order_pending_twin",
            "diner_id",
            "twin_hash",
            unique=True,
            sqlite_where=text(OPEN_TWIN),
            postgresql_where=text(OPEN_TWIN),
        ),
        NEVER_REUSE_IDS,
    )
    id: int | None = Field(default=None, primary_key=True)
    diner_id: int
    franchise_id: int
    store_id: int
    date: datetime = Field(default_factory=utcnow)
    status: str = Field(sa_column=Column(String(16), nullable=False, default="pending"))
    total: Decimal = Field(sa_column=Column(Money, nullable=False))
    jwt: str | None = Field(default=None, sa_column=Column(Text))
    attempts: int = 0
    last_reason: str | None = Field(default=None, sa_column=Column(String(300)))
    # Set with status failed (an OrderFailure); last_reason keeps the human sentence.
    failure: str | None = Field(default=None, sa_column=Column(String(16)))
    next_attempt_at: datetime | None = None
    claimed_until: datetime | None = None
    finished_at: datetime | None = None
    idempotency_key: str | None = Field(default=None, sa_column=Column(String(255)))
    request_hash: str | None = Field(default=None, sa_column=Column(String(64)))
    # The request hash of an order placed without Idempotency-Key, while it may still be
    # answered for an identical new order (cleared once older than PENDING_TWIN_WINDOW).
    twin_hash: str | None = Field(default=None, sa_column=Column(String(64)))
    # When the order was first answered pending (the factory did not make it at once), and
    # that answer's HTTP status (503, or 202 to a client that asked for respond-async).
    deferred_at: datetime | None = None
    deferred_status: int | None = Field(default=None, sa_column=Column(SmallInteger))
    # When a customer answered pending was first shown the pizza (a 200 to POST /api/order,
    # or GET /api/order/{id} with it): "Pay" pressed after that is a new order.
    shown_at: datetime | None = None
    # The W3C traceparent of the request that placed it: the worker's retries link to it.
    trace_context: str | None = Field(default=None, sa_column=Column(String(55)))


class OrderItem(SQLModel, table=True):
    __tablename__ = "order_item"
    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="diner_order.id", index=True, ondelete="CASCADE")
    menu_id: int
    description: str = Field(sa_column=Column(String(500), nullable=False))
    price: Decimal = Field(sa_column=Column(Money, nullable=False))


class RemediationLink(SQLModel, table=True):
    """A factory `reportUrl`. `url` is a secret (it carries the vendor API key)."""

    __tablename__ = "remediation_link"
    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    # What people read: the URL the service follows (or the link as sent, if it does
    # not follow it), the API key masked.
    redacted: str = Field(sa_column=Column(Text, nullable=False))
    outcome: str = Field(sa_column=Column(String(20), nullable=False))
    first_seen: datetime = Field(default_factory=utcnow)
    followable: bool = False
    resolved_at: datetime | None = None


class RemediationAttempt(SQLModel, table=True):
    __tablename__ = "remediation_attempt"
    id: int | None = Field(default=None, primary_key=True)
    link_id: int = Field(foreign_key="remediation_link.id", index=True, ondelete="CASCADE")
    at: datetime = Field(default_factory=utcnow)
    mode: str = Field(sa_column=Column(String(10), nullable=False))
    by_user_id: int | None = None
    status_code: int | None = None
    message: str = Field(sa_column=Column(String(300), nullable=False))
    resolved: bool = False


class EventKind(StrEnum):
    """What a factory event is. Stored as its value: a plain string column, so rows written
    by a newer release with a kind this one does not know still load."""

    BREAKER = "breaker"  # breaker_from, breaker_to
    LINK_DETECTED = "link_detected"  # link
    LINKS_CLEARED = "links_cleared"
    REMEDIATION = "remediation"
    OPERATOR = "operator"
    CONFIG_FAULT = "config_fault"
    CONFIG_FAULT_CLEARED = "config_fault_cleared"
    CHAOS_REPORTED = "chaos_reported"  # the vendor record names a chaos (scheduled, running)
    CHAOS_CLEARED = "chaos_cleared"
    INCIDENT = "incident"  # a note of the recorder: opened, reopened, closed
    PAGE = "page"  # a webhook delivery


class FactoryEvent(SQLModel, table=True):
    """What happened at the factory, in order: the operator history and incident timeline.

    `detail` is the human sentence shown in the history; what code acts on is in typed
    fields (the breaker's states, the redacted link), never parsed back out of `detail`.
    """

    __tablename__ = "factory_event"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    kind: str = Field(sa_column=Column(String(40), nullable=False))
    detail: str = Field(sa_column=Column(Text, nullable=False, default=""))
    breaker_from: str | None = Field(default=None, sa_column=Column(String(20)))
    breaker_to: str | None = Field(default=None, sa_column=Column(String(20)))
    link: str | None = Field(default=None, sa_column=Column(Text))  # redacted

    @classmethod
    def breaker(cls, old: str, new: str, **fields: Any) -> FactoryEvent:
        """A breaker transition: typed states, and the sentence for people."""
        return cls(
            kind=EventKind.BREAKER,
            detail=f"{old} -> {new}",
            breaker_from=str(old),
            breaker_to=str(new),
            **fields,
        )

    @classmethod
    def link_detected(cls, link: str, outcome: str, **fields: Any) -> FactoryEvent:
        """A remediation link seen for the first time; `link` already redacted."""
        return cls(
            kind=EventKind.LINK_DETECTED, detail=f"{link} (outcome {outcome})", link=link, **fields
        )

    incident_id: int | None = Field(
        default=None, foreign_key="incident.id", index=True, ondelete="SET NULL"
    )
    user_id: int | None = None  # the operator who acted, if a person did


class Incident(SQLModel, table=True):
    """A factory outage as the service saw it (app/incidents/recorder.py)."""

    __tablename__ = "incident"
    id: int | None = Field(default=None, primary_key=True)
    opened_at: datetime  # the first sign of the fault the service saw
    started_at: datetime  # the first customer impact: the first order answered 202, if earlier
    closed_at: datetime | None = None
    # 1 while open, NULL once closed: unique, so at most one incident is open at a time.
    open_slot: int | None = Field(default=None, sa_column=Column(Integer, unique=True))
    trigger: str = Field(sa_column=Column(String(20), nullable=False))
    fault: str = Field(sa_column=Column(Text, nullable=False, default=""))
    reopened: int = 0

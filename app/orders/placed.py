"""What the order path holds of an order: the order as placed, its items, and what one
factory attempt came to (app/orders/workflow.py makes the attempt)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from app.models import OrderFailure, OrderStatus
from clients.schemas import Outcome


@dataclass(slots=True)
class PlacedOrder:
    """A pending order as the order path holds it: what the attempt and the answer need.

    A plain object, not a `DinerOrder` row: building an ORM instance per order cost more
    CPU than storing it (pizza bench)."""

    id: int
    diner_id: int
    franchise_id: int
    store_id: int
    date: datetime
    total: Decimal
    status: str = OrderStatus.PENDING
    attempts: int = 0
    jwt: str | None = None
    last_reason: str | None = None
    failure: OrderFailure | None = None
    # The HTTP status its customer is answered while it stays pending (503, or 202 to a
    # client that asked for respond-async), recorded with `deferred_at`; None when no
    # customer waits for this attempt (the retry worker's).
    pending_answer: int | None = None
    # Whether a slow pizza counts as a failure for the breaker. Not for an order the retry
    # worker's drain tries while it has grown past its first round: the slowness is then
    # the drain's own load, which it answers by trying fewer at once (app/orders/drain.py).
    slow_counts: bool = True


@dataclass(frozen=True, slots=True)
class PlacedItem:
    id: int
    menu_id: int
    description: str
    price: Decimal


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one attempt came to, as the customer sees it."""

    status: OrderStatus
    outcome: Outcome | None
    jwt: str | None = None
    reason: str = ""
    failure: OrderFailure | None = None  # why, when the order is given up

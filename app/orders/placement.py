"""Placing an order: validate, honour the idempotency key, store, then one attempt.

A pending order is answered as the client asked (the `Prefer` header of RFC 7240; see
`POST /api/order` in docs/http-api.md): 202 to a client that sent
`Prefer: respond-async`, else 503 with `Retry-After`, so a front end that reads any 2xx
as "made" never shows a pizza that is not there. While the factory is known to answer
slowly, a respond-async order is answered 202 at once and its attempt goes on in the
background.

"Pay" pressed again within PENDING_TWIN_WINDOW (a keyless order identical to one the
same diner placed) is answered with that order, its open twin, as it is now: while it
is pending, and once made until its customer has been shown the pizza (`shown_at`: a
200 carrying it, here or from `GET /api/order/{id}`). So a customer who was told
"pending" and presses "Pay" again after the order was made gets that pizza, not a
second one; once shown the pizza, pressing "Pay" again is a new order.

The insert comes first: the diner's Idempotency-Key and a keyless order's open twin
are unique in the database, so an order meets its earlier self as a refused insert, and
only then is that one read (and answered, or let go when expired and the order stored
anew). Everything goes through the order path's own store (app/sql): prepared
statements, the insert group-committed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, NamedTuple, Protocol

from app.errors import BadRequest, Conflict
from app.models import OrderFailure, OrderStatus
from app.orders.placed import Attempt, PlacedItem, PlacedOrder
from app.orders.tracing import traceparent
from app.schemas import ItemFields, OrderBody, OrderFields, order_json
from app.services import Services
from app.sql import InsertRefused, NewOrder, OrderStore, StoredOrder
from clients.schemas import DinerInfo

IDEMPOTENCY_WINDOW = timedelta(hours=24)
# An identical order (same diner, franchise, store and menu ids) placed without an
# Idempotency-Key while an earlier one is open (pending, or made and not yet shown) and
# younger than this is that order.
PENDING_TWIN_WINDOW = timedelta(minutes=10)
PENDING_MESSAGE = (
    "The pizza factory cannot make your pizza right now. Your order {order_id} is saved: "
    "it will be made as soon as the factory is back, and you will not be charged twice."
)
REJECTED_MESSAGE = "The pizza factory refused this order. It was not made and not charged."
PREFER_ASYNC = "respond-async"
# A twin whose first request still waits for the factory is waited for (up to the
# customer's wait, FACTORY_TIMEOUT_S), read again this often: a double click on a working
# factory gets the pizza twice over, not "cannot make it now".
TWIN_POLL_S = 0.05

# Status, the headers it needs, the JSON body.
Answer = tuple[int, dict[str, str], dict[str, Any]]


class _Answerable(OrderFields, Protocol):
    """What `answer` reads of an order: a stored one or the one just placed."""

    @property
    def last_reason(self) -> str | None: ...
    @property
    def failure(self) -> str | None: ...


def request_hash(body: OrderBody) -> str:
    canonical = json.dumps(
        [body.franchiseId, body.storeId, [i.menuId for i in body.items]], separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def prefers_async(prefer: list[str]) -> bool:
    """Whether the `Prefer` header fields (RFC 7240) ask for `respond-async`.

    Each field is a comma-separated list of preferences, each `token[=value]` with
    optional `;` parameters; tokens are case-insensitive, unknown ones ignored.
    """
    for field in prefer:
        for preference in field.split(","):
            token = preference.split(";", 1)[0].split("=", 1)[0].strip()
            if token.lower() == PREFER_ASYNC:
                return True
    return False


def retry_after_s(*, breaker_open: bool, breaker_reset_s: float, retry_base_s: float) -> int:
    """`Retry-After` of a pending answer: when the open breaker next lets a call through
    (BREAKER_RESET_S), else the retry worker's first backoff (RETRY_BASE_S); at least 1."""
    return max(1, math.ceil(breaker_reset_s if breaker_open else retry_base_s))


@dataclass(frozen=True, slots=True)
class Asked:
    """How the client wants a pending order answered (see `answer`)."""

    prefer_async: bool = False
    retry_after: int = 1
    twin_wait_s: float = 0.0  # how long to wait for a twin's first answer (see _earlier_twin)

    @property
    def pending_status(self) -> int:
        """The HTTP status of a pending answer: 202 to respond-async, else 503."""
        return 202 if self.prefer_async else 503


def answer(order: _Answerable, items: Sequence[ItemFields], asked: Asked) -> Answer:
    """The customer's answer for an order as it stands now, as the client asked for it."""
    body: dict[str, Any] = {"order": order_json(order, items), "jwt": order.jwt}
    if order.status == OrderStatus.FULFILLED:
        return 200, {}, body
    if order.status == OrderStatus.FAILED:
        if order.failure == OrderFailure.REJECTED:
            return 502, {}, {"message": REJECTED_MESSAGE, **body}
        # Given up for another reason (too old, its store or franchise deleted).
        reason = order.last_reason or ""
        return 502, {}, {"message": f"This order was not made and not charged: {reason}.", **body}
    pending = {"message": PENDING_MESSAGE.format(order_id=order.id), **body}
    if asked.pending_status == 202:
        headers = {"Preference-Applied": PREFER_ASYNC, "Location": f"/api/order/{order.id}"}
        return 202, headers, pending
    return 503, {"Retry-After": str(asked.retry_after)}, pending


def _stored_answer(order: StoredOrder, asked: Asked) -> Answer:
    return answer(order, [PlacedItem(*item) for item in order.items], asked)


class NoEarlier(Enum):
    """Why a refused insert has no earlier order to answer with (else it has its Answer).

    Both let the caller go on: a missing store is then said as such, and otherwise the
    order is stored anew. They are told apart for the reader, and for a caller that ever
    needs to act on the difference.
    """

    NOT_FOUND = "not found"  # no earlier order with this key, nor an open twin
    LET_GO = "let go"  # there was one, too old to be this order: its key or twin is cleared


async def _earlier_by_key(
    store: OrderStore, diner_id: int, key: str, digest: str, asked: Asked, now: datetime
) -> Answer | NoEarlier:
    existing = await store.find_order(diner_id=diner_id, key=key)
    if existing is None:
        return NoEarlier.NOT_FOUND
    if existing.date < now - IDEMPOTENCY_WINDOW:
        await store.forget_key(existing.id)  # expired: the key may name a new order
        return NoEarlier.LET_GO
    if existing.request_hash != digest:
        raise Conflict("Idempotency-Key was already used for a different order")
    # The key's first request may still be waiting for the factory: its answer is this one.
    return _stored_answer(await _first_answer_of(store, existing, asked.twin_wait_s), asked)


async def _earlier_twin(
    services: Services,
    diner_id: int,
    digest: str,
    asked: Asked,
    now: datetime,
    *,
    only_open: bool,
) -> Answer | NoEarlier:
    """The answer of the keyless order this one repeats, once that has its first answer.

    A twin older than PENDING_TWIN_WINDOW is let go (its `twin_hash` cleared): the new
    order is then stored beside it. With ``only_open``, the open twin only
    (models.OPEN_TWIN); without it (the insert met an open twin): the newest twin
    whatever its state, since it may have been shown meanwhile and the press repeated it
    all the same. A made twin answered here is shown to its customer: the next press is
    a new order.
    """
    store = services.store
    twin = await store.find_order(diner_id=diner_id, twin_hash=digest, open_twin=only_open)
    if twin is None:
        return NoEarlier.NOT_FOUND
    if twin.date < now - PENDING_TWIN_WINDOW:
        await store.forget_twin(twin.id)
        return NoEarlier.LET_GO
    twin = await _first_answer_of(store, twin, asked.twin_wait_s)
    services.metrics.order_twin(twin.status)
    answered = _stored_answer(twin, asked)
    if answered[0] == 200 and twin.deferred_at is not None:
        await store.show(twin.id, now)
    return answered


async def _first_answer_of(store: OrderStore, twin: StoredOrder, wait_s: float) -> StoredOrder:
    """The twin once its first request has its answer (made, or told pending: deferred_at
    set), or as it is after `wait_s`."""
    # A real wait (the event loop's clock), not the order's time.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while (
        twin.status == OrderStatus.PENDING and twin.deferred_at is None and loop.time() < deadline
    ):
        await asyncio.sleep(TWIN_POLL_S)
        fresh = await store.find_order(order_id=twin.id)
        if fresh is None:
            break
        twin = fresh
    return twin


async def _priced_items(store: OrderStore, body: OrderBody) -> list[tuple[int, str, Decimal]]:
    """The items as the order will hold them: description and price from the menu."""
    menu = await store.menu_items({i.menuId for i in body.items})
    for index, item in enumerate(body.items):
        if item.menuId not in menu:
            raise BadRequest(f"items.{index}.menuId: unknown menu item {item.menuId}")
    return [(i.menuId, menu[i.menuId].title, menu[i.menuId].price) for i in body.items]


async def place_order(
    services: Services,
    diner: DinerInfo,
    body: OrderBody,
    idempotency_key: str | None,
    asked: Asked | None = None,
) -> Answer:
    asked = asked or Asked()
    store, workflow = services.store, services.orders
    digest = request_hash(body)
    now = services.clock.now()
    try:
        priced = await _priced_items(store, body)
    except BadRequest:
        # A key already used for a different order is that conflict, whatever the body.
        if idempotency_key:
            await _earlier_by_key(store, diner.id, idempotency_key, digest, asked, now)
        raise
    # While the breaker is open (or our key is refused) no call can be made: the order
    # is stored already handed back to the worker and answered pending at once.
    refused = workflow.refusal()
    # A client that asked for respond-async does not wait for a factory known to be slow:
    # answered 202 now, its attempt made in the background (claimed here meanwhile).
    later = not refused and asked.prefer_async and services.ops.answers_slowly()
    new = _new_order(
        diner,
        body,
        idempotency_key,
        digest,
        priced,
        now,
        refused=refused,
        claimed_until=None if refused else workflow.claim_until(now),
        pending_now=asked.pending_status if refused or later else None,
    )
    stored = await _insert(services, new, idempotency_key, asked)
    if not isinstance(stored, _Stored):
        return stored  # the earlier order this one repeats
    order_id, item_ids = stored
    services.metrics.order_accepted()  # the order-availability SLO's every order
    order = PlacedOrder(
        id=order_id,
        diner_id=new.diner_id,
        franchise_id=new.franchise_id,
        store_id=new.store_id,
        date=now,
        total=new.total,
        last_reason=refused,
        pending_answer=asked.pending_status,
    )
    items = [PlacedItem(i, *item) for i, item in zip(item_ids, priced, strict=True)]
    if refused:
        workflow.refused(order_id, refused, now)
    elif later:
        workflow.attempt_later(order, diner, items)
    else:
        return answer(_with(order, await workflow.attempt(order, diner, items)), items, asked)
    return answer(order, items, asked)


class _Stored(NamedTuple):
    order_id: int
    item_ids: list[int]


async def _insert(
    services: Services, new: NewOrder, idempotency_key: str | None, asked: Asked
) -> _Stored | Answer:
    """Store the order; or the answer of the earlier order its insert met."""
    store, now = services.store, new.date
    # Stored first, looked up only when the insert is refused: a new order (nearly every
    # one) costs no read for its key or its twin.
    inserted = await store.insert_order(new)
    for _ in range(2):
        if not isinstance(inserted, InsertRefused):
            return _Stored(*inserted)
        earlier = await _earlier(
            services, new.diner_id, idempotency_key, new.request_hash, asked, inserted, now
        )
        if not isinstance(earlier, NoEarlier):
            return earlier
        if inserted is InsertRefused.STORE_MISSING:
            raise BadRequest("storeId: no such store in this franchise")
        # The earlier order was let go (expired key, stale twin): store this one anew.
        inserted = await store.insert_order(new)
    if isinstance(inserted, InsertRefused):
        # Taken again at once: another request with the same key or order won the race
        # and is not readable yet.
        raise Conflict("this order was placed by another request at the same moment")
    return _Stored(*inserted)


def _new_order(
    diner: DinerInfo,
    body: OrderBody,
    idempotency_key: str | None,
    digest: str,
    priced: list[tuple[int, str, Decimal]],
    now: datetime,
    *,
    refused: str | None,
    claimed_until: datetime | None,
    pending_now: int | None,
) -> NewOrder:
    """The order as stored; ``pending_now``: the status its customer is answered now,
    before any call (the breaker open, or respond-async while the factory is slow)."""
    return NewOrder(
        diner_id=diner.id,
        franchise_id=body.franchiseId,
        store_id=body.storeId,
        date=now,
        total=sum((price for _, _, price in priced), Decimal(0)),
        idempotency_key=idempotency_key or None,
        request_hash=digest,
        # Without a key, "Pay" pressed again finds this order (uq_order_pending_twin).
        twin_hash=None if idempotency_key else digest,
        next_attempt_at=now,
        # Claimed by this request until its call is over: the worker leaves it alone.
        claimed_until=claimed_until,
        last_reason=refused,
        deferred_at=None if pending_now is None else now,
        deferred_status=pending_now,
        items=priced,
        # The worker's retries link back to this request's trace.
        trace_context=traceparent(),
    )


async def _earlier(
    services: Services,
    diner_id: int,
    idempotency_key: str | None,
    digest: str,
    asked: Asked,
    refused: InsertRefused,
    now: datetime,
) -> Answer | NoEarlier:
    """The answer of the earlier order that a refused insert met (the same key, or the
    same keyless order while open), or why there is none to answer with."""
    if idempotency_key:
        return await _earlier_by_key(services.store, diner_id, idempotency_key, digest, asked, now)
    # A missing store meets no twin in the insert: look for an open one only, as "Pay"
    # pressed again would find it. An insert refused as TAKEN met an open twin.
    only_open = refused is InsertRefused.STORE_MISSING
    return await _earlier_twin(services, diner_id, digest, asked, now, only_open=only_open)


def _with(order: PlacedOrder, attempt: Attempt) -> PlacedOrder:
    order.status = attempt.status
    order.jwt = attempt.jwt
    order.last_reason = attempt.reason or None
    order.failure = attempt.failure
    return order

"""Placing an order: validate, honour the idempotency key, store, then one attempt.

A pending order is answered as the client asked (RFC 7240, api.md "POST /api/order"):
202 to a client that sent `Prefer: respond-async`, else 503 with `Retry-After`, so a
front end that reads any 2xx as "made" never shows a pizza that is not there. "Pay"
pressed again within PENDING_TWIN_WINDOW answers with the pending twin it would repeat.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.errors import BadRequest, Conflict
from app.models import DinerOrder, MenuItem, OrderItem, OrderStatus, Store, utcnow
from app.orders.workflow import REJECTED_REASON, Attempt, OrderWorkflow, items_of, order_total
from app.schemas import OrderBody, order_json
from clients.schemas import DinerInfo

IDEMPOTENCY_WINDOW = timedelta(hours=24)
# An identical order (same diner, franchise, store and menu ids) placed without an
# Idempotency-Key while an earlier one is pending and younger than this is that order.
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
# Inserted as plain Core rows: the ORM's unit of work costs more CPU than the statements.
_ORDERS = SQLModel.metadata.tables[DinerOrder.__tablename__]
_ITEMS = SQLModel.metadata.tables[OrderItem.__tablename__]


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


def answer(
    order: DinerOrder, items: list[OrderItem], *, prefer_async: bool = False, retry_after: int = 1
) -> Answer:
    """The customer's answer for an order as it stands now, as the client asked for it."""
    body: dict[str, Any] = {"order": order_json(order, items), "jwt": order.jwt}
    if order.status == OrderStatus.FULFILLED:
        return 200, {}, body
    if order.status == OrderStatus.FAILED:
        reason = order.last_reason or ""
        if reason.startswith(REJECTED_REASON):
            return 502, {}, {"message": REJECTED_MESSAGE, **body}
        # Given up for another reason (too old, its store or franchise deleted).
        return 502, {}, {"message": f"This order was not made and not charged: {reason}.", **body}
    pending = {"message": PENDING_MESSAGE.format(order_id=order.id), **body}
    if prefer_async:
        headers = {"Preference-Applied": PREFER_ASYNC, "Location": f"/api/order/{order.id}"}
        return 202, headers, pending
    return 503, {"Retry-After": str(retry_after)}, pending


@dataclass(frozen=True, slots=True)
class Asked:
    """How the client wants a pending order answered (see `answer`)."""

    prefer_async: bool = False
    retry_after: int = 1
    twin_wait_s: float = 0.0  # how long to wait for a twin's first answer (see _pending_twin)


async def _validated_items(session: AsyncSession, body: OrderBody) -> list[OrderItem]:
    """The store and the menu items in one statement; the items as the order will hold them."""
    wanted = {i.menuId for i in body.items}
    rows = (
        await session.execute(
            select(
                col(Store.franchise_id), col(MenuItem.id), col(MenuItem.title), col(MenuItem.price)
            )
            .select_from(Store)
            .outerjoin(MenuItem, col(MenuItem.id).in_(wanted))
            .where(col(Store.id) == body.storeId)
        )
    ).all()
    if not rows or rows[0][0] != body.franchiseId:
        raise BadRequest("storeId: no such store in this franchise")
    menu = {menu_id: (title, price) for _, menu_id, title, price in rows if menu_id is not None}
    for index, item in enumerate(body.items):
        if item.menuId not in menu:
            raise BadRequest(f"items.{index}.menuId: unknown menu item {item.menuId}")
    return [
        OrderItem(
            order_id=0, menu_id=i.menuId, description=menu[i.menuId][0], price=menu[i.menuId][1]
        )
        for i in body.items
    ]


async def _replay(
    session: AsyncSession, diner_id: int, key: str, digest: str, asked: Asked
) -> Answer | None:
    existing = (
        await session.exec(
            select(DinerOrder).where(
                DinerOrder.diner_id == diner_id, DinerOrder.idempotency_key == key
            )
        )
    ).first()
    if existing is None:
        return None
    assert existing.id is not None
    if existing.date < utcnow() - IDEMPOTENCY_WINDOW:
        existing.idempotency_key = None  # expired: the key may name a new order
        session.add(existing)
        await session.commit()
        return None
    if existing.request_hash != digest:
        raise Conflict("Idempotency-Key was already used for a different order")
    return _answer(existing, await items_of(session, existing.id), asked)


def _answer(order: DinerOrder, items: list[OrderItem], asked: Asked) -> Answer:
    return answer(order, items, prefer_async=asked.prefer_async, retry_after=asked.retry_after)


async def _pending_twin(
    session: AsyncSession, diner_id: int, digest: str, asked: Asked
) -> Answer | None:
    """The answer of the pending twin of a keyless order, if one is young enough.

    A twin older than PENDING_TWIN_WINDOW is let go (its `twin_hash` cleared): the
    new order is then stored beside it.
    """
    twin = (
        await session.exec(
            select(DinerOrder).where(
                DinerOrder.diner_id == diner_id,
                DinerOrder.twin_hash == digest,
                DinerOrder.status == OrderStatus.PENDING,
            )
        )
    ).first()
    if twin is None or twin.id is None:
        return None
    if twin.date < utcnow() - PENDING_TWIN_WINDOW:
        await session.execute(
            update(DinerOrder).where(col(DinerOrder.id) == twin.id).values(twin_hash=None)
        )
        await session.commit()
        return None
    twin = await _first_answer_of(session, twin, asked.twin_wait_s)
    assert twin.id is not None
    return _answer(twin, await items_of(session, twin.id), asked)


async def _first_answer_of(session: AsyncSession, twin: DinerOrder, wait_s: float) -> DinerOrder:
    """The twin once its first request has its answer (made, or told pending: deferred_at
    set), or as it is after `wait_s`."""
    twin_id, deadline = twin.id, utcnow() + timedelta(seconds=wait_s)
    while twin.status == OrderStatus.PENDING and twin.deferred_at is None and utcnow() < deadline:
        # No snapshot kept across the wait (SQLite WAL, PostgreSQL); the rollback expires
        # `twin`, read again below.
        await session.rollback()
        await asyncio.sleep(TWIN_POLL_S)
        fresh = await session.get(DinerOrder, twin_id, populate_existing=True)
        if fresh is None:
            break
        twin = fresh
    return twin


async def place_order(
    session: AsyncSession,
    workflow: OrderWorkflow,
    diner: DinerInfo,
    body: OrderBody,
    idempotency_key: str | None,
    asked: Asked | None = None,
) -> Answer:
    asked = asked or Asked()
    digest = request_hash(body)
    if idempotency_key:
        replay = await _replay(session, diner.id, idempotency_key, digest, asked)
        if replay is not None:
            return replay
    else:
        twin = await _pending_twin(session, diner.id, digest, asked)
        if twin is not None:
            return twin
    items = await _validated_items(session, body)
    now = utcnow()
    # While the breaker is open (or our key is refused) no call can be made: the order
    # is stored already handed back to the worker and answered pending at once.
    refused = workflow.refusal()
    order = DinerOrder(
        diner_id=diner.id,
        franchise_id=body.franchiseId,
        store_id=body.storeId,
        date=now,
        status=OrderStatus.PENDING,
        total=order_total(items),
        jwt=None,
        attempts=0,
        last_reason=refused,
        idempotency_key=idempotency_key or None,
        request_hash=digest,
        # Without a key, "Pay" pressed again finds this order (uq_order_pending_twin).
        twin_hash=None if idempotency_key else digest,
        next_attempt_at=now,
        # Claimed by this request until its call is over: the worker leaves it alone.
        claimed_until=None if refused else workflow.claim_until(now),
        finished_at=None,
        deferred_at=now if refused else None,
    )
    values = order.model_dump(exclude={"id"})
    try:
        order.id = (
            await session.execute(insert(_ORDERS).values(values).returning(col(DinerOrder.id)))
        ).scalar_one()
    except IntegrityError:
        # The same key, or the same keyless order while pending, raced in from a second
        # request: answer with the first order.
        await session.rollback()
        if idempotency_key:
            replay = await _replay(session, diner.id, idempotency_key, digest, asked)
        else:
            replay = await _pending_twin(session, diner.id, digest, asked)
        if replay is None:
            raise
        return replay
    for item in items:
        item.order_id = order.id
    ids = (
        await session.execute(
            insert(_ITEMS).returning(col(OrderItem.id), sort_by_parameter_order=True),
            [i.model_dump(exclude={"id"}) for i in items],
        )
    ).scalars()
    for item, item_id in zip(items, ids, strict=True):
        item.id = item_id
    await session.commit()
    if refused:
        workflow.refused(refused)
        return _answer(order, items, asked)
    attempt = await workflow.attempt(order, diner, items)
    return _answer(_with(order, attempt), items, asked)


def _with(order: DinerOrder, attempt: Attempt) -> DinerOrder:
    order.status = attempt.status
    order.jwt = attempt.jwt
    order.last_reason = attempt.reason or None
    return order

"""Placing an order: validate, honour the idempotency key, store, then one attempt."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.errors import BadRequest, Conflict
from app.models import DinerOrder, MenuItem, OrderItem, OrderStatus, Store, utcnow
from app.orders.workflow import Attempt, OrderWorkflow, items_of, order_total
from app.schemas import OrderBody, order_json
from clients.schemas import DinerInfo

IDEMPOTENCY_WINDOW = timedelta(hours=24)
MAX_IDEMPOTENCY_KEY = 255
PENDING_MESSAGE = (
    "The pizza factory cannot make this order right now. It is saved and will be made "
    "as soon as the factory is back; you will not be charged twice."
)
REJECTED_MESSAGE = "The pizza factory refused this order. It was not made and not charged."

Answer = tuple[int, dict[str, Any]]


def request_hash(body: OrderBody) -> str:
    canonical = json.dumps(
        [body.franchiseId, body.storeId, [i.menuId for i in body.items]], separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def answer(order: DinerOrder, items: list[OrderItem]) -> Answer:
    """The customer's answer for an order as it stands now."""
    body: dict[str, Any] = {"order": order_json(order, items), "jwt": order.jwt}
    if order.status == OrderStatus.FULFILLED:
        return 200, body
    if order.status == OrderStatus.FAILED:
        return 502, {"message": REJECTED_MESSAGE, **body}
    return 202, {"message": PENDING_MESSAGE, **body}


async def _validated_items(session: AsyncSession, body: OrderBody) -> list[MenuItem]:
    store = await session.get(Store, body.storeId)
    if store is None or store.franchise_id != body.franchiseId:
        raise BadRequest("storeId: no such store in this franchise")
    wanted = {i.menuId for i in body.items}
    menu = {
        m.id: m for m in await session.exec(select(MenuItem).where(col(MenuItem.id).in_(wanted)))
    }
    for index, item in enumerate(body.items):
        if item.menuId not in menu:
            raise BadRequest(f"items.{index}.menuId: unknown menu item {item.menuId}")
    return [menu[i.menuId] for i in body.items]


async def _replay(session: AsyncSession, diner_id: int, key: str, digest: str) -> Answer | None:
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
    return answer(existing, await items_of(session, existing.id))


async def place_order(
    session: AsyncSession,
    workflow: OrderWorkflow,
    diner: DinerInfo,
    body: OrderBody,
    idempotency_key: str | None,
) -> Answer:
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise BadRequest(f"Idempotency-Key: must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
    digest = request_hash(body)
    if idempotency_key:
        replay = await _replay(session, diner.id, idempotency_key, digest)
        if replay is not None:
            return replay
    menu_items = await _validated_items(session, body)
    now = utcnow()
    items = [
        OrderItem(order_id=0, menu_id=m.id or 0, description=m.title, price=m.price)
        for m in menu_items
    ]
    order = DinerOrder(
        diner_id=diner.id,
        franchise_id=body.franchiseId,
        store_id=body.storeId,
        date=now,
        status=OrderStatus.PENDING,
        total=order_total(items),
        idempotency_key=idempotency_key or None,
        request_hash=digest,
        next_attempt_at=now,
        # Claimed by this request until its call is over: the worker leaves it alone.
        claimed_until=workflow.claim_until(now),
    )
    session.add(order)
    try:
        await session.flush()
    except IntegrityError:
        # The same key raced in from a second request: answer with the first order.
        await session.rollback()
        replay = await _replay(session, diner.id, idempotency_key or "", digest)
        if replay is None:
            raise
        return replay
    assert order.id is not None
    for item in items:
        item.order_id = order.id
        session.add(item)
    await session.commit()
    attempt = await workflow.attempt(order, diner, items)
    return answer(_with(order, attempt), items)


def _with(order: DinerOrder, attempt: Attempt) -> DinerOrder:
    order.status = attempt.status
    order.jwt = attempt.jwt
    return order

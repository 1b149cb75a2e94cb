"""Placing an order: validate, honour the idempotency key, store, then one attempt."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.errors import BadRequest, Conflict
from app.models import DinerOrder, OrderFailure, OrderStatus, utcnow
from app.orders.workflow import Attempt, PlacedItem, PlacedOrder, items_of
from app.schemas import ItemFields, OrderBody, order_json
from app.services import Services
from app.sql import InsertRefused, NewOrder, OrderStore
from clients.schemas import DinerInfo

IDEMPOTENCY_WINDOW = timedelta(hours=24)
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


def answer(order: DinerOrder | PlacedOrder, items: Sequence[ItemFields]) -> Answer:
    """The customer's answer for an order as it stands now."""
    body: dict[str, Any] = {"order": order_json(order, items), "jwt": order.jwt}
    if order.status == OrderStatus.FULFILLED:
        return 200, body
    if order.status == OrderStatus.FAILED:
        reason = order.last_reason or ""
        if order.failure == OrderFailure.REJECTED:
            return 502, {"message": REJECTED_MESSAGE, **body}
        # Given up for another reason (too old, its store or franchise deleted).
        return 502, {"message": f"This order was not made and not charged: {reason}.", **body}
    return 202, {"message": PENDING_MESSAGE, **body}


async def _priced_items(store: OrderStore, body: OrderBody) -> list[tuple[int, str, Decimal]]:
    """The items as the order will hold them: description and price from the menu."""
    menu = await store.menu_items({i.menuId for i in body.items})
    for index, item in enumerate(body.items):
        if item.menuId not in menu:
            raise BadRequest(f"items.{index}.menuId: unknown menu item {item.menuId}")
    return [(i.menuId, menu[i.menuId].title, menu[i.menuId].price) for i in body.items]


async def _replay(
    sessions: async_sessionmaker[AsyncSession], diner_id: int, key: str, digest: str
) -> Answer | None:
    async with sessions() as session:
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
    services: Services, diner: DinerInfo, body: OrderBody, idempotency_key: str | None
) -> Answer:
    store, workflow = services.store, services.orders
    digest = request_hash(body)
    if idempotency_key:
        replay = await _replay(services.sessions, diner.id, idempotency_key, digest)
        if replay is not None:
            return replay
    priced = await _priced_items(store, body)
    now = utcnow()
    # While the breaker is open (or our key is refused) no call can be made: the order
    # is stored already handed back to the worker and answered at once.
    refused = workflow.refusal()
    new = NewOrder(
        diner_id=diner.id,
        franchise_id=body.franchiseId,
        store_id=body.storeId,
        date=now,
        total=sum((price for _, _, price in priced), Decimal(0)),
        idempotency_key=idempotency_key or None,
        request_hash=digest,
        next_attempt_at=now,
        # Claimed by this request until its call is over: the worker leaves it alone.
        claimed_until=None if refused else workflow.claim_until(now),
        last_reason=refused,
        deferred_at=now if refused else None,
        items=priced,
    )
    inserted = await store.insert_order(new)
    if inserted is InsertRefused.STORE_MISSING:
        raise BadRequest("storeId: no such store in this franchise")
    if inserted is InsertRefused.KEY_TAKEN:
        # The same key raced in from a second request: answer with the first order.
        replay = await _replay(services.sessions, diner.id, idempotency_key or "", digest)
        if replay is None:
            raise Conflict("Idempotency-Key was already used for a different order")
        return replay
    order_id, item_ids = inserted
    order = PlacedOrder(
        id=order_id,
        diner_id=new.diner_id,
        franchise_id=new.franchise_id,
        store_id=new.store_id,
        date=now,
        total=new.total,
        last_reason=refused,
    )
    items = [
        PlacedItem(item_id, menu_id, text, price)
        for item_id, (menu_id, text, price) in zip(item_ids, priced, strict=True)
    ]
    if refused:
        workflow.refused(refused, now)
        return answer(order, items)
    attempt = await workflow.attempt(order, diner, items)
    return answer(_with(order, attempt), items)


def _with(order: PlacedOrder, attempt: Attempt) -> PlacedOrder:
    order.status = attempt.status
    order.jwt = attempt.jwt
    order.last_reason = attempt.reason or None
    order.failure = attempt.failure
    return order

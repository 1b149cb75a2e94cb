"""Placing an order: validate, honour the idempotency key, store, then one attempt."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.errors import BadRequest, Conflict
from app.models import DinerOrder, MenuItem, OrderItem, OrderStatus, Store, utcnow
from app.orders.workflow import REJECTED_REASON, Attempt, OrderWorkflow, items_of, order_total
from app.schemas import OrderBody, order_json
from clients.schemas import DinerInfo

IDEMPOTENCY_WINDOW = timedelta(hours=24)
PENDING_MESSAGE = (
    "The pizza factory cannot make this order right now. It is saved and will be made "
    "as soon as the factory is back; you will not be charged twice."
)
REJECTED_MESSAGE = "The pizza factory refused this order. It was not made and not charged."

Answer = tuple[int, dict[str, Any]]
# Inserted as plain Core rows: the ORM's unit of work costs more CPU than the statements.
_ORDERS = SQLModel.metadata.tables[DinerOrder.__tablename__]
_ITEMS = SQLModel.metadata.tables[OrderItem.__tablename__]


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
        reason = order.last_reason or ""
        if reason.startswith(REJECTED_REASON):
            return 502, {"message": REJECTED_MESSAGE, **body}
        # Given up for another reason (too old, its store or franchise deleted).
        return 502, {"message": f"This order was not made and not charged: {reason}.", **body}
    return 202, {"message": PENDING_MESSAGE, **body}


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
    digest = request_hash(body)
    if idempotency_key:
        replay = await _replay(session, diner.id, idempotency_key, digest)
        if replay is not None:
            return replay
    items = await _validated_items(session, body)
    now = utcnow()
    # While the breaker is open (or our key is refused) no call can be made: the order
    # is stored already handed back to the worker and answered 202 at once.
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
        # The same key raced in from a second request: answer with the first order.
        await session.rollback()
        replay = await _replay(session, diner.id, idempotency_key or "", digest)
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
        return answer(order, items)
    attempt = await workflow.attempt(order, diner, items)
    return answer(_with(order, attempt), items)


def _with(order: DinerOrder, attempt: Attempt) -> DinerOrder:
    order.status = attempt.status
    order.jwt = attempt.jwt
    order.last_reason = attempt.reason or None
    return order

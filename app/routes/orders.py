"""Menu and orders (docs/http-api.md#orders)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.deps import AdminUser, CurrentUser, ServicesDep, SessionDep
from app.errors import RETRY_AFTER, NotFound, error_responses
from app.fields import IdPath
from app.models import DinerOrder, MenuItem, OrderItem, OrderStatus
from app.orders.placement import Asked, place_order, prefers_async, retry_after_s
from app.responses import json_response
from app.schemas import (
    MenuItemBody,
    MenuItemOut,
    OrderAnswerOut,
    OrderBody,
    OrderHistoryOut,
    OrderOut,
    money,
    order_json,
)
from app.sql import MenuRow
from clients.schemas import DinerInfo

router = APIRouter(prefix="/api/order", tags=["order"], responses=error_responses(400, 413))
ORDERS_PAGE_SIZE = 10
# OpenAPI links (the stateful chain of tests/app/test_schema_fuzz.py): an answer that
# holds an order leads to reading it, then to deleting its store.
ORDER_LINKS = {
    "GetOrder": {"operationId": "get_order", "parameters": {"orderId": "$response.body#/order/id"}},
    "DeleteStore": {
        "operationId": "delete_store",
        "parameters": {
            "franchiseId": "$response.body#/order/franchiseId",
            "storeId": "$response.body#/order/storeId",
        },
    },
}


async def items_of(session: AsyncSession, order_id: int) -> list[OrderItem]:
    rows = await session.exec(
        select(OrderItem).where(OrderItem.order_id == order_id).order_by(col(OrderItem.id))
    )
    return list(rows)


def menu_json(item: MenuItem | MenuRow) -> dict[str, Any]:
    return {
        "id": item.id,
        "title": item.title,
        "image": item.image,
        "price": money(item.price),
        "description": item.description,
    }


async def _menu(session: SessionDep) -> list[dict[str, Any]]:
    return [menu_json(m) for m in await session.exec(select(MenuItem).order_by(col(MenuItem.id)))]


@router.get("/menu", summary="The menu", response_model=list[MenuItemOut])
async def get_menu(services: ServicesDep) -> Response:
    # Served as it is read (the route's answer is the model above, unvalidated): every
    # request pays for the read, not for a second pass over the rows.
    return json_response([menu_json(m) for m in await services.store.menu()])


@router.put(
    "/menu",
    summary="Add a menu item (admin)",
    response_model=list[MenuItemOut],
    responses=error_responses(401, 403),
)
async def add_menu_item(
    body: MenuItemBody, session: SessionDep, _admin: AdminUser
) -> list[dict[str, Any]]:
    session.add(MenuItem(**body.model_dump()))
    await session.commit()
    return await _menu(session)


@router.get(
    "",
    summary="The caller's orders, newest first",
    response_model=OrderHistoryOut,
    responses=error_responses(401),
)
async def list_orders(
    principal: CurrentUser,
    session: SessionDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> dict[str, Any]:
    orders = list(
        await session.exec(
            select(DinerOrder)
            .where(DinerOrder.diner_id == principal.id)
            .order_by(col(DinerOrder.id).desc())
            .offset((page - 1) * ORDERS_PAGE_SIZE)
            .limit(ORDERS_PAGE_SIZE + 1)
        )
    )
    shown = orders[:ORDERS_PAGE_SIZE]
    items: dict[int, list[OrderItem]] = {o.id: [] for o in shown if o.id is not None}
    if items:
        rows = await session.exec(
            select(OrderItem).where(col(OrderItem.order_id).in_(items)).order_by(col(OrderItem.id))
        )
        for item in rows:
            items[item.order_id].append(item)
    return {
        "dinerId": principal.id,
        "orders": [order_json(o, items[o.id]) for o in shown if o.id is not None],
        "page": page,
        "more": len(orders) > ORDERS_PAGE_SIZE,
    }


@router.get(
    "/{orderId}",
    summary="One order, to follow a pending one",
    response_model=OrderOut,
    responses={
        200: {
            "links": {
                "DeleteStore": {
                    "operationId": "delete_store",
                    "parameters": {
                        "franchiseId": "$response.body#/franchiseId",
                        "storeId": "$response.body#/storeId",
                    },
                }
            }
        },
        **error_responses(401, 404),
    },
)
async def get_order(
    orderId: IdPath,
    principal: CurrentUser,
    session: SessionDep,
    services: ServicesDep,
) -> dict[str, Any]:
    order = await session.get(DinerOrder, orderId)
    if (
        order is None
        or order.id is None
        or (order.diner_id != principal.id and not principal.is_admin)
    ):
        raise NotFound("unknown order")
    if (
        order.diner_id == principal.id
        and order.status == OrderStatus.FULFILLED
        and order.deferred_at is not None
        and order.shown_at is None
    ):
        # The customer told "pending" now sees the pizza: "Pay" pressed again after this
        # is a new order (app/orders/placement.py).
        await services.store.show(order.id, services.clock.now())
    return order_json(order, await items_of(session, order.id))


ORDER_DESCRIPTION = """\
The order is stored before the factory is called and is never lost. `200` carries the
pizza's JWT; when the factory cannot make it now the order is kept `pending` and made
later: `503` with `Retry-After` and a `message` naming the order, or `202` with
`Location` to a client that sent `Prefer: respond-async` (answered at once, without
waiting for the factory, while the factory is known to answer slowly).

**"Pay" pressed again.** Without `Idempotency-Key`, an order identical to one the same
diner placed within the last 10 minutes (same franchise, store and menu items) that is
still pending, or was answered pending and made since without the diner being shown its
pizza, is answered with that order as it is now, never a second one: still pending
(`503`/`202`, the same order id), or made (`200` with its pizza). Once the diner has
been shown the pizza (a `200` carrying it here, or `GET /api/order/{orderId}` reading
it), the same order again is a new order. Presses that arrive at once are one order.
With `Idempotency-Key`, the same key within 24 h returns the first order (a different
body is `409`), and a new key is a new order.
"""


@router.post(
    "",
    summary="Order pizzas",
    description=ORDER_DESCRIPTION,
    response_model=OrderAnswerOut,
    responses={
        200: {"description": "The pizza is made: its JWT", "links": ORDER_LINKS},
        202: {
            "model": OrderAnswerOut,
            "description": "With `Prefer: respond-async` only (RFC 7240): the order is kept"
            " (`status` pending) and the pizza made later; follow it at `Location`",
            "headers": {
                "Location": {
                    "description": "/api/order/{id}, to follow the order",
                    "required": True,
                    "schema": {"type": "string"},
                },
                "Preference-Applied": {
                    "description": "respond-async",
                    "required": True,
                    "schema": {"type": "string"},
                },
            },
            "links": ORDER_LINKS,
        },
        **error_responses(401, 409),
        502: {
            "model": OrderAnswerOut,
            "description": error_responses(502)[502]["description"],
            "links": ORDER_LINKS,
        },
        503: {
            "model": OrderAnswerOut,
            "description": "The factory cannot make it now: the order is kept (`status`"
            " pending), made when the factory is back and never charged twice; `message`"
            " says so",
            "headers": {
                "Retry-After": {**RETRY_AFTER["Retry-After"], "required": True},
            },
            "links": ORDER_LINKS,
        },
    },
)
async def create_order(
    body: OrderBody,
    principal: CurrentUser,
    services: ServicesDep,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
    ] = None,
    prefer: Annotated[list[str] | None, Header(alias="Prefer")] = None,
) -> Response:
    user = principal.user
    diner = DinerInfo(id=principal.id, name=user.name, email=user.email)
    settings = services.settings
    asked = Asked(
        prefer_async=prefers_async(prefer or []),
        retry_after=retry_after_s(
            breaker_open=services.breaker.refuses(),
            breaker_reset_s=settings.breaker_reset_s,
            retry_base_s=settings.retry_base_s,
        ),
        twin_wait_s=settings.factory_timeout_s,
    )
    status, headers, payload = await place_order(services, diner, body, idempotency_key, asked)
    return json_response(payload, status, headers)

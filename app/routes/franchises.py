"""Franchises and stores (docs/http-api.md#franchises-and-stores)."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from fastapi import APIRouter
from sqlalchemy import delete, func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.expression import type_coerce
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.deps import AdminUser, CurrentUser, OptionalUser, Principal, ServicesDep, SessionDep
from app.errors import Conflict, Forbidden, NotFound, error_responses
from app.fields import IdPath, Limit, NameFilter, Page0, email_key, like_pattern
from app.models import DinerOrder, Franchise, Money, OrderStatus, Role, Store, User, UserRole
from app.orders.cancel import fail_pending
from app.schemas import (
    FranchiseBody,
    FranchiseListOut,
    FranchiseOut,
    MessageOut,
    NewFranchiseOut,
    NewStoreOut,
    StoreBody,
    money,
)

router = APIRouter(prefix="/api/franchise", tags=["franchise"], responses=error_responses(400, 413))


async def _revenue(session: AsyncSession, store_ids: list[int]) -> dict[int, Decimal]:
    """Sum of fulfilled orders per store, summed exactly in SQL."""
    if not store_ids:
        return {}
    total = type_coerce(func.sum(DinerOrder.total), Money)
    rows = await session.exec(
        select(DinerOrder.store_id, total)
        .where(
            col(DinerOrder.store_id).in_(store_ids),
            DinerOrder.status == OrderStatus.FULFILLED,
        )
        .group_by(col(DinerOrder.store_id))
    )
    return {store_id: amount or Decimal(0) for store_id, amount in rows}


async def _describe(
    session: AsyncSession, franchises: list[Franchise], *, full: bool
) -> list[dict[str, Any]]:
    """The JSON of franchises; `full` adds admins and each store's revenue."""
    ids = [f.id for f in franchises if f.id is not None]
    stores: dict[int, list[Store]] = defaultdict(list)
    for store in await session.exec(
        select(Store).where(col(Store.franchise_id).in_(ids)).order_by(col(Store.id))
    ):
        stores[store.franchise_id].append(store)
    admins: dict[int, list[dict[str, Any]]] = defaultdict(list)
    revenue: dict[int, Decimal] = {}
    if full:
        rows = await session.exec(
            select(UserRole.object_id, User)
            .join(User, col(User.id) == UserRole.user_id)
            .where(UserRole.role == Role.FRANCHISEE, col(UserRole.object_id).in_(ids))
            .order_by(col(User.id))
        )
        for franchise_id, user in rows:
            if franchise_id is not None:
                admins[franchise_id].append({"id": user.id, "name": user.name, "email": user.email})
        revenue = await _revenue(
            session, [s.id for group in stores.values() for s in group if s.id is not None]
        )
    result = []
    for franchise in franchises:
        assert franchise.id is not None
        store_list: list[dict[str, Any]] = []
        for store in stores[franchise.id]:
            entry: dict[str, Any] = {"id": store.id, "name": store.name}
            if full:
                entry["totalRevenue"] = money(revenue.get(store.id or 0, Decimal(0)))
            store_list.append(entry)
        item: dict[str, Any] = {"id": franchise.id, "name": franchise.name}
        if full:
            item["admins"] = admins[franchise.id]
        item["stores"] = store_list
        result.append(item)
    return result


@router.get(
    "",
    summary="List franchises; admins also see admins and revenue",
    response_model=FranchiseListOut,
    response_model_exclude_unset=True,
)
async def list_franchises(
    session: SessionDep,
    principal: OptionalUser,
    page: Page0 = 0,
    limit: Limit = 10,
    name: NameFilter = "*",
) -> dict[str, Any]:
    rows = list(
        await session.exec(
            select(Franchise)
            .where(col(Franchise.name).ilike(like_pattern(name), escape="\\"))
            .order_by(col(Franchise.id))
            .offset(page * limit)
            .limit(limit + 1)
        )
    )
    full = principal is not None and principal.is_admin
    return {
        "franchises": await _describe(session, rows[:limit], full=full),
        "more": len(rows) > limit,
    }


@router.get(
    "/{userId}",
    summary="The franchises a user administers",
    response_model=list[FranchiseOut],
    response_model_exclude_unset=True,
    responses=error_responses(401, 403),
)
async def user_franchises(
    userId: IdPath, principal: CurrentUser, session: SessionDep
) -> list[dict[str, Any]]:
    if userId != principal.id and not principal.is_admin:
        raise Forbidden("unauthorized")
    rows = await session.exec(
        select(Franchise)
        .join(UserRole, col(UserRole.object_id) == Franchise.id)
        .where(UserRole.user_id == userId, UserRole.role == Role.FRANCHISEE)
        .order_by(col(Franchise.id))
    )
    return await _describe(session, list(rows), full=True)


@router.post(
    "",
    summary="Create a franchise (admin)",
    response_model=NewFranchiseOut,
    responses={
        200: {
            "links": {
                "CreateStore": {
                    "operationId": "create_store",
                    "parameters": {"franchiseId": "$response.body#/id"},
                },
                "DeleteFranchise": {
                    "operationId": "delete_franchise",
                    "parameters": {"franchiseId": "$response.body#/id"},
                },
            }
        },
        **error_responses(401, 403, 404, 409),
    },
)
async def create_franchise(
    body: FranchiseBody, _admin: AdminUser, session: SessionDep
) -> dict[str, Any]:
    if (await session.exec(select(Franchise.id).where(Franchise.name == body.name))).first():
        raise Conflict("franchise name already exists")
    admins: list[User] = []
    for entry in body.admins:
        user = (
            await session.exec(select(User).where(User.email == email_key(entry.email)))
        ).first()
        if user is None:
            raise NotFound(f"unknown user for franchisee email {entry.email}")
        admins.append(user)
    franchise = Franchise(name=body.name)
    session.add(franchise)
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict("franchise name already exists") from exc
    for user in admins:
        assert user.id is not None
        session.add(UserRole(user_id=user.id, role=Role.FRANCHISEE, object_id=franchise.id))
    await session.commit()
    return {
        "id": franchise.id,
        "name": franchise.name,
        "admins": [{"email": u.email, "id": u.id, "name": u.name} for u in admins],
    }


@router.delete(
    "/{franchiseId}",
    summary="Delete a franchise (admin)",
    response_model=MessageOut,
    responses=error_responses(401, 403, 404),
)
async def delete_franchise(
    franchiseId: IdPath, _admin: AdminUser, session: SessionDep, services: ServicesDep
) -> dict[str, str]:
    franchise = await session.get(Franchise, franchiseId)
    if franchise is None:
        raise NotFound("unknown franchise")
    now = services.clock.now()
    await fail_pending(
        session, col(DinerOrder.franchise_id) == franchiseId, "franchise deleted", now
    )
    await session.exec(
        delete(UserRole).where(
            col(UserRole.role) == Role.FRANCHISEE, col(UserRole.object_id) == franchiseId
        )
    )
    await session.exec(delete(Store).where(col(Store.franchise_id) == franchiseId))
    await session.delete(franchise)
    await session.commit()
    return {"message": "franchise deleted"}


async def _managed_franchise(
    session: AsyncSession, franchise_id: int, principal: Principal
) -> Franchise:
    franchise = await session.get(Franchise, franchise_id)
    if franchise is None:
        raise NotFound("unknown franchise")
    if not principal.is_admin and franchise_id not in principal.franchise_ids():
        raise Forbidden("unauthorized")
    return franchise


@router.post(
    "/{franchiseId}/store",
    summary="Create a store (admin or franchisee)",
    response_model=NewStoreOut,
    responses={
        200: {
            "links": {
                "PlaceOrder": {
                    "operationId": "create_order",
                    "requestBody": {
                        "franchiseId": "$response.body#/franchiseId",
                        "storeId": "$response.body#/id",
                    },
                },
                "DeleteStore": {
                    "operationId": "delete_store",
                    "parameters": {
                        "franchiseId": "$response.body#/franchiseId",
                        "storeId": "$response.body#/id",
                    },
                },
            }
        },
        **error_responses(401, 403, 404),
    },
)
async def create_store(
    franchiseId: IdPath, body: StoreBody, principal: CurrentUser, session: SessionDep
) -> dict[str, Any]:
    await _managed_franchise(session, franchiseId, principal)
    store = Store(franchise_id=franchiseId, name=body.name)
    session.add(store)
    await session.commit()
    return {"id": store.id, "franchiseId": franchiseId, "name": store.name}


@router.delete(
    "/{franchiseId}/store/{storeId}",
    summary="Delete a store (admin or franchisee)",
    response_model=MessageOut,
    responses=error_responses(401, 403, 404),
)
async def delete_store(
    franchiseId: IdPath,
    storeId: IdPath,
    principal: CurrentUser,
    session: SessionDep,
    services: ServicesDep,
) -> dict[str, str]:
    await _managed_franchise(session, franchiseId, principal)
    store = await session.get(Store, storeId)
    if store is None or store.franchise_id != franchiseId:
        raise NotFound("unknown store")
    now = services.clock.now()
    await fail_pending(session, col(DinerOrder.store_id) == storeId, "store deleted", now)
    await session.delete(store)
    await session.commit()
    return {"message": "store deleted"}

"""Users (docs/http-api.md#users)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from app.deps import AdminUser, CurrentUser, ServicesDep, SessionDep, bearer_token
from app.errors import Conflict, Forbidden, NotFound, error_responses
from app.fields import IdPath, Limit, NameFilter, Page0, email_key, like_pattern
from app.models import AuthSession, DinerOrder, User, UserRole
from app.orders.cancel import fail_pending
from app.schemas import AuthOut, MessageOut, UserListOut, UserOut, UserUpdateBody, user_json
from app.users.accounts import drop_admin_role, roles_of
from app.users.passwords import hash_password
from app.users.sessions import start_session

router = APIRouter(prefix="/api/user", tags=["user"], responses=error_responses(400, 401, 413))


@router.get(
    "/me",
    summary="The signed-in user",
    response_model=UserOut,
    response_model_exclude_unset=True,
)
async def me(principal: CurrentUser) -> dict[str, Any]:
    return user_json(principal.user, principal.roles)


@router.put(
    "/{userId}",
    summary="Update a user (that user or an admin)",
    response_model=AuthOut,
    response_model_exclude_unset=True,
    responses=error_responses(403, 404, 409),
)
async def update_user(
    userId: IdPath,
    body: UserUpdateBody,
    request: Request,
    principal: CurrentUser,
    session: SessionDep,
    services: ServicesDep,
) -> dict[str, Any]:
    if userId != principal.id and not principal.is_admin:
        raise Forbidden("unauthorized")
    user = await session.get(User, userId)
    if user is None:
        raise NotFound("unknown user")
    credentials_changed = False
    if body.name is not None:
        user.name = body.name
    if body.email is not None and email_key(body.email) != user.email:
        email = email_key(body.email)
        if (await session.exec(select(User.id).where(User.email == email))).first() is not None:
            raise Conflict("email already in use")
        user.email = email
        credentials_changed = True
    if body.password is not None:
        user.password_hash = await hash_password(body.password)
        credentials_changed = True
    session.add(user)
    if credentials_changed:
        # Every session of that user ends; a self-update gets a fresh one below.
        await session.exec(delete(AuthSession).where(col(AuthSession.user_id) == userId))
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict("email already in use") from exc
    roles = await roles_of(session, userId)
    if userId == principal.id and credentials_changed:
        token = await start_session(session, services, userId)
    else:
        # The caller's own session is untouched: hand back the token it came with.
        token = bearer_token(request) or ""
    return {"user": user_json(user, roles), "token": token}


@router.get(
    "",
    summary="List users (admin)",
    response_model=UserListOut,
    response_model_exclude_unset=True,
    responses=error_responses(403),
)
async def list_users(
    _admin: AdminUser,
    session: SessionDep,
    page: Page0 = 0,
    limit: Limit = 10,
    name: NameFilter = "*",
) -> dict[str, Any]:
    users = list(
        await session.exec(
            select(User)
            .where(col(User.name).ilike(like_pattern(name), escape="\\"))
            .order_by(col(User.id))
            .offset(page * limit)
            .limit(limit + 1)
        )
    )
    shown = users[:limit]
    roles: dict[int, list[UserRole]] = {u.id: [] for u in shown if u.id is not None}
    if roles:
        for role in await session.exec(select(UserRole).where(col(UserRole.user_id).in_(roles))):
            roles[role.user_id].append(role)
    return {
        "users": [user_json(u, roles[u.id]) for u in shown if u.id is not None],
        "more": len(users) > limit,
    }


@router.delete(
    "/{userId}",
    summary="Delete a user (admin)",
    response_model=MessageOut,
    responses=error_responses(403, 404, 409),
)
async def delete_user(
    userId: IdPath, _admin: AdminUser, session: SessionDep, services: ServicesDep
) -> dict[str, str]:
    user = await session.get(User, userId)
    if user is None:
        raise NotFound("unknown user")
    await drop_admin_role(session, userId)  # 409 for the last admin; the first write
    now = services.clock.now()
    await fail_pending(session, col(DinerOrder.diner_id) == userId, "diner deleted", now)
    await session.exec(delete(AuthSession).where(col(AuthSession.user_id) == userId))
    await session.exec(delete(UserRole).where(col(UserRole.user_id) == userId))
    await session.delete(user)
    await session.commit()
    return {"message": "user deleted"}

"""Register, sign in, sign out (docs/http-api.md#auth)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from app.deps import CurrentUser, ServicesDep, SessionDep
from app.errors import Conflict, NotFound, error_responses
from app.fields import email_key
from app.models import AuthSession, Role, User, UserRole
from app.schemas import AuthOut, LoginBody, MessageOut, RegisterBody, user_json
from app.users import logins
from app.users.accounts import roles_of
from app.users.logins import client_address
from app.users.passwords import hash_password, verify_password
from app.users.sessions import start_session

router = APIRouter(prefix="/api/auth", tags=["auth"], responses=error_responses(400, 413))


def _user_links(user_id: str) -> dict[str, Any]:
    """OpenAPI links from an answer naming a user to what can be done to that user."""
    return {
        "UpdateUser": {"operationId": "update_user", "parameters": {"userId": user_id}},
        "UserFranchises": {"operationId": "user_franchises", "parameters": {"userId": user_id}},
        "DeleteUser": {"operationId": "delete_user", "parameters": {"userId": user_id}},
    }


SIGNED_IN_LINKS = _user_links("$response.body#/user/id")


@router.post(
    "",
    summary="Register a diner",
    response_model=AuthOut,
    response_model_exclude_unset=True,
    responses={
        200: {
            "links": {
                "SignIn": {
                    "operationId": "login",
                    "requestBody": {
                        "email": "$request.body#/email",
                        "password": "$request.body#/password",
                    },
                },
                # The new diner becomes a franchisee of a new franchise.
                "MakeFranchisee": {
                    "operationId": "create_franchise",
                    "requestBody": {"admins": [{"email": "$request.body#/email"}]},
                },
                **SIGNED_IN_LINKS,
            }
        },
        **error_responses(409),
    },
)
async def register(
    body: RegisterBody, session: SessionDep, services: ServicesDep
) -> dict[str, Any]:
    email = email_key(body.email)
    if (await session.exec(select(User.id).where(User.email == email))).first() is not None:
        raise Conflict("email already registered")
    user = User(name=body.name, email=email, password_hash=await hash_password(body.password))
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict("email already registered") from exc
    assert user.id is not None
    session.add(UserRole(user_id=user.id, role=Role.DINER))
    await session.commit()
    token = await start_session(session, services, user.id)
    return {"user": user_json(user, await roles_of(session, user.id)), "token": token}


@router.put(
    "",
    summary="Sign in",
    response_model=AuthOut,
    response_model_exclude_unset=True,
    responses={200: {"links": SIGNED_IN_LINKS}, **error_responses(404, 429)},
)
async def login(
    body: LoginBody, request: Request, session: SessionDep, services: ServicesDep
) -> dict[str, Any]:
    email = email_key(body.email)
    client = client_address(request, services.settings.trusted_proxies)
    attempt = await logins.admit(session, services, email, client)  # 429 when a limit refuses it
    user = (await session.exec(select(User).where(User.email == email))).first()
    password_ok = await verify_password(user.password_hash if user else None, body.password)
    if user is None or user.id is None or not body.password or not password_ok:
        services.metrics.auth_attempt(False)
        await logins.failed(session, services, attempt, user.id if user else None)
        raise NotFound("unknown user")
    services.metrics.auth_attempt(True)
    await logins.succeeded(session, attempt)
    token = await start_session(session, services, user.id)
    return {"user": user_json(user, await roles_of(session, user.id)), "token": token}


@router.delete(
    "",
    summary="Sign out: the token stops working at once",
    response_model=MessageOut,
    responses=error_responses(401),
)
async def logout(principal: CurrentUser, session: SessionDep) -> dict[str, str]:
    await session.exec(delete(AuthSession).where(col(AuthSession.jti) == principal.jti))
    await session.commit()
    return {"message": "logout successful"}

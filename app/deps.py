"""Typed dependencies, declared once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel.ext.asyncio.session import AsyncSession

from app.errors import Forbidden, Unauthorized
from app.models import Role
from app.security import decode_token
from app.services import Services


# The dependencies are `async def` even with nothing to await: FastAPI runs a plain
# `def` dependency in the thread pool, a thread hop on every request.
async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_session(services: ServicesDep) -> AsyncIterator[AsyncSession]:
    async with services.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


@dataclass(frozen=True, slots=True)
class SignedInUser:
    id: int
    name: str
    email: str


@dataclass(frozen=True, slots=True)
class Grant:
    """One role of the signed-in user (`franchisee` carries its franchise id)."""

    role: str
    object_id: int | None


@dataclass(slots=True)
class Principal:
    """The signed-in caller; roles are read from the database on every request."""

    user: SignedInUser
    roles: list[Grant]
    jti: str

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def is_admin(self) -> bool:
        return any(r.role == Role.ADMIN for r in self.roles)

    def franchise_ids(self) -> set[int]:
        return {r.object_id for r in self.roles if r.role == Role.FRANCHISEE and r.object_id}


# Declares the bearer token in /openapi.json for the operations that need one;
# auto_error=False because a refusal must be our 401 {"message"}, not FastAPI's 403.
_bearer_scheme = HTTPBearer(auto_error=False, description="the token from /api/auth")
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def load_principal(request: Request, services: Services) -> Principal | None:
    token = bearer_token(request)
    if token is None:
        return None
    now = services.clock.now()
    decoded = decode_token(token, secret=services.jwt_secret, now=now)
    if decoded is None:
        return None
    user_id, jti = decoded
    # One prepared statement for the session, the user and its roles, every request: a
    # logout, a role revoked or a user deleted counts from the next request on.
    row = await services.store.principal(jti, user_id)
    if row is None or row.expires_at <= now:
        return None
    services.metrics.user_seen(user_id)
    return Principal(
        user=SignedInUser(row.user_id, row.name, row.email),
        roles=[Grant(role, object_id) for role, object_id in row.roles],
        jti=jti,
    )


async def current_user(
    request: Request,
    services: ServicesDep,
    _declared: BearerCredentials,  # for the schema only; load_principal reads the header
) -> Principal:
    principal = await load_principal(request, services)
    if principal is None:
        raise Unauthorized("unauthorized")
    return principal


async def optional_user(request: Request, services: ServicesDep) -> Principal | None:
    return await load_principal(request, services)


CurrentUser = Annotated[Principal, Depends(current_user)]
OptionalUser = Annotated[Principal | None, Depends(optional_user)]


async def admin_user(principal: CurrentUser) -> Principal:
    if not principal.is_admin:
        raise Forbidden("unauthorized")
    return principal


AdminUser = Annotated[Principal, Depends(admin_user)]

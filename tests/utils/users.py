"""Signing in and out, and changing roles, the way the security and user tests need."""

from __future__ import annotations

import httpx
from sqlalchemy import delete
from sqlmodel import col

from app.models import Role, UserRole
from tests.utils.builders import PASSWORD, Api

ORIGIN = "http://localhost:5173"  # the configured CORS origin (tests.conftest.make_settings)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def me_status(api: Api, headers: dict[str, str]) -> int:
    """What GET /api/user/me answers with these headers: is the token still good?"""
    return (await api.client.get("/api/user/me", headers=headers)).status_code


async def sign_in(api: Api, email: str, password: str = PASSWORD) -> httpx.Response:
    return await api.client.put("/api/auth", json={"email": email, "password": password})


async def set_role(api: Api, user_id: int, role: Role, object_id: int | None = None) -> None:
    """Grant a role straight in the database, behind the API's back."""
    async with api.services.sessions() as session:
        session.add(UserRole(user_id=user_id, role=role, object_id=object_id))
        await session.commit()


async def drop_roles(api: Api, user_id: int, role: Role) -> None:
    """Revoke a role straight in the database, behind the API's back."""
    async with api.services.sessions() as session:
        await session.exec(  # type: ignore[call-overload]
            delete(UserRole).where(col(UserRole.user_id) == user_id, col(UserRole.role) == role)
        )
        await session.commit()

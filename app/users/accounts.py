"""Accounts: an account's roles, and admin accounts."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import Role, User, UserRole
from app.users.passwords import hash_password


async def create_admin(
    sessions: async_sessionmaker[AsyncSession], *, name: str, email: str, password: str
) -> User:
    """An admin account (`pizza admin create`, or ADMIN_EMAIL/ADMIN_PASSWORD at start)."""
    async with sessions() as session:
        user = (await session.exec(select(User).where(User.email == email.lower()))).first()
        if user is None:
            user = User(name=name, email=email.lower(), password_hash=await hash_password(password))
            session.add(user)
            await session.flush()
        assert user.id is not None
        roles = await session.exec(select(UserRole).where(UserRole.user_id == user.id))
        if not any(r.role == Role.ADMIN for r in roles):
            session.add(UserRole(user_id=user.id, role=Role.ADMIN))
        await session.commit()
        return user


async def roles_of(session: AsyncSession, user_id: int) -> list[UserRole]:
    """The account's roles, read afresh (they are checked on every request)."""
    return list(await session.exec(select(UserRole).where(UserRole.user_id == user_id)))

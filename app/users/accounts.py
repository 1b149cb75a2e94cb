"""Accounts: an account's roles, admin accounts, and the last admin, who stays."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.errors import Conflict
from app.fields import email_key
from app.models import Role, User, UserRole
from app.users.passwords import hash_password


async def create_admin(
    sessions: async_sessionmaker[AsyncSession], *, name: str, email: str, password: str
) -> User:
    """An admin account (`pizza admin create`, or ADMIN_EMAIL/ADMIN_PASSWORD at start)."""
    async with sessions() as session:
        user = (await session.exec(select(User).where(User.email == email_key(email)))).first()
        if user is None:
            user = User(
                name=name, email=email_key(email), password_hash=await hash_password(password)
            )
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


LAST_ADMIN = (
    "this is the last admin: the service would have nobody to manage it; "
    "make another admin first (pizza admin create)"
)


async def drop_admin_role(session: AsyncSession, user_id: int) -> None:
    """Remove ``user_id``'s admin role in the session's transaction (the caller commits);
    Conflict when no other admin would be left: the last admin cannot be deleted or
    lose the role (docs/http-api.md#differences-from-the-reference-service).

    The database decides, also between concurrent removals of the last two admins: on
    PostgreSQL every admin row is locked first, so a second removal waits for the first
    and then sees its result; on SQLite the guarded DELETE is the transaction's first
    write, and writers take turns.
    """
    if (await session.connection()).dialect.name == "postgresql":
        admins = select(UserRole.id).where(col(UserRole.role) == Role.ADMIN)
        await session.exec(admins.order_by(col(UserRole.id)).with_for_update())
    others = (
        select(UserRole.id)
        .where(col(UserRole.role) == Role.ADMIN, col(UserRole.user_id) != user_id)
        .exists()
    )
    mine = (col(UserRole.user_id) == user_id, col(UserRole.role) == Role.ADMIN)
    await session.exec(delete(UserRole).where(*mine, others))
    if (await session.exec(select(UserRole.id).where(*mine))).first() is not None:
        await session.rollback()
        raise Conflict(LAST_ADMIN)

"""What is done once per database, whoever starts first: the schema brought up to date, the
development token secret, the first admin from ADMIN_EMAIL, the demo data.

All of it runs under `db.schema_lock`: of several processes starting at once (workers,
replicas, `pizza migrate`), one does the work and the others wait, then find it done.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from decimal import Decimal

import asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app import db
from app.config import Settings
from app.models import AppSetting, Franchise, MenuItem, Role, Store, UserRole
from app.users.accounts import create_admin

log = logging.getLogger("app")

DEMO_MENU = [
    ("Veggie", "A garden of delight", "pizza1.png", "0.0038"),
    ("Pepperoni", "Spicy treat", "pizza2.png", "0.0042"),
    ("Margarita", "Essential classic", "pizza3.png", "0.0042"),
    ("Crusty", "A dry mouthed favorite", "pizza4.png", "0.0028"),
    ("Charred Leopard", "For those with a darker side", "pizza5.png", "0.0099"),
]
DEMO_ADMIN = "admin@jwt.com"


class DatabaseUnreachable(Exception):
    """The database could not be reached at all; the message is the driver's reason in one
    line (`app.cli.on_database` names the database)."""


@dataclass(frozen=True)
class Prepared:
    """What a start needs from the database once it is set up."""

    jwt_secret: str
    # The demo admin's password when this start made the demo data (printed once), else None.
    demo_password: str | None = None


async def prepare(settings: Settings, *, demo: bool = False) -> Prepared:
    """`prepare_database` on an engine of its own (the `pizza` commands, before serving)."""
    engine = db.create_engine(settings.database_url)
    try:
        return await prepare_database(engine, settings, demo=demo)
    finally:
        await engine.dispose()


async def prepare_database(
    engine: AsyncEngine, settings: Settings, *, demo: bool = False
) -> Prepared:
    """The schema at the newest migration, the token secret (JWT_SECRET, or in development
    one generated once and kept in the database), the first admin when ADMIN_EMAIL and
    ADMIN_PASSWORD are set and no admin exists, and with ``demo`` the demo data in an
    empty database. Raises DatabaseUnreachable when no connection can be made."""
    await _reach(engine)
    sessions = db.session_factory(engine)
    async with db.schema_lock(engine):
        await db.upgrade(engine)
        jwt_secret = (
            settings.jwt_secret.get_secret_value()
            if settings.jwt_secret
            else await _shared_jwt_secret(sessions)
        )
        await _admin_from_settings(settings, sessions)
        demo_password = await _fill_demo(sessions) if demo else None
    return Prepared(jwt_secret=jwt_secret, demo_password=demo_password)


async def _reach(engine: AsyncEngine) -> None:
    """One connection, or DatabaseUnreachable with the reason in one line: an error after
    this one is a fault of ours and keeps its traceback."""
    try:
        async with engine.connect():
            pass
    # What the driver raises itself: asyncpg's refusals at connect (no such database, a
    # wrong password) reach us unwrapped by SQLAlchemy.
    except (OSError, DBAPIError, asyncpg.PostgresError) as error:
        cause = error.orig if isinstance(error, DBAPIError) else error
        text = " ".join(str(cause).split())
        raise DatabaseUnreachable(f"{type(cause).__name__}: {text}") from None


async def _shared_jwt_secret(sessions: async_sessionmaker[AsyncSession]) -> str:
    """Development only: one random secret, kept in the database for every worker and
    restart (made under the schema lock, so by one process)."""
    async with sessions() as session:
        stored = await session.get(AppSetting, "jwt_secret")
        if stored is not None:
            return stored.value
        value = secrets.token_urlsafe(48)
        session.add(AppSetting(key="jwt_secret", value=value))
        await session.commit()
        return value


async def _admin_from_settings(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    if not (settings.admin_email and settings.admin_password):
        return
    async with sessions() as session:
        if (await session.exec(select(UserRole).where(UserRole.role == Role.ADMIN))).first():
            return
    await create_admin(
        sessions,
        name="admin",
        email=settings.admin_email,
        password=settings.admin_password.get_secret_value(),
    )
    log.warning("created the first admin from ADMIN_EMAIL")


async def _fill_demo(sessions: async_sessionmaker[AsyncSession]) -> str | None:
    """A menu, franchise `pizzaPocket` with store `SLC`, and an admin (also its franchisee)
    with a random password, returned; nothing (None) when the database has a menu."""
    async with sessions() as session:
        if await session.get(MenuItem, 1) is not None:
            return None
        for title, description, image, price in DEMO_MENU:
            session.add(
                MenuItem(title=title, description=description, image=image, price=Decimal(price))
            )
        franchise = Franchise(name="pizzaPocket")
        session.add(franchise)
        await session.flush()
        assert franchise.id is not None
        session.add(Store(franchise_id=franchise.id, name="SLC"))
        await session.commit()
    password = secrets.token_urlsafe(12)
    admin = await create_admin(sessions, name="Demo Admin", email=DEMO_ADMIN, password=password)
    async with sessions() as session:
        assert admin.id is not None
        session.add(UserRole(user_id=admin.id, role=Role.FRANCHISEE, object_id=franchise.id))
        await session.commit()
    return password

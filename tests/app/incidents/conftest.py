"""Fixtures of the incident tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app import db
from tests.utils.incidents import async_url


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The schema on a fresh database, without a running service."""
    engine = db.create_engine(async_url(database_url))
    await db.migrate(engine)
    try:
        yield db.session_factory(engine)
    finally:
        await engine.dispose()

"""Shared fixtures: a real database per test (SQLite file, or the machine's PostgreSQL),
a real factory simulator on a real port, a Redis of a test's own, and the app driven
over ASGI."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from clients.clock import SYSTEM_CLOCK, Clock
from factory_sim import SimulatorConfig, create_simulator_app
from tests.utils.builders import Api
from tests.utils.databases import (
    copy_sqlite,
    empty_pg_tables,
    migrated,
    pg_scratch_database,
    reset_pg_schema,
    sqlite_template,
)
from tests.utils.servers import PrivateRedis, serve_in_thread
from tests.utils.simulator import end_chaos

# Distinctive values, so that tests can scan logs and answers for them.
FACTORY_KEY = "factory-key-d3adb33f-s3cr3t"
JWT_SECRET = "jwt-secret-" + "k" * 40
PG_ADMIN_URL = os.environ.get("PIZZA_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = [b for b in os.environ.get("PIZZA_TEST_DATABASES", "sqlite,postgresql").split(",") if b]


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A database of this test process's own on the machine's PostgreSQL, dropped at the
    end; tests that use it empty it first (`reset_pg_schema`)."""
    with pg_scratch_database(PG_ADMIN_URL) as url:
        yield url


@pytest.fixture(scope="session")
def pg_migrated_database() -> Iterator[str]:
    """Another such database, migrated once: `database_url` empties its tables per test."""
    with pg_scratch_database(PG_ADMIN_URL) as url:
        migrated(url)
        yield url


@pytest.fixture(scope="session")
def sqlite_migrated_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, made once per test process: `database_url` copies it."""
    return sqlite_template(tmp_path_factory.mktemp("migrated"))


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of this test's own at the newest schema, without rows: each test runs
    once per backend. Made by copying one migrated per run (tests/utils/databases.py)."""
    if request.param == "sqlite":
        return copy_sqlite(request.getfixturevalue("sqlite_migrated_file"), tmp_path)
    url: str = request.getfixturevalue("pg_migrated_database")
    empty_pg_tables(url)
    return url


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database without any table, for the tests of migrating and of a first start."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/pizza.db"
    url: str = request.getfixturevalue("pg_database")
    reset_pg_schema(url)
    return url


@pytest.fixture
def private_redis(tmp_path: Any) -> Iterator[PrivateRedis]:
    """A Redis of this test's own, which it may stop (an outage) and start again (empty)."""
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def factory_sim_app() -> FastAPI:
    config = SimulatorConfig(api_key=FACTORY_KEY, throttle_delay_s=0.5, oven_full_delay_s=0.05)
    return create_simulator_app(config)


@pytest.fixture(scope="session")
def factory_url(factory_sim_app: FastAPI) -> Iterator[str]:
    with serve_in_thread(factory_sim_app) as url:
        yield url


@pytest.fixture(scope="session")
def factory_vendor_api(factory_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=factory_url, headers={"Authorization": f"Bearer {FACTORY_KEY}"}, timeout=5
    ) as client:
        yield client


@pytest.fixture
def factory(factory_vendor_api: httpx.Client) -> Iterator[httpx.Client]:
    """The simulator's vendor API, without chaos before and after each test (the factory
    admin removes it, as on the real factory)."""
    end_chaos(factory_vendor_api)
    yield factory_vendor_api
    end_chaos(factory_vendor_api)


def make_settings(database_url: str, factory_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "factory_url": factory_url,
        "factory_api_key": FACTORY_KEY,
        "jwt_secret": JWT_SECRET,
        "cors_origins": ["http://localhost:5173"],
        "factory_timeout_s": 2.0,
        "factory_call_max_s": 5.0,
        "retry_base_s": 0.05,
        "retry_max_s": 0.2,
        "worker_poll_s": 0.05,
        "remediation_retry_s": 0.05,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@asynccontextmanager
async def running_api(settings: Settings, *, clock: Clock = SYSTEM_CLOCK) -> AsyncIterator[Api]:
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Api(client=client, app=app)


@pytest.fixture
def settings(database_url: str, factory_url: str, factory: httpx.Client) -> Settings:
    return make_settings(database_url, factory_url)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    """The service on a fresh database, talking to the simulator."""
    async with running_api(settings) as running:
        yield running


@pytest.fixture
def calm_settings(database_url: str, factory_url: str, factory: httpx.Client) -> Settings:
    """A person must act: no auto-remediation, and the breaker stays open once open."""
    return make_settings(
        database_url,
        factory_url,
        factory_auto_remediate=False,
        breaker_fail_max=3,
        breaker_reset_s=600,
    )


@pytest.fixture
async def manual_api(calm_settings: Settings) -> AsyncIterator[Api]:
    async with running_api(calm_settings) as running:
        yield running

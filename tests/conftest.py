"""Shared fixtures: a real database per test (SQLite file, or the machine's PostgreSQL),
a real factory simulator on a real port, a Redis of a test's own, and the app driven
over ASGI."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from clients.clock import SYSTEM_CLOCK, Clock
from factory_sim import SimulatorConfig, create_simulator_app
from tests.utils.builders import Api
from tests.utils.servers import PrivateRedis, serve_in_thread
from tests.utils.simulator import end_chaos

# Distinctive values, so that tests can scan logs and answers for them.
FACTORY_KEY = "factory-key-d3adb33f-s3cr3t"
JWT_SECRET = "jwt-secret-" + "k" * 40
PG_ADMIN_URL = os.environ.get("PIZZA_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = [b for b in os.environ.get("PIZZA_TEST_DATABASES", "sqlite,postgresql").split(",") if b]


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A database of this test run's own on the machine's PostgreSQL, dropped at the end."""
    name = f"pizza_test_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def reset_pg_schema(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """A fresh, empty database for one test: each test runs once per backend."""
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


@pytest.fixture
def factory(factory_url: str) -> Iterator[httpx.Client]:
    """The simulator's vendor API, without chaos before and after each test (the factory
    admin removes it, as on the real factory)."""
    with httpx.Client(
        base_url=factory_url, headers={"Authorization": f"Bearer {FACTORY_KEY}"}, timeout=5
    ) as client:
        end_chaos(client)
        yield client
        end_chaos(client)


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

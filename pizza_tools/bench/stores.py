"""What the bench owns outside its processes: a fresh database, a Redis db, an OTLP sink.

The bench never touches anyone's data: SQLite is a new file in its temporary directory;
on PostgreSQL it creates a database of its own on the server ``DATABASE_URL`` names and
drops it at the end; Redis is one db number of its own, flushed before and after.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy import func, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app import db
from app.models import DinerOrder, OrderStatus

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
# Other suites use db 0 and db 7 of the machine's Redis; this one is the bench's own.
BENCH_REDIS_DB = 13


@dataclass
class BenchDatabase:
    """The bench's database: its URL (async driver) and the orders it holds."""

    url: str
    kind: str  # "sqlite" or "postgresql"
    server_version: str
    engine: AsyncEngine

    async def last_order_id(self) -> int:
        async with AsyncSession(self.engine) as session:
            value = (await session.exec(select(func.max(DinerOrder.id)))).one()
        return int(value or 0)

    async def orders_after(self, order_id: int) -> dict[str, int]:
        """How many orders newer than ``order_id`` are in each status."""
        async with AsyncSession(self.engine) as session:
            rows = await session.exec(
                select(DinerOrder.status, func.count())
                .where(col(DinerOrder.id) > order_id)
                .group_by(col(DinerOrder.status))
            )
            return {str(status): int(count) for status, count in rows}

    async def fulfilled_after(
        self, order_id: int, since: datetime
    ) -> tuple[datetime | None, datetime | None, int]:
        """First and last `finished_at`, and how many, of the orders newer than ``order_id``
        fulfilled from ``since`` on."""
        async with AsyncSession(self.engine) as session:
            first, last, count = (
                await session.exec(
                    select(
                        func.min(DinerOrder.finished_at),
                        func.max(DinerOrder.finished_at),
                        func.count(),
                    ).where(
                        col(DinerOrder.id) > order_id,
                        col(DinerOrder.status) == OrderStatus.FULFILLED,
                        col(DinerOrder.finished_at) >= since,
                    )
                )
            ).one()
        return _aware(first), _aware(last), int(count)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; the service stores UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


async def _on_server(database_url: str, statement: str) -> str:
    """Run one statement outside a transaction on the server; the server's version."""
    engine = create_async_engine(database_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            version = (await connection.execute(text("SHOW server_version"))).scalar_one()
            await connection.execute(text(statement))
    finally:
        await engine.dispose()
    return str(version)


@contextlib.asynccontextmanager
async def bench_database(database_url: str, workdir: Path) -> AsyncIterator[BenchDatabase]:
    """A fresh database of the kind ``database_url`` names, gone when the bench ends."""
    if database_url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        engine = db.create_engine(url)
        try:
            yield BenchDatabase(url, "sqlite", sqlite3.sqlite_version, engine)
        finally:
            await engine.dispose()
        return
    # The async driver the service uses, whatever spelling of PostgreSQL's URL was given.
    database_url = (
        make_url(database_url)
        .set(drivername="postgresql+asyncpg")
        .render_as_string(hide_password=False)
    )
    name = f"pizza_bench_{secrets.token_hex(4)}"
    version = await _on_server(database_url, f'CREATE DATABASE "{name}"')
    url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    engine = db.create_engine(url)
    try:
        yield BenchDatabase(url, "postgresql", version, engine)
    finally:
        await engine.dispose()
        await _on_server(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def bench_redis(server_url: str | None) -> AsyncIterator[str | None]:
    """The URL of the bench's own Redis db, flushed before and after; None if unreachable."""
    parts = urlsplit(server_url or DEFAULT_REDIS_URL)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{BENCH_REDIS_DB}", parts.query, ""))
    client: aioredis.Redis[str] = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        await client.flushdb()
    except (RedisError, OSError):
        await client.connection_pool.disconnect()
        yield None
        return
    try:
        yield url
    finally:
        with contextlib.suppress(RedisError, OSError):
            await client.flushdb()
        await client.connection_pool.disconnect()


@dataclass
class OtlpSink:
    """A local OTLP/HTTP receiver that accepts everything and counts it."""

    url: str
    requests: Counter[str] = field(default_factory=Counter)
    bytes: int = 0


@contextlib.contextmanager
def serve_handler(handler: type[BaseHTTPRequestHandler], name: str) -> Iterator[str]:
    """Serve ``handler`` on a free port of 127.0.0.1 in a thread; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def otlp_sink() -> Iterator[OtlpSink]:
    """Serve POST /v1/traces, /v1/metrics, /v1/logs on 127.0.0.1 (200, empty body)."""
    sink = OtlpSink(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the exporters expect

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            with lock:
                sink.requests[self.path] += 1
                sink.bytes += length
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    with serve_handler(Handler, "otlp-sink") as url:
        sink.url = url
        yield sink

"""The app factory and its lifespan: everything is built here, nothing at import time."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.middleware.cors import CORSMiddleware

from app import db
from app.config import Settings
from app.errors import install_error_handlers
from app.incidents import create_recorder
from app.methods import AllowedMethodsMiddleware
from app.middleware import HardeningMiddleware, SecurityHeadersMiddleware
from app.models import AppSetting, Role, User, UserRole
from app.openapi import install_openapi, operation_id
from app.orders.worker import IDLE_POLL_S, RetryWorker
from app.orders.workflow import FACTORY_SLOTS, OrderWorkflow
from app.remediation import PROBE_PERIOD_S, FactoryOps
from app.routes import auth, factory, franchises, incidents, orders, root, users
from app.security import hash_password
from app.services import Services
from app.sql import open_store
from app.supervisor import Supervisor
from app.version import VERSION
from clients.breaker import PROBE_TTL_MARGIN_S, FactoryBreaker
from clients.client import ORDER_PATH, FactoryClient
from clients.jwks import JwksCache
from clients.transport import factory_http_client
from telemetry.logging import configure_logging
from telemetry.setup import (
    install_server_middleware,
    instrument_app,
    instrument_engine,
    instrument_http_client,
    setup_telemetry,
)

log = logging.getLogger("app")

# A probe runs every PROBE_PERIOD_S (60 s) and may wait on the factory: three missed.
PROBE_STALE_AFTER_S = 3 * PROBE_PERIOD_S


def worker_stale_after_s(settings: Settings) -> float:
    """An idle worker completes a cycle every IDLE_POLL_S (5 s), a busy one after each batch
    (each call at most FACTORY_TIMEOUT_S): a minute without one is stuck (the heartbeat
    alert's bound too)."""
    return max(60.0, 2 * (IDLE_POLL_S + settings.factory_timeout_s))


class QuietFactoryOrders(logging.Filter):
    """Drops httpx's INFO line for each factory order call (one per order, a real CPU
    cost under load): the workflow logs what matters about a call, and the metrics and
    spans count them all. Every other request httpx logs is kept."""

    def __init__(self, factory_url: str) -> None:
        super().__init__()
        self._url = factory_url.rstrip("/") + ORDER_PATH

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (
            record.levelno == logging.INFO
            and isinstance(args, tuple)
            and len(args) > 1
            and str(args[1]) == self._url
        )


async def shared_jwt_secret(sessions: async_sessionmaker[AsyncSession]) -> str:
    """Development only: one random secret, kept in the database for every worker and restart."""
    async with sessions() as session:
        stored = await session.get(AppSetting, "jwt_secret")
        if stored is not None:
            return stored.value
        session.add(AppSetting(key="jwt_secret", value=secrets.token_urlsafe(48)))
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()  # another worker stored it first
        stored = await session.get(AppSetting, "jwt_secret", populate_existing=True)
        assert stored is not None
        return stored.value


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


def factory_address(settings: Settings) -> tuple[str, str]:
    """The factory's URL and key: configured, or the bundled simulator's."""
    if settings.factory_url and settings.factory_api_key:
        return settings.factory_url, settings.factory_api_key.get_secret_value()
    return (
        f"http://127.0.0.1:{settings.factory_sim_port}",
        settings.factory_sim_api_key.get_secret_value(),
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    # Built here, after any fork: one set of providers per worker process.
    telemetry = setup_telemetry(
        service_version=VERSION,
        environment=settings.pizza_env,
        prometheus=settings.metrics_prometheus,
    )
    configure_logging(secrets=settings.secrets, telemetry=telemetry)
    instrument_app(app, telemetry)
    engine = db.create_engine(settings.database_url)
    instrument_engine(engine, telemetry)
    await db.migrate(engine)
    sessions = db.session_factory(engine)
    store = open_store(settings.database_url)
    await store.start()
    jwt_secret = (
        settings.jwt_secret.get_secret_value()
        if settings.jwt_secret
        else await shared_jwt_secret(sessions)
    )
    await _admin_from_settings(settings, sessions)

    factory_url, api_key = factory_address(settings)
    http = factory_http_client(
        factory_url, timeout_s=settings.factory_call_max_s, connections=FACTORY_SLOTS
    )
    instrument_http_client(http, telemetry)
    quiet = QuietFactoryOrders(factory_url)
    logging.getLogger("httpx").addFilter(quiet)
    client = FactoryClient(
        http, api_key=api_key, jwks=JwksCache(http), slow_call_s=settings.factory_slow_call_s
    )
    breaker = FactoryBreaker(
        fail_max=settings.breaker_fail_max,
        reset_timeout_s=settings.breaker_reset_s,
        redis_url=settings.redis_url,
        # A replica that dies holding the probe: the others take it after the call's own
        # limit, not after a fixed 30 s (the live holder renews it while it calls).
        probe_ttl_s=settings.factory_timeout_s + PROBE_TTL_MARGIN_S,
    )
    await breaker.start()
    recorder = create_recorder(
        sessions=sessions,
        webhook_url=settings.alert_webhook_url,
        public_url=settings.public_url,
        api_key=api_key,
    )
    recorder.start()
    ops = FactoryOps(
        settings=settings,
        sessions=sessions,
        client=client,
        breaker=breaker,
        metrics=telemetry.metrics,
        factory_url=factory_url,
        api_key=api_key,
        incidents=recorder,
        tracer=telemetry.tracer,
    )
    await ops.load()
    breaker.add_refused_listener(telemetry.metrics.call_refused)
    telemetry.metrics.set_breaker_state(str(breaker.state))
    workflow = OrderWorkflow(
        settings=settings,
        store=store,
        client=client,
        breaker=breaker,
        ops=ops,
        metrics=telemetry.metrics,
        tracer=telemetry.tracer,
    )
    worker = RetryWorker(
        settings=settings,
        store=store,
        workflow=workflow,
        breaker=breaker,
        metrics=telemetry.metrics,
        tracer=telemetry.tracer,
    )
    supervisor = Supervisor(telemetry.metrics)
    app.state.services = Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        store=store,
        jwt_secret=jwt_secret,
        telemetry=telemetry,
        factory_http=http,
        factory=client,
        breaker=breaker,
        ops=ops,
        orders=workflow,
        worker=worker,
        incidents=recorder,
        supervisor=supervisor,
    )
    log.info(
        "JWT Pizza %s ready: database %s, factory %s%s",
        VERSION,
        engine.url.render_as_string(hide_password=True),
        factory_url,
        " (bundled simulator)" if settings.uses_simulator else "",
    )
    supervisor.start(
        "retry-worker",
        worker.run_forever,
        heartbeat=worker.heartbeat,
        stale_after_s=worker_stale_after_s(settings),
    )
    # Supervised for a crash; no heartbeat: it only waits on the database, whose absence
    # /readyz reports itself.
    supervisor.start("claim-leases", workflow.leases.run_forever)
    supervisor.start(
        "factory-probe",
        ops.probe_forever,
        heartbeat=ops.probe_heartbeat,
        stale_after_s=PROBE_STALE_AFTER_S,
    )
    supervisor.start("incident-watch", lambda: recorder.watch_forever(ops.conditions))
    try:
        yield
    finally:
        await supervisor.stop()
        await workflow.shutdown()
        await ops.shutdown()
        await recorder.aclose()
        await breaker.stop()
        await store.close()
        await http.aclose()
        logging.getLogger("httpx").removeFilter(quiet)
        await engine.dispose()
        telemetry.shutdown()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="JWT Pizza",
        version=VERSION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        # Operation ids are what the document's links name: the endpoint's function name.
        generate_unique_id_function=operation_id,
    )
    install_openapi(app)
    app.state.settings = settings
    install_error_handlers(app)
    # The order routes first: a request is matched against the routes in this order, and
    # ordering is the hot path (no two routers share a path, so the order means nothing else).
    app.state.routers = [
        m.router for m in (orders, root, auth, users, franchises, factory, incidents)
    ]
    for router in app.state.routers:
        app.include_router(router)
    # Innermost: a wrong method is a 405 with the path's exact `Allow` (app/methods.py).
    app.add_middleware(AllowedMethodsMiddleware, routes=app.router.routes)
    app.add_middleware(HardeningMiddleware, max_body_bytes=settings.max_body_bytes)
    # Outside the app's own handling: every answer, errors included, carries CORS headers.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["GET", "POST", "PUT", "DELETE"],
        allow_headers=["content-type", "authorization", "idempotency-key", "prefer"],
        # A browser client that asked for respond-async may read where to follow the order.
        expose_headers=["location", "preference-applied", "retry-after"],
        max_age=600,
    )
    # The answers CORS gives by itself (preflights) are hardened too.
    app.add_middleware(SecurityHeadersMiddleware)
    # Outermost of all: the duration, span and access log of the answer the client gets.
    install_server_middleware(app)
    return app

"""The app factory and its lifespan: everything is built here, nothing at import time."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.middleware.cors import CORSMiddleware

from app import db
from app.bootstrap import prepare_database
from app.config import Settings
from app.errors import install_error_handlers
from app.factory.context import FactoryContext
from app.factory.ops import PROBE_PERIOD_S, FactoryOps
from app.incidents import create_recorder
from app.methods import AllowedMethodsMiddleware
from app.middleware import HardeningMiddleware, SecurityHeadersMiddleware
from app.openapi import install_openapi, operation_id
from app.orders.worker import RetryWorker
from app.orders.workflow import FACTORY_SLOTS, OrderWorkflow
from app.routes import auth, factory, franchises, incidents, orders, root, users
from app.services import Services
from app.sql import OrderStore, open_store
from app.supervisor import Supervisor
from app.version import VERSION
from clients.breaker import PROBE_TTL_MARGIN_S, FactoryBreaker
from clients.client import ORDER_PATH, FactoryClient
from clients.clock import SYSTEM_CLOCK, Clock
from clients.jwks import JwksCache
from clients.transport import factory_http_client
from telemetry.logging import configure_logging
from telemetry.setup import (
    Telemetry,
    install_server_middleware,
    instrument_app,
    instrument_engine,
    setup_telemetry,
    traced_transport,
)

log = logging.getLogger("app")

# A probe runs every PROBE_PERIOD_S (60 s) and may wait on the factory: three missed.
PROBE_STALE_AFTER_S = 3 * PROBE_PERIOD_S


def worker_stale_after_s(settings: Settings) -> float:
    """An idle worker completes a cycle every WORKER_IDLE_POLL_S (5 s), a busy one after each
    batch (each call at most FACTORY_TIMEOUT_S): a minute without one is stuck (the heartbeat
    alert's bound too)."""
    return max(60.0, 2 * (settings.worker_idle_poll_s + settings.factory_timeout_s))


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
    """Everything the service runs, built after any fork (one set per worker process),
    started, and stopped in the reverse order."""
    settings: Settings = app.state.settings
    clock: Clock = app.state.clock
    telemetry = setup_telemetry(
        service_version=VERSION,
        environment=settings.pizza_env,
        prometheus=settings.metrics_prometheus,
    )
    configure_logging(secrets=settings.secrets, telemetry=telemetry)
    instrument_app(app, telemetry)
    services = await _build(settings, telemetry, clock)
    app.state.services = services
    log.info(
        "JWT Pizza %s ready: database %s, factory %s%s",
        VERSION,
        services.engine.url.render_as_string(hide_password=True),
        services.ops.factory_url,
        " (bundled simulator)" if settings.uses_simulator else "",
    )
    _start_background(services)
    try:
        yield
    finally:
        await services.supervisor.stop()
        await services.orders.shutdown()
        await services.ops.shutdown()
        await services.incidents.aclose()
        await services.breaker.stop()
        await services.store.close()
        await services.factory_http.aclose()
        logging.getLogger("httpx").removeFilter(services.quiet_factory_log)
        await services.engine.dispose()
        telemetry.shutdown()


async def _build(settings: Settings, telemetry: Telemetry, clock: Clock) -> Services:
    engine, sessions, jwt_secret = await _database(settings, telemetry)
    store = open_store(settings.database_url)
    await store.start()
    factory_url, api_key = factory_address(settings)
    http, client, quiet = _factory_client(settings, telemetry, clock, factory_url, api_key)
    breaker = FactoryBreaker(
        fail_max=settings.breaker_fail_max,
        reset_timeout_s=settings.breaker_reset_s,
        redis_url=settings.redis_url,
        # A dead replica's probe lapses after the call's own limit (a live one renews it).
        probe_ttl_s=settings.factory_timeout_s + PROBE_TTL_MARGIN_S,
        clock=clock,
    )
    await breaker.start()
    recorder = create_recorder(
        sessions=sessions,
        webhook_url=settings.alert_webhook_url,
        public_url=settings.public_url,
        api_key=api_key,
        clock=clock,
    )
    recorder.start()
    context = FactoryContext(
        settings, sessions, client, breaker, telemetry.metrics, factory_url, api_key, clock
    )
    ops = FactoryOps(context, incidents=recorder, tracer=telemetry.tracer)
    with trace.use_span(
        telemetry.tracer.start_span("pizza.startup.factory_state"), end_on_exit=True
    ):
        await ops.links.load()
    breaker.add_refused_listener(telemetry.metrics.call_refused)
    telemetry.metrics.set_breaker_state(str(breaker.state))
    workflow, worker = _orders(settings, telemetry, clock, store, client, breaker, ops)
    return Services(
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
        supervisor=Supervisor(telemetry.metrics, clock=clock),
        clock=clock,
        quiet_factory_log=quiet,
    )


async def _database(
    settings: Settings, telemetry: Telemetry
) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession], str]:
    """The engine, its sessions and the token secret, once the database is set up (by this
    process, or by whichever started first: app/bootstrap.py)."""
    engine = db.create_engine(settings.database_url)
    instrument_engine(engine, telemetry)
    # The start's statements are one trace, not a hundred parentless ones.
    with trace.use_span(telemetry.tracer.start_span("pizza.startup"), end_on_exit=True):
        prepared = await prepare_database(engine, settings)
    return engine, db.session_factory(engine), prepared.jwt_secret


def _factory_client(
    settings: Settings, telemetry: Telemetry, clock: Clock, factory_url: str, api_key: str
) -> tuple[httpx.AsyncClient, FactoryClient, QuietFactoryOrders]:
    http = factory_http_client(
        factory_url,
        timeout_s=settings.factory_call_max_s,
        connections=FACTORY_SLOTS,
        wrap=lambda inner: traced_transport(inner, telemetry, secrets=(api_key,)),
    )
    quiet = QuietFactoryOrders(factory_url)
    logging.getLogger("httpx").addFilter(quiet)
    client = FactoryClient(
        http,
        api_key=api_key,
        jwks=JwksCache(http, clock=clock),
        slow_call_s=settings.factory_slow_call_s,
        clock=clock,
    )
    return http, client, quiet


def _orders(
    settings: Settings,
    telemetry: Telemetry,
    clock: Clock,
    store: OrderStore,
    client: FactoryClient,
    breaker: FactoryBreaker,
    ops: FactoryOps,
) -> tuple[OrderWorkflow, RetryWorker]:
    workflow = OrderWorkflow(
        settings=settings,
        store=store,
        client=client,
        breaker=breaker,
        ops=ops,
        metrics=telemetry.metrics,
        tracer=telemetry.tracer,
        clock=clock,
    )
    worker = RetryWorker(
        settings=settings,
        store=store,
        workflow=workflow,
        breaker=breaker,
        metrics=telemetry.metrics,
        tracer=telemetry.tracer,
        idle_poll_s=settings.worker_idle_poll_s,
        clock=clock,
    )
    return workflow, worker


def _start_background(services: Services) -> None:
    supervisor, worker, ops = services.supervisor, services.worker, services.ops
    supervisor.start(
        "retry-worker",
        worker.run_forever,
        heartbeat=worker.heartbeat,
        stale_after_s=worker_stale_after_s(services.settings),
    )
    # Supervised for a crash; no heartbeat: it only waits on the database, whose absence
    # /readyz reports itself.
    supervisor.start("claim-leases", services.orders.leases.run_forever)
    supervisor.start(
        "factory-probe",
        ops.probe_forever,
        heartbeat=ops.probe_heartbeat,
        stale_after_s=PROBE_STALE_AFTER_S,
    )
    recorder = services.incidents
    supervisor.start("incident-watch", lambda: recorder.watch_forever(ops.conditions))
    # No heartbeat: it sleeps while the breaker is closed; a crash is what can go wrong.
    supervisor.start("remediation-watch", ops.links.watch_forever)


def create_app(settings: Settings | None = None, *, clock: Clock = SYSTEM_CLOCK) -> FastAPI:
    """The app; `clock` is what everything time-dependent in it reads (a test's moves)."""
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
    app.state.clock = clock
    install_error_handlers(app)
    # The order routes first: a request is matched against the routes in this order, and
    # ordering is the hot path (no two routers share a path, so the order means nothing else).
    app.state.routers = [
        m.router for m in (orders, root, auth, users, franchises, factory, incidents)
    ]
    for router in app.state.routers:
        app.include_router(router)
    # Innermost: a wrong method is a 405 with the path's exact `Allow` (app/methods.py).
    app.add_middleware(
        AllowedMethodsMiddleware, routes=app.router.routes, routers=app.state.routers
    )
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

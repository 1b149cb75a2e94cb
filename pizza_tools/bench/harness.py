"""The bench's means: the processes it starts (the simulator, the service variants),
where each measurement sends its orders (a `Target`), timed and counted load, and the
measurements kept for the report. `runner.py` puts them together into the run."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx

from pizza_tools.bench.load import LoadResult, LoadSpec
from pizza_tools.bench.plan import (
    ADMIN_EMAIL,
    API_TIMEOUT_S,
    DINERS,
    MENU_PIZZA,
    POLL_S,
    Plan,
)
from pizza_tools.bench.procs import BenchError, Child, LoadGenerator, Processes, isolated_env
from pizza_tools.bench.report import Measured
from pizza_tools.bench.shop import Shop, bearer
from pizza_tools.bench.shop import open_shop as seed_shop
from pizza_tools.bench.stores import BenchDatabase, OtlpSink


@dataclass(frozen=True)
class Target:
    """Where a measurement sends its orders, and whose CPU it reads."""

    url: str
    body: dict[str, Any]
    headers: list[dict[str, str]]
    cpu_of: dict[str, Child]
    method: str = "POST"
    distinct_orders: bool = False

    def pids(self) -> dict[str, list[int]]:
        # Read at each measurement: the workers of `--workers N` come and go with it.
        return {name: child.pids() for name, child in self.cpu_of.items()}


async def open_shop(base: str, admin_password: str) -> Shop:
    """One pizza on the menu, a franchise with a store, DINERS signed-in diners."""
    async with httpx.AsyncClient(base_url=base, timeout=API_TIMEOUT_S) as http:
        return await seed_shop(
            http,
            admin_email=ADMIN_EMAIL,
            admin_password=admin_password,
            diners=DINERS,
            name="bench",
            menu=(MENU_PIZZA,),
        )


class Harness:
    """One bench run's processes, secrets and kept measurements."""

    def __init__(
        self,
        plan: Plan,
        procs: Processes,
        database: BenchDatabase,
        redis_url: str | None,
        sink: OtlpSink,
        load: LoadGenerator,
    ) -> None:
        self.load = load
        self.plan = plan
        self.procs = procs
        self.database = database
        self.redis_url = redis_url
        self.sink = sink
        self.vendor_key = f"bench-vendor-{secrets.token_hex(8)}"
        self.admin_key = f"bench-admin-{secrets.token_hex(8)}"  # ends a chaos, as the factory's
        self.admin_password = secrets.token_urlsafe(16)
        self.jwt_secret = secrets.token_urlsafe(48)
        self.measurements: dict[str, Measured] = {}
        self.settled_after_open: dict[str, Any] = {}
        self.phases_s: dict[str, float] = {}
        self.lap_started = 0.0

    # -- processes -------------------------------------------------------------------------

    async def start_factory(self) -> Child:
        args = ["factory-sim", "--api-key", self.vendor_key, "--admin-key", self.admin_key]
        return await self.procs.start("factory", args, isolated_env(), "/api/docs")

    async def start_service(
        self, name: str, factory: Child, *, workers: int = 1, settings: dict[str, str] | None = None
    ) -> Child:
        env = isolated_env(
            DATABASE_URL=self.database.url,
            FACTORY_URL=factory.url,
            FACTORY_API_KEY=self.vendor_key,
            JWT_SECRET=self.jwt_secret,
            ADMIN_EMAIL=ADMIN_EMAIL,
            ADMIN_PASSWORD=self.admin_password,
            **(settings or {}),
        )
        args = ["serve", "--workers", str(workers)]
        return await self.procs.start(name, args, env, "/readyz")

    # -- measuring -------------------------------------------------------------------------

    def factory_target(self, factory: Child, shop: Shop) -> Target:
        order = {"id": 1, **shop.order_body(0)}
        body = {"diner": {"id": 1, "name": "diner 0", "email": "diner0@bench.jwt.com"}}
        return Target(
            url=f"{factory.url}/api/order",
            body={**body, "order": order},
            headers=[bearer(self.vendor_key)],
            cpu_of={"factory": factory},
        )

    def service_target(self, service: Child, factory: Child, shop: Shop) -> Target:
        return Target(
            url=f"{service.url}/api/order",
            body=shop.order_body(0),
            # A pending order (breaker open, drain) is a 202 to an async client: the bench
            # follows orders in the database, so it is one (RFC 7240's Prefer header).
            headers=[{**diner, "prefer": "respond-async"} for diner in shop.diners],
            cpu_of={"service": service, "factory": factory},
            distinct_orders=True,
        )

    def menu_target(self, service: Child, shop: Shop) -> Target:
        # As the front end asks: its token and Content-Type on every call, GETs too.
        return Target(
            url=f"{service.url}/api/order/menu",
            body={},
            headers=shop.diners,
            cpu_of={"service": service},
            method="GET",
        )

    async def timed(self, target: Target, concurrency: int) -> LoadResult:
        spec = LoadSpec(
            url=target.url,
            body=target.body,
            method=target.method,
            headers=target.headers,
            concurrency=concurrency,
            window_s=self.plan.window_s,
            warmup_s=self.plan.warmup_s,
            answers_per_worker=self.plan.answers_per_worker,
            max_s=self.plan.settle_timeout_s,
            pids=target.pids(),
            distinct_orders=target.distinct_orders,
        )
        return await self.load.run(spec)

    async def counted(self, target: Target, concurrency: int, requests: int) -> LoadResult:
        spec = LoadSpec(
            url=target.url,
            body=target.body,
            headers=target.headers,
            concurrency=concurrency,
            requests=requests,
            max_s=self.plan.settle_timeout_s,
            pids=target.pids(),
            distinct_orders=target.distinct_orders,
        )
        return await self.load.run(spec)

    def keep(self, name: str, *results: LoadResult) -> Measured:
        measured = self.measurements[name] = Measured(list(results))
        return measured

    async def settle(self, since_id: int = 0) -> dict[str, Any]:
        """Wait until no order newer than ``since_id`` is pending; how long it took."""
        started = time.monotonic()
        deadline = started + self.plan.settle_timeout_s
        while True:
            counts = await self.database.orders_after(since_id)
            if not counts.get("pending"):
                return {"seconds": round(time.monotonic() - started, 3), "orders": counts}
            if time.monotonic() > deadline:
                raise BenchError(f"orders still pending after {self.plan.settle_timeout_s:g} s")
            await asyncio.sleep(POLL_S)

    def lap(self, phase: str) -> None:
        now = time.monotonic()
        self.phases_s[phase] = round(now - self.lap_started, 1)
        self.lap_started = now

    @staticmethod
    def figures(measured: Measured) -> dict[str, Any]:
        return {
            "orders_per_s": round(measured.per_s, 1),
            "p50_ms": round(measured.latency_ms(50), 2),
            "p99_ms": round(measured.latency_ms(99), 2),
            "service_cpu_ms_per_order": round(measured.cpu_ms_per_request("service"), 3),
            "errors": measured.errors,
        }

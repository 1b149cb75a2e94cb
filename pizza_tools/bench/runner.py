"""`pizza bench`: start everything, measure every key of performance.md in one run, report.

One simulator (its normal settings) serves every measurement. The service variants
(plain, telemetry exported, breaker in Redis, two processes) run side by side on the one
database and are measured in interleaved rounds at concurrency 32, together with the
simulator called directly, so that a machine slowing down shifts them all alike. The
concurrency sweep and the open-breaker latency follow on the plain service; the drain
runs last, on a service of its own, alone (another service's worker would drain too).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import secrets
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from pizza_tools.bench.load import LoadResult, LoadSpec, cpu_seconds
from pizza_tools.bench.procs import BenchError, Child, LoadGenerator, Processes, isolated_env
from pizza_tools.bench.report import Measured, checks, ratio, render_table
from pizza_tools.bench.shop import Shop, bearer, call, end_chaos
from pizza_tools.bench.shop import open_shop as seed_shop
from pizza_tools.bench.stores import BenchDatabase, OtlpSink, bench_database, bench_redis, otlp_sink

CONCURRENCY = 32
SCALING = (1, 8, 32, 128)
# Beyond the sweep: answers counted as pending under load at these (must be none).
PENDING_PROBES = (128, 256)
PENDING_STATUSES = ("202", "503")
DINERS = 8
ADMIN_EMAIL = "bench-admin@jwt.com"
MENU_PIZZA = ("Veggie", 0.0038)
API_TIMEOUT_S = 30.0
POLL_S = 0.05
# The drain: recovery must start promptly once the factory is back (resilience.md §2, §4).
DRAIN_SETTINGS = {
    # On, the service follows the fail chaos's link at once and ends the outage itself,
    # so no backlog would pile up: the bench ends the chaos, as a recovering factory would.
    "FACTORY_AUTO_REMEDIATE": "false",
    "BREAKER_RESET_S": "1",
    "RETRY_BASE_S": "0.2",
    "RETRY_MAX_S": "1",
}


@dataclass(frozen=True)
class Plan:
    """How long each measurement runs: the full bench, or the short form CI runs."""

    quick: bool
    window_s: float  # per timed measurement, after its warm-up
    warmup_s: float
    rounds: int  # interleaved rounds of the side-by-side measurements
    answers_per_worker: int  # a timed window holds at least this many answers per caller
    open_requests: int  # orders at concurrency 1 with the breaker open
    idle_s: float  # the idle service's CPU is read over this long
    drain_orders: int
    settle_timeout_s: float  # for a backlog to be made


FULL = Plan(
    quick=False,
    window_s=2.5,
    warmup_s=1.0,
    rounds=2,
    answers_per_worker=2,
    open_requests=500,
    idle_s=10.0,
    drain_orders=2000,
    settle_timeout_s=240.0,
)
QUICK = Plan(
    quick=True,
    window_s=0.5,
    warmup_s=0.3,
    rounds=1,
    answers_per_worker=1,
    open_requests=50,
    idle_s=2.0,
    drain_orders=200,
    settle_timeout_s=60.0,
)


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


def machine(database: BenchDatabase) -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "database": f"{database.kind} {database.server_version}",
        # Others' work on a shared machine: with the 1-minute load far above the CPU count,
        # every process here waits for a core, and throughput says more about them than us.
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }


class Bench:
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
            # follows orders in the database, so it is one (api.md, RFC 7240).
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

    # -- the run ---------------------------------------------------------------------------

    def lap(self, phase: str) -> None:
        now = time.monotonic()
        self.phases_s[phase] = round(now - self.lap_started, 1)
        self.lap_started = now

    async def run(self) -> dict[str, Any]:
        self.lap_started = time.monotonic()
        factory = await self.start_factory()
        service = await self.start_service("service", factory)  # brings the schema up first
        shop = await open_shop(service.url, self.admin_password)
        self.lap("start")
        side_by_side = await self.side_by_side(factory, service, shop)
        self.lap("side_by_side")
        scaling, pending = await self.scaling(service, factory, shop)
        self.lap("scaling")
        menu = self.keep("menu", await self.timed(self.menu_target(service, shop), CONCURRENCY))
        self.lap("menu")
        breaker_open = await self.breaker_open(service, factory, shop)
        self.lap("breaker_open")
        idle_cpu = await self.idle(service)
        self.lap("idle")
        rss_mb = round(service.rss_bytes() / 2**20, 1)
        await self.procs.stop(service)
        drain = await self.drain(factory, shop)
        await self.procs.stop(factory)
        self.lap("drain")

        base = self.measurements["service"]
        alone = self.measurements["factory_alone"]
        report: dict[str, Any] = {
            "factory_alone_per_s": round(alone.per_s, 1),
            "service_orders_per_s": round(base.per_s, 1),
            "ratio_to_factory": ratio(base.per_s, alone.per_s),
            "order_p50_ms": round(base.latency_ms(50), 2),
            "order_p99_ms": round(base.latency_ms(99), 2),
            "service_cpu_ms_per_order": round(base.cpu_ms_per_request("service"), 3),
            "factory_cpu_ms_per_pizza": round(alone.cpu_ms_per_request("factory"), 3),
            "client_cpu_ms_per_order": round(base.client_cpu_ms_per_request, 3),
            # Cores each process kept busy during the service's measurements: a service far
            # below 1.0 while its latency grows is waiting for a CPU, not working.
            "cores_busy": base.summary()["cores_busy"],
            "breaker_open_p99_ms": round(breaker_open.latency_ms(99), 2),
            "menu_cpu_ms_per_read": round(menu.cpu_ms_per_request("service"), 3),
            "idle_cpu_ms_per_s": idle_cpu,
            "pending_under_load": pending,
            **side_by_side,
            "drain_orders_per_s": drain["orders_per_s"],
            "rss_mb": rss_mb,
            "scaling": scaling,
            "processes": {
                "1": self.figures(base),
                "2": self.figures(self.measurements["processes_2"]),
            },
            "errors": sum(m.errors for m in self.measurements.values()),
            "drain": drain,
            "telemetry_sink": {"requests": dict(self.sink.requests), "bytes": self.sink.bytes},
            "phases_s": self.phases_s,
        }
        report["measurements"] = {k: m.summary() for k, m in self.measurements.items()}
        return report

    @staticmethod
    def figures(measured: Measured) -> dict[str, Any]:
        return {
            "orders_per_s": round(measured.per_s, 1),
            "p50_ms": round(measured.latency_ms(50), 2),
            "p99_ms": round(measured.latency_ms(99), 2),
            "service_cpu_ms_per_order": round(measured.cpu_ms_per_request("service"), 3),
            "errors": measured.errors,
        }

    def variants(self) -> list[tuple[str, int, dict[str, str]]]:
        """The service variants compared with the plain service: name, processes, settings."""
        variants = [("telemetry_on", 1, {"OTEL_EXPORTER_OTLP_ENDPOINT": self.sink.url})]
        if self.redis_url is not None:
            variants.append(("redis", 1, {"REDIS_URL": self.redis_url}))
        variants.append(("processes_2", 2, {}))
        return variants

    async def side_by_side(self, factory: Child, service: Child, shop: Shop) -> dict[str, Any]:
        """Each variant against the plain service and the factory alone, in interleaved rounds
        at concurrency 32.

        One variant runs at a time beside the plain service: every idle service keeps a pool
        of database connections, and PostgreSQL's default of 100 would not hold them all.
        """
        alone = self.factory_target(factory, shop)
        plain = self.service_target(service, factory, shop)
        results: dict[str, list[LoadResult]] = {"factory_alone": [], "service": []}
        ratios: dict[str, float] = {}
        for name, workers, settings in self.variants():
            child = await self.start_service(
                f"service-{name}", factory, workers=workers, settings=settings
            )
            try:
                await self.procs.wait_for_workers(child, workers)
                variant = self.service_target(child, factory, shop)
                results[name], paired = [], []
                for _ in range(self.plan.rounds):
                    results["factory_alone"].append(await self.timed(alone, CONCURRENCY))
                    paired.append(await self.timed(plain, CONCURRENCY))
                    results[name].append(await self.timed(variant, CONCURRENCY))
            finally:
                await self.procs.stop(child)
            results["service"].extend(paired)
            ratios[name] = ratio(Measured(results[name]).per_s, Measured(paired).per_s)
        for name, rounds in results.items():
            self.keep(name, *rounds)
        return {
            "telemetry_ratio": ratios["telemetry_on"],
            "redis_breaker_ratio": ratios.get("redis"),
        }

    async def scaling(
        self, service: Child, factory: Child, shop: Shop
    ) -> tuple[dict[str, Any], dict[str, int]]:
        """The concurrency sweep, and the answers given as pending at high concurrency
        with a healthy factory (waiting for a factory connection is no factory timeout)."""
        target = self.service_target(service, factory, shop)
        sweep: dict[str, Any] = {}
        pending: dict[str, int] = {}
        for concurrency in sorted({*SCALING, *PENDING_PROBES}):
            measured = self.keep(f"scaling_{concurrency}", await self.timed(target, concurrency))
            if concurrency in SCALING:
                sweep[str(concurrency)] = self.figures(measured)
            if concurrency in PENDING_PROBES:
                statuses = measured.summary()["statuses"]
                pending[str(concurrency)] = sum(statuses.get(s, 0) for s in PENDING_STATUSES)
        return sweep, pending

    async def idle(self, service: Child) -> float:
        """The service's CPU per second with no request and no pending order (ms/s)."""
        await asyncio.sleep(1.0)  # the last answers' aftermath (the worker's look at them)
        before = cpu_seconds(service.pids())
        await asyncio.sleep(self.plan.idle_s)
        return round(1000 * (cpu_seconds(service.pids()) - before) / self.plan.idle_s, 3)

    async def breaker_open(self, service: Child, factory: Child, shop: Shop) -> Measured:
        """Orders at concurrency 1 while an admin holds the breaker open: no factory call."""
        target = self.service_target(service, factory, shop)
        since = await self.database.last_order_id()
        async with httpx.AsyncClient(base_url=service.url, timeout=API_TIMEOUT_S) as http:
            breaker = {"headers": shop.admin, "json": {"state": "open"}}
            await call(http, "PUT", "/factory/breaker", **breaker)
            try:
                result = await self.counted(target, 1, self.plan.open_requests)
            finally:
                await call(
                    http, "PUT", "/factory/breaker", **{**breaker, "json": {"state": "auto"}}
                )
        measured = self.keep("breaker_open", result)
        # The orders it kept pending are made before anything else is measured.
        self.settled_after_open = await self.settle(since)
        return measured

    async def drain(self, factory: Child, shop: Shop) -> dict[str, Any]:
        """Fail chaos, a backlog of orders accepted meanwhile, chaos ended: how fast it drains."""
        service = await self.start_service("service-drain", factory, settings=DRAIN_SETTINGS)
        target = self.service_target(service, factory, shop)
        since = await self.database.last_order_id()
        vendor = bearer(self.vendor_key)
        async with httpx.AsyncClient(base_url=factory.url, timeout=API_TIMEOUT_S) as sim:
            await call(sim, "PUT", "/api/vendor/chaos/fail", headers=vendor)
            accepted = await self.counted(target, CONCURRENCY, self.plan.drain_orders)
            self.keep("drain_accept", accepted)
            backlog = (await self.database.orders_after(since)).get("pending", 0)
            async with httpx.AsyncClient(base_url=service.url, timeout=API_TIMEOUT_S) as http:
                status = await call(http, "GET", "/factory/status", headers=shop.admin)
            chaos_end = datetime.now(UTC)
            await end_chaos(sim, self.admin_key)
        settled = await self.settle(since)
        first, last, fulfilled = await self.database.fulfilled_after(since, chaos_end)
        await self.procs.stop(service)
        seconds = (last - chaos_end).total_seconds() if last else 0.0
        return {
            "orders_per_s": round(backlog / seconds, 1) if seconds > 0 else 0.0,
            "backlog": backlog,
            "fulfilled_after_chaos_end": fulfilled,
            "breaker_at_chaos_end": status.json()["breaker"]["state"],
            "seconds_to_last_fulfilled": round(seconds, 3),
            "seconds_to_first_fulfilled": round((first - chaos_end).total_seconds(), 3)
            if first
            else None,
            "final_statuses": settled["orders"],
            "settings": {**DRAIN_SETTINGS, "WORKER_POLL_S": "default", "WORKER_BATCH": "default"},
        }


@contextlib.asynccontextmanager
async def bench_setup(
    plan: Plan, *, database_url: str, redis_url: str | None
) -> AsyncIterator[Bench]:
    """A bench in a temporary directory: its database, Redis db, OTLP sink and load
    generator, every process it starts stopped and everything removed at the end."""
    with tempfile.TemporaryDirectory(prefix="pizza-bench-") as tmp:
        workdir = Path(tmp)
        async with contextlib.AsyncExitStack() as stack:
            database = await stack.enter_async_context(bench_database(database_url, workdir))
            redis = await stack.enter_async_context(bench_redis(redis_url))
            sink = stack.enter_context(otlp_sink())
            procs = Processes(workdir)
            stack.push_async_callback(procs.stop_all)
            load = LoadGenerator(workdir)
            await load.start()
            stack.push_async_callback(load.stop)
            yield Bench(plan, procs, database, redis, sink, load)


async def run_bench(
    *, quick: bool, database_url: str, redis_url: str | None, command: str
) -> dict[str, Any]:
    """Run every measurement and return the report (performance.md)."""
    plan = QUICK if quick else FULL
    began, started_at = time.monotonic(), datetime.now(UTC).isoformat(timespec="seconds")
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    async with bench_setup(plan, database_url=database_url, redis_url=redis_url) as bench:
        figures = await bench.run()
        report: dict[str, Any] = {
            "command": command,
            "quick": quick,
            "started_at": started_at,
            "duration_s": round(time.monotonic() - began, 1),
            "machine": {**machine(bench.database), "load_average_at_start": load_at_start},
            **figures,
            "breaker_open_backlog_settled": bench.settled_after_open,
        }
    report["targets"] = {c.key: {"target": c.target, "met": c.met} for c in checks(report)}
    return report


def bench_command(*, database_url: str, redis_url: str | None, out: Path, quick: bool) -> int:
    """`pizza bench`: run, write the report to ``out``, print the table; the exit code."""
    command = shlex.join(["pizza", *sys.argv[1:]])
    # SIGTERM (a CI timeout) stops like Ctrl-C: the processes, database and Redis db that
    # the bench made are cleaned up on the way out, not left running with chaos on.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        report = asyncio.run(
            run_bench(quick=quick, database_url=database_url, redis_url=redis_url, command=command)
        )
    except BenchError as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench interrupted", file=sys.stderr)
        return 130
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(render_table(report))
    print(f"report written to {out}")
    return 0

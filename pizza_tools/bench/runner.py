"""`pizza bench`: start everything, measure every performance figure in one run, report.

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
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from pizza_tools.bench.harness import Harness, open_shop
from pizza_tools.bench.load import LoadResult, cpu_seconds
from pizza_tools.bench.plan import (
    API_TIMEOUT_S,
    CONCURRENCY,
    DRAIN_SETTINGS,
    FULL,
    PENDING_PROBES,
    PENDING_STATUSES,
    QUICK,
    SCALING,
    Plan,
)
from pizza_tools.bench.procs import BenchError, Child, LoadGenerator, Processes
from pizza_tools.bench.report import Measured, checks, ratio, render_table
from pizza_tools.bench.shop import Shop, bearer, call, end_chaos
from pizza_tools.bench.stores import BenchDatabase, bench_database, bench_redis, otlp_sink


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


class Bench(Harness):
    """The run: every measurement in order, and the report's figures from them."""

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
        # A client of its own: one kept from before the backlog sat idle past the
        # simulator's keep-alive, and its connection could close as it was reused.
        async with httpx.AsyncClient(base_url=factory.url, timeout=API_TIMEOUT_S) as sim:
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
    """Run every measurement and return the report that `pizza bench` writes."""
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

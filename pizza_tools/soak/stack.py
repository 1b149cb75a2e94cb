"""The soak's processes: the simulator, PostgreSQL, Redis, N replicas, nginx in front."""

from __future__ import annotations

import contextlib
import json
import secrets
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from pizza_tools.bench.procs import Child, Processes, free_port, isolated_env
from pizza_tools.bench.shop import end_chaos
from pizza_tools.soak.infra import Nginx, Postgres, Redis
from pizza_tools.soak.report import StoredOrder

KEY = "soak-vendor-key-" + secrets.token_hex(8)
ADMIN_KEY = "soak-admin-key-" + secrets.token_hex(8)  # the simulator's admin: ends a chaos
ADMIN_EMAIL = "soak-admin@jwt.com"
# The throttle chaos (the slow factory): pizzas come after this, past FACTORY_TIMEOUT_S.
THROTTLE_DELAY_S = 8.0
# Small real settings where the defaults would outlast a short run.
SERVICE_SETTINGS = {
    "FACTORY_AUTO_REMEDIATE": "false",  # the soak remediates as an operator (or not)
    "BREAKER_RESET_S": "10",
    "RETRY_BASE_S": "0.5",
    "RETRY_MAX_S": "10",
    "TRUSTED_PROXIES": "127.0.0.1",
}


@dataclass
class SoakStack:
    workdir: Path
    replica_count: int
    procs: Processes = field(init=False)
    postgres: Postgres = field(init=False)
    redis: Redis = field(init=False)
    nginx: Nginx = field(init=False)
    factory: Child = field(init=False)
    replica_ports: list[int] = field(default_factory=list)
    children: dict[int, Child] = field(default_factory=dict)
    restarted: set[str] = field(default_factory=set)
    admin: dict[str, str] = field(default_factory=dict)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    async def start(self) -> None:
        self.procs = Processes(self.workdir)
        self.factory = await self.procs.start(
            "factory",
            [
                *("factory-sim", "--api-key", KEY, "--admin-key", ADMIN_KEY),
                *("--throttle-delay-s", str(THROTTLE_DELAY_S)),
            ],
            isolated_env(),
            "/api/docs",
        )
        self.postgres = Postgres(self.workdir)
        await self.postgres.start()
        self.redis = Redis(self.workdir)
        await self.redis.start()
        self.replica_ports = [free_port() for _ in range(self.replica_count)]
        for index in range(self.replica_count):  # one after the other: the first migrates
            await self._start_replica(index)
        self.nginx = Nginx(self.workdir, self.replica_ports)
        await self.nginx.start()

    def _env(self) -> dict[str, str]:
        return isolated_env(
            DATABASE_URL=self.postgres.url,
            REDIS_URL=self.redis.url,
            FACTORY_URL=self.factory.url,
            FACTORY_API_KEY=KEY,
            JWT_SECRET="soak-jwt-secret-" + "s" * 32,
            ADMIN_EMAIL=ADMIN_EMAIL,
            ADMIN_PASSWORD=self.password,
            **SERVICE_SETTINGS,
        )

    async def _start_replica(self, index: int) -> None:
        self.children[index] = await self.procs.start(
            f"replica-{index}", ["serve"], self._env(), "/readyz", port=self.replica_ports[index]
        )

    @property
    def replicas(self) -> int:
        return self.replica_count

    async def close(self) -> None:
        for closing in (getattr(self, "nginx", None), getattr(self, "procs", None)):
            if isinstance(closing, Nginx):
                await closing.close()
            elif closing is not None:
                await closing.stop_all()
        for store in (getattr(self, "redis", None), getattr(self, "postgres", None)):
            if store is not None:
                await store.close()

    # -- faults (faults.Stack) --------------------------------------------------------------

    async def chaos(self, mode: str) -> None:
        async with self._vendor() as vendor:
            (await vendor.put(f"/api/vendor/chaos/{mode}")).raise_for_status()

    async def end_chaos(self) -> None:
        async with self._vendor() as vendor:
            await end_chaos(vendor, ADMIN_KEY)

    async def remediate(self) -> bool:
        async with httpx.AsyncClient(base_url=self.nginx.url, timeout=30) as client:
            try:
                answer = await client.post("/factory/remediate", headers=self.admin)
                attempt: dict[str, Any] = answer.json().get("attempt") or {}
            except (httpx.HTTPError, ValueError, AttributeError):
                return False
        return bool(attempt.get("resolved"))

    async def restart_replica(self, index: int, *, kill: bool) -> None:
        child = self.children[index]
        if kill:
            child.process.kill()
            await child.process.wait()
            self.procs.running.remove(child)
        else:
            await self.procs.stop(child)
        self.restarted.add(child.name)
        await self._start_replica(index)

    async def stop_postgres(self) -> None:
        await self.postgres.stop()

    async def start_postgres(self) -> None:
        await self.postgres.restart()

    async def stop_redis(self) -> None:
        await self.redis.stop()

    async def start_redis(self) -> None:
        await self.redis.start()

    # -- reading back -----------------------------------------------------------------------

    def _vendor(self) -> httpx.AsyncClient:
        auth = {"Authorization": f"Bearer {KEY}"}
        return httpx.AsyncClient(base_url=self.factory.url, headers=auth, timeout=10)

    async def pizzas(self) -> dict[str, int]:
        async with self._vendor() as vendor:
            stats = (await vendor.get("/api/sim/stats")).json()
        pizzas: dict[str, int] = stats["pizzas"]
        return pizzas

    async def orders(self) -> dict[int, StoredOrder]:
        dsn = f"postgresql://postgres@127.0.0.1:{self.postgres.port}/postgres"
        connection = await asyncpg.connect(dsn)
        try:
            rows = await connection.fetch(
                "SELECT id, status, failure, last_reason FROM diner_order"
            )
        finally:
            await connection.close()
        return {r[0]: StoredOrder(r[0], str(r[1]), r[2], r[3]) for r in rows}

    def unhandled_errors(self) -> dict[str, int]:
        """The replicas' log lines of a 500, by message and the traceback's last line: an
        "unhandled error" (the middleware's) or an "internal error" (an error handler's, its
        error id left out so that alike errors count together)."""
        found: Counter[str] = Counter()
        for log_path in sorted(self.workdir.glob("replica-*.log")):
            for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
                if '"unhandled error on' not in line and '"internal error ' not in line:
                    continue
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    message = str(record.get("message"))
                    if error_id := record.get("error_id"):
                        message = message.replace(f" {error_id} ", " ")
                    trace = str(record.get("exc_info") or record.get("exception") or "")
                    last = trace.strip().splitlines()[-1] if trace.strip() else ""
                    found[f"{message}: {last[:200]}"] += 1
        return dict(found)

    def rss(self) -> dict[str, int]:
        return {child.name: child.rss_bytes() for child in self.children.values()}

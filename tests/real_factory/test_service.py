"""`pizza serve` against the real factory, through each chaos mode, with auto-remediation on
and off side by side (two services, two vendors of one factory).

Customers order throughout (one order every ORDER_EVERY_S, each with its own
Idempotency-Key); the chaos starts; with auto-remediation off the test is the operator and
presses "Remediate now" (`POST /factory/remediate`) once the link is on /factory/status.
After the fix: /factory/status reports no chaos, the incident is closed, every
`pizza_factory_chaos` series is 0, no ERROR line was logged, and every accepted order was
made exactly once (the harness records each pizza the factory signs, per vendor and
order) and none was lost.

Each run's figures (seconds from the chaos' start to the first pending answer, to the chaos
on /factory/status, to the link there, to the fix, to all orders made; orders made and
lost) are written to the JSON file `PIZZA_REAL_FACTORY_REPORT` names, if set:
`python scripts/real_factory_table.py FILE` prints them as a table.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sqlite3
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from pizza_tools.bench.procs import isolated_env
from pizza_tools.bench.shop import Shop, open_shop
from tests.e2e.conftest import Proc, Processes
from tests.utils.real_factory import RealFactory, Vendor
from tests.utils.servers import free_port

ADMIN_EMAIL = "ops@jwt.com"
ORDER_EVERY_S = 0.5
AFTER_FIX_S = 2.0  # customers keep ordering this long after the fix
POLL_S = 0.1
RUN_TIMEOUT_S = 120.0  # the throttle's first late answer alone takes 32 s
SETTLE_TIMEOUT_S = 90.0
# FACTORY_SLOW_CALL_S is left at its default: the backlog after the fix is drained with a
# slow start (app/orders/drain.py), so its pizzas do not reopen the breaker.
SERVICE_SETTINGS = {
    "BREAKER_RESET_S": "5",
    "RETRY_BASE_S": "0.2",
    "RETRY_MAX_S": "2",
    "WORKER_POLL_S": "0.1",
    "REMEDIATION_RETRY_S": "0.2",
}


@dataclass
class Figures:
    """One run, as `scripts/real_factory_table.py` prints it."""

    mode: str
    auto_remediation: bool
    first_pending_s: float | None = None
    chaos_shown_s: float | None = None
    link_shown_s: float | None = None
    fixed_s: float | None = None
    all_made_s: float | None = None
    accepted: int = 0
    made: int = 0
    lost: int = 0
    answers: dict[str, int] = field(default_factory=dict)


@dataclass
class Run:
    """A service facing the real factory, as one of its vendors."""

    mode: str
    auto: bool
    vendor: Vendor
    service: Proc
    url: str
    database: Path
    figures: Figures = field(init=False)
    accepted: dict[int, float] = field(default_factory=dict)  # order id -> answered at
    answers: Counter[str] = field(default_factory=Counter)
    chaos_at: float = 0.0  # time.monotonic()
    chaos_wall: datetime = field(default_factory=lambda: datetime.now(UTC))
    fixed_at: float | None = None

    def __post_init__(self) -> None:
        self.figures = Figures(self.mode, self.auto)

    def since_chaos(self) -> float:
        return round(time.monotonic() - self.chaos_at, 2)


def start_service(
    processes: Processes, tmp_path: Path, factory_url: str, vendor: Vendor, *, auto: bool
) -> tuple[Proc, str, Path]:
    name = f"pizza-{'auto' if auto else 'manual'}"
    database = tmp_path / f"{name}.db"
    env = isolated_env(
        DATABASE_URL=f"sqlite:///{database}",
        FACTORY_URL=factory_url,
        FACTORY_API_KEY=vendor.api_key,
        FACTORY_AUTO_REMEDIATE="true" if auto else "false",
        JWT_SECRET=secrets.token_urlsafe(48),
        ADMIN_EMAIL=ADMIN_EMAIL,
        ADMIN_PASSWORD=PASSWORD,
        **SERVICE_SETTINGS,
    )
    chosen: dict[str, str] = {}

    def build() -> tuple[list[str], dict[str, str], list[str]]:
        port = free_port()
        chosen["url"] = f"http://127.0.0.1:{port}"
        return ["serve", "--port", str(port)], env, [f"{chosen['url']}/readyz"]

    proc = processes.start_on_free_ports(name, build)
    return proc, chosen["url"], database


PASSWORD = secrets.token_urlsafe(16)


# -- one run ----------------------------------------------------------------------------------


async def customers(run: Run, http: httpx.AsyncClient, shop: Shop, stop: asyncio.Event) -> None:
    """One order every ORDER_EVERY_S, each its own (an Idempotency-Key of its own)."""
    placed: list[asyncio.Task[None]] = []

    async def place(n: int) -> None:
        headers = {**shop.diners[n % len(shop.diners)], "Idempotency-Key": secrets.token_hex(8)}
        try:
            answer = await http.post("/api/order", json=shop.order_body(n), headers=headers)
        except httpx.HTTPError as exc:
            run.answers[type(exc).__name__] += 1
            return
        run.answers[str(answer.status_code)] += 1
        if answer.status_code in (200, 202, 503) and "order" in answer.json():
            run.accepted[answer.json()["order"]["id"]] = time.monotonic()
        if answer.status_code == 503 and run.chaos_at and run.figures.first_pending_s is None:
            run.figures.first_pending_s = run.since_chaos()

    n = 0
    while not stop.is_set():
        placed.append(asyncio.create_task(place(n)))
        n += 1
        await asyncio.sleep(ORDER_EVERY_S)
    await asyncio.gather(*placed)


async def watch(run: Run, http: httpx.AsyncClient, factory: RealFactory, shop: Shop) -> None:
    """/factory/status read as an operator does until the chaos is fixed; with
    auto-remediation off, "Remediate now" pressed once the link is there."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        status = (await http.get("/factory/status", headers=shop.admin)).json()
        if not run.auto and status["remediation"]["link"]:
            pressed = await http.post("/factory/remediate", headers=shop.admin)
            assert pressed.status_code == 200, pressed.text
        record = await asyncio.to_thread(factory.vendor_record, run.vendor)
        if record["chaos"]["type"] == "none":
            run.fixed_at = time.monotonic()
            fixed = datetime.fromisoformat(record["chaos"]["fixDate"].replace("Z", "+00:00"))
            run.figures.fixed_s = round((fixed - run.chaos_wall).total_seconds(), 2)
            return
        await asyncio.sleep(POLL_S)
    pytest.fail(f"{run.mode}: not fixed within {RUN_TIMEOUT_S:g} s; {run.figures}")


async def settled(run: Run, http: httpx.AsyncClient, shop: Shop) -> dict[str, Any]:
    """/factory/status once every accepted order is made, the breaker closed and the
    incident closed (or the last reading, past SETTLE_TIMEOUT_S)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        status: dict[str, Any] = (await http.get("/factory/status", headers=shop.admin)).json()
        listed = (await http.get("/factory/incidents", headers=shop.admin)).json()["incidents"]
        done = (
            status["pending"]["count"] == 0
            and status["breaker"]["state"] == "closed"
            and all(i["closedAt"] for i in listed)
        )
        if done or time.monotonic() > deadline:
            status["incidents"] = listed
            return status
        await asyncio.sleep(POLL_S * 2)


async def outage(run: Run, factory: RealFactory) -> dict[str, Any]:
    """Traffic, the chaos, the fix (by the service or the operator), and what is left."""
    async with httpx.AsyncClient(base_url=run.url, timeout=60) as http:
        shop = await open_shop(
            http, admin_email=ADMIN_EMAIL, admin_password=PASSWORD, diners=3, name=run.mode
        )
        stop = asyncio.Event()
        traffic = asyncio.create_task(customers(run, http, shop, stop))
        await asyncio.sleep(1.0)  # a calm start: pizzas are made
        run.chaos_wall = await asyncio.to_thread(factory.start_chaos, run.vendor, run.mode)
        # The chaos began when its start was moved: the monotonic clock's reading then.
        run.chaos_at = time.monotonic() - (datetime.now(UTC) - run.chaos_wall).total_seconds()
        try:
            await watch(run, http, factory, shop)
            await asyncio.sleep(AFTER_FIX_S)
        finally:
            stop.set()
            await traffic
        return await settled(run, http, shop)


# -- after the fix ------------------------------------------------------------------------------


def made_at(database: Path, ids: list[int]) -> dict[int, tuple[str, datetime | None]]:
    """Each order's status and when it was finished, from the service's own database."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT id, status, finished_at FROM diner_order").fetchall()
    found = {}
    for order_id, order_status, finished in rows:
        at = datetime.fromisoformat(finished).replace(tzinfo=UTC) if finished else None
        found[order_id] = (order_status, at)
    return {i: found.get(i, ("missing", None)) for i in ids}


def errors_after(log: str, after: datetime) -> list[str]:
    """ERROR (or worse) lines the service logged after ``after``."""
    found = []
    for line in log.splitlines():
        try:
            record = json.loads(line)
            at = datetime.fromisoformat(record["ts"])
        except (ValueError, KeyError, TypeError):
            continue
        if record.get("level") in ("ERROR", "CRITICAL") and at > after:
            found.append(line)
    return found


def event_times(status: dict[str, Any], kind: str, saying: str) -> list[datetime]:
    """When the service recorded each such event (its history on /factory/status)."""
    return [
        datetime.fromisoformat(event["at"].replace("Z", "+00:00"))
        for event in status["history"]
        if event["kind"] == kind and saying in event["detail"]
    ]


def chaos_series(metrics: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("pizza_factory_chaos{")
    }


@dataclass
class Result:
    """A run once it settled: its figures filled in, and what must hold of it."""

    run: Run
    status: dict[str, Any]
    orders: dict[int, tuple[str, datetime | None]]
    metrics: str
    # When the service had the factory's word that the chaos is fixed and had acted on it:
    # its breaker told, and the vendor record read again (the chaos_cleared event).
    fix_known: datetime | None

    @property
    def where(self) -> str:
        return f"{self.run.mode}, auto-remediation {'on' if self.run.auto else 'off'}"


def measure(run: Run, status: dict[str, Any]) -> Result:
    figures, start = run.figures, run.chaos_wall

    def after_start(times: list[datetime]) -> float | None:
        return round((min(times) - start).total_seconds(), 2) if times else None

    orders = made_at(run.database, sorted(run.accepted))
    figures.accepted = len(orders)
    figures.made = sum(1 for state, _ in orders.values() if state == "fulfilled")
    figures.lost = figures.accepted - figures.made
    figures.answers = dict(sorted(run.answers.items()))
    finished = [at for _, at in orders.values() if at is not None]
    figures.all_made_s = round((max(finished) - start).total_seconds(), 2) if finished else None
    # On /factory/status from the moment the service recorded it (its history says when).
    running = f"chaos {run.mode} running"
    figures.chaos_shown_s = after_start(event_times(status, "chaos_reported", running))
    figures.link_shown_s = after_start(event_times(status, "link_detected", ""))
    with httpx.Client(base_url=run.url) as http:
        metrics = http.get("/metrics").text
    fixed = event_times(status, "remediation", "Problem resolved")
    cleared = [at for at in event_times(status, "chaos_cleared", "") if fixed and at >= min(fixed)]
    return Result(run, status, orders, metrics, min(cleared) if cleared else None)


def check(result: Result, factory: RealFactory) -> None:
    """What must hold after the fix."""
    run, status, where, figures = result.run, result.status, result.where, result.run.figures
    ids = sorted(result.orders)
    assert status["chaos"] is None, f"{where}: {status['chaos']}"
    assert status["incidents"] and all(i["closedAt"] for i in status["incidents"]), where
    series = chaos_series(result.metrics)
    assert series and set(series.values()) == {0.0}, f"{where}: {series}"
    # From the moment the service has the factory's word and has acted on it: until then,
    # answers to calls made before the fix may still arrive and count.
    assert result.fix_known is not None, f"{where}: no resolved remediation, then no chaos"
    errors = errors_after(run.service.log(), result.fix_known)
    assert errors == [], f"{where}: {status['lastFailure']} {status['recentOutcomes']}"
    assert figures.first_pending_s is not None, f"{where}: no order was kept pending"
    assert figures.chaos_shown_s is not None, f"{where}: the chaos never on /factory/status"
    assert figures.link_shown_s is not None, f"{where}: no link on /factory/status"
    assert set(run.answers) <= {"200", "202", "503"}, f"{where}: {run.answers}"
    assert figures.lost == 0, f"{where}: {result.orders}"
    pizzas = factory.pizzas(run.vendor)
    assert {i: pizzas[i] for i in ids} == dict.fromkeys(ids, 1), f"{where}: {pizzas}"
    assert set(pizzas) <= set(ids), f"{where}: pizzas for orders nobody accepted: {pizzas}"


def report(figures: list[Figures]) -> None:
    path = os.environ.get("PIZZA_REAL_FACTORY_REPORT")
    if not path:
        return
    kept = json.loads(Path(path).read_text()) if Path(path).exists() else []
    runs = {(r["mode"], r["auto_remediation"]): r for r in kept}
    runs.update({(f.mode, f.auto_remediation): asdict(f) for f in figures})
    Path(path).write_text(json.dumps(list(runs.values()), indent=2) + "\n")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fail", "badjwt", "throttle"])
def test_the_service_through_a_chaos_of_the_real_factory(
    real_factory: RealFactory, processes: Processes, tmp_path: Path, mode: str
) -> None:
    runs = []
    for auto in (True, False):
        vendor = real_factory.new_vendor()
        service, url, database = start_service(
            processes, tmp_path, real_factory.url, vendor, auto=auto
        )
        runs.append(Run(mode, auto, vendor, service, url, database))

    async def both() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(outage(run, real_factory) for run in runs)))

    statuses = asyncio.run(both())
    results = [measure(run, status) for run, status in zip(runs, statuses, strict=True)]
    report([run.figures for run in runs])
    for result in results:
        check(result, real_factory)

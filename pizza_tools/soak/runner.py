"""`pizza soak`: start the stack, drive traffic, inject the faults, read everything back."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pizza_tools.bench.procs import BenchError
from pizza_tools.bench.shop import open_shop
from pizza_tools.soak import faults, report
from pizza_tools.soak.stack import ADMIN_EMAIL, SoakStack
from pizza_tools.soak.traffic import Traffic

# Memory is measured from here on (caches and pools filled); longer for a long run.
WARMUP_S = {"short": 20.0, "long": 120.0}
DRAIN_TIMEOUT_S = 180.0
SETTLE_S = 30.0  # after a fault's end, 5xx are still the fault's


@dataclass(frozen=True)
class Pace:
    """How long a fault lasts and how long the service is left alone after it."""

    hold_s: tuple[float, float]
    gap_s: tuple[float, float]

    @classmethod
    def for_minutes(cls, minutes: float) -> Pace:
        if minutes <= 5:
            return cls(hold_s=(4.0, 8.0), gap_s=(6.0, 10.0))
        return cls(hold_s=(5.0, 20.0), gap_s=(15.0, 40.0))


@dataclass
class Run:
    stack: SoakStack
    traffic: Traffic
    seed: int
    minutes: float
    windows: list[faults.Window] = field(default_factory=list)
    origin: float = field(default_factory=time.monotonic)

    async def faults(self) -> None:
        """Inject faults on the seeded schedule until the run's time is up."""
        rand = random.Random(self.seed)  # noqa: S311 - reproducible
        pace = Pace.for_minutes(self.minutes)
        deadline = self.origin + self.minutes * 60
        for index, kind in enumerate(faults.schedule(self.seed, count=10_000)):
            hold = rand.uniform(*pace.hold_s)
            # Each essential fault happens once however slow the machine; then the clock rules.
            late = time.monotonic() + hold + pace.gap_s[0] > deadline
            if late and index >= len(faults.ESSENTIAL):
                break
            self.windows.append(await faults.inject(kind, self.stack, hold, rand))
            await asyncio.sleep(rand.uniform(*pace.gap_s))
        await asyncio.sleep(max(deadline - time.monotonic(), 0.0))

    async def drain(self) -> float:
        """After the traffic: every accepted order settles (made or failed); seconds taken."""
        started = time.monotonic()
        pressed = False
        while time.monotonic() - started < DRAIN_TIMEOUT_S:
            stored = await self.stack.orders()
            if not any(stored[i].status == "pending" for i in self.traffic.accepted if i in stored):
                break
            if not pressed and time.monotonic() - started > 30:
                pressed = await self.stack.remediate()
            await asyncio.sleep(1.0)
        return round(time.monotonic() - started, 1)


async def soak(minutes: float, replicas: int, seed: int, workdir: Path) -> dict[str, Any]:
    stack = SoakStack(workdir, replicas)
    # SIGTERM (a CI timeout) stops everything the soak started, as Ctrl-C does.
    main = asyncio.current_task()
    if main is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    try:
        await stack.start()
        return await _drive(stack, minutes, seed)
    finally:
        await stack.close()


async def _drive(stack: SoakStack, minutes: float, seed: int) -> dict[str, Any]:
    import httpx

    async with httpx.AsyncClient(base_url=stack.nginx.url, timeout=30) as client:
        shop = await open_shop(
            client, admin_email=ADMIN_EMAIL, admin_password=stack.password, diners=8, name="soak"
        )
    stack.admin = shop.admin
    traffic = Traffic(shop, stack.nginx.url, seed)
    run = Run(stack, traffic, seed, minutes)
    sending = asyncio.create_task(traffic.run())
    await asyncio.sleep(WARMUP_S["short" if minutes <= 5 else "long"])
    rss_start = stack.rss()
    await run.faults()
    rss_end = stack.rss()
    traffic.stop()
    await sending
    await stack.end_chaos()
    drain_s = await run.drain()
    return _report(run, rss_start, rss_end, drain_s, await stack.orders(), await stack.pizzas())


def _report(
    run: Run,
    rss_start: dict[str, int],
    rss_end: dict[str, int],
    drain_s: float,
    stored: dict[int, report.StoredOrder],
    pizzas: dict[str, int],
) -> dict[str, Any]:
    answers = run.traffic.answers
    by_status = report.statuses(answers)
    orders = report.orders_report(run.traffic.accepted, stored, pizzas)
    memory = report.memory_report(rss_start, rss_end, run.stack.restarted)
    return {
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "minutes": run.minutes,
        "replicas": run.stack.replica_count,
        "seed": run.seed,
        "requests": len(answers),
        "answers": by_status,
        "orders": orders,
        "drain_s": drain_s,
        "faults": [report.window_report(w, answers, run.origin) for w in run.windows],
        "errors_outside_fault_windows": report.outside_errors(answers, run.windows, SETTLE_S),
        "service_unhandled_errors": run.stack.unhandled_errors(),
        "memory": memory,
        "checks": report.checks(orders, memory, by_status),
    }


def soak_command(*, minutes: float, replicas: int, out: Path, seed: int, keep: bool) -> int:
    """Run the soak, write the JSON report to ``out``; 0 if every check held."""
    workdir = Path(tempfile.mkdtemp(prefix="pizza-soak-"))
    try:
        result = asyncio.run(soak(minutes, replicas, seed, workdir))
    except BenchError as exc:
        print(f"pizza soak: {exc}\n(logs in {workdir})", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"orders": result["orders"], "checks": result["checks"]}, indent=2))
    if not keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"logs in {workdir}")
    return 0 if all(result["checks"].values()) else 1

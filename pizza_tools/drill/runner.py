"""`pizza drill`: start a simulator and one fresh service per phase, replay the incident,
and report what was detected when, which alerts fire, and the postmortem draft.

Each chaos mode runs twice, side by side. "As it happened": FACTORY_AUTO_REMEDIATE=false
and nobody clicks for a while (the 2024-12-05 incident; this phase must page), then one
click on "remediate", as the person paged would. "Auto-remediated": the service follows
the link itself (this phase should end before anyone is paged). Every phase has its own
simulator, service process and SQLite database, so its chaos, metrics, history and
incident are its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from pizza_tools.bench.procs import BenchError, Child, Processes, isolated_env
from pizza_tools.bench.shop import Shop, bearer, call, end_chaos, open_shop
from pizza_tools.drill import Mode
from pizza_tools.drill.alerts import ReplayError, replay
from pizza_tools.drill.plan import (
    ADMIN_EMAIL,
    FULL,
    QUICK,
    SERVICE_SETTINGS,
    THROTTLE_DELAY_S,
    Phase,
    PhaseResult,
    Plan,
    phases_for,
)
from pizza_tools.drill.replay_window import replay_window
from pizza_tools.drill.samples import MetricsRecorder
from pizza_tools.drill.timeline import (
    build_timeline,
    resolved_attempt,
    steady_cycle,
)
from pizza_tools.drill.traffic import DrillError, Traffic, settle

API_TIMEOUT_S = 30.0
POLL_S = 0.25
REPLAYS_AT_ONCE = 2
CYCLE_MARGIN_S = 2.0

_STARTED = time.monotonic()


def progress(message: str) -> None:
    """A line on stderr, so that stdout is the report alone."""
    print(f"[drill {time.monotonic() - _STARTED:5.1f} s] {message}", file=sys.stderr, flush=True)


@dataclass
class Stack:
    """One phase's own processes: a simulator (its chaos is the phase's alone), a service
    on a fresh database, and the shop made in it."""

    factory: Child
    service: Child
    shop: Shop


class Drill:
    def __init__(self, plan: Plan, phases: list[Phase], procs: Processes) -> None:
        self.plan = plan
        self.phases = phases
        self.procs = procs
        self.vendor_key = f"drill-vendor-{secrets.token_hex(8)}"
        self.admin_key = f"drill-admin-{secrets.token_hex(8)}"  # ends a chaos, as the factory's
        self.admin_password = secrets.token_urlsafe(16)
        # Every event of /factory/status's history this drill has read: the page shows the
        # last HISTORY_LENGTH only, and a long or loaded phase's breaker cycles can push its
        # first events (the link detected) out before the phase's last reading.
        self._history: dict[tuple[Any, ...], dict[str, Any]] = {}

    # -- processes -------------------------------------------------------------------------

    async def start_stack(self, phase: Phase) -> Stack:
        args = ["factory-sim", "--api-key", self.vendor_key, "--admin-key", self.admin_key]
        args += ["--throttle-delay-s", f"{THROTTLE_DELAY_S:g}"]
        factory = await self.procs.start(f"factory-{phase.slug}", args, isolated_env(), "/api/docs")
        env = isolated_env(
            DATABASE_URL=f"sqlite+aiosqlite:///{self.procs.workdir / phase.slug}.db",
            FACTORY_URL=factory.url,
            FACTORY_API_KEY=self.vendor_key,
            JWT_SECRET=secrets.token_urlsafe(48),
            ADMIN_EMAIL=ADMIN_EMAIL,
            ADMIN_PASSWORD=self.admin_password,
            FACTORY_AUTO_REMEDIATE="true" if phase.auto else "false",
            BREAKER_RESET_S=f"{self.plan.breaker_reset_s:g}",
            **SERVICE_SETTINGS,
        )
        service = await self.procs.start(f"service-{phase.slug}", ["serve"], env, "/readyz")
        async with httpx.AsyncClient(base_url=service.url, timeout=API_TIMEOUT_S) as http:
            shop = await open_shop(
                http,
                admin_email=ADMIN_EMAIL,
                admin_password=self.admin_password,
                diners=self.plan.diners,
                name="drill",
            )
        return Stack(factory, service, shop)

    async def stop_stack(self, stack: Stack) -> None:
        await self.procs.stop(stack.service)
        await self.procs.stop(stack.factory)

    # -- one phase -------------------------------------------------------------------------

    async def run_phase(self, phase: Phase, stack: Stack) -> PhaseResult:
        plan, service, shop = self.plan, stack.service, stack.shop
        notes: list[str] = []
        limits = httpx.Limits(max_connections=plan.max_inflight + 8)
        async with (
            httpx.AsyncClient(base_url=service.url, timeout=API_TIMEOUT_S, limits=limits) as http,
            httpx.AsyncClient(
                base_url=stack.factory.url, headers=bearer(self.vendor_key), timeout=API_TIMEOUT_S
            ) as factory,
        ):
            await end_chaos(factory, self.admin_key)
            recorder = MetricsRecorder(http, "/metrics")
            recorder.start()
            stop = asyncio.Event()
            traffic = Traffic(http, shop, plan.rate_per_s, plan.max_inflight, plan.max_orders)
            customers = asyncio.create_task(traffic.run(stop), name="drill-traffic")
            clicked_at: datetime | None = None
            steady_at: datetime | None = None
            try:
                await asyncio.sleep(plan.baseline_s)
                await call(
                    factory,
                    "PUT",
                    f"/api/vendor/chaos/{phase.chaos}",
                    params={"throttle_delay_s": THROTTLE_DELAY_S},
                )
                chaos_at = datetime.now(UTC)
                if phase.auto:
                    fixed_at = await self._remediated(http, shop, chaos_at, factory, notes)
                else:
                    clicked_at = await self._hold_then_click(
                        http, shop, chaos_at, factory, notes, phase.settle_in_s
                    )
                    fixed_at = clicked_at
                await self._first_pizza_after(traffic, fixed_at, notes)
                steady_at = await self._steady(http, shop, notes)
                await asyncio.sleep(plan.tail_s)
            finally:
                recording = await recorder.stop()
                stop.set()
                await customers
                with contextlib.suppress(httpx.HTTPError, BenchError, DrillError):
                    await end_chaos(factory, self.admin_key)
            counts = await settle(http, shop.admin, traffic, plan.settle_timeout_s)
            status = await self._status(http, shop)
            incident = await self._incident_report(http, shop.admin, notes)
        timeline = build_timeline(status, traffic.answers, chaos_at, steady_at)
        window = replay_window(phase, recording, timeline, clicked_at, status)
        return PhaseResult(phase, timeline, counts, recording, window, notes, incident)

    async def _status(self, http: httpx.AsyncClient, shop: Shop) -> dict[str, Any]:
        """/factory/status, its history completed with every event read before."""
        status: dict[str, Any] = (
            await call(http, "GET", "/factory/status", headers=shop.admin)
        ).json()
        for event in status.get("history", []):
            self._history.setdefault(
                (event.get("at"), event.get("kind"), event.get("detail")), event
            )
        status["history"] = list(self._history.values())
        return status

    async def _remediated(
        self,
        http: httpx.AsyncClient,
        shop: Shop,
        chaos_at: datetime,
        factory: httpx.AsyncClient,
        notes: list[str],
    ) -> datetime:
        """Auto-remediation: wait for the service to end the chaos itself."""
        deadline = time.monotonic() + self.plan.recover_timeout_s
        while time.monotonic() < deadline:
            attempt = resolved_attempt(await self._status(http, shop), chaos_at)
            if attempt is not None:
                return attempt[0]
            await asyncio.sleep(POLL_S)
        notes.append(
            f"no resolved remediation within {self.plan.recover_timeout_s:g} s:"
            " the drill ended the chaos itself"
        )
        await end_chaos(factory, self.admin_key)
        return datetime.now(UTC)

    async def _hold_then_click(
        self,
        http: httpx.AsyncClient,
        shop: Shop,
        chaos_at: datetime,
        factory: httpx.AsyncClient,
        notes: list[str],
        settle_in_s: float,
    ) -> datetime:
        """Nobody clicks until the hold is over and the breaker has been through a whole
        cycle of the steady chaos; then one click on "remediate", as the person paged
        would."""
        plan = self.plan
        began = time.monotonic()
        deadline = began + plan.hold_s + plan.recover_timeout_s + 3 * plan.breaker_reset_s
        while time.monotonic() < deadline:
            status = await self._status(http, shop)
            now = datetime.now(UTC)
            cycle = steady_cycle(status, chaos_at, settle_in_s, now)
            # A couple of scrapes after the cycle ended, so that the recording holds it all.
            recorded = cycle is not None and (now - cycle[1]).total_seconds() >= CYCLE_MARGIN_S
            if time.monotonic() - began >= plan.hold_s and recorded:
                break
            await asyncio.sleep(POLL_S * 2)
        else:
            notes.append(
                "the breaker went through no whole cycle: the alert replay repeats"
                " the chaos since the breaker opened"
            )
        clicked_at = datetime.now(UTC)
        answer = await http.post("/factory/remediate", headers=shop.admin)
        if answer.status_code == 200 and answer.json()["attempt"]["resolved"]:
            return clicked_at
        notes.append(
            f"POST /factory/remediate: HTTP {answer.status_code} {answer.text[:200]};"
            " the drill ended the chaos itself"
        )
        await end_chaos(factory, self.admin_key)
        return clicked_at

    async def _steady(
        self, http: httpx.AsyncClient, shop: Shop, notes: list[str]
    ) -> datetime | None:
        """When the breaker is closed and no order pending: the backlog, late answers
        included, is made (a late answer's order counts as pending until it comes)."""
        deadline = time.monotonic() + self.plan.recover_timeout_s
        while time.monotonic() < deadline:
            status = await self._status(http, shop)
            if status["breaker"]["state"] == "closed" and not status["pending"]["count"]:
                return datetime.now(UTC)
            await asyncio.sleep(POLL_S)
        notes.append(f"not steady again within {self.plan.recover_timeout_s:g} s")
        return None

    async def _first_pizza_after(
        self, traffic: Traffic, moment: datetime, notes: list[str]
    ) -> None:
        deadline = time.monotonic() + self.plan.recover_timeout_s
        while time.monotonic() < deadline:
            if any(a.status == 200 and a.answered_at >= moment for a in traffic.answers):
                return
            await asyncio.sleep(POLL_S)
        notes.append(f"no pizza within {self.plan.recover_timeout_s:g} s of remediation")

    async def _incident_report(
        self, http: httpx.AsyncClient, admin: dict[str, str], notes: list[str]
    ) -> str | None:
        """The postmortem draft of the incident this phase caused, from the service."""
        listed = await http.get("/factory/incidents", headers=admin, params={"limit": 1})
        if listed.status_code == 404:
            notes.append("this service records no incidents (GET /factory/incidents: 404)")
            return None
        if listed.status_code != 200 or not listed.json().get("incidents"):
            notes.append(f"no incident recorded (GET /factory/incidents: {listed.status_code})")
            return None
        latest = listed.json()["incidents"][0]
        url = latest.get("reportUrl") or f"/factory/incidents/{latest['id']}/report"
        report = await http.get(url, headers=admin)
        if report.status_code != 200:
            notes.append(f"GET {url}: HTTP {report.status_code}")
            return None
        return report.text

    # -- the whole drill -------------------------------------------------------------------

    async def run(self) -> list[PhaseResult]:
        # The phases of one chaos mode run side by side, each on its own stack; the next
        # mode's stacks start meanwhile, and promtool replays a mode's phases while the
        # next mode runs. A few orders a second per phase leave the machine mostly idle.
        groups: list[list[Phase]] = []
        for phase in self.phases:
            if groups and groups[-1][0].chaos == phase.chaos:
                groups[-1].append(phase)
            else:
                groups.append([phase])
        starts = [asyncio.create_task(self._start_group(groups[0]))]
        results: list[PhaseResult] = []
        replays: list[asyncio.Task[None]] = []
        limit = asyncio.Semaphore(REPLAYS_AT_ONCE)
        try:
            for number, group in enumerate(groups):
                stacks = await starts[number]
                if number + 1 < len(groups):
                    starts.append(asyncio.create_task(self._start_group(groups[number + 1])))
                names = " and ".join(p.name for p in group)
                progress(f"phases {names}")
                began = time.monotonic()
                done = await asyncio.gather(
                    *(self.run_phase(p, s) for p, s in zip(group, stacks, strict=True))
                )
                for stack in stacks:
                    await self.stop_stack(stack)
                progress(f"phases {names}: done in {time.monotonic() - began:.0f} s")
                results += done
                replays += [asyncio.create_task(self.replay_alerts(r, limit)) for r in done]
            progress("waiting for the alert replays (promtool)")
            await asyncio.gather(*replays)
        finally:
            for task in [*starts, *replays]:
                task.cancel()
            await asyncio.gather(*starts, *replays, return_exceptions=True)
        progress("replayed")
        return results

    async def _start_group(self, group: list[Phase]) -> list[Stack]:
        stacks = await asyncio.gather(*(self.start_stack(p) for p in group))
        return list(stacks)

    async def replay_alerts(self, result: PhaseResult, limit: asyncio.Semaphore) -> None:
        async with limit:
            try:
                result.alerts = await replay(result.recording, result.window)
            except ReplayError as error:
                result.alert_error = str(error)


async def run_drill(mode: Mode, plan: Plan) -> list[PhaseResult]:
    with tempfile.TemporaryDirectory(prefix="pizza-drill-") as tmp:
        procs = Processes(Path(tmp))
        try:
            return await Drill(plan, phases_for(mode), procs).run()
        finally:
            await procs.stop_all()


def drill_command(*, mode: Mode, quick: bool) -> int:
    """`pizza drill`: run, print the report; 0 when nothing was lost and the alerts held."""
    from pizza_tools.drill.report import render

    plan = QUICK if quick else FULL
    began = time.monotonic()
    try:
        results = asyncio.run(run_drill(mode, plan))
    except (BenchError, DrillError, httpx.HTTPError) as error:
        print(f"drill failed: {error}", file=sys.stderr)
        return 1
    text, ok = render(results, plan, mode=mode, seconds=time.monotonic() - began)
    print(text)
    return 0 if ok else 1

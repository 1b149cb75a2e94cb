"""Background work never fails silently: crashes are logged, counted and restarted, and a
stuck task shows on /metrics, /factory/status and /readyz.

Time is moved by a fake clock and the restart backoff by a fake sleep: no test waits for it.
"""

from __future__ import annotations

import asyncio
import functools
import io
import os
import shutil
import subprocess
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import app.main as main_module
from app.orders.worker import RetryWorker
from app.supervisor import Heartbeat, Supervisor, TaskState
from telemetry.logging import configure_logging
from telemetry.setup import setup_telemetry
from tests.conftest import FACTORY_KEY, make_settings, running_api
from tests.telemetry.promql import RULES
from tests.utils.builders import Api
from tests.utils.clock import ManualClock
from tests.utils.orders import all_fulfilled, pending_orders, status
from tests.utils.simulator import end_chaos
from tests.utils.waiting import eventually


class GatedSleep:
    """The supervisor's backoff sleep: records each delay, returns when the test says."""

    def __init__(self, *, open_: bool = True) -> None:
        self.delays: list[float] = []
        self.gate = asyncio.Event()
        if open_:
            self.gate.set()

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await self.gate.wait()


def metric_value(page: str, name: str, task: str) -> float | None:
    """One task's sample on a Prometheus page (other labels, e.g. the scope's, ignored)."""
    for line in page.splitlines():
        if line.startswith(name + "{") and f'task="{task}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.fixture
def supervised(monkeypatch: pytest.MonkeyPatch) -> tuple[ManualClock, GatedSleep]:
    """The lifespan's supervisor on a sleep the test opens; the clock, the app's own,
    is given to running_api."""
    clock, sleep = ManualClock(), GatedSleep(open_=False)
    monkeypatch.setattr(main_module, "Supervisor", functools.partial(Supervisor, sleep=sleep))
    return clock, sleep


class TestSupervisorAlone:
    """The supervisor's rules on a task of its own, no service around it."""

    @pytest.fixture
    def telemetry(self) -> Any:
        made = setup_telemetry(service_version="t", environment="test", prometheus=True)
        yield made
        made.shutdown()

    async def test_a_crash_loop_stays_visible_with_capped_backoff(self, telemetry: Any) -> None:
        clock, sleep = ManualClock(), GatedSleep()
        supervisor = Supervisor(
            telemetry.metrics, clock=clock, sleep=sleep, rand=lambda: 1.0, restart_max_s=8.0
        )
        runs = 0

        async def broken() -> None:
            nonlocal runs
            runs += 1
            if runs > 6:
                await asyncio.Event().wait()  # the seventh run stays up
            raise ValueError("bad row")

        supervisor.start("factory-probe", broken)
        await eventually(lambda: _true(runs >= 7))
        # Doubling from 1 s, never above the cap, each crash one more in a row.
        assert sleep.delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
        (health,) = supervisor.health()
        assert health.crashes == 6 and health.last_error == "ValueError"
        assert supervisor.problems() == ["factory-probe: crashed 6 times in a row, last ValueError"]
        page = telemetry.render_prometheus()[0].decode()
        assert metric_value(page, "pizza_tasks_crashed_total", "factory-probe") == 6.0
        # Quiet for a minute: it recovered, it is no longer a loop.
        clock.advance(61)
        assert supervisor.problems() == []
        await supervisor.stop()
        assert supervisor.health()[0].state is TaskState.STOPPED

    async def test_a_task_is_counted_from_zero_as_soon_as_it_is_supervised(
        self, telemetry: Any
    ) -> None:
        supervisor = Supervisor(telemetry.metrics, clock=ManualClock(), sleep=GatedSleep())
        page = telemetry.render_prometheus()[0].decode()
        assert metric_value(page, "pizza_tasks_crashed_total", "nightly-sweep") is None
        supervisor.start("nightly-sweep", asyncio.Event().wait)
        page = telemetry.render_prometheus()[0].decode()
        # Its first crash will show in increase(): the series exists before it.
        assert metric_value(page, "pizza_tasks_crashed_total", "nightly-sweep") == 0.0
        await supervisor.stop()

    async def test_shutdown_is_not_a_crash(
        self, telemetry: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        supervisor = Supervisor(telemetry.metrics, clock=ManualClock(), sleep=GatedSleep())
        started = asyncio.Event()

        async def forever() -> None:
            started.set()
            await asyncio.Event().wait()

        supervisor.start("incident-watch", forever)
        await started.wait()
        await supervisor.stop()
        assert supervisor.health()[0].crashes == 0
        assert not [r for r in caplog.records if r.name == "app.supervisor"]

    async def test_a_task_that_returns_is_restarted_too(self, telemetry: Any) -> None:
        sleep = GatedSleep()
        supervisor = Supervisor(telemetry.metrics, clock=ManualClock(), sleep=sleep)
        runs = 0

        async def ends() -> None:
            nonlocal runs
            runs += 1
            if runs > 1:
                await asyncio.Event().wait()

        supervisor.start("incident-watch", ends)
        await eventually(lambda: _true(runs == 2))
        assert supervisor.health()[0].last_error == "returned"
        await supervisor.stop()

    def test_a_heartbeat_ages_on_its_clock(self) -> None:
        clock = ManualClock()
        beat = Heartbeat(clock)
        clock.advance(5)
        assert beat.age_s() == 5
        beat.beat()
        assert beat.age_s() == 0


async def _true(value: bool) -> bool:
    return value


def _misbehaving_claim(
    monkeypatch: pytest.MonkeyPatch, instead: Callable[[RetryWorker, int], Awaitable[list[int]]]
) -> None:
    monkeypatch.setattr(RetryWorker, "_claim", instead)


class TestWorkerCrash:
    async def test_an_unexpected_error_is_logged_counted_and_the_worker_restarts(
        self,
        database_url: str,
        factory_url: str,
        factory: httpx.Client,
        monkeypatch: pytest.MonkeyPatch,
        supervised: tuple[ManualClock, GatedSleep],
    ) -> None:
        _clock, sleep = supervised  # the app keeps the system clock: its worker must retry
        real_claim = RetryWorker._claim
        crashed = asyncio.Event()

        async def claim_raising_once(self: RetryWorker, limit: int) -> list[int]:
            if not crashed.is_set():
                crashed.set()
                # A secret in the message: the traceback goes through the redaction filter.
                raise ValueError(f"bad row near {FACTORY_KEY}")
            return await real_claim(self, limit)

        _misbehaving_claim(monkeypatch, claim_raising_once)
        settings = make_settings(
            database_url, factory_url, factory_auto_remediate=False, breaker_fail_max=3
        )
        async with running_api(settings) as api:
            written = io.StringIO()
            configure_logging(
                secrets=settings.secrets, telemetry=api.services.telemetry, stream=written
            )
            # The worker wakes on work: an order kept pending is what it claims next.
            shop = await api.shop()
            factory.put("/api/vendor/chaos/fail").raise_for_status()
            ids = await pending_orders(api, shop, 1)
            end_chaos(factory)
            await crashed.wait()
            await eventually(lambda: _true(len(sleep.delays) == 1))
            state = await status(api, shop)
            (worker,) = [t for t in state["tasks"] if t["name"] == "retry-worker"]
            assert worker["state"] == "restarting"
            assert worker["crashes"] == 1 and worker["lastError"] == "ValueError"

            sleep.gate.set()  # the backoff is over: the worker starts again
            await eventually(lambda: all_fulfilled(api, shop, ids))

            page = (await api.client.get("/metrics")).text
            assert metric_value(page, "pizza_tasks_crashed_total", "retry-worker") == 1.0
            assert metric_value(page, "pizza_tasks_crashed_total", "factory-probe") == 0.0
            # Every task the service supervises has its series from the start.
            names = {t["name"] for t in state["tasks"]}
            assert "claim-leases" in names
            for name in names:
                assert metric_value(page, "pizza_tasks_crashed_total", name) is not None, name
            log = written.getvalue()
            # Once, with its traceback, and without the key.
            assert log.count("background task retry-worker stopped") == 1
            assert "Traceback" in log and "claim_raising_once" in log
            assert "ValueError: bad row near" in log
            assert FACTORY_KEY not in log
            assert (await api.client.get("/readyz")).status_code == 200


class TestWorkerHangs:
    @pytest.mark.slow  # ends by running promtool
    async def test_the_heartbeat_ages_and_readyz_names_the_worker(
        self,
        database_url: str,
        factory_url: str,
        factory: httpx.Client,
        monkeypatch: pytest.MonkeyPatch,
        supervised: tuple[ManualClock, GatedSleep],
    ) -> None:
        clock, _sleep = supervised
        stuck = asyncio.Event()

        async def claim_never_returning(self: RetryWorker, limit: int) -> list[int]:
            stuck.set()
            await asyncio.Event().wait()  # never set
            return []

        _misbehaving_claim(monkeypatch, claim_never_returning)
        async with running_api(make_settings(database_url, factory_url), clock=clock) as api:
            # The worker wakes on work: an order kept pending is what it tries to claim.
            shop = await api.shop()
            factory.put("/api/vendor/chaos/fail").raise_for_status()
            await pending_orders(api, shop, 1)
            end_chaos(factory)
            await stuck.wait()
            assert (await api.client.get("/readyz")).status_code == 200
            series, ages = await heartbeat_ages(api, clock, steps=12, every_s=15.0)
            assert ages == [15.0 * step for step in range(12)]
            ready = await api.client.get("/readyz")
            assert ready.status_code == 503
            # Only the worker: the probe runs every minute, 165 s is not yet three missed.
            assert ready.json() == {
                "status": "background task failing",
                "message": "retry-worker: no completed cycle for 165 s",
            }
            tasks = (await status(api, shop))["tasks"]
            (worker,) = [t for t in tasks if t["name"] == "retry-worker"]
            assert worker["state"] == "stale" and worker["heartbeatAgeS"] == 165.0
        # The heartbeat rule, fed the very samples the service printed, every 15 s.
        assert_heartbeat_rule_fires(series, ages)


async def heartbeat_ages(
    api: Api, clock: ManualClock, *, steps: int, every_s: float
) -> tuple[str, list[float]]:
    """Scrape /metrics as Prometheus would, every `every_s` seconds of the fake clock:
    the worker's heartbeat series exactly as printed, and its values."""
    ages, printed = [], set()
    for step in range(steps):
        if step:
            clock.advance(every_s)
        page = (await api.client.get("/metrics")).text
        lines = [
            line
            for line in page.splitlines()
            if line.startswith("pizza_task_heartbeat_age_seconds{")
            and 'task="retry-worker"' in line
        ]
        assert len(lines) == 1, "the service does not export the worker's heartbeat age"
        name, value = lines[0].rsplit(" ", 1)
        printed.add(name)
        ages.append(float(value))
    (series,) = printed
    return series, ages


def assert_heartbeat_rule_fires(series: str, ages: list[float]) -> None:
    """promtool evaluates the shipped rules on the scraped samples (job added, as a
    scrape does): silent while the worker may just be slow, firing once it is stuck."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("promtool is missing: apt-get install prometheus")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    labelled = series.replace("{", '{job="jwt-pizza",', 1)
    firing = 'ALERTS{alertname="PizzaTaskHeartbeatStale",alertstate="firing"}'
    case = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": [
                    {"series": labelled, "values": " ".join(f"{age:g}" for age in ages)},
                    # A live process: its heartbeat timestamp keeps up with the scrapes
                    # (the rules count only instances heard from in 120 s).
                    {
                        "series": 'pizza_service_heartbeat_timestamp_seconds{job="jwt-pizza"}',
                        "values": f"0+15x{len(ages)}",
                    },
                ],
                "promql_expr_test": [
                    # Above 60 s from 75 s on; "for: 1m" holds it back until 135 s.
                    {"expr": firing, "eval_time": "120s", "exp_samples": []},
                    {
                        "expr": firing,
                        "eval_time": "150s",
                        "exp_samples": [
                            {
                                "labels": 'ALERTS{alertname="PizzaTaskHeartbeatStale",'
                                'alertstate="firing",job="jwt-pizza",severity="page",'
                                'task="retry-worker"}',
                                "value": 1,
                            }
                        ],
                    },
                ],
            }
        ],
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scraped.test.yaml"
        path.write_text(yaml.safe_dump(case))
        done = subprocess.run(
            [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 0, done.stdout + done.stderr

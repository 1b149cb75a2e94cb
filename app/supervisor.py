"""One supervisor for every long-running task of the service: a crash is logged once,
counted and restarted with backoff (docs/operations.md#health).

A task that raises is logged once with its traceback (through the redaction filter),
counted as `pizza.tasks.crashed{task}`, and started again after a capped, jittered
backoff: it never ends silently. A task may carry a `Heartbeat` it beats after each
completed cycle; its age is exported (`pizza.task.heartbeat.age`), and `/readyz` and
`/factory/status` read `health()` and `problems()` to say which task is stale or
crash-looping. Cancellation is shutdown, never a crash.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from app.backoff import backoff_s
from clients.clock import SYSTEM_CLOCK, Clock
from telemetry.metrics import PizzaMetrics

log = logging.getLogger("app.supervisor")

Sleep = Callable[[float], Awaitable[None]]

RESTART_BASE_S = 1.0
RESTART_MAX_S = 60.0
# This many crashes in a row (no completed cycle, no quiet minute between) is a loop.
CRASH_LOOP_AFTER = 3
# A task without a heartbeat that ran this long before crashing was not looping.
STABLE_RUN_S = 60.0


class TaskState(StrEnum):
    RUNNING = "running"
    RESTARTING = "restarting"  # crashed, waiting out its backoff
    STALE = "stale"  # running, but no completed cycle within its bound
    STOPPED = "stopped"


class Heartbeat:
    """When a task last completed a cycle. Starts fresh; the supervisor gives it its clock."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self._last = clock.monotonic()

    def beat(self) -> None:
        self._last = self.clock.monotonic()

    @property
    def last(self) -> float:
        return self._last

    def age_s(self) -> float:
        return max(self.clock.monotonic() - self._last, 0.0)


@dataclass(frozen=True, slots=True)
class TaskHealth:
    name: str
    state: TaskState
    crashes: int
    crash_streak: int
    last_error: str | None
    heartbeat_age_s: float | None
    stale_after_s: float | None


@dataclass(slots=True)
class _Supervised:
    name: str
    run: Callable[[], Awaitable[None]]
    heartbeat: Heartbeat | None
    stale_after_s: float | None
    task: asyncio.Task[None] | None = None
    run_started: float = 0.0
    restarting: bool = False
    stopped: bool = False
    crashes: int = 0
    streak: int = 0
    last_error: str | None = None


class Supervisor:
    def __init__(
        self,
        metrics: PizzaMetrics,
        *,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        restart_base_s: float = RESTART_BASE_S,
        restart_max_s: float = RESTART_MAX_S,
    ) -> None:
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._base_s = restart_base_s
        self._max_s = restart_max_s
        self._tasks: dict[str, _Supervised] = {}
        metrics.read_heartbeats(self.heartbeat_ages)

    def start(
        self,
        name: str,
        run: Callable[[], Awaitable[None]],
        *,
        heartbeat: Heartbeat | None = None,
        stale_after_s: float | None = None,
    ) -> None:
        """Run `run()` under supervision until `stop()`; `name` labels its metrics.

        This registry is the one list of the service's background tasks: a task's crash
        counter and heartbeat are exported from here, so none can be left out.
        """
        if name in self._tasks:
            raise ValueError(f"task {name!r} is already supervised")
        self._metrics.task_supervised(name)
        if heartbeat is not None:
            # One clock for every heartbeat this supervisor judges; the age counts from now.
            heartbeat.clock = self._clock
            heartbeat.beat()
        entry = _Supervised(name, run, heartbeat, stale_after_s)
        self._tasks[name] = entry
        entry.task = asyncio.get_running_loop().create_task(self._supervise(entry), name=name)

    async def _supervise(self, entry: _Supervised) -> None:
        while True:
            started = entry.run_started = self._clock.monotonic()
            crash: Exception | None
            try:
                await entry.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error, crash = type(exc).__name__, exc
            else:
                # A task that runs "forever" and returned has stopped doing its job.
                error, crash = "returned", None
            entry.crashes += 1
            entry.streak = 1 if self._recovered_since(entry, started) else entry.streak + 1
            entry.last_error = error
            self._metrics.task_crashed(entry.name)
            delay = backoff_s(entry.streak, base_s=self._base_s, max_s=self._max_s, rand=self._rand)
            message = "background task %s stopped (%s, %d in a row); restarting in %.1f s"
            args = (entry.name, error, entry.streak, delay)
            # Once per crash, with its traceback; the redaction filter sees it like any record.
            log.error(message, *args, exc_info=crash)
            entry.restarting = True
            try:
                await self._sleep(delay)
            finally:
                entry.restarting = False

    def _recovered_since(self, entry: _Supervised, started: float) -> bool:
        """Did the run that just ended work for a while (a cycle, or a quiet minute)?"""
        if entry.heartbeat is not None and entry.heartbeat.last > started:
            return True
        return self._clock.monotonic() - started >= STABLE_RUN_S

    async def stop(self) -> None:
        """Cancel every task and wait for them: shutdown, not a crash."""
        tasks = [e.task for e in self._tasks.values() if e.task is not None]
        for entry in self._tasks.values():
            entry.stopped = True
        for task in tasks:
            task.cancel()
        # Each task's own errors were logged by `_supervise`; only cancellation is left.
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- what operators see ----------------------------------------------------------------

    def heartbeat_ages(self) -> dict[str, float]:
        """Seconds since each heartbeat task's last completed cycle (the gauge's reading)."""
        # Read on the exporter's thread too: copy the entries in one step (no iteration
        # of a dict the event loop may be adding to).
        entries = list(self._tasks.values())
        return {e.name: e.heartbeat.age_s() for e in entries if e.heartbeat is not None}

    def health(self) -> list[TaskHealth]:
        return [self._health(entry) for entry in self._tasks.values()]

    def _health(self, entry: _Supervised) -> TaskHealth:
        age = entry.heartbeat.age_s() if entry.heartbeat is not None else None
        streak = entry.streak
        if not entry.restarting and self._recovered_since(entry, entry.run_started):
            streak = 0  # crashed before, working since: no longer a loop
        if entry.stopped:
            state = TaskState.STOPPED
        elif entry.restarting:
            state = TaskState.RESTARTING
        elif age is not None and entry.stale_after_s is not None and age > entry.stale_after_s:
            state = TaskState.STALE
        else:
            state = TaskState.RUNNING
        return TaskHealth(
            name=entry.name,
            state=state,
            crashes=entry.crashes,
            crash_streak=streak,
            last_error=entry.last_error,
            heartbeat_age_s=None if age is None else round(age, 3),
            stale_after_s=entry.stale_after_s,
        )

    def problems(self) -> list[str]:
        """One sentence per task that is not doing its job; empty when all are well."""
        found = []
        for health in self.health():
            if health.state is TaskState.STOPPED:
                continue
            if health.crash_streak >= CRASH_LOOP_AFTER:
                found.append(
                    f"{health.name}: crashed {health.crash_streak} times in a row, "
                    f"last {health.last_error}"
                )
            elif health.state is TaskState.STALE:
                found.append(
                    f"{health.name}: no completed cycle for {health.heartbeat_age_s:.0f} s"
                )
        return found

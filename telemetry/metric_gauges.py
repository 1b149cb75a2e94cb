"""The gauges of the service's metrics and the fields they read.

Callbacks run on the exporter's thread (and on a ``/metrics`` render), so they only read
fields kept here, which the service keeps current through the setters: never a database
query, never a lock held long.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from telemetry.metric_names import ACTIVE_USER_WINDOW_S, BREAKER_STATES, CHAOS_PHASES, CHAOS_TYPES
from telemetry.process import ProcessSampler

Callback = Callable[[CallbackOptions], Iterable[Observation]]


class _Gauge(NamedTuple):
    name: str
    unit: str
    description: str
    callback: Callback


def reading(read: Callable[[], float]) -> Callback:
    """A gauge or counter callback that reports one value, read when it is exported."""

    def callback(_options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(read())]

    return callback


class GaugeReadings:
    """The values the gauges report, and the gauges themselves (``register_gauges``)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._users: OrderedDict[int, float] = OrderedDict()
        self._pending = 0
        self._oldest_age_s = 0.0
        self._breaker_state = "closed"
        self._remediation_pending = False
        self._chaos: tuple[str, str] | None = None  # (type, phase) the factory reports
        self._process = ProcessSampler()
        self._heartbeats: Callable[[], Mapping[str, float]] = dict

    def register_gauges(self, meter: Meter) -> None:
        for gauge in (
            *self._order_gauges(),
            *self._factory_gauges(),
            *self._liveness_gauges(),
            *self._process_gauges(),
        ):
            meter.create_observable_gauge(
                gauge.name,
                callbacks=[gauge.callback],
                unit=gauge.unit,
                description=gauge.description,
            )

    # -- state the gauges report -----------------------------------------------

    def set_pending(self, count: int, oldest_age_s: float) -> None:
        self._pending = count
        self._oldest_age_s = oldest_age_s

    def set_breaker_state(self, state: str) -> None:
        """The breaker's state; pybreaker's ``half-open`` is accepted for ``half_open``."""
        normalized = state.lower().replace("-", "_")
        if normalized not in BREAKER_STATES:
            raise ValueError(f"unknown breaker state {state!r}, expected one of {BREAKER_STATES}")
        self._breaker_state = normalized

    def set_remediation_pending(self, waiting: bool) -> None:
        self._remediation_pending = waiting

    def read_heartbeats(self, read: Callable[[], Mapping[str, float]]) -> None:
        """Where the heartbeat gauge reads its ages: the supervisor's kept timestamps."""
        self._heartbeats = read

    def set_chaos(self, chaos_type: str | None, phase: str | None) -> None:
        """The chaos the vendor record reports (``phase`` scheduled or running), or none."""
        self._chaos = None if chaos_type is None or phase is None else (chaos_type, phase)

    def user_seen(self, user_id: int) -> None:
        """A request carried this user's valid token."""
        with self._lock:
            self._users[user_id] = self._clock()
            self._users.move_to_end(user_id)
            self._prune_users()

    def _order_gauges(self) -> tuple[_Gauge, ...]:
        return (
            _Gauge(
                "pizza.orders.pending",
                "{order}",
                "Orders waiting for a pizza",
                reading(lambda: float(self._pending)),
            ),
            _Gauge(
                "pizza.orders.pending.oldest_age",
                "s",
                "Age of the oldest pending order",
                reading(lambda: self._oldest_age_s),
            ),
            _Gauge(
                "pizza.users.active",
                "{user}",
                "Users seen in the last 5 minutes (this process)",
                reading(self._active_users),
            ),
        )

    def _factory_gauges(self) -> tuple[_Gauge, ...]:
        return (
            _Gauge(
                "pizza.factory.breaker.state",
                "{state}",
                "1 for the breaker's current state",
                self._observe_breaker,
            ),
            _Gauge(
                "pizza.factory.remediation.pending",
                "{link}",
                "1 while a remediation link waits to be followed",
                reading(lambda: float(self._remediation_pending)),
            ),
            _Gauge(
                "pizza.factory.chaos",
                "{chaos}",
                "1 for the chaos the factory's vendor record reports, by type and phase",
                self._observe_chaos,
            ),
        )

    def _liveness_gauges(self) -> tuple[_Gauge, ...]:
        return (
            # Always 1, so that a panel can count instances; the rules read the
            # timestamp beside it.
            _Gauge("pizza.service.heartbeat", "{beat}", "Always 1", reading(lambda: 1.0)),
            _Gauge(
                "pizza.service.heartbeat.timestamp",
                "s",
                "Unix time of this reading: how recently this instance reported",
                reading(self._wall_clock),
            ),
            _Gauge(
                "pizza.task.heartbeat.age",
                "s",
                "Seconds since a background task last completed a cycle",
                self._observe_heartbeats,
            ),
        )

    def _process_gauges(self) -> tuple[_Gauge, ...]:
        return (
            _Gauge(
                "process.cpu.utilization",
                "%",
                "CPU used by this process (100 = one core)",
                reading(self._process.cpu_percent),
            ),
            _Gauge(
                "process.memory.usage",
                "By",
                "Resident memory of this process",
                reading(self._process.rss_bytes),
            ),
            _Gauge(
                "process.memory.utilization",
                "%",
                "Resident memory as a share of the machine's",
                reading(self._process.memory_percent),
            ),
        )

    # -- callbacks -------------------------------------------------------------

    def _prune_users(self) -> None:
        horizon = self._clock() - ACTIVE_USER_WINDOW_S
        while self._users and next(iter(self._users.values())) < horizon:
            self._users.popitem(last=False)

    def _active_users(self) -> float:
        with self._lock:
            self._prune_users()
            return float(len(self._users))

    def _observe_heartbeats(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(age, {"task": task}) for task, age in self._heartbeats().items()]

    def _observe_chaos(self, _options: CallbackOptions) -> Iterable[Observation]:
        current = self._chaos
        types = (
            CHAOS_TYPES
            if current is None or current[0] in CHAOS_TYPES
            else (
                *CHAOS_TYPES,
                current[0],
            )
        )
        return [
            Observation(int((t, p) == current), {"type": t, "phase": p})
            for t in types
            for p in CHAOS_PHASES
        ]

    def _observe_breaker(self, _options: CallbackOptions) -> Iterable[Observation]:
        current = self._breaker_state
        return [Observation(int(s == current), {"state": s}) for s in BREAKER_STATES]

"""Every instrument of telemetry.md's metric table, defined in one place.

Units decide the Prometheus names (telemetry.md): counters gain ``_total``, unit
``s`` gains ``_seconds``, annotation units in braces vanish. So the names on
``/metrics``, in Prometheus and in Grafana Cloud (Mimir) are the same, and the
alert rules in ``alerts/`` use them verbatim (``PROMETHEUS_NAMES`` lists them).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from clients.schemas import Outcome
from telemetry.process import ProcessSampler

# The throttle chaos takes 32 s and a factory call may run on for 60 s
# (FACTORY_CALL_MAX_S); 2 s is the slow-call threshold, 5 s the customer's wait.
CREATION_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0)
ACTIVE_USER_WINDOW_S = 300.0
BREAKER_STATES = ("closed", "open", "half_open", "forced_open", "forced_closed")
LOG_SEVERITIES = ("debug", "info", "warning", "error", "critical")
# The factory's chaos types (factory.md): each has a series from the start, 0 until reported.
CHAOS_TYPES = ("fail", "throttle", "badjwt")
CHAOS_PHASES = ("scheduled", "running")
# Remediation links followed (app/factory/links.py): every pair exists from the start, so
# the dashboard's panel shows 0 attempts rather than nothing when an operator looks.
REMEDIATION_MODES = ("auto", "manual")
REMEDIATION_RESULTS = ("resolved", "unresolved")
# What "Pay" pressed again was answered with (app/orders/placement.py): its twin, by the
# twin's status then.
TWIN_STATUSES = ("pending", "fulfilled", "failed")
# The sign-in limits (app/users/logins.py): per client address, per account from one address.
AUTH_LIMITS = ("client", "account")
# How recent an instance's heartbeat must be for the rules and panels to count it
# (alerts/pizza.rules.yaml, dashboards/jwt-pizza.json): two 60 s scrape or export
# intervals. Pushed (OTLP) series get no staleness marker, so a dead process's last
# values would otherwise count for Prometheus' 5-minute lookback after every restart.
HEARTBEAT_FRESH_S = 120
# The order-availability SLO (slo/slos.yaml): an accepted order counts as made when its
# pizza is stored within this many seconds of its acceptance, whether it was answered with
# the pizza or answered pending and made by the retry worker. Fifteen minutes: a customer
# told "pending" still gets a hot pizza, and a factory outage that is fixed by a click
# (the remediation link) is over well within it.
ORDER_MADE_WITHIN_S = 900.0
_IN_TIME = {"in_time": "true"}
_LATE = {"in_time": "false"}

# Exactly what the Python Prometheus exporter prints (checked by the tests).
PROMETHEUS_NAMES = {
    "pizza.creation.duration": "pizza_creation_duration_seconds",
    "pizza.sold": "pizza_sold_total",
    "pizza.revenue": "pizza_revenue_total",
    "pizza.creation.failures": "pizza_creation_failures_total",
    "pizza.orders.pending": "pizza_orders_pending",
    "pizza.orders.pending.oldest_age": "pizza_orders_pending_oldest_age_seconds",
    "pizza.orders.twins": "pizza_orders_twins_total",
    "pizza.orders.accepted": "pizza_orders_accepted_total",
    "pizza.orders.made": "pizza_orders_made_total",
    "pizza.factory.breaker.state": "pizza_factory_breaker_state",
    "pizza.factory.calls.refused": "pizza_factory_calls_refused_total",
    "pizza.factory.remediation.pending": "pizza_factory_remediation_pending",
    "pizza.factory.remediation.attempts": "pizza_factory_remediation_attempts_total",
    "pizza.factory.chaos": "pizza_factory_chaos",
    "pizza.auth.attempts": "pizza_auth_attempts_total",
    "pizza.auth.refused": "pizza_auth_refused_total",
    "pizza.auth.attacks": "pizza_auth_attacks_total",
    "pizza.users.active": "pizza_users_active",
    "pizza.log.records": "pizza_log_records_total",
    "pizza.service.heartbeat": "pizza_service_heartbeat",
    "pizza.service.heartbeat.timestamp": "pizza_service_heartbeat_timestamp_seconds",
    "pizza.task.heartbeat.age": "pizza_task_heartbeat_age_seconds",
    "pizza.tasks.crashed": "pizza_tasks_crashed_total",
    "process.cpu.utilization": "process_cpu_utilization_percent",
    "process.memory.usage": "process_memory_usage_bytes",
    "process.memory.utilization": "process_memory_utilization_percent",
}

_Callback = Callable[[CallbackOptions], Iterable[Observation]]


def _reading(read: Callable[[], float]) -> _Callback:
    def callback(_options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(read())]

    return callback


class PizzaMetrics:
    """The service's own instruments. Gauges read values the app keeps current.

    Callbacks run on the exporter's thread (and on a ``/metrics`` render), so they
    only read fields kept here: never a database query, never a lock held long.
    """

    def __init__(
        self,
        meter: Meter,
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

        self._creation = meter.create_histogram(
            "pizza.creation.duration",
            unit="s",
            description="Factory calls for pizzas, by outcome (resilience.md §1)",
            explicit_bucket_boundaries_advisory=CREATION_BUCKETS_S,
        )
        self._failures = meter.create_counter(
            "pizza.creation.failures", unit="{order}", description="Factory calls without success"
        )
        self._sold = meter.create_counter("pizza.sold", unit="{pizza}", description="Pizzas sold")
        # The SLO's events are counted on the order path, twice per order: plain integers
        # there (an SDK counter's add measured 5 to 8 us each), read by the exporter as
        # cumulative counters, as the gauges below read theirs.
        self._accepted = 0
        self._made_in_time = 0
        self._made_late = 0
        meter.create_observable_counter(
            "pizza.orders.accepted",
            callbacks=[_reading(lambda: float(self._accepted))],
            unit="{order}",
            description="Orders stored, to be made",
        )
        meter.create_observable_counter(
            "pizza.orders.made",
            callbacks=[self._observe_made],
            unit="{order}",
            description="Orders whose pizza was stored; in_time: within ORDER_MADE_WITHIN_S",
        )
        self._revenue = meter.create_counter(
            "pizza.revenue", unit="{BTC}", description="Revenue of pizzas sold"
        )
        self._twins = meter.create_counter(
            "pizza.orders.twins",
            unit="{order}",
            description='"Pay" pressed again, answered with the order it repeats, by its status',
        )
        self._refused = meter.create_counter(
            "pizza.factory.calls.refused", unit="{call}", description="Calls refused by the breaker"
        )
        self._remediation = meter.create_counter(
            "pizza.factory.remediation.attempts",
            unit="{attempt}",
            description="Remediation links followed, by mode and result",
        )
        self._auth = meter.create_counter(
            "pizza.auth.attempts",
            unit="{attempt}",
            description="Sign-in attempts whose password was checked, by result",
        )
        self._auth_refused = meter.create_counter(
            "pizza.auth.refused",
            unit="{attempt}",
            description="Sign-in attempts refused unchecked (429), by the limit that refused them",
        )
        self._auth_attacks = meter.create_counter(
            "pizza.auth.attacks",
            unit="{attack}",
            description="Accounts whose sign-in failed from LOGIN_ATTACK_SOURCES addresses"
            " in one window",
        )
        self._logs = meter.create_counter(
            "pizza.log.records", unit="{record}", description="Log records by severity"
        )
        self._crashed = meter.create_counter(
            "pizza.tasks.crashed",
            unit="{crash}",
            description="Background tasks that raised or returned and were restarted",
        )
        self._zero_series()

        gauges: tuple[tuple[str, str, str, _Callback], ...] = (
            (
                "pizza.orders.pending",
                "{order}",
                "Orders waiting for a pizza",
                _reading(lambda: float(self._pending)),
            ),
            (
                "pizza.orders.pending.oldest_age",
                "s",
                "Age of the oldest pending order",
                _reading(lambda: self._oldest_age_s),
            ),
            (
                "pizza.factory.breaker.state",
                "{state}",
                "1 for the breaker's current state",
                self._observe_breaker,
            ),
            (
                "pizza.factory.remediation.pending",
                "{link}",
                "1 while a remediation link waits to be followed",
                _reading(lambda: float(self._remediation_pending)),
            ),
            (
                "pizza.factory.chaos",
                "{chaos}",
                "1 for the chaos the factory's vendor record reports, by type and phase",
                self._observe_chaos,
            ),
            (
                "pizza.users.active",
                "{user}",
                "Users seen in the last 5 minutes (this process)",
                _reading(self._active_users),
            ),
            # telemetry.md's "always 1"; the rules read the timestamp beside it.
            ("pizza.service.heartbeat", "{beat}", "Always 1", _reading(lambda: 1.0)),
            (
                "pizza.service.heartbeat.timestamp",
                "s",
                "Unix time of this reading: how recently this instance reported",
                _reading(self._wall_clock),
            ),
            (
                "pizza.task.heartbeat.age",
                "s",
                "Seconds since a background task last completed a cycle",
                self._observe_heartbeats,
            ),
            (
                "process.cpu.utilization",
                "%",
                "CPU used by this process (100 = one core)",
                _reading(self._process.cpu_percent),
            ),
            (
                "process.memory.usage",
                "By",
                "Resident memory of this process",
                _reading(self._process.rss_bytes),
            ),
            (
                "process.memory.utilization",
                "%",
                "Resident memory as a share of the machine's",
                _reading(self._process.memory_percent),
            ),
        )
        for name, unit, description, callback in gauges:
            meter.create_observable_gauge(
                name, callbacks=[callback], unit=unit, description=description
            )

    def _zero_series(self) -> None:
        # A counter series that first appears at 1 loses that increment in
        # Prometheus' increase(); starting every known series at 0 keeps the first
        # failure, refusal or error log visible to the alert rules.
        for outcome in Outcome:
            if outcome is not Outcome.SUCCESS:
                self._failures.add(0, {"outcome": outcome.value})
        for counter in (self._sold, self._revenue, self._refused):
            counter.add(0)
        for result in ("success", "failure"):
            self._auth.add(0, {"result": result})
        for limit in AUTH_LIMITS:
            self._auth_refused.add(0, {"limit": limit})
        self._auth_attacks.add(0)
        for severity in LOG_SEVERITIES:
            self._logs.add(0, {"severity": severity})
        for mode in REMEDIATION_MODES:
            for result in REMEDIATION_RESULTS:
                self._remediation.add(0, {"mode": mode, "result": result})
        for status in TWIN_STATUSES:
            self._twins.add(0, {"status": status})

    # -- events --------------------------------------------------------------

    def creation(self, outcome: str, duration_s: float) -> None:
        """One factory call for a pizza, whatever its outcome (timeouts included)."""
        self._creation.record(duration_s, {"outcome": str(outcome)})

    def creation_failure(self, outcome: str) -> None:
        """A factory call that made no pizza (``outcome`` says why), or an order given up.

        The factory-failing alert divides these, plus refused calls, by the calls
        that ``creation`` records: a slow or chaotic pizza that was made is no failure.
        """
        self._failures.add(1, {"outcome": str(outcome)})

    def sold(self, pizzas: int, revenue: float) -> None:
        """An order fulfilled: its pizzas and what they cost."""
        self._sold.add(pizzas)
        self._revenue.add(revenue)

    def order_twin(self, status: str) -> None:
        """An order placed again without a key, answered with its twin (``status``: the
        twin's, pending, fulfilled or failed) instead of ordering a second pizza."""
        self._twins.add(1, {"status": str(status)})

    def order_accepted(self) -> None:
        """A new order stored (a repeated press or key is no new order): the SLO's total."""
        self._accepted += 1

    def order_made(self, waited_s: float) -> None:
        """An order's pizza stored, ``waited_s`` after the order was accepted; in time
        (the SLO's good events) when that is within ORDER_MADE_WITHIN_S."""
        if waited_s <= ORDER_MADE_WITHIN_S:
            self._made_in_time += 1
        else:
            self._made_late += 1

    def call_refused(self) -> None:
        """An order the open breaker kept from the factory."""
        self._refused.add(1)

    def remediation_attempt(self, mode: str, result: str) -> None:
        """A remediation link followed; ``mode`` is ``auto`` or ``manual``."""
        self._remediation.add(1, {"mode": mode, "result": result})

    def auth_attempt(self, success: bool) -> None:
        """A password checked (app/users/logins.py lets it through first)."""
        self._auth.add(1, {"result": "success" if success else "failure"})

    def auth_refused(self, limit: str) -> None:
        """A sign-in refused by a limit (one of AUTH_LIMITS) before its password was checked."""
        self._auth_refused.add(1, {"limit": limit})

    def auth_attacked(self) -> None:
        """One account's sign-in failed from LOGIN_ATTACK_SOURCES addresses in one window."""
        self._auth_attacks.add(1)

    def user_seen(self, user_id: int) -> None:
        """A request carried this user's valid token."""
        with self._lock:
            self._users[user_id] = self._clock()
            self._users.move_to_end(user_id)
            self._prune_users()

    def task_supervised(self, task: str) -> None:
        """A background task is supervised from now (app/supervisor.py registers each one):
        its crash counter starts at zero, so that its first crash shows in increase()."""
        self._crashed.add(0, {"task": task})

    def task_crashed(self, task: str) -> None:
        """A supervised task raised (or returned) and is being restarted."""
        self._crashed.add(1, {"task": task})

    def log_record(self, severity: str) -> None:
        self._logs.add(1, {"severity": severity.lower()})

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

    # -- callbacks -------------------------------------------------------------

    def _prune_users(self) -> None:
        horizon = self._clock() - ACTIVE_USER_WINDOW_S
        while self._users and next(iter(self._users.values())) < horizon:
            self._users.popitem(last=False)

    def _active_users(self) -> float:
        with self._lock:
            self._prune_users()
            return float(len(self._users))

    def _observe_made(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(self._made_in_time, _IN_TIME),
            Observation(self._made_late, _LATE),
        ]

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

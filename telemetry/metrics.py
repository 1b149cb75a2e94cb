"""Every instrument of the service's metric table (docs/telemetry.md), defined in one
place; their names and label values live in telemetry/metric_names.py."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from clients.schemas import Outcome
from telemetry.metric_gauges import GaugeReadings, reading
from telemetry.metric_names import (
    AUTH_LIMITS,
    CHAOS_TYPES,
    CREATION_BUCKETS_S,
    HEARTBEAT_FRESH_S,
    LOG_SEVERITIES,
    ORDER_MADE_WITHIN_S,
    PROMETHEUS_NAMES,
    REMEDIATION_MODES,
    REMEDIATION_RESULTS,
    TWIN_STATUSES,
)

# The service's modules and tests import the vocabulary from here too.
__all__ = [
    "CHAOS_TYPES",
    "CREATION_BUCKETS_S",
    "HEARTBEAT_FRESH_S",
    "ORDER_MADE_WITHIN_S",
    "PROMETHEUS_NAMES",
    "PizzaMetrics",
]

_IN_TIME = {"in_time": "true"}
_LATE = {"in_time": "false"}


class PizzaMetrics(GaugeReadings):
    """The service's own instruments: counters of the events it reports, and the gauges
    (telemetry/metric_gauges.py) that read values the app keeps current."""

    def __init__(
        self,
        meter: Meter,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(clock=clock, wall_clock=wall_clock)
        self._create_order_instruments(meter)
        self._create_slo_counters(meter)
        self._create_auth_and_task_instruments(meter)
        self._zero_series()
        self.register_gauges(meter)

    # -- instruments -----------------------------------------------------------

    def _create_order_instruments(self, meter: Meter) -> None:
        """The factory calls, what they sold, and what the breaker and links did."""
        self._creation = meter.create_histogram(
            "pizza.creation.duration",
            unit="s",
            description="Factory calls for pizzas, by outcome",
            explicit_bucket_boundaries_advisory=CREATION_BUCKETS_S,
        )
        self._failures = meter.create_counter(
            "pizza.creation.failures", unit="{order}", description="Factory calls without success"
        )
        self._sold = meter.create_counter("pizza.sold", unit="{pizza}", description="Pizzas sold")
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

    def _create_slo_counters(self, meter: Meter) -> None:
        """The SLO's events are counted on the order path, twice per order: plain integers
        there (an SDK counter's add measured 5 to 8 us each), read by the exporter as
        cumulative counters, as the gauges read theirs."""
        self._accepted = 0
        self._made_in_time = 0
        self._made_late = 0
        meter.create_observable_counter(
            "pizza.orders.accepted",
            callbacks=[reading(lambda: float(self._accepted))],
            unit="{order}",
            description="Orders stored, to be made",
        )
        meter.create_observable_counter(
            "pizza.orders.made",
            callbacks=[self._observe_made],
            unit="{order}",
            description="Orders whose pizza was stored; in_time: within ORDER_MADE_WITHIN_S",
        )

    def _create_auth_and_task_instruments(self, meter: Meter) -> None:
        """Sign-ins, log records and crashed background tasks."""
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

    def task_supervised(self, task: str) -> None:
        """A background task is supervised from now (app/supervisor.py registers each one):
        its crash counter starts at zero, so that its first crash shows in increase()."""
        self._crashed.add(0, {"task": task})

    def task_crashed(self, task: str) -> None:
        """A supervised task raised (or returned) and is being restarted."""
        self._crashed.add(1, {"task": task})

    def log_record(self, severity: str) -> None:
        self._logs.add(1, {"severity": severity.lower()})

    def _observe_made(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(self._made_in_time, _IN_TIME),
            Observation(self._made_late, _LATE),
        ]

"""PizzaMetrics on a real /metrics render: names, labels, gauges read from state."""

from __future__ import annotations

import re
import time

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from clients.schemas import Outcome
from telemetry.metrics import CREATION_BUCKETS_S, PROMETHEUS_NAMES, PizzaMetrics
from tests.telemetry.conftest import MakeTelemetry, record_one_of_each, sample_names, value


@pytest.fixture
def page(make_telemetry: MakeTelemetry) -> str:
    telemetry = make_telemetry()
    record_one_of_each(telemetry)
    return telemetry.render_prometheus()[0].decode()


def test_every_instrument_under_its_prometheus_name(page: str) -> None:
    names = sample_names(page.encode())
    for otel_name, prometheus_name in PROMETHEUS_NAMES.items():
        family = {prometheus_name, f"{prometheus_name}_count"}
        assert family & names, f"{otel_name} is not on /metrics as {prometheus_name}"


def test_values_and_labels(page: str) -> None:
    assert value(page, "pizza_creation_duration_seconds_count", outcome="success") == 1
    assert value(page, "pizza_creation_failures_total", outcome="unavailable") == 1
    assert value(page, "pizza_sold_total") == 2
    assert value(page, "pizza_orders_accepted_total") == 1
    assert value(page, "pizza_orders_made_total", in_time="true") == 1
    assert value(page, "pizza_orders_made_total", in_time="false") == 0
    assert value(page, "pizza_revenue_total") == pytest.approx(0.0084)
    assert value(page, "pizza_factory_calls_refused_total") == 1
    assert value(page, "pizza_orders_twins_total", status="fulfilled") == 1
    assert (
        value(page, "pizza_factory_remediation_attempts_total", mode="auto", result="resolved") == 1
    )
    assert value(page, "pizza_auth_attempts_total", result="success") == 1
    assert value(page, "pizza_auth_attempts_total", result="failure") == 1
    assert value(page, "pizza_auth_refused_total", limit="account") == 1
    assert value(page, "pizza_auth_refused_total", limit="client") == 0
    assert value(page, "pizza_auth_attacks_total") == 1
    assert value(page, "pizza_users_active") == 1
    assert value(page, "pizza_log_records_total", severity="error") == 1
    assert value(page, "pizza_orders_pending") == 3
    assert value(page, "pizza_orders_pending_oldest_age_seconds") == 42
    assert value(page, "pizza_factory_remediation_pending") == 1
    assert value(page, "pizza_service_heartbeat") == 1
    # A Unix timestamp, read at the render: how the rules tell a live instance.
    assert abs(value(page, "pizza_service_heartbeat_timestamp_seconds") - time.time()) < 60
    assert value(page, "process_memory_usage_bytes") > 1_000_000
    assert value(page, "process_cpu_utilization_percent") >= 0


def test_creation_buckets_reach_the_throttle_chaos(page: str) -> None:
    bounds = re.findall(r'pizza_creation_duration_seconds_bucket\{le="([^"]+)"', page)
    assert bounds == [str(b) for b in CREATION_BUCKETS_S] + ["+Inf"]
    assert CREATION_BUCKETS_S[-1] == 60.0 and 2.0 in CREATION_BUCKETS_S


def test_failure_counters_start_at_zero(make_telemetry: MakeTelemetry) -> None:
    """So that the first failure of a kind counts in Prometheus' increase()."""
    page = make_telemetry().render_prometheus()[0].decode()
    for outcome in Outcome:
        if outcome is not Outcome.SUCCESS:
            assert value(page, "pizza_creation_failures_total", outcome=outcome.value) == 0
    assert value(page, "pizza_factory_calls_refused_total") == 0
    for status in ("pending", "fulfilled", "failed"):
        assert value(page, "pizza_orders_twins_total", status=status) == 0
    assert value(page, "pizza_sold_total") == 0
    # The SLO's events too: its first order counts in increase().
    assert value(page, "pizza_orders_accepted_total") == 0
    assert value(page, "pizza_orders_made_total", in_time="true") == 0
    assert value(page, "pizza_log_records_total", severity="error") == 0
    # The remediation panel shows 0 attempts, not nothing, before the first link.
    for mode in ("auto", "manual"):
        for result in ("resolved", "unresolved"):
            assert (
                value(page, "pizza_factory_remediation_attempts_total", mode=mode, result=result)
                == 0
            )


def gauge(reader: InMemoryMetricReader, name: str) -> float:
    """The first data point of gauge ``name`` in a fresh collection."""
    data = reader.get_metrics_data()
    assert data is not None
    for metric in data.resource_metrics[0].scope_metrics[0].metrics:
        if metric.name == name:
            return float(metric.data.data_points[0].value)  # type: ignore[union-attr]
    raise AssertionError(f"{name} missing")


def test_heartbeat_is_the_time_of_each_reading() -> None:
    """Each reading (an export, a scrape) carries the wall-clock time it was made at."""
    now = [1_700_000_000.0]
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    PizzaMetrics(provider.get_meter("t"), wall_clock=lambda: now[0])

    try:
        assert gauge(reader, "pizza.service.heartbeat.timestamp") == 1_700_000_000.0
        now[0] += 15
        assert gauge(reader, "pizza.service.heartbeat.timestamp") == 1_700_000_015.0
    finally:
        provider.shutdown()


def test_outcome_enum_becomes_its_value(make_telemetry: MakeTelemetry) -> None:
    telemetry = make_telemetry()
    telemetry.metrics.creation(Outcome.BAD_JWT, 0.2)
    page = telemetry.render_prometheus()[0].decode()
    assert value(page, "pizza_creation_duration_seconds_count", outcome="bad_jwt") == 1


class TestBreakerState:
    def test_one_hot_over_the_five_states(self, make_telemetry: MakeTelemetry) -> None:
        telemetry = make_telemetry()
        telemetry.metrics.set_breaker_state("half-open")  # pybreaker's spelling
        page = telemetry.render_prometheus()[0].decode()
        states = dict(re.findall(r'pizza_factory_breaker_state\{.*state="(\w+)"\} (\S+)', page))
        assert states == {
            "closed": "0.0",
            "open": "0.0",
            "half_open": "1.0",
            "forced_open": "0.0",
            "forced_closed": "0.0",
        }

    def test_closed_until_told(self, make_telemetry: MakeTelemetry) -> None:
        page = make_telemetry().render_prometheus()[0].decode()
        assert value(page, "pizza_factory_breaker_state", state="closed") == 1

    def test_unknown_state_is_a_bug(self, make_telemetry: MakeTelemetry) -> None:
        with pytest.raises(ValueError, match="unknown breaker state"):
            make_telemetry().metrics.set_breaker_state("ajar")


def test_active_users_are_distinct_and_forgotten_after_five_minutes() -> None:
    now = [1000.0]
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    metrics = PizzaMetrics(provider.get_meter("t"), clock=lambda: now[0])

    def active() -> float:
        return gauge(reader, "pizza.users.active")

    try:
        metrics.user_seen(1)
        metrics.user_seen(2)
        metrics.user_seen(1)
        assert active() == 2
        now[0] += 200
        metrics.user_seen(2)
        now[0] += 150  # user 1 last seen 350 s ago, user 2 150 s ago
        assert active() == 1
        now[0] += 300
        assert active() == 0
    finally:
        provider.shutdown()

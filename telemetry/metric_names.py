"""The names and label values of the service's metrics, kept apart from the instruments
(telemetry/metrics.py) so that the alert rules' tests, the dashboards' tests and the
service's own modules read one vocabulary.

Units decide the Prometheus names: counters gain ``_total``, unit ``s`` gains
``_seconds``, annotation units in braces vanish. So the names on ``/metrics``, in
Prometheus and in Grafana Cloud (Mimir) are the same, and the alert rules in ``alerts/``
use them verbatim (``PROMETHEUS_NAMES`` lists them).
"""

from __future__ import annotations

# The throttle chaos takes 32 s and a factory call may run on for 60 s
# (FACTORY_CALL_MAX_S); 2 s is the slow-call threshold, 5 s the customer's wait.
CREATION_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0)
ACTIVE_USER_WINDOW_S = 300.0
BREAKER_STATES = ("closed", "open", "half_open", "forced_open", "forced_closed")
LOG_SEVERITIES = ("debug", "info", "warning", "error", "critical")
# The factory's chaos types: each has a series from the start, 0 until reported.
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

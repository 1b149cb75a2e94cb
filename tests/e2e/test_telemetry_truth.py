"""Telemetry that tells the truth across restarts, and never carries the database password.
Real `pizza serve` processes exporting over OTLP/HTTP to a receiver that
decodes protobuf, and the shipped rules evaluated by promtool on what was received.

Small real settings: metrics are exported every 0.5 s. On promtool's clock that
interval is 15 s, the service's default export interval (telemetry/setup.py): the
received timeline is stretched 30 times, heartbeat timestamps with it, so the shipped
rules' 120 s heartbeat window is checked as it runs in production without a test that
waits two real minutes.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pizza_tools.bench.procs import isolated_env
from tests.conftest import reset_pg_schema
from tests.e2e.conftest import Processes, wait_until
from tests.e2e.test_recovery import KEY, Shop, chaos, service_env, start_factory, start_service
from tests.telemetry.otlp import Received, export_env, otlp_receiver
from tests.telemetry.series import Clock, at, pushed, run_promtool_tests, scraped
from tests.utils.servers import free_port
from tests.utils.simulator import end_chaos_at

pytestmark = pytest.mark.slow

EXPORT_STEP_S = 0.5  # OTEL_METRIC_EXPORT_INTERVAL, real
VIRTUAL_INTERVAL_S = 15  # the production export interval it stands for
HEARTBEAT_WINDOW_S = 120  # the rules' freshness window (telemetry/metrics.py HEARTBEAT_FRESH_S)
BREAKER_OPEN = 'max(pizza_factory_breaker_state{state="open"})'
LIVE = "count(time() - pizza_service_heartbeat_timestamp_seconds < 120)"


@pytest.fixture
def receiver() -> Iterator[Received]:
    with otlp_receiver() as received:
        yield received


def _instance_ids(received: Received) -> list[str]:
    """service.instance.id of each process, in the order they first exported."""
    ids: list[str] = []
    for request in received.exports["/v1/metrics"]:
        for resource in request.resource_metrics:
            attrs = {a.key: a.value.string_value for a in resource.resource.attributes}
            if attrs["service.instance.id"] not in ids:
                ids.append(attrs["service.instance.id"])
    return ids


def _wait_exports(received: Received, count: int) -> None:
    seen = len(received.exports["/v1/metrics"])
    wait_until(
        lambda: len(received.exports["/v1/metrics"]) >= seen + count,
        timeout=30,
        what=f"{count} more metric exports",
    )


def test_a_restarted_instance_stops_counting_within_an_interval_and_the_window(
    processes: Processes, receiver: Received, tmp_path: Path
) -> None:
    factory = start_factory(processes)
    env = service_env(
        f"sqlite:///{tmp_path}/pizza.db",
        factory,
        OTEL_SERVICE_NAME="jwt-pizza",
        **export_env(receiver),
    )
    assert env["OTEL_METRIC_EXPORT_INTERVAL"] == str(int(EXPORT_STEP_S * 1000))
    first = start_service(processes, "service-1", env)
    started = time.time()
    shop = Shop(first)
    chaos(factory, "fail")
    for _ in range(3):  # BREAKER_FAIL_MAX: the breaker opens (BREAKER_RESET_S 600)
        shop.order(first)
    assert shop.breaker(first) == "open"
    # Open for over the breaker alert's `for: 1m` on promtool's clock (4 exports).
    _wait_exports(receiver, 8)

    processes.stop(processes.running[-1], signal.SIGTERM)  # a deploy
    stopped = time.time()
    end_chaos_at(factory)
    second = start_service(processes, "service-2", env)
    serving = time.time()
    assert shop.breaker(second) == "closed"
    # The new process runs past one interval plus the window after the restart, and
    # for two intervals after it first served (a slow start must not read as no heartbeat).
    clock = Clock(origin=started, step=EXPORT_STEP_S, interval_s=VIRTUAL_INTERVAL_S)
    live_at = clock.virtual(serving) + 2 * VIRTUAL_INTERVAL_S
    deadline = max(
        stopped + (VIRTUAL_INTERVAL_S + HEARTBEAT_WINDOW_S + 30) / clock.scale,
        serving + (2 * VIRTUAL_INTERVAL_S + 30) / clock.scale,
    )
    wait_until(lambda: time.time() > deadline, timeout=60, what="the new process to export")
    _wait_exports(receiver, 2)
    processes.stop(processes.running[-1])
    end_chaos_at(factory)

    assert not receiver.errors
    old, new = _instance_ids(receiver)[-2:]
    series = pushed(receiver.exports["/v1/metrics"])
    assert {old, new} <= series.instances()
    before = at(clock.virtual(stopped) - VIRTUAL_INTERVAL_S, VIRTUAL_INTERVAL_S)
    after = at(clock.virtual(stopped) + VIRTUAL_INTERVAL_S + HEARTBEAT_WINDOW_S, clock.interval_s)
    later = at(
        max(clock.virtual(stopped) + VIRTUAL_INTERVAL_S + HEARTBEAT_WINDOW_S, live_at),
        clock.interval_s,
    )
    breaker_alert = 'ALERTS{alertname="PizzaFactoryBreakerOpen",alertstate="firing"}'
    firing = [
        {"labels": breaker_alert.replace("}", ',job="jwt-pizza",severity="page"}'), "value": 1}
    ]
    run_promtool_tests(
        tmp_path,
        series,
        clock,
        [
            # Before the deploy: the old process's open breaker pages, one instance live.
            {"expr": breaker_alert, "eval_time": before, "exp_samples": firing},
            {"expr": LIVE, "eval_time": before, "exp_samples": [{"labels": "{}", "value": 1}]},
            # After one interval plus the window: its last sample is still there (pushed
            # series have no staleness marker)...
            {
                "expr": f'pizza_factory_breaker_state{{instance="{old}",state="open"}}',
                "eval_time": after,
                "exp_samples": [
                    {
                        "labels": f'pizza_factory_breaker_state{{instance="{old}",'
                        'job="jwt-pizza",state="open"}',
                        "value": 1,
                    }
                ],
            },
            {
                "expr": BREAKER_OPEN,
                "eval_time": after,
                "exp_samples": [{"labels": "{}", "value": 1}],
            },
            # ...but it no longer counts: no breaker page, one live instance, the new one.
            {"expr": breaker_alert, "eval_time": after, "exp_samples": []},
            {
                "expr": "count by (instance) (time() - pizza_service_heartbeat_timestamp_seconds"
                " < 120)",
                "eval_time": later,
                "exp_samples": [{"labels": f'{{instance="{new}"}}', "value": 1}],
            },
        ],
        "restart",
    )


def test_the_database_password_reaches_no_metric_export_or_log(
    processes: Processes, receiver: Received, pg_database: str, tmp_path: Path
) -> None:
    """Started with a PostgreSQL URL carrying a password (the machine's PostgreSQL trusts
    every password): /metrics, every OTLP export and the process's log never show it."""
    reset_pg_schema(pg_database)
    password = "s3cret-pw-" + "9c1e" * 4
    url = pg_database.replace("postgresql://postgres@", f"postgresql://postgres:{password}@", 1)
    assert password in url
    factory = start_factory(processes)
    env = {**service_env(url, factory, OTEL_SERVICE_NAME="jwt-pizza"), **export_env(receiver)}
    base = start_service(processes, "service", env)
    shop = Shop(base)
    shop.order(base)
    chaos(factory, "fail")
    shop.order(base)  # a failure: error logs, a failing span
    end_chaos_at(factory)
    scraped = httpx.get(f"{base}/metrics", timeout=10).text
    _wait_exports(receiver, 2)
    processes.stop(processes.running[-1])

    assert "db_client_connections_usage" in scraped  # the pool's series, named by its URL
    assert password not in scraped
    assert receiver.exports["/v1/traces"] and receiver.exports["/v1/logs"]
    assert password not in receiver.text()
    assert not any(password.encode() in body for body in receiver.bodies)
    log = processes.started[-1].log()
    assert "ready: database" in log
    assert password not in log


def test_the_bundled_simulator_exports_nothing_as_the_service(
    processes: Processes, receiver: Received, tmp_path: Path
) -> None:
    """`pizza serve` without FACTORY_URL: the simulator's records stay on stdout, named by
    their source, and no OTLP record or span under the service's name is the simulator's."""

    def build() -> tuple[list[str], dict[str, str], list[str]]:
        port, sim_port = free_port(), free_port()
        env = isolated_env(
            DATABASE_URL=f"sqlite:///{tmp_path}/pizza.db",
            JWT_SECRET="sim-jwt-secret-" + "q" * 32,
            FACTORY_SIM_PORT=str(sim_port),
            FACTORY_SIM_API_KEY=KEY,
            OTEL_SERVICE_NAME="jwt-pizza",
            **export_env(receiver),
        )
        return ["serve", "--port", str(port)], env, [f"http://127.0.0.1:{port}/readyz"]

    proc = processes.start_on_free_ports("service", build)
    _wait_exports(receiver, 1)
    processes.stop(proc)
    lines = [json.loads(line) for line in proc.log().splitlines() if line.startswith("{")]
    simulator = {line["message"] for line in lines if line.get("source") == "factory-simulator"}
    # Messages only the simulator wrote (both servers log "Application startup complete.").
    own = simulator - {line["message"] for line in lines if "source" not in line}
    assert any("listening on" in message for message in own), sorted(simulator)
    exported = {r.body.string_value for r in receiver.log_records}
    assert "JWT Pizza" in " ".join(exported)  # the service's own records are exported
    assert not own & exported, f"the simulator's records were exported: {own & exported}"


DASHBOARD = Path(__file__).resolve().parents[2] / "telemetry" / "dashboards" / "jwt-pizza.json"
# Panel queries that may rightly return nothing on a healthy, busy service: none today.
# (Every counter starts at 0 and every gauge is read from the start; a query added here
# must say why its series is absent.)
LEGITIMATELY_EMPTY: dict[str, str] = {}
SCRAPES = 14


def _panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (f"{panel['title']} [{target['refId']}]", target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def _as_grafana_runs_it(expr: str, job: str) -> str:
    # $__rate_interval: at least four scrape (or export) intervals of 15 s; 2m, as Grafana
    # gives it on a wider time range, leaves room for a late scrape on a busy machine.
    return expr.replace("$job", job).replace("$__rate_interval", "2m")


def test_every_dashboard_query_returns_data_on_both_paths(
    processes: Processes, receiver: Received, tmp_path: Path
) -> None:
    """A busy service, scraped on /metrics and exporting over OTLP at the same time: every
    panel's query, as Grafana sends it, returns data on what each backend would store."""
    factory = start_factory(processes)
    env = service_env(
        f"sqlite:///{tmp_path}/pizza.db",
        factory,
        OTEL_SERVICE_NAME="jwt-pizza",
        **export_env(receiver),
    )
    base = start_service(processes, "service", env)
    started = time.time()
    shop = Shop(base)
    pages: list[tuple[float, str]] = []
    for step in range(SCRAPES):
        shop.order(base)
        if step % 3 == 0:  # a failed sign-in now and then
            httpx.put(f"{base}/api/auth", json={"email": "d@jwt.com", "password": "wrong"})
        pages.append((time.time(), httpx.get(f"{base}/metrics", timeout=10).text))
        # Scraped at the export interval: one page per step of promtool's clock.
        time.sleep(max(0.0, started + (step + 1) * EXPORT_STEP_S - time.time()))
    processes.stop(processes.running[-1])

    assert not receiver.errors
    clock = Clock(origin=started, step=EXPORT_STEP_S, interval_s=VIRTUAL_INTERVAL_S)
    end = at(clock.virtual(pages[-1][0]) - VIRTUAL_INTERVAL_S, VIRTUAL_INTERVAL_S)
    host = base.removeprefix("http://")
    paths = {
        "scraped": scraped(pages, job="jwt-pizza", instance=host),
        "pushed": pushed(receiver.exports["/v1/metrics"]),
    }
    for path, series in paths.items():
        tests = [
            {
                "expr": f"clamp_max(count({_as_grafana_runs_it(expr, 'jwt-pizza')}), 1)",
                "eval_time": end,
                "exp_samples": [{"labels": "{}", "value": 1}],
            }
            for name, expr in _panel_queries()
            if name not in LEGITIMATELY_EMPTY
        ]
        assert len(tests) >= 20
        run_promtool_tests(tmp_path, series, clock, tests, f"dashboard-{path}")

"""The Grafana dashboard, its provisioning and the compose stack that loads them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.telemetry.promql import (
    metric_names,
    reads_gauges_of_live_instances_only,
    recorded_names,
    rule_metric_names,
)
from tests.telemetry.series import promtool

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "telemetry" / "dashboards" / "jwt-pizza.json"
# The course's panels plus breaker, remediation, pending orders and logs
# (docs/telemetry.md#dashboard).
REQUIRED_PANELS = {
    "Requests by method",
    "Active users",
    "Auth attempts per minute",
    "CPU and memory",
    "Pizzas sold per minute",
    "Creation failures by outcome (per minute)",
    "Revenue per minute",
    "Endpoint latency (p95)",
    "Pizza creation latency",
    "Breaker state",
    "Remediation: link waiting and attempts",
    "Pending orders and oldest age",
    "Log records by severity (per minute)",
    # The switch from made to pending, what customers wait, what fires, who is live.
    "Order answers by status code (per minute)",
    "Order route latency (p50, p99)",
    "Alerts",
    "Instances reporting",
    "Instances: seconds since last heartbeat",
    # The SLOs (telemetry/slo/slos.yaml): what is left of their budgets, how fast it goes.
    "Error budget remaining (30 days)",
    "SLO burn rate (1 h and 5 min)",
}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def targets(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for p in dashboard["panels"] for t in p.get("targets", [])]


def test_stable_uid_and_a_datasource_variable(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "jwt-pizza"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_the_panels(dashboard: dict[str, Any]) -> None:
    titles = {p["title"] for p in dashboard["panels"]}
    assert titles >= REQUIRED_PANELS
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_every_query_uses_the_variable(dashboard: dict[str, Any]) -> None:
    assert targets(dashboard)
    for target in targets(dashboard):
        assert target["datasource"]["uid"] == "${datasource}"
        assert 'job=~"$job"' in target["expr"]


def test_every_metric_queried_exists(dashboard: dict[str, Any], metrics_page: set[str]) -> None:
    known = rule_metric_names() | recorded_names() | metrics_page
    used = {name for target in targets(dashboard) for name in metric_names(target["expr"])}
    assert used, "no metric found in the dashboard's queries"
    assert not used - known, f"unknown metrics: {sorted(used - known)}"


def test_provisioning_points_where_compose_mounts(dashboard: dict[str, Any]) -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    mounts = dict(
        volume.rsplit(":", 1)[0].split(":", 1)
        for volume in compose["services"]["lgtm"]["volumes"]
        if volume.startswith("./")
    )
    for source in mounts:
        assert (ROOT / source).exists(), source
    provider = yaml.safe_load((ROOT / "telemetry/provisioning/dashboards.yaml").read_text())
    assert mounts["./telemetry/dashboards"] == provider["providers"][0]["options"]["path"]
    prometheus = yaml.safe_load((ROOT / "telemetry/provisioning/prometheus.yaml").read_text())
    [rule_glob] = prometheus["rule_files"]
    assert rule_glob == mounts["./telemetry/alerts"] + "/*.rules.yaml"


def test_compose_stack() -> None:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    assert {"pizza", "factory", "postgres", "redis", "lgtm"} <= set(services)
    pizza = services["pizza"]
    assert pizza["command"][:2] == ["pizza", "serve"] and "0.0.0.0" in pizza["command"]
    assert pizza["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://lgtm:4318"
    assert pizza["environment"]["FACTORY_URL"] == "http://factory:3100"
    assert services["factory"]["command"][:2] == ["pizza", "factory-sim"]
    assert "3001:3000" in services["lgtm"]["ports"]


def test_gauge_panels_count_live_instances_only(dashboard: dict[str, Any]) -> None:
    for target in targets(dashboard):
        assert reads_gauges_of_live_instances_only(target["expr"]), target["expr"]


def test_the_instances_panel_counts_fresh_heartbeats(dashboard: dict[str, Any]) -> None:
    [panel] = [p for p in dashboard["panels"] if p["title"] == "Instances reporting"]
    [target] = panel["targets"]
    assert "time() - pizza_service_heartbeat_timestamp_seconds" in target["expr"]
    assert "< 120" in target["expr"]


def test_a_link_to_the_factory_status_page(dashboard: dict[str, Any]) -> None:
    [link] = [link for link in dashboard["links"] if link["title"] == "Factory status"]
    assert link["url"] == "${service_url}/factory/status"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["service_url"]["type"] == "textbox"


def test_the_budget_panel_shows_each_slos_recorded_budget(dashboard: dict[str, Any]) -> None:
    [panel] = [p for p in dashboard["panels"] if p["title"] == "Error budget remaining (30 days)"]
    [target] = panel["targets"]
    assert "slo:error_budget_remaining:ratio" in target["expr"]
    assert "by (slo)" in target["expr"] and target["legendFormat"] == "{{slo}}"
    assert panel["fieldConfig"]["defaults"]["unit"] == "percentunit"


def test_the_alert_list_shows_the_pizza_rules(dashboard: dict[str, Any]) -> None:
    [panel] = [p for p in dashboard["panels"] if p["type"] == "alertlist"]
    assert panel["options"]["alertName"] == "Pizza"
    assert panel["options"]["stateFilter"]["firing"] is True


@pytest.mark.slow  # runs promtool, a process of its own
def test_the_scrape_config_loads_in_debians_prometheus() -> None:
    """prometheus.yaml needs Prometheus 3 (it says so); prometheus-scrape.yaml is for any."""
    config = ROOT / "telemetry/provisioning/prometheus-scrape.yaml"
    done = subprocess.run(
        [promtool(), "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Prometheus 3" in (ROOT / "telemetry/provisioning/prometheus.yaml").read_text()

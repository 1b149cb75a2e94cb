"""The alert rules: valid, unit-tested with promtool, and written with the names
that /metrics really shows."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from telemetry.metrics import HEARTBEAT_FRESH_S
from tests.telemetry.promql import (
    ALERTS,
    LIVE_JOIN,
    RULES,
    reads_gauges_of_live_instances_only,
    rule_metric_names,
    rules,
)

RULE_TESTS = sorted((ALERTS / "tests").glob("*.yaml"))
# telemetry.md's list, by the names the rules use.
REQUIRED = {
    "PizzaFactoryFailing",
    "PizzaFactoryBreakerOpen",
    "PizzaRemediationLinkWaiting",
    "PizzaCreationLatencyHigh",
    "PizzaSalesStopped",
    "PizzaHeartbeatAbsent",
    "PizzaCreationLatencyAbsent",
    "PizzaErrorLogs",
    "PizzaPendingOrdersGrowing",
    "PizzaPendingOrderTooOld",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("promtool is missing: apt-get install prometheus (CI must run these tests)")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


def run(promtool: str, *args: str) -> None:
    done = subprocess.run(
        [promtool, *args], capture_output=True, text=True, cwd=ALERTS / "tests", timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_check_rules(promtool: str) -> None:
    run(promtool, "check", "rules", str(RULES))


def test_promtool_unit_tests(promtool: str) -> None:
    assert RULE_TESTS
    run(promtool, "test", "rules", *(str(path) for path in RULE_TESTS))


def test_the_rules_telemetry_md_asks_for() -> None:
    assert {rule["alert"] for rule in rules()} >= REQUIRED


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_labels_and_annotations(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"page", "ticket"}
    assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
    assert "/factory/status" in rule["annotations"]["runbook_url"]


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_every_rule_has_a_test_that_makes_it_fire(rule: dict[str, Any]) -> None:
    firing = f'ALERTS{{alertname="{rule["alert"]}",alertstate="firing"}}'
    for path in RULE_TESTS:
        for group in yaml.safe_load(path.read_text())["tests"]:
            for case in group.get("promql_expr_test", []):
                if case["expr"] == firing and case["exp_samples"]:
                    return
    pytest.fail(f"no promtool test expects {rule['alert']} to fire")


def test_every_metric_a_rule_uses_is_on_metrics(metrics_page: set[str]) -> None:
    missing = rule_metric_names() - metrics_page
    assert not missing, f"rules use names /metrics does not show: {sorted(missing)}"


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_gauges_count_live_instances_only(rule: dict[str, Any]) -> None:
    """Across restarts and replicas (restarts.test.yaml shows it on series)."""
    assert reads_gauges_of_live_instances_only(rule["expr"]), rule["expr"]


def test_the_rules_window_is_the_services() -> None:
    assert f"< {HEARTBEAT_FRESH_S})" in LIVE_JOIN

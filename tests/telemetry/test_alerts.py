"""The alert rules: valid, unit-tested with promtool, written with the names that
/metrics really shows, each with a runbook in the repository."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from telemetry.metrics import HEARTBEAT_FRESH_S
from tests.telemetry.promql import (
    ALERTS,
    LIVE_JOIN,
    RULE_FILES,
    reads_gauges_of_live_instances_only,
    rule_metric_names,
    rules,
)
from tests.utils.tools import debian_tool

ROOT = ALERTS.parents[1]
RULE_TESTS = sorted((ALERTS / "tests").glob("*.yaml"))
# docs/telemetry.md#alerts, by the names the rules use: the causes that say what to do, the
# symptoms Alertmanager holds back while a cause fires, and the SLOs' burn rates.
REQUIRED = {
    "PizzaFactoryChaos",
    "PizzaRemediationLinkWaiting",
    "PizzaFactoryUnauthorized",
    "PizzaHeartbeatAbsent",
    "PizzaCreationLatencyAbsent",
    "PizzaTaskHeartbeatStale",
    "PizzaTaskCrashed",
    "PizzaFactoryBreakerOpen",
    "PizzaSalesStopped",
    "PizzaErrorLogs",
    "PizzaOrderAvailabilityFastBurn",
    "PizzaOrderAvailabilitySlowBurn",
    "PizzaOrderLatencyFastBurn",
    "PizzaOrderLatencySlowBurn",
}
# Threshold rules the burn-rate alerts replaced: nothing may name them any more.
RETIRED = {
    "PizzaFactoryFailing",
    "PizzaCreationLatencyHigh",
    "PizzaPendingOrdersGrowing",
    "PizzaPendingOrderTooOld",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    return debian_tool("promtool", "prometheus")


def run(promtool: str, *args: str) -> None:
    done = subprocess.run(
        [promtool, *args], capture_output=True, text=True, cwd=ALERTS / "tests", timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow  # runs promtool, a process of its own
def test_promtool_check_rules(promtool: str) -> None:
    run(promtool, "check", "rules", *(str(path) for path in RULE_FILES))


@pytest.mark.slow  # runs promtool, a process of its own
def test_promtool_unit_tests(promtool: str) -> None:
    assert RULE_TESTS
    run(promtool, "test", "rules", *(str(path) for path in RULE_TESTS))


def test_the_rules_telemetry_md_asks_for() -> None:
    names = [rule["alert"] for rule in rules()]
    assert set(names) == REQUIRED
    assert len(names) == len(set(names))


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_labels_and_annotations(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"page", "ticket"}
    assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_every_alert_has_a_runbook_that_names_it(rule: dict[str, Any]) -> None:
    """runbook_url is a path in this repository (docs/runbooks/README.md says why)."""
    url = rule["annotations"]["runbook_url"]
    assert url.startswith("docs/runbooks/") and url.endswith(".md"), url
    page = ROOT / url
    assert page.is_file(), f"{rule['alert']}: {url} does not exist"
    text = page.read_text(encoding="utf-8")
    assert rule["alert"] in text, f"{url} never names {rule['alert']}"
    for section in ("What it means", "First look", "Action", "Verify", "Escalate"):
        assert f"## {section}" in text, f"{url} has no '## {section}' section"


def test_no_retired_alert_is_named_anywhere() -> None:
    """The rules, their tests, the drill, the docs and the dashboard name only live alerts."""
    places = [
        *ALERTS.rglob("*.yaml"),
        *(ROOT / "pizza_tools").rglob("*.py"),
        *(ROOT / "telemetry").rglob("*.json"),
        *(ROOT / "telemetry" / "alertmanager").glob("*.yml"),
        *(ROOT / "docs" / "runbooks").glob("*.md"),
        *(ROOT / "docs").glob("*.md"),
        ROOT / "README.md",
    ]
    named = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in places
        for name in RETIRED
        if name in path.read_text(encoding="utf-8")
    }
    assert not named, sorted(named)


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

"""The shipped Alertmanager configuration: valid for amtool, every alert routed by its
severity, grouped by job, resolved notifications sent, and the inhibition naming real
alerts: every symptom held back by the causes, no cause ever held back.
tests/e2e/test_paging.py runs it in a real Alertmanager."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.telemetry.promql import RULES, SLO_RULES, rules
from tests.utils.tools import debian_tool

CONFIG = Path(__file__).resolve().parents[2] / "telemetry" / "alertmanager" / "alertmanager.yml"
# The causes that explain an outage and say what to do: they hold the symptoms back.
INHIBITING_CAUSES = {"PizzaFactoryChaos", "PizzaRemediationLinkWaiting", "PizzaFactoryUnauthorized"}


@pytest.fixture(scope="module")
def amtool() -> str:
    return debian_tool("amtool", "prometheus-alertmanager")


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    return loaded


def amtool_run(amtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([amtool, *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.slow  # runs amtool, a process of its own
def test_amtool_check_config(amtool: str) -> None:
    done = amtool_run(amtool, "check-config", str(CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow  # runs amtool, a process of its own, once per alert
@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_every_alert_goes_to_the_receiver_of_its_severity(
    amtool: str, rule: dict[str, Any]
) -> None:
    severity = rule["labels"]["severity"]
    labels = [f"alertname={rule['alert']}", "job=jwt-pizza", f"severity={severity}"]
    done = amtool_run(
        amtool, "config", "routes", "test", f"--config.file={CONFIG}",
        f"--verify.receivers={severity}", *labels,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_one_notification_per_job_and_resolved_ones_too(config: dict[str, Any]) -> None:
    assert config["route"]["group_by"] == ["job"]
    for route in config["route"]["routes"]:
        assert "group_by" not in route  # every route groups as the root does
    webhooks = [w for r in config["receivers"] for w in r["webhook_configs"]]
    assert webhooks and all(w["send_resolved"] is True for w in webhooks)


def _names(matchers: list[str]) -> set[str]:
    """The alert names an alertname matcher selects, among the shipped alerts."""
    alerts = {rule["alert"] for rule in rules()}
    for matcher in matchers:
        found = re.fullmatch(r'alertname(=~|=)"([^"]+)"', matcher)
        if found:
            op, value = found.groups()
            return {a for a in alerts if (re.fullmatch(value, a) if op == "=~" else a == value)}
    raise AssertionError(f"no alertname matcher in {matchers}")


def _group(path: Path, name: str) -> set[str]:
    groups = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    [group] = [g for g in groups if g["name"] == name]
    return {rule["alert"] for rule in group["rules"]}


def test_the_causes_hold_every_symptom_back_for_the_same_job(config: dict[str, Any]) -> None:
    symptoms = _group(RULES, "jwt-pizza-symptoms") | _group(SLO_RULES, "jwt-pizza-slo-alerts")
    causes = _group(RULES, "jwt-pizza-causes")
    sources: set[str] = set()
    for rule in config["inhibit_rules"]:
        assert rule["equal"] == ["job"]
        source, target = _names(rule["source_matchers"]), _names(rule["target_matchers"])
        assert source and source <= causes
        assert target == symptoms, f"held back: {sorted(target)}, symptoms: {sorted(symptoms)}"
        sources |= source
    assert sources == INHIBITING_CAUSES
    # A chaos only announced for tomorrow does not hold today's symptoms back.
    [chaos] = [r for r in config["inhibit_rules"] if "PizzaFactoryChaos" in str(r)]
    assert 'phase="running"' in chaos["source_matchers"]

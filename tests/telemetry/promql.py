"""The rule files (the hand-written alerts and the SLO rules generated from
telemetry/slo/slos.yaml), and the metric names in a PromQL expression (enough for the
rules and the dashboard)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ALERTS = Path(__file__).resolve().parents[2] / "telemetry" / "alerts"
RULES = ALERTS / "pizza.rules.yaml"
SLO_RULES = ALERTS / "slo.rules.yaml"
RULE_FILES = (RULES, SLO_RULES)

_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
}
_NOISE = (
    re.compile(r'"(?:[^"\\]|\\.)*"'),  # strings (label values)
    re.compile(r"\{[^}]*\}"),  # label matchers
    re.compile(r"\[[^\]]*\]"),  # ranges and subqueries
    re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"),
)
_IDENTIFIER = re.compile(r"(?<![\w.$:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    for pattern in _NOISE:
        expr = pattern.sub(" ", expr)
    names = {m.group(1) for m in _IDENTIFIER.finditer(expr)}
    return {n for n in names if n.lower() not in _KEYWORDS}


# Gauges: a dead instance's last value must not count (pushed series get no staleness
# marker), so every rule and panel reading one joins it with a fresh heartbeat.
GAUGES = {
    "pizza_factory_breaker_state",
    "pizza_factory_remediation_pending",
    "pizza_factory_chaos",
    "pizza_orders_pending",
    "pizza_orders_pending_oldest_age_seconds",
    "pizza_task_heartbeat_age_seconds",
    "pizza_users_active",
    "process_cpu_utilization_percent",
    "process_memory_utilization_percent",
}
LIVE_JOIN = "and on (job, instance) (time() - pizza_service_heartbeat_timestamp_seconds < 120)"


def reads_gauges_of_live_instances_only(expr: str) -> bool:
    """Every gauge selector in ``expr`` is followed by the live-instance join."""
    flat = " ".join(expr.split())
    gauges = metric_names(flat) & GAUGES
    return not gauges or flat.count(LIVE_JOIN) >= sum(
        len(re.findall(rf"\b{g}\b(?!_)", flat)) for g in gauges
    )


def all_rules() -> list[dict[str, Any]]:
    """Every rule of every shipped rule file: alerts and recordings."""
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def rules() -> list[dict[str, Any]]:
    """The alerting rules."""
    return [rule for rule in all_rules() if "alert" in rule]


def recorded_names() -> set[str]:
    """The series the recording rules write (slo:...)."""
    return {rule["record"] for rule in all_rules() if "record" in rule}


def rule_metric_names() -> set[str]:
    """The service's metrics the rules read (not the series other rules record)."""
    used = {name for rule in all_rules() for name in metric_names(rule["expr"])}
    return used - recorded_names()

"""The alert rules, and the metric names in a PromQL expression (enough for the
rules and the dashboard)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ALERTS = Path(__file__).resolve().parents[2] / "telemetry" / "alerts"
RULES = ALERTS / "pizza.rules.yaml"

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


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def rule_metric_names() -> set[str]:
    return {name for rule in rules() for name in metric_names(rule["expr"])}

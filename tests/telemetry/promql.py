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


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def rule_metric_names() -> set[str]:
    return {name for rule in rules() for name in metric_names(rule["expr"])}

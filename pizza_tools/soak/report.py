"""The soak's report: every accepted order read back, answers per fault window, recovery,
memory. `checks` says which of the issue's promises held."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from pizza_tools.soak.faults import Window
from pizza_tools.soak.traffic import Answer

MEMORY_GROWTH_MAX = 0.10


@dataclass(frozen=True)
class StoredOrder:
    id: int
    status: str
    failure: str | None
    reason: str | None


def statuses(answers: list[Answer]) -> dict[str, int]:
    counts = Counter(str(a.status) for a in answers)
    return dict(sorted(counts.items()))


def window_report(window: Window, answers: list[Answer], origin: float) -> dict[str, Any]:
    inside = [a for a in answers if window.start <= a.at <= window.end]
    made = [
        a for a in answers if a.at > window.end and a.kind.startswith("order") and a.status == 200
    ]
    errors = [a for a in inside if a.status >= 500 or a.status == 0]
    recovery = round(made[0].at - window.end, 2) if made else None
    return {
        "kind": window.kind,
        "target": window.target,
        "start_s": round(window.start - origin, 2),
        "duration_s": round(window.end - window.start, 2),
        "answers": statuses(inside),
        "errors": len(errors),  # 5xx and no answer, inside the window
        "error_span_s": round(errors[-1].at - errors[0].at, 2) if errors else 0.0,
        "recovery_s": recovery,  # from the fault's end to the next pizza made
    }


def outside_errors(answers: list[Answer], windows: list[Window], settle_s: float) -> dict[str, int]:
    """5xx answers outside every fault window (+ ``settle_s`` after it): each a finding.
    A 503 answering a pending order is only counted when no fault was in force."""

    def covered(at: float) -> bool:
        return any(w.start <= at <= w.end + settle_s for w in windows)

    return statuses(
        [a for a in answers if (a.status >= 500 or a.status == 0) and not covered(a.at)]
    )


def orders_report(
    accepted: set[int], stored: dict[int, StoredOrder], pizzas: dict[str, int]
) -> dict[str, Any]:
    mine = [stored[i] for i in sorted(accepted) if i in stored]
    by_status = Counter(o.status for o in mine)
    failed = Counter(f"{o.failure}: {o.reason}" for o in mine if o.status == "failed")
    fulfilled = [o.id for o in mine if o.status == "fulfilled"]
    not_one = {str(i): pizzas.get(str(i), 0) for i in fulfilled if pizzas.get(str(i), 0) != 1}
    failed_made = {
        str(o.id): pizzas[str(o.id)] for o in mine if o.status == "failed" and pizzas.get(str(o.id))
    }
    return {
        "accepted": len(accepted),
        "fulfilled": by_status["fulfilled"],
        "pending": by_status["pending"],
        "failed": by_status["failed"],
        "failed_reasons": dict(failed),
        "lost": len(accepted - stored.keys()),
        "stored_not_acknowledged": len(stored.keys() - accepted),
        "fulfilled_not_one_pizza": not_one,
        "failed_with_pizza": failed_made,
    }


def memory_report(
    start: dict[str, int], end: dict[str, int], restarted: set[str]
) -> dict[str, Any]:
    replicas = {}
    for name in sorted(start):
        growth = (end[name] - start[name]) / start[name] if start[name] and name in end else None
        replicas[name] = {
            "rss_start_mb": round(start[name] / 2**20, 1),
            "rss_end_mb": round(end.get(name, 0) / 2**20, 1),
            "growth": None if name in restarted or growth is None else round(growth, 4),
            "restarted": name in restarted,
        }
    growths = [r["growth"] for r in replicas.values() if r["growth"] is not None]
    return {"replicas": replicas, "max_growth": max(growths) if growths else None}


def checks(
    orders: dict[str, Any], memory: dict[str, Any], answers: dict[str, int]
) -> dict[str, bool]:
    """``answers``: the count of each status the traffic got (`statuses`)."""
    growth = memory["max_growth"]
    return {
        "lost_0": orders["lost"] == 0,
        "one_pizza_per_fulfilled_order": not orders["fulfilled_not_one_pizza"],
        "no_pizza_for_failed_orders": not orders["failed_with_pizza"],
        "memory_growth_under_10_percent": growth is not None and growth < MEMORY_GROWTH_MAX,
        # A fault outside the service (a database or Redis restart, a replica gone) is a
        # 503 with Retry-After or a 502 from nginx, never the service's internal error.
        "no_500": not answers.get("500"),
    }

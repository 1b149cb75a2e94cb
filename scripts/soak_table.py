"""The figures of a `pizza soak` report in docs/operations.md (Soak), from the committed JSON:

python scripts/soak_table.py docs/soak/soak-30min.json
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any


def _answers(answers: dict[str, int]) -> str:
    return ", ".join(f"{status}: {count}" for status, count in sorted(answers.items()))


def render(report: dict[str, Any]) -> str:
    orders, memory, checks = report["orders"], report["memory"], report["checks"]
    never = [r for r in memory["replicas"].values() if not r["restarted"]]
    kept = never[0] if never else None
    lines = [
        f"{report['minutes']:g} minutes, {report['replicas']} replicas, seed {report['seed']}, "
        f"{len(report['faults'])} faults, {report['requests']} requests: "
        f"{orders['accepted']} orders accepted, {orders['fulfilled']} fulfilled, "
        f"{orders['pending']} pending, {orders['failed']} failed, **lost {orders['lost']}**; "
        f"orders not made exactly once: {len(orders['fulfilled_not_one_pizza'])}; "
        f"answers {_answers(report['answers'])}; 5xx outside a fault window: "
        f"{sum(report['errors_outside_fault_windows'].values()) or 0}.",
    ]
    if kept is not None:
        lines.append(
            f"The never-restarted replica's RSS: {kept['rss_start_mb']} MB after warm-up, "
            f"{kept['rss_end_mb']} MB at the end (**{100 * kept['growth']:.1f} %**)."
        )
    lines.append(
        "Checks: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in checks.items())
    )
    times: Counter[str] = Counter()
    answers: dict[str, Counter[str]] = defaultdict(Counter)
    slowest: dict[str, float] = defaultdict(float)
    for fault in report["faults"]:
        kind = fault["kind"]
        times[kind] += 1
        answers[kind].update(fault["answers"])
        slowest[kind] = max(slowest[kind], fault["recovery_s"] or 0.0)
    lines += ["", "| fault | times | answers inside its windows | slowest recovery (s) |"]
    lines.append("|---|---|---|---|")
    for kind, count in times.items():
        lines.append(f"| `{kind}` | {count} | {_answers(answers[kind])} | {slowest[kind]:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))))

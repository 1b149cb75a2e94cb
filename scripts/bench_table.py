"""The README's and docs/benchmarks' table, from the committed `pizza bench` reports:

cd docs/benchmarks && python ../../scripts/bench_table.py bench-*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pizza_tools.bench.report import checks

ROWS = (
    ("factory_alone_per_s", ""),
    ("service_orders_per_s", ""),
    ("ratio_to_factory", "ratio_to_factory"),
    ("order_p50_ms", ""),
    ("order_p99_ms", ""),
    ("service_cpu_ms_per_order", "service_cpu_ms_per_order"),
    ("factory_cpu_ms_per_pizza", ""),
    ("client_cpu_ms_per_order", ""),
    ("breaker_open_p99_ms", "breaker_open_p99_ms"),
    ("menu_cpu_ms_per_read", "menu_cpu_ms_per_read"),
    ("idle_cpu_ms_per_s", "idle_cpu_ms_per_s"),
    ("telemetry_ratio", "telemetry_ratio"),
    ("redis_breaker_ratio", "redis_breaker_ratio"),
    ("drain_orders_per_s", "drain_orders_per_s"),
    ("rss_mb", ""),
    ("errors", "errors"),
)


def _cell(report: dict[str, Any], key: str, check_key: str) -> str:
    value = report[key]
    text = f"{value:,.3f}" if isinstance(value, float) and abs(value) < 10 else f"{value:,}"
    if check_key:
        judged = {c.key: c for c in checks(report)}[check_key]
        text += " met" if judged.met else " **missed**"
    return text


def table(reports: list[dict[str, Any]]) -> str:
    names = [r["machine"]["database"].split()[0] for r in reports]
    judged = [{c.key: c for c in checks(r)} for r in reports]
    lines = [
        "| key | target | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(reports),
    ]
    for key, check_key in ROWS:
        target = judged[0][check_key].target if check_key else ""
        cells = " | ".join(_cell(r, key, check_key) for r in reports)
        lines.append(f"| `{key}` | {target} | {cells} |")
    for key in ("scaling p99/p50 at 8, 32", "scaling 32->128", "pending_under_load"):
        cells = " | ".join(
            ("met: " if j[key].met else "**missed**: ") + j[key].target for j in judged
        )
        lines.append(f"| {key} | | {cells} |")
    for name in ("scaling", "processes"):
        cells = " | ".join(
            ", ".join(
                f"{c}: {f['orders_per_s']:.0f}/s p50 {f['p50_ms']:.0f} p99 {f['p99_ms']:.0f} ms"
                for c, f in r[name].items()
            )
            for r in reports
        )
        lines.append(f"| `{name}` | | {cells} |")
    return "\n".join(lines)


def main() -> None:
    reports = [json.loads(Path(p).read_text(encoding="utf-8")) for p in sys.argv[1:]]
    print(table(reports))


if __name__ == "__main__":
    main()

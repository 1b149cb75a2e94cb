"""The figures of the service's runs against the real factory (tests/real_factory/
test_service.py), as a Markdown table:

PIZZA_REAL_FACTORY_REPORT=real-factory.json python -m pytest tests/real_factory/test_service.py
python scripts/real_factory_table.py real-factory.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

MODES = ("fail", "badjwt", "throttle")
COLUMNS = (
    ("first_pending_s", "first pending answer"),
    ("chaos_shown_s", "chaos on /factory/status"),
    ("link_shown_s", "link on /factory/status"),
    ("fixed_s", "fixed"),
    ("all_made_s", "all orders made"),
)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render(runs: list[dict[str, Any]]) -> str:
    order = {mode: n for n, mode in enumerate(MODES)}
    runs = sorted(runs, key=lambda r: (order.get(r["mode"], 99), not r["auto_remediation"]))
    head = ["mode", "remediation", *(name for _, name in COLUMNS), "made", "lost"]
    lines = [
        "Seconds from the chaos' start (the real factory's `startDate`):",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for run in runs:
        who = "auto" if run["auto_remediation"] else "operator"
        cells = [f"`{run['mode']}`", who, *(_seconds(run[key]) for key, _ in COLUMNS)]
        cells += [f"{run['made']} of {run['accepted']}", str(run["lost"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    print(render(json.loads(Path(argv[1]).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

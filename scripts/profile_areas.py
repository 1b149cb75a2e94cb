"""Where a profiled service's CPU goes, by area, from py-spy's collapsed stacks:

pizza bench --profile order.txt [--route order|menu] [--telemetry]
python scripts/profile_areas.py order.txt [--top N]

Each sample is given to the innermost frame that belongs to an area (the first pattern it
matches, in the order below), so a library called from our code counts as the library;
`--top N` also lists the N frames where most samples stop.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

AREAS = (
    ("logging and redaction", r"/logging/|telemetry/logging\.py|telemetry/redaction\.py"),
    ("telemetry export", r"opentelemetry/exporter|opentelemetry/proto|google/protobuf"),
    ("OpenTelemetry SDK", r"opentelemetry/"),
    ("telemetry (ours)", r"/telemetry/"),
    ("pizza JWT and token checks", r"/jwt/|cryptography|clients/jwks\.py|app/security\.py"),
    ("factory call", r"httpx|httpcore|aiohttp|clients/transport\.py|clients/client\.py"),
    ("database", r"asyncpg|sqlite3|aiosqlite|sqlalchemy|app/sql/"),
    ("FastAPI, pydantic, Starlette", r"fastapi|starlette|pydantic"),
    ("uvicorn, event loop", r"uvicorn|httptools|uvloop|asyncio/"),
    ("our code", r"/app/|/clients/"),
)
_COMPILED = tuple((name, re.compile(pattern)) for name, pattern in AREAS)


def area_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in _COMPILED:
            if pattern.search(frame):
                return name
    return "other"


def read(path: Path) -> tuple[Counter[str], Counter[str], int]:
    areas: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue  # py-spy sometimes writes a torn line
        frames = stack.split(";")
        areas[area_of(frames)] += int(count)
        leaves[frames[-1]] += int(count)
        total += int(count)
    return areas, leaves, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stacks", type=Path, help="py-spy's collapsed stacks (--profile FILE.txt)")
    parser.add_argument("--top", type=int, default=0, help="also the N busiest innermost frames")
    args = parser.parse_args()
    areas, leaves, total = read(args.stacks)
    if not total:
        raise SystemExit(f"{args.stacks}: no samples")
    print("| share | area |\n|---|---|")
    for name, count in areas.most_common():
        print(f"| {100 * count / total:5.1f} % | {name} |")
    for frame, count in leaves.most_common(args.top):
        print(f"{100 * count / total:5.1f} % {frame}")


if __name__ == "__main__":
    main()

"""The JSON form of every time the service answers with: UTC, ISO 8601, ending in Z."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


@overload
def iso(value: datetime) -> str: ...
@overload
def iso(value: datetime | None) -> str | None: ...
def iso(value: datetime | None) -> str | None:
    """`2024-12-05T14:03:00.123456Z`; None stays None. A naive time is the service's
    own UTC (utcnow); an aware one in another zone is converted, never mislabelled Z."""
    if value is None:
        return None
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return aware.isoformat().replace("+00:00", "Z")

"""A phase's timeline, from what the service recorded (``/factory/status``: its history of
events and its remediation attempts, UTC) and from the customers' answers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pizza_tools.drill.traffic import PENDING, Answer

# In the order a reader expects them; the service may record the link a few
# milliseconds before the customer's 202 leaves, so order is not asserted between them.
STAGES = (
    ("first_failed", "first failed order (answered 202)"),
    ("link_detected", "remediation link detected"),
    ("breaker_opened", "breaker opened (closed -> open)"),
    ("remediated", "remediation (link followed, resolved)"),
    ("first_fulfilled_after", "first fulfilled order after remediation"),
    ("steady", "steady again (breaker closed, none pending)"),
)


def parse_time(value: str | None) -> datetime | None:
    """The service's ISO timestamps (``...Z``, or naive UTC from SQLite) as aware UTC."""
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Timeline:
    """Seconds from the chaos start to each stage (None: it did not happen)."""

    chaos_at: datetime
    first_failed: float | None
    link_detected: float | None
    breaker_opened: float | None
    remediated: float | None
    remediated_by: str | None
    first_fulfilled_after: float | None
    steady: float | None = None

    def at(self, seconds: float | None) -> datetime | None:
        """The moment ``seconds`` after the chaos start."""
        return None if seconds is None else self.chaos_at + timedelta(seconds=seconds)

    def stages(self) -> list[tuple[str, str, float | None]]:
        return [(key, label, getattr(self, key)) for key, label in STAGES]


def _first_after(moments: Iterable[datetime | None], after: datetime) -> datetime | None:
    return min((m for m in moments if m is not None and m >= after), default=None)


def _since(chaos_at: datetime, moment: datetime | None) -> float | None:
    return None if moment is None else round((moment - chaos_at).total_seconds(), 2)


def events(status: dict[str, Any], kind: str) -> list[tuple[datetime, str]]:
    """The status history's events of one kind, oldest first."""
    found = []
    for event in status.get("history", []):
        at = parse_time(event.get("at"))
        if event.get("kind") == kind and at is not None:
            found.append((at, str(event.get("detail", ""))))
    return sorted(found)


def breaker_opens(status: dict[str, Any], after: datetime) -> list[datetime]:
    """Every time the breaker went (back) to open since ``after``, oldest first."""
    return [at for at, d in events(status, "breaker") if d.endswith("-> open") and at >= after]


def breaker_opened_at(status: dict[str, Any], after: datetime) -> datetime | None:
    opens = breaker_opens(status, after)
    return opens[0] if opens else None


def steady_cycle(
    status: dict[str, Any], chaos_at: datetime, settle_in_s: float, before: datetime
) -> tuple[datetime, datetime] | None:
    """The last whole breaker cycle (open, probe, open again) before ``before``, starting
    at least ``settle_in_s`` after the breaker first opened: the chaos's steady state."""
    opens = [at for at in breaker_opens(status, chaos_at) if at < before]
    if not opens:
        return None
    steady = [at for at in opens if at >= opens[0] + timedelta(seconds=settle_in_s)]
    return (steady[-2], steady[-1]) if len(steady) >= 2 else None


def resolved_attempt(status: dict[str, Any], after: datetime) -> tuple[datetime, str] | None:
    """The first remediation attempt since ``after`` that ended the chaos, and its mode."""
    attempts = status.get("remediation", {}).get("attempts", [])
    resolved = sorted(
        (at, str(a.get("mode")))
        for a in attempts
        if a.get("resolved") and (at := parse_time(a.get("at"))) is not None and at >= after
    )
    return resolved[0] if resolved else None


def build_timeline(
    status: dict[str, Any],
    answers: Sequence[Answer],
    chaos_at: datetime,
    steady_at: datetime | None = None,
) -> Timeline:
    """Every stage of ``STAGES`` (``steady_at`` is the drill's reading of the status)."""
    attempt = resolved_attempt(status, chaos_at)
    remediated_at = attempt[0] if attempt else None
    first_failed = _first_after((a.answered_at for a in answers if a.status in PENDING), chaos_at)
    fulfilled_after = (
        _first_after((a.answered_at for a in answers if a.status == 200), remediated_at)
        if remediated_at
        else None
    )
    return Timeline(
        chaos_at=chaos_at,
        first_failed=_since(chaos_at, first_failed),
        link_detected=_since(
            chaos_at, _first_after((at for at, _ in events(status, "link_detected")), chaos_at)
        ),
        breaker_opened=_since(chaos_at, breaker_opened_at(status, chaos_at)),
        remediated=_since(chaos_at, remediated_at),
        remediated_by=attempt[1] if attempt else None,
        first_fulfilled_after=_since(chaos_at, fulfilled_after),
        steady=_since(chaos_at, steady_at),
    )

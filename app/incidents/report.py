"""A postmortem draft of one recorded incident, in Markdown (issue 6).

The sections are the seed postmortem's template (incident-2024-12-05.md). Every fact the
service recorded is filled in, in UTC; what only a person can judge (severity, root cause
beyond the factory's answer, what to change, action items) is left as a marked prompt,
never invented. The draft carries no secret: links are stored redacted, and the whole
text is redacted again against the configured secrets before it is returned.

For `pizza drill` (and anything else that ends an incident on purpose):

    text = await latest_report(services.sessions, status_page=..., secrets=settings.secrets())

or, from settings alone (opens and closes its own engine), `report_from_settings(settings)`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app import db
from app.config import Settings
from app.incidents.recorder import DEFAULT_PUBLIC_URL, TRIGGERS
from app.incidents.view import (
    ALL_MADE,
    FIRST_FAILED,
    FIRST_FULFILLED,
    AttemptEntry,
    IncidentView,
    TimelineEntry,
    decimal_text,
    earlier_alike,
    get_incident,
    load_view,
    seconds,
)
from app.models import EventKind, Incident, utcnow
from clients.breaker import BreakerState
from telemetry.redaction import redact_text

TO_FILL = "**[to fill in]**"
SECTIONS = (
    "Summary",
    "Detection",
    "Impact",
    "Timeline",
    "Response",
    "Root cause",
    "Resolution",
    "Prevention",
    "Action items",
)


def utc(value: datetime) -> str:
    """`2026-11-26 21:05:03.120 UTC`: the one time format of the report."""
    return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d} UTC"


def duration(value: float | None) -> str:
    if value is None:
        return "not yet"
    if value < 10:
        return f"{value:.3f} s"
    if value < 60:
        return f"{value:.1f} s"
    whole = round(value)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours} h " if hours else "") + f"{minutes} min {secs} s"


def money(value: Decimal) -> str:
    return f"{decimal_text(value)} ₿"


def _prompt(text: str) -> str:
    return f"> {TO_FILL} {text}"


def _line(entry: TimelineEntry) -> str:
    by = f" (by {entry.by})" if entry.by else ""
    kind = entry.kind.replace("_", " ")
    return f"- _{utc(entry.at)}_ — **{kind}**: {entry.detail}{by}"


def _at(entry: TimelineEntry) -> str:
    """An entry as a sentence's tail: `detail (by X), at TIME`."""
    by = f" (by {entry.by})" if entry.by else ""
    return f"{entry.detail}{by}, at {utc(entry.at)}"


def _attempt(attempt: AttemptEntry) -> str:
    mode = "automatic remediation" if attempt.mode == "auto" else "remediation"
    result = "resolved" if attempt.resolved else "not resolved"
    return (
        f"{utc(attempt.at)}: {mode} by {attempt.by}, following {attempt.link}; the factory "
        f"answered {attempt.answer!r} ({result})"
    )


def render_report(
    view: IncidentView,
    *,
    earlier: Iterable[Incident] = (),
    status_page: str = f"{DEFAULT_PUBLIC_URL}/factory/status",
    secrets: Iterable[str] = (),
    written_at: datetime | None = None,
) -> str:
    """The Markdown draft for one incident (see the module docstring)."""
    incident, impact = view.incident, view.impact
    written_at = written_at or utcnow()
    end = incident.closed_at
    first_failed = view.first(FIRST_FAILED)
    first_made = view.first(FIRST_FULFILLED)
    all_made = view.first(ALL_MADE)
    trigger = TRIGGERS.get(incident.trigger, incident.trigger)
    pages = view.entries(EventKind.PAGE)
    operators = view.entries(EventKind.OPERATOR)
    breaker = view.entries(EventKind.BREAKER)
    links = view.entries(EventKind.LINK_DETECTED)
    state = (
        f"It closed at {utc(end)}."
        if end
        else f"It is **still open** as of {utc(impact.as_of)}: figures are so far."
    )
    out: list[str] = [
        f"# Incident {view.id}: {incident.opened_at.strftime('%Y-%m-%d %H-%M-%S')} UTC",
        "",
        f"> Draft written by JWT Pizza from its own records at {utc(written_at)}. All times are "
        f"UTC. Lines marked {TO_FILL} are for a person to write; everything else is a "
        "recorded fact.",
        "",
        "## Summary",
        "",
        f"From {utc(incident.started_at)} to {utc(end) if end else 'now'} "
        f"({duration(seconds(incident.started_at, end or impact.as_of))}) the pizza factory did "
        f"not make every order at once. The first sign the service saw: {trigger}, at "
        f"{utc(incident.opened_at)}. Orders answered 202 and kept pending instead of being "
        f"made at once: {impact.orders_affected} (customers: {impact.customers_affected}); "
        f"made later: {impact.fulfilled_late}, still pending: {impact.pending}, failed (never "
        f"charged): {impact.failed}. {state}",
        "",
        f"The factory's answer: `{incident.fault}`.",
        "",
        _prompt("Severity, and what the customers experienced beyond these figures."),
        "",
        "## Detection",
        "",
    ]
    if first_failed:
        out.append(f"- First customer impact, the first failed order: {_at(first_failed)}.")
    else:
        out.append("- No order was answered 202 during the incident.")
    out.append(
        f"- Detected by the service itself at {utc(incident.opened_at)} ({trigger}): "
        f"time to detect **{duration(view.time_to_detect_s)}** after the first customer impact."
    )
    if pages:
        out += [f"- Paged directly: {_at(page)}." for page in pages]
    else:
        out.append(
            "- No direct page was recorded (is ALERT_WEBHOOK_URL set?). The status page showed "
            f"it: {status_page}"
        )
    out += [
        "",
        _prompt("When did a person first look, and why then? How could detection be halved?"),
        "",
        "## Impact",
        "",
        f"As of {utc(impact.as_of)}, over the orders answered 202 from {utc(incident.started_at)} "
        f"to {utc(end) if end else 'now'}:",
        "",
        "| figure | value |",
        "|---|---|",
        f"| orders affected (answered 202) | {impact.orders_affected} |",
        f"| customers affected | {impact.customers_affected} |",
        f"| fulfilled late | {impact.fulfilled_late} |",
        f"| still pending | {impact.pending} |",
        f"| failed (never charged) | {impact.failed} |",
        f"| orders made at once meanwhile | {impact.orders_made_at_once} |",
        f"| revenue delayed (made late or pending) | {money(impact.revenue_delayed)} |",
        f"| revenue lost (failed orders) | {money(impact.revenue_lost)} |",
        f"| longest customer wait | {duration(impact.longest_wait_s)}"
        + (
            f" (order {impact.longest_wait_order_id})"
            if impact.longest_wait_order_id is not None
            else ""
        )
        + " |",
        "",
        _prompt("Support cases raised, and any impact the service cannot see."),
        "",
        "## Timeline",
        "",
        "All times UTC.",
        "",
    ]
    out += [_line(entry) for entry in view.timeline] or ["- (no event recorded)"]
    out += ["", "## Response", ""]
    out += [f"- {_attempt(a)}." for a in view.attempts]
    out += [f"- Operator action: {_at(entry)}." for entry in operators]
    if not (view.attempts or operators):
        out.append("- No remediation attempt or operator action was recorded.")
    out += [
        "",
        _prompt("Who responded, when, and what they did; any delay or obstacle."),
        "",
        "## Root cause",
        "",
        f"What the factory answered, as the service recorded it: `{incident.fault}`.",
    ]
    out += [f"- Remediation link detected: {_at(link)}." for link in links]
    out += [
        "",
        _prompt(
            "The root cause beyond the factory's answer: why the factory failed, and what "
            "must change so that this class of incident cannot happen again."
        ),
        "",
        "## Resolution",
        "",
    ]
    out += [f"- Remediation link resolved: {_attempt(a)}." for a in view.attempts if a.resolved]
    out += [f"- Breaker {_at(e)}." for e in breaker if e.breaker_to == BreakerState.CLOSED]
    if first_made:
        out.append(f"- First fulfilled order after: {_at(first_made)}.")
    if end:
        out.append(
            f"- Incident closed at {utc(end)} (breaker closed, no remediation link waiting): "
            f"time to mitigate **{duration(view.time_to_mitigate_s)}** after the first "
            "customer impact."
        )
    else:
        out.append(f"- Not resolved as of {utc(impact.as_of)}.")
    if all_made:
        out.append(f"- Every affected order was made by {utc(all_made.at)}.")
    elif impact.pending:
        out.append(f"- {impact.pending} affected orders are still pending.")
    out += [
        "",
        _prompt("How could the time to mitigate have been halved?"),
        "",
        "## Prevention",
        "",
    ]
    alike = [f"- Incident {e.id} opened {utc(e.opened_at)}: `{e.fault}`" for e in earlier if e.id]
    out += (
        [f"Earlier recorded incidents that opened the same way ({trigger}):", "", *alike]
        if alike
        else [f"No earlier recorded incident opened the same way ({trigger})."]
    )
    out += [
        "",
        _prompt(
            "Could earlier incidents have the same root cause? What was done then, and why "
            "did it happen again?"
        ),
        "",
        "## Action items",
        "",
        _prompt(
            "Corrective actions to prevent this class of incident: what, who is responsible, "
            "by when, and where it is tracked."
        ),
        "",
    ]
    # The log redactor: every configured secret of a useful length, and secret shapes.
    return redact_text("\n".join(out), list(secrets))


async def incident_report(
    sessions: async_sessionmaker[AsyncSession],
    incident_id: int | None = None,
    *,
    status_page: str = f"{DEFAULT_PUBLIC_URL}/factory/status",
    secrets: Iterable[str] = (),
) -> str | None:
    """The draft for one incident (the latest when `incident_id` is None); None if none."""
    now = utcnow()
    async with sessions() as session:
        incident = await get_incident(session, incident_id)
        if incident is None:
            return None
        view = await load_view(session, incident, now)
        earlier = await earlier_alike(session, incident)
    return render_report(
        view, earlier=earlier, status_page=status_page, secrets=secrets, written_at=now
    )


async def latest_report(
    sessions: async_sessionmaker[AsyncSession],
    *,
    status_page: str = f"{DEFAULT_PUBLIC_URL}/factory/status",
    secrets: Iterable[str] = (),
) -> str | None:
    """The draft for the latest incident, e.g. the one a drill just caused."""
    return await incident_report(sessions, None, status_page=status_page, secrets=secrets)


async def report_from_settings(settings: Settings, incident_id: int | None = None) -> str | None:
    """`pizza incident report`: the draft from the configured database (schema upgraded)."""
    engine = db.create_engine(settings.database_url)
    try:
        await db.migrate(engine)
        return await incident_report(
            db.session_factory(engine),
            incident_id,
            status_page=f"{settings.public_url or DEFAULT_PUBLIC_URL}/factory/status",
            secrets=settings.secrets(),
        )
    finally:
        await engine.dispose()

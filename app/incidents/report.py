"""A postmortem draft of one recorded incident, in Markdown.

The sections are those of a common postmortem template (SECTIONS; docs/incident-example.md
shows a draft). Every fact the
service recorded is filled in, in UTC; what only a person can judge (severity, root cause
beyond the factory's answer, what to change, action items) is left as a marked prompt,
never invented. The draft carries no secret: links are stored redacted, and the whole
text is redacted again against the configured secrets before it is returned.

For `pizza drill` (and anything else that ends an incident on purpose):

    text = await latest_report(services.sessions, status_page=..., secrets=settings.secrets())

or, from settings alone (opens and closes its own engine), `report_from_settings(settings)`.
The draft says when it was written by the clock it is given (clients/clock.py), the
service's own by default, as every other time the service records.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app import db
from app.config import Settings
from app.incidents.impact import decimal_text, seconds
from app.incidents.recorder import DEFAULT_PUBLIC_URL
from app.incidents.signs import TRIGGERS
from app.incidents.view import (
    ALL_MADE,
    FIRST_FAILED,
    FIRST_FULFILLED,
    AttemptEntry,
    IncidentView,
    TimelineEntry,
    earlier_alike,
    get_incident,
    load_view,
)
from app.models import EventKind, Incident
from clients.breaker import BreakerState
from clients.clock import SYSTEM_CLOCK, Clock
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
    written_at: datetime,
) -> str:
    """The Markdown draft for one incident (see the module docstring), written at
    ``written_at`` (the caller's clock)."""
    out = [
        *_title(view, written_at),
        *_summary(view),
        *_detection(view, status_page),
        *_impact(view),
        *_section("Timeline", ["All times UTC.", "", *_timeline(view)]),
        *_response(view),
        *_root_cause(view),
        *_resolution(view),
        *_prevention(view, earlier),
        *_section(
            "Action items",
            [
                _prompt(
                    "Corrective actions to prevent this class of incident: what, who is "
                    "responsible, by when, and where it is tracked."
                )
            ],
        ),
    ]
    # The log redactor: every configured secret of a useful length, and secret shapes.
    return redact_text("\n".join(out), list(secrets))


def _section(name: str, body: list[str], prompt: str | None = None) -> list[str]:
    """One `## name` section: its recorded facts, then what a person is asked to write."""
    asked = ["", _prompt(prompt)] if prompt else []
    return [f"## {name}", "", *body, *asked, ""]


def _trigger(incident: Incident) -> str:
    return TRIGGERS.get(incident.trigger, incident.trigger)


def _until(incident: Incident) -> str:
    return utc(incident.closed_at) if incident.closed_at else "now"


def _title(view: IncidentView, written_at: datetime) -> list[str]:
    return [
        f"# Incident {view.id}: {view.incident.opened_at.strftime('%Y-%m-%d %H:%M:%S')} UTC",
        "",
        f"> Draft written by JWT Pizza from its own records at {utc(written_at)}. All times are "
        f"UTC. Lines marked {TO_FILL} are for a person to write; everything else is a "
        "recorded fact.",
        "",
    ]


def _summary(view: IncidentView) -> list[str]:
    incident, impact, end = view.incident, view.impact, view.incident.closed_at
    state = (
        f"It closed at {utc(end)}."
        if end
        else f"It is **still open** as of {utc(impact.as_of)}: figures are so far."
    )
    summary = (
        f"From {utc(incident.started_at)} to {_until(incident)} "
        f"({duration(seconds(incident.started_at, end or impact.as_of))}) the pizza factory did "
        f"not make every order at once. The first sign the service saw: {_trigger(incident)}, "
        f"at {utc(incident.opened_at)}. Orders answered pending instead of being "
        f"made at once: {impact.orders_affected} (customers: {impact.customers_affected}); "
        f"made later: {impact.fulfilled_late}, still pending: {impact.pending}, failed (never "
        f"charged): {impact.failed}. {state}"
    )
    return _section(
        "Summary",
        [summary, "", f"The factory's answer: `{incident.fault}`."],
        "Severity, and what the customers experienced beyond these figures.",
    )


def _detection(view: IncidentView, status_page: str) -> list[str]:
    incident = view.incident
    first_failed = view.first(FIRST_FAILED)
    pages = view.entries(EventKind.PAGE)
    body = [
        f"- First customer impact, the first failed order: {_at(first_failed)}."
        if first_failed
        else "- No order was answered pending during the incident.",
        f"- Detected by the service itself at {utc(incident.opened_at)} ({_trigger(incident)}): "
        f"time to detect **{duration(view.time_to_detect_s)}** after the first customer impact.",
    ]
    if pages:
        body += [f"- Paged directly: {_at(page)}." for page in pages]
    else:
        body.append(
            "- No direct page was recorded (is ALERT_WEBHOOK_URL set?). The status page showed "
            f"it: {status_page}"
        )
    return _section(
        "Detection",
        body,
        "When did a person first look, and why then? How could detection be halved?",
    )


def _impact(view: IncidentView) -> list[str]:
    impact = view.impact
    longest = (
        f" (order {impact.longest_wait_order_id})"
        if impact.longest_wait_order_id is not None
        else ""
    )
    return _section(
        "Impact",
        [
            f"As of {utc(impact.as_of)}, over the orders answered pending (503, or 202 to a client "
            f"that asked for respond-async) from "
            f"{utc(view.incident.started_at)} to {_until(view.incident)}:",
            "",
            "| figure | value |",
            "|---|---|",
            f"| orders affected (answered pending) | {impact.orders_affected} |",
            f"| customers affected | {impact.customers_affected} |",
            f"| fulfilled late | {impact.fulfilled_late} |",
            f"| still pending | {impact.pending} |",
            f"| failed (never charged) | {impact.failed} |",
            f"| orders made at once meanwhile | {impact.orders_made_at_once} |",
            f"| revenue delayed (made late or pending) | {money(impact.revenue_delayed)} |",
            f"| revenue lost (failed orders) | {money(impact.revenue_lost)} |",
            f"| longest customer wait | {duration(impact.longest_wait_s)}{longest} |",
        ],
        "Support cases raised, and any impact the service cannot see.",
    )


def _timeline(view: IncidentView) -> list[str]:
    return [_line(entry) for entry in view.timeline] or ["- (no event recorded)"]


def _response(view: IncidentView) -> list[str]:
    operators = view.entries(EventKind.OPERATOR)
    body = [f"- {_attempt(a)}." for a in view.attempts]
    body += [f"- Operator action: {_at(entry)}." for entry in operators]
    if not (view.attempts or operators):
        body.append("- No remediation attempt or operator action was recorded.")
    return _section(
        "Response", body, "Who responded, when, and what they did; any delay or obstacle."
    )


def _root_cause(view: IncidentView) -> list[str]:
    body = [f"What the factory answered, as the service recorded it: `{view.incident.fault}`."]
    body += [
        f"- Remediation link detected: {_at(link)}."
        for link in view.entries(EventKind.LINK_DETECTED)
    ]
    return _section(
        "Root cause",
        body,
        "The root cause beyond the factory's answer: why the factory failed, and what "
        "must change so that this class of incident cannot happen again.",
    )


def _resolution(view: IncidentView) -> list[str]:
    impact, end = view.impact, view.incident.closed_at
    breaker = view.entries(EventKind.BREAKER)
    first_made, all_made = view.first(FIRST_FULFILLED), view.first(ALL_MADE)
    body = [f"- Remediation link resolved: {_attempt(a)}." for a in view.attempts if a.resolved]
    body += [f"- Breaker {_at(e)}." for e in breaker if e.breaker_to == BreakerState.CLOSED]
    if first_made:
        body.append(f"- First fulfilled order after: {_at(first_made)}.")
    if end:
        body.append(
            f"- Incident closed at {utc(end)} (breaker closed, no remediation link waiting): "
            f"time to mitigate **{duration(view.time_to_mitigate_s)}** after the first "
            "customer impact."
        )
    else:
        body.append(f"- Not resolved as of {utc(impact.as_of)}.")
    if all_made:
        body.append(f"- Every affected order was made by {utc(all_made.at)}.")
    elif impact.pending:
        body.append(f"- {impact.pending} affected orders are still pending.")
    return _section("Resolution", body, "How could the time to mitigate have been halved?")


def _prevention(view: IncidentView, earlier: Iterable[Incident]) -> list[str]:
    trigger = _trigger(view.incident)
    alike = [f"- Incident {e.id} opened {utc(e.opened_at)}: `{e.fault}`" for e in earlier if e.id]
    body = (
        [f"Earlier recorded incidents that opened the same way ({trigger}):", "", *alike]
        if alike
        else [f"No earlier recorded incident opened the same way ({trigger})."]
    )
    return _section(
        "Prevention",
        body,
        "Could earlier incidents have the same root cause? What was done then, and why "
        "did it happen again?",
    )


async def incident_report(
    sessions: async_sessionmaker[AsyncSession],
    incident_id: int | None = None,
    *,
    status_page: str = f"{DEFAULT_PUBLIC_URL}/factory/status",
    secrets: Iterable[str] = (),
    clock: Clock = SYSTEM_CLOCK,
) -> str | None:
    """The draft for one incident (the latest when `incident_id` is None); None if none."""
    now = clock.now()
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
    clock: Clock = SYSTEM_CLOCK,
) -> str | None:
    """The draft for the latest incident, e.g. the one a drill just caused."""
    return await incident_report(
        sessions, None, status_page=status_page, secrets=secrets, clock=clock
    )


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

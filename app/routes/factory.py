"""The operator surface: factory status, remediation, breaker control.

See docs/http-api.md#operator-routes and docs/resilience.md#remediation.
"""

from __future__ import annotations

from datetime import datetime
from importlib.resources import files
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import col, select

from app.deps import AdminUser, Principal, ServicesDep, SessionDep, load_principal
from app.errors import Forbidden, NotFound, Unauthorized, error_responses
from app.incidents.view import people_named
from app.models import (
    DinerOrder,
    FactoryEvent,
    OrderStatus,
    RemediationAttempt,
    RemediationLink,
)
from app.services import Services
from app.supervisor import TaskHealth
from app.times import iso

router = APIRouter(
    prefix="/factory", tags=["factory operations"], responses=error_responses(401, 403, 413)
)
HISTORY_LENGTH = 50


class BreakerBody(BaseModel):
    state: Literal["open", "closed", "auto"]


def attempt_json(attempt: RemediationAttempt) -> dict[str, Any]:
    return {
        "at": iso(attempt.at),
        "mode": attempt.mode,
        "byUserId": attempt.by_user_id,
        "statusCode": attempt.status_code,
        "message": attempt.message,
        "resolved": attempt.resolved,
    }


# One URL, two bodies (page or JSON): caches must key on Accept, and must not keep the
# JSON at all (it holds the full remediation link, vendor key included).
PRIVATE = {"cache-control": "no-store", "vary": "Accept, Authorization"}
PAGE_HEADERS = {**PRIVATE, "content-security-policy": "frame-ancestors 'none'"}
# The operator pages (status, incidents, an incident) are one document: it signs the
# admin in, keeps the token in its memory only, and moves between them without a reload.
OPERATOR_PAGE = "static/status.html"


def page_or_json(what: str) -> dict[str, Any]:
    """The route options of an operator URL that is a page for a browser, JSON otherwise."""
    return {
        "responses": {
            200: {
                "description": f"{what} as JSON; the operator page for `Accept: text/html`",
                "content": {"text/html": {"schema": {"type": "string"}}},
            }
        },
        # It reads the bearer token itself (the page needs none): declared for clients.
        "openapi_extra": {"security": [{"HTTPBearer": []}]},
    }


def wants_page(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def operator_page() -> HTMLResponse:
    """The page holds no data: it signs the admin in and calls its URL again as JSON."""
    page = files("app").joinpath(OPERATOR_PAGE).read_text(encoding="utf-8")
    return HTMLResponse(page, headers=PAGE_HEADERS)


async def signed_in_admin(request: Request, response: Response, services: Services) -> Principal:
    """The caller of an operator URL asking for JSON: an admin, or 401/403. Read here, not
    by AdminUser, because the same URL serves its page without a token."""
    response.headers.update(PRIVATE)
    principal = await load_principal(request, services)
    if principal is None:
        raise Unauthorized("unauthorized")
    if not principal.is_admin:
        raise Forbidden("unauthorized")
    return principal


@router.get(
    "/status",
    summary="Factory status (admins); an HTML page for a browser",
    **page_or_json("The status"),
)
async def status(
    request: Request, response: Response, services: ServicesDep, session: SessionDep
) -> Any:
    if wants_page(request):
        return operator_page()
    await signed_in_admin(request, response, services)
    return await _status_json(session, services)


async def _status_json(session: SessionDep, services: ServicesDep) -> dict[str, Any]:
    """What an operator needs to know about the factory, in one answer."""
    ops, breaker, settings = services.ops, services.breaker, services.settings
    pending = await _pending_json(services)
    remediation = await _remediation_json(session, services)
    events = list(
        await session.exec(
            # By time, as the incident timeline: an event is timed when it happens, which
            # may be before an event written ahead of it (a remediation, app/factory/links.py).
            select(FactoryEvent)
            .order_by(col(FactoryEvent.at).desc(), col(FactoryEvent.id).desc())
            .limit(HISTORY_LENGTH)
        )
    )
    last_success, last_failure = await _last_outcomes(session, services)
    return {
        "factory": ops.factory_url,
        "breaker": {
            "state": str(breaker.state),
            "since": iso(breaker.since),
            "forced": breaker.forced,
            "failMax": settings.breaker_fail_max,
            "resetTimeoutS": settings.breaker_reset_s,
        },
        "configuration": {"fault": ops.config_fault},
        "chaosScheduled": ops.chaos.scheduled,
        # What the vendor record reports: type, start, and "scheduled" or "running".
        "chaos": ops.chaos.shown(),
        "recentOutcomes": ops.recent_outcomes(),
        "lastSuccess": iso(last_success),
        "lastFailure": last_failure,
        "remediation": remediation,
        "pending": pending,
        "history": await _history_json(session, events),
        "tasks": [_task_json(task) for task in services.supervisor.health()],
        "taskProblems": services.supervisor.problems(),
    }


async def _pending_json(services: Services) -> dict[str, Any]:
    """How many orders wait for the factory, and for how long the oldest has (the worker's
    gauges read the same statement: app/sql/store.py `pending_stats`)."""
    stats = await services.store.pending_stats()
    oldest = stats.oldest
    return {
        "count": stats.count,
        "oldestAgeS": round((services.clock.now() - oldest).total_seconds(), 3) if oldest else 0.0,
    }


async def _remediation_json(session: SessionDep, services: ServicesDep) -> dict[str, Any]:
    """The link waiting (in full: this answer is for signed-in admins only) and the history."""
    ops = services.ops
    link = await ops.links.waiting_link(session)
    attempts = list(
        await session.exec(
            select(RemediationAttempt).order_by(col(RemediationAttempt.id).desc()).limit(20)
        )
    )
    links = list(
        await session.exec(
            select(RemediationLink).order_by(col(RemediationLink.id).desc()).limit(20)
        )
    )
    return {
        "autoRemediate": services.settings.factory_auto_remediate,
        "link": link.url if link else None,
        # The URL "Remediate now" fetches (FACTORY_URL's scheme, host and port); None
        # for a link the service will not follow.
        "followUrl": ops.links.follow_url(link.url) if link else None,
        "detectedAt": iso(link.first_seen) if link else None,
        "outcome": link.outcome if link else None,
        "followable": link.followable if link else None,
        "attempts": [attempt_json(a) for a in attempts],
        "links": [
            {
                "link": item.redacted,
                "detectedAt": iso(item.first_seen),
                "outcome": item.outcome,
                "resolvedAt": iso(item.resolved_at),
            }
            for item in links
        ],
    }


async def _history_json(session: SessionDep, events: list[FactoryEvent]) -> list[dict[str, Any]]:
    """The events, each with the person who acted by name (None: the service itself)."""
    people = await people_named(session, {e.user_id for e in events if e.user_id is not None})
    return [
        {
            "at": iso(e.at),
            "kind": e.kind,
            "detail": e.detail,
            "by": None if e.user_id is None else people.get(e.user_id, f"user {e.user_id}"),
        }
        for e in events
    ]


def _task_json(task: TaskHealth) -> dict[str, Any]:
    return {
        "name": task.name,
        "state": str(task.state),
        "crashes": task.crashes,
        "crashStreak": task.crash_streak,
        "lastError": task.last_error,
        "heartbeatAgeS": task.heartbeat_age_s,
        "staleAfterS": task.stale_after_s,
    }


async def _last_outcomes(
    session: SessionDep, services: ServicesDep
) -> tuple[datetime | None, dict[str, Any] | None]:
    """The last success and failure: this process's, else what the database keeps
    (the newest fulfilled order; the newest order still pending or failed with a reason),
    so a restart does not empty them."""
    ops = services.ops
    stored_success = (
        await session.exec(
            select(func.max(DinerOrder.finished_at)).where(
                DinerOrder.status == OrderStatus.FULFILLED
            )
        )
    ).one()
    known = [t for t in (ops.last_success, stored_success) if t is not None]
    last_success = max(known, key=lambda t: t.timestamp()) if known else None
    failure = ops.last_failure
    if failure is not None:
        return last_success, {
            "at": iso(failure.at),
            "outcome": str(failure.outcome),
            "reason": failure.reason,
        }
    stored = (
        await session.exec(
            select(DinerOrder)
            .where(
                col(DinerOrder.status) != OrderStatus.FULFILLED,
                col(DinerOrder.last_reason).is_not(None),
            )
            .order_by(col(DinerOrder.id).desc())
            .limit(1)
        )
    ).first()
    if stored is None:
        return last_success, None
    return last_success, {
        "at": iso(stored.finished_at or stored.deferred_at or stored.date),
        "outcome": f"order {stored.id} {stored.status}",
        "reason": stored.last_reason,
    }


@router.post(
    "/remediate",
    summary="Follow the factory's remediation link now (admins)",
    responses=error_responses(404),
)
async def remediate(principal: AdminUser, services: ServicesDep) -> dict[str, Any]:
    attempt = await services.ops.links.remediate(mode="manual", user_id=principal.id)
    if attempt is None:
        raise NotFound("no remediation link is waiting")
    if attempt.resolved:
        services.worker.wake()
    return {"attempt": attempt_json(attempt), "breaker": str(services.breaker.state)}


@router.put(
    "/breaker",
    summary="Force the breaker open or closed, or hand it back (admins)",
    responses=error_responses(400),
)
async def set_breaker(
    body: BreakerBody, principal: AdminUser, services: ServicesDep
) -> JSONResponse:
    await services.breaker.force(body.state)
    await services.ops.note_operator(principal.id, f"breaker set to {body.state}")
    services.worker.wake()
    return JSONResponse({"state": str(services.breaker.state), "forced": services.breaker.forced})

"""Recorded incidents, for operators (admins only): JSON, and a postmortem draft. The list
and an incident are also pages for a browser: the operator page of /factory/status, with
the same sign-in (app/routes/factory.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import PlainTextResponse

from app.deps import ServicesDep, SessionDep, admin_user
from app.errors import NotFound, error_responses
from app.fields import IdPath
from app.incidents.impact import impacts_of
from app.incidents.report import render_report
from app.incidents.view import IncidentView, earlier_alike, list_incidents, load_view
from app.models import Incident
from app.routes.factory import operator_page, page_or_json, signed_in_admin, wants_page

router = APIRouter(
    prefix="/factory/incidents",
    tags=["factory operations"],
    responses=error_responses(400, 401, 403, 413),
)
MAX_LISTED = 100


class MarkdownResponse(PlainTextResponse):
    """What the report is sent as, so that /openapi.json documents that type."""

    media_type = "text/markdown"


async def incident_or_404(incident_id: IdPath, session: SessionDep) -> Incident:
    incident = await session.get(Incident, incident_id)
    if incident is None:
        raise NotFound(f"no incident {incident_id}")
    return incident


IncidentDep = Annotated[Incident, Depends(incident_or_404)]


def _links(incident_id: int) -> dict[str, str]:
    return {
        "url": f"/factory/incidents/{incident_id}",
        "reportUrl": f"/factory/incidents/{incident_id}/report",
    }


@router.get(
    "",
    summary="Recorded factory incidents, newest first (admins); an HTML page for a browser",
    **page_or_json("The incidents"),
)
async def incidents(
    request: Request,
    response: Response,
    session: SessionDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LISTED)] = 20,
) -> Any:
    if wants_page(request):
        return operator_page()
    await signed_in_admin(request, response, services)
    # Without timelines: three statements whatever the number listed (not a full view each).
    now = services.clock.now()
    found = await list_incidents(session, limit)
    impacts = await impacts_of(session, found, now)
    listed = []
    for incident in found:
        assert incident.id is not None
        view = IncidentView(incident, timeline=[], impact=impacts[incident.id], attempts=[])
        listed.append({**view.to_json(timeline=False), **_links(view.id)})
    return {"incidents": listed}


_ONE = page_or_json("The incident")
_ONE["responses"].update(error_responses(404))


@router.get(
    "/{incident_id}",
    summary="One incident: timeline and impact (admins); an HTML page for a browser",
    **_ONE,
)
async def incident(
    incident_id: IdPath,
    request: Request,
    response: Response,
    session: SessionDep,
    services: ServicesDep,
) -> Any:
    if wants_page(request):
        return operator_page()  # the page asks for the incident itself, signed in
    # Who asks first, then whether it exists: nobody learns which incidents there are.
    await signed_in_admin(request, response, services)
    incident = await incident_or_404(incident_id, session)
    view = await load_view(session, incident, services.clock.now())
    return {**view.to_json(), **_links(view.id)}


@router.get(
    "/{incident_id}/report",
    summary="A Markdown postmortem draft of one incident (admins)",
    response_class=MarkdownResponse,
    responses=error_responses(404),
    dependencies=[Depends(admin_user)],
)
async def report(
    incident: IncidentDep, session: SessionDep, services: ServicesDep
) -> PlainTextResponse:
    now = services.clock.now()
    view = await load_view(session, incident, now)
    text = render_report(
        view,
        earlier=await earlier_alike(session, incident),
        status_page=services.incidents.status_page,
        secrets=services.settings.secrets(),
        written_at=now,
    )
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")

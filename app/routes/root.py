"""Welcome, the endpoint list, health, and the Prometheus scrape."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.deps import ServicesDep, bearer_token, current_user
from app.errors import NotFound, Unauthorized, error_responses
from app.schemas import MessageOut, Out
from app.version import VERSION

router = APIRouter(tags=["service"], responses=error_responses(413))


class WelcomeOut(MessageOut):
    version: str


class EndpointOut(Out):
    method: str
    path: str
    description: str
    example: str
    response: str
    requiresAuth: bool


class DocsConfigOut(Out):
    factory: str


class DocsOut(Out):
    version: str
    endpoints: list[EndpointOut]
    config: DocsConfigOut


class StatusOut(Out):
    status: str
    message: str | None = None


@router.get("/", summary="Welcome", response_model=WelcomeOut)
async def welcome() -> dict[str, str]:
    return {"message": "welcome to JWT Pizza", "version": VERSION}


def _needs_auth(dependant: Dependant) -> bool:
    return any(d.call is current_user or _needs_auth(d) for d in dependant.dependencies)


@router.get("/api/docs", summary="The endpoints of this service", response_model=DocsOut)
async def api_docs(request: Request, services: ServicesDep) -> dict[str, Any]:
    base = services.settings.public_url or str(request.base_url).rstrip("/")
    endpoints = []
    # FastAPI 0.165 no longer lists included routes on app.routes: walk our routers.
    routes = [r for router in request.app.state.routers for r in router.routes]
    for route in routes:
        if not isinstance(route, APIRoute) or not route.path.startswith("/api/"):
            continue
        auth = _needs_auth(route.dependant)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            header = " -H 'Authorization: Bearer $token'" if auth else ""
            endpoints.append(
                {
                    "method": method,
                    "path": route.path,
                    "description": route.summary or route.name,
                    "example": f"curl -X {method} {base}{route.path}{header}",
                    "response": 'JSON; errors are {"message": ...}',
                    "requiresAuth": auth,
                }
            )
    return {
        "version": VERSION,
        "endpoints": endpoints,
        "config": {"factory": services.ops.factory_url},
    }


@router.get(
    "/healthz",
    summary="The process is alive",
    response_model=StatusOut,
    response_model_exclude_unset=True,
)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database answers and every background task does its job",
    response_model=StatusOut,
    responses={
        503: {
            "model": StatusOut,
            "description": "The database does not answer, or a background task is stale "
            "or crash-looping (the message names it)",
        }
    },
)
async def readyz(services: ServicesDep) -> JSONResponse:
    try:
        async with services.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        return JSONResponse({"status": "database unavailable", "message": type(exc).__name__}, 503)
    problems = services.supervisor.problems()
    if problems:
        # A replica whose retry worker is stuck keeps orders pending: take it out of rotation.
        failing = {"status": "background task failing", "message": "; ".join(problems)}
        return JSONResponse(failing, 503)
    return JSONResponse({"status": "ready"})


def _same(given: str | None, token: str) -> bool:
    """Constant time: a timing difference must not tell how much of a guess was right."""
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


@router.get("/metrics", summary="Prometheus scrape", include_in_schema=False)
async def metrics(request: Request, services: ServicesDep) -> Response:
    settings = services.settings
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    if not settings.metrics_prometheus or (settings.production and token is None):
        raise NotFound("unknown endpoint")
    if token is not None and not _same(bearer_token(request), token):
        raise Unauthorized("metrics need the METRICS_TOKEN bearer token")
    body, content_type = services.telemetry.render_prometheus()
    return Response(body, media_type=content_type)


# A pizza slice: browsers ask for /favicon.ico on every page; a 404 each time is noise.
FAVICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">'
    '<path d="M32 60 4 12C20 2 44 2 60 12Z" fill="#f4b942" stroke="#b5651d" stroke-width="4"/>'
    '<circle cx="24" cy="20" r="5" fill="#c0392b"/><circle cx="40" cy="22" r="5" fill="#c0392b"/>'
    '<circle cx="32" cy="38" r="5" fill="#c0392b"/></svg>'
)


@router.get("/favicon.ico", summary="The favicon", include_in_schema=False)
async def favicon() -> Response:
    return Response(
        FAVICON_SVG,
        media_type="image/svg+xml",
        headers={"cache-control": "public, max-age=86400"},
    )

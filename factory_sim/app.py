"""The simulated factory's HTTP surface: the real factory's routes and answers, and the
simulator-only extras (marked so)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from factory_sim.state import (
    BAD_JWT,
    BAD_KEY,
    REAL_CHAOS,
    SIMULATOR_ONLY_CHAOS,
    Chaos,
    Clock,
    LinkStyle,
    Simulator,
    SimulatorConfig,
    Vendor,
)

SIMULATOR_VERSION = "2.0.0"
MAX_ITEMS = 20
HANG_S = 3600.0


class JSONUTF8Response(JSONResponse):
    # Express's res.json: every answer, even a 500, is "application/json; charset=utf-8".
    media_type = "application/json; charset=utf-8"


def _message(status_code: int, message: str, **extra: object) -> JSONUTF8Response:
    return JSONUTF8Response({"message": message, **extra}, status_code=status_code)


def _host_name(request: Request) -> str:
    host = request.headers.get("host") or request.url.hostname or "localhost"
    if host.startswith("["):  # an IPv6 literal keeps its brackets, loses its port
        return host[: host.index("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0]


def _simulator(request: Request) -> Simulator:
    return cast(Simulator, request.app.state.simulator)


SimDep = Annotated[Simulator, Depends(_simulator)]


def _caller(request: Request, sim: SimDep) -> Vendor:
    # The real factory takes the header with its first "bearer " removed, wherever it is.
    key = re.sub("bearer ", "", request.headers.get("authorization", ""), count=1, flags=re.I)
    vendor = sim.by_key(key)
    if vendor is None:
        raise HTTPException(401, BAD_KEY)
    return vendor


def _admin(vendor: Annotated[Vendor, Depends(_caller)]) -> Vendor:
    if not vendor.admin:
        raise HTTPException(401, BAD_KEY)
    return vendor


def _count_order_call(sim: SimDep) -> None:
    sim.calls += 1


VendorDep = Annotated[Vendor, Depends(_caller)]
router = APIRouter()


@router.get("/.well-known/jwks.json")
async def jwks(sim: SimDep) -> JSONUTF8Response:
    """The key set that verifies pizzas."""
    return JSONUTF8Response({"keys": [sim.jwk]})


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


# Counted before the key check: stats show every order call that reached us.
@router.post("/api/order", dependencies=[Depends(_count_order_call)])
async def make_pizza(request: Request, sim: SimDep, vendor: VendorDep) -> Response:
    """Make a pizza: an RS256 JWT of the diner and the order (the chaos first, as the real
    factory does: before it reads the order)."""
    chaos = vendor.chaos if vendor.chaos and vendor.chaos.running(sim.clock()) else None
    report_url = sim.report_url(vendor, chaos, _host_name(request)) if chaos else None
    match chaos.type if chaos else None:
        case "fail":
            return _message(500, "chaos monkey", reportUrl=report_url)
        case "badjwt":
            return JSONUTF8Response({"jwt": BAD_JWT, "reportUrl": report_url})
        case "throttle":
            assert chaos is not None
            await asyncio.sleep(chaos.throttle_delay_s)
        case "notjson":  # simulator only
            return HTMLResponse("<html><body><h1>502 Bad Gateway</h1></body></html>")
        case "hang":  # simulator only
            await _hang(request)
            return _message(504, "the factory hung")
    body = await _json_body(request)
    diner, order = body.get("diner"), body.get("order")
    if not diner or not isinstance(order, dict):
        return _message(400, "Missing required parameters")
    items = order.get("items")
    if not isinstance(items, list) or not 0 < len(items) <= MAX_ITEMS:
        await asyncio.sleep(sim.config.oven_full_delay_s)
        return _message(503, "Unable to satisfy pizza order. The oven is full.")
    pizza = {"jwt": sim.make_pizza(vendor, diner, order)}
    return JSONUTF8Response(pizza if report_url is None else {**pizza, "reportUrl": report_url})


async def _hang(request: Request) -> None:
    # An hour, or until the client gives up: uvicorn never cancels a request
    # whose client left, and a test server must not wait an hour to stop.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(HANG_S):
            while (await request.receive())["type"] != "http.disconnect":
                pass


@router.post("/api/order/verify")
async def verify_pizza(request: Request, sim: SimDep) -> JSONUTF8Response:
    """Check a pizza's signature and expiry (no key needed: the browser calls it)."""
    token = (await _json_body(request)).get("jwt")
    payload = sim.verify(token) if isinstance(token, str) else None
    if payload is None:
        return _message(403, "invalid")
    return JSONUTF8Response({"message": "valid", "payload": payload})


@router.get("/api/vendor")
async def vendor_record(vendor: VendorDep) -> JSONUTF8Response:
    """The caller's vendor record: its key, and its chaos (never the fix code)."""
    return JSONUTF8Response(vendor.record())


@router.put("/api/vendor/chaos/{chaos_type}")
async def set_chaos(
    chaos_type: str,
    sim: SimDep,
    vendor: VendorDep,
    start_delay_s: Annotated[float, Query(ge=0)] = 0.0,
    throttle_delay_s: Annotated[float | None, Query(ge=0)] = None,
    link_style: LinkStyle | None = None,
) -> JSONUTF8Response:
    """Start chaos: fail, throttle, badjwt (notjson and hang: simulator only).

    Simulator only: it starts at once, or `start_delay_s` from now (the real factory picks
    a random time the next morning), with its own throttle delay and link style. There is
    no `none`: the link ends a chaos, and the admin removes one.
    """
    if chaos_type not in REAL_CHAOS + SIMULATOR_ONLY_CHAOS:
        return _message(400, "Invalid chaos type")
    now, config = sim.clock(), sim.config
    vendor.chaos = Chaos(
        type=chaos_type,
        fix_code=secrets.token_hex(4),  # new each time: an old link cannot end new chaos
        initiated_at=now,
        starts_at=now + start_delay_s,
        throttle_delay_s=config.throttle_delay_s if throttle_delay_s is None else throttle_delay_s,
        link_style=link_style or config.link_style,
    )
    return _message(200, "Chaos initiated")


@router.delete("/api/admin/vendor", dependencies=[Depends(_admin)])
async def delete_vendor(request: Request, sim: SimDep) -> Response:
    """The admin removes a vendor's chaos (`deleteType` chaos), its connections (none here)
    or the vendor itself (all)."""
    body = await _json_body(request)
    target, delete_type = sim.by_id(body.get("id")), body.get("deleteType")
    if not body.get("id") or delete_type not in ("connection", "chaos", "all"):
        return _message(400, "Missing required parameter")
    if target is not None and delete_type == "chaos":
        target.chaos = None
    elif target is not None and delete_type == "all":
        sim.vendors.remove(target)
    return Response(status_code=204)


@router.get("/api/support/{api_key}/report/{fix_code}")
async def report(api_key: str, fix_code: str, sim: SimDep) -> JSONUTF8Response:
    """End the chaos with its fix code (the reportUrl's path shape)."""
    return _message(*sim.report(api_key, fix_code))


@router.get("/api/support/resolve")
async def resolve(
    sim: SimDep,
    api_key: Annotated[str, Query(alias="apiKey")] = "",
    fix_code: Annotated[str, Query(alias="fixCode")] = "",
) -> JSONUTF8Response:
    """Simulator only: end the chaos with its fix code (the reportUrl's query shape)."""
    return _message(*sim.report(api_key, fix_code))


@router.get("/api/sim/stats", dependencies=[Depends(_caller)])
async def stats(sim: SimDep) -> JSONUTF8Response:
    """Simulator only: pizzas made per order id, and every POST /api/order received."""
    return JSONUTF8Response({"pizzas": dict(sim.pizzas), "calls": sim.calls})


@router.get("/api/docs")
async def docs() -> JSONUTF8Response:
    """This list of endpoints."""
    endpoints = [
        {"method": method, "path": route.path, "description": route.description}
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in sorted(route.methods or ())
    ]
    return JSONUTF8Response(
        {
            "message": "welcome to the JWT Pizza Factory simulator",
            "version": SIMULATOR_VERSION,
            "endpoints": endpoints,
        }
    )


class _AnyOrigin:
    """CORS as the real factory does it: every answer allows the caller's origin (or any),
    with credentials; a preflight is answered 200 at once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = dict(scope["headers"]).get(b"origin", b"*")
        allow = [
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-methods", b"GET, POST, PUT, DELETE"),
            (b"access-control-allow-headers", b"Content-Type, Authorization"),
            (b"access-control-allow-credentials", b"true"),
        ]
        if scope["method"] == "OPTIONS":
            headers = [*allow, (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_allowed(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *allow]}
            await send(message)

        await self.app(scope, receive, send_allowed)


def create_simulator_app(config: SimulatorConfig, *, clock: Clock = time.time) -> FastAPI:
    """A new simulated factory with its own key, vendor and chaos state.

    ``clock`` (seconds since the epoch) decides when scheduled chaos starts and
    pizzas expire; tests pass one they can move.
    """
    app = FastAPI(
        title="JWT Pizza Factory simulator",
        version=SIMULATOR_VERSION,
        default_response_class=JSONUTF8Response,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.simulator = Simulator(config, clock)

    app.include_router(router)
    app.add_middleware(_AnyOrigin)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONUTF8Response:
        message = "unknown endpoint" if exc.status_code == 404 else exc.detail
        return _message(exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONUTF8Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ())[1:])
        return _message(400, f"invalid {where}: {first.get('msg', 'bad request')}")

    return app

"""A pizza factory that speaks factory.md, with chaos that tests switch on and off.

The simulator answers exactly as the real factory does on the wire, so the
service's client is exercised against the same shapes: pizzas whose claims sit
in the protected header, remediation links built from the request's host name,
chaos modes, slow answers. Two extra chaos modes (``notjson``, ``hang``) and
``GET /api/sim/stats`` exist only here, for tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast, get_args
from urllib.parse import quote, urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

SIMULATOR_VERSION = "1.0.0"
VENDOR = {"id": 1, "name": "JWT Pizza Simulator"}
ISSUER = "cs329.click"
PIZZA_LIFETIME_S = 24 * 3600
MAX_ITEMS = 20
HANG_S = 3600.0

ChaosType = Literal["fail", "throttle", "badjwt", "notjson", "hang"]
LinkStyle = Literal["path", "query", "mangled"]
Clock = Callable[[], float]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64json(value: object) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


# The same string every time, shaped like a real pizza, signed by no key: the
# "kid" matches no simulator, and the signature is 256 zero bytes.
BAD_JWT = ".".join(
    (
        _b64json({"alg": "RS256", "typ": "JWT", "kid": "badjwt", "iss": ISSUER}),
        _b64json({"vendor": VENDOR, "diner": {}, "order": {}}),
        _b64url(bytes(256)),
    )
)


@dataclass
class SimulatorConfig:
    api_key: str
    throttle_delay_s: float = 32.0  # throttle chaos: a valid pizza after this delay
    oven_full_delay_s: float = 32.0  # 503 oven-full answer (0 or >20 items) comes after this
    cors_origins: list[str] = field(default_factory=lambda: ["http://localhost:5173"])
    link_style: LinkStyle = "path"
    # for link_style "query": the link's base; default https://{host}/api/support/resolve
    resolve_url: str | None = None


class JSONUTF8Response(JSONResponse):
    # factory.md: every answer, even a 500, is "application/json; charset=utf-8".
    media_type = "application/json; charset=utf-8"


def _message(status_code: int, message: str, **extra: object) -> JSONUTF8Response:
    return JSONUTF8Response({"message": message, **extra}, status_code=status_code)


@dataclass
class _Chaos:
    type: ChaosType
    starts_at: float
    fix_code: str
    throttle_delay_s: float
    link_style: LinkStyle


class Simulator:
    """The state of one simulated factory: its signing key, its chaos, its counters."""

    def __init__(self, config: SimulatorConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_urlsafe(12)
        self.chaos: _Chaos | None = None
        self.pizzas: Counter[str] = Counter()
        self.calls = 0

    def key_ok(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self.config.api_key.encode())

    def running_chaos(self) -> _Chaos | None:
        """The chaos in force now; a scheduled chaos is not running before its start."""
        if self.chaos is not None and self.clock() >= self.chaos.starts_at:
            return self.chaos
        return None

    def jwks(self) -> dict[str, object]:
        numbers = self.key.public_key().public_numbers()
        n = _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"))
        key = {"kty": "RSA", "kid": self.kid, "n": n, "e": "AQAB", "alg": "RS256", "use": "sig"}
        return {"keys": [key]}

    def make_pizza(self, diner: object, order: dict[str, Any]) -> str:
        iat = int(self.clock())
        header = {"kid": self.kid, "iat": iat, "exp": iat + PIZZA_LIFETIME_S, "iss": ISSUER}
        payload = {"vendor": VENDOR, "diner": diner, "order": order}
        self.pizzas[str(order.get("id"))] += 1
        return jwt.encode(payload, self.key, algorithm="RS256", headers=header)

    def verify(self, token: str) -> dict[str, Any] | None:
        """The pizza's payload if this factory signed it and it has not expired."""
        try:
            signed = jwt.PyJWS().decode_complete(token, self.key.public_key(), algorithms=["RS256"])
            payload = json.loads(signed["payload"])
        except (jwt.InvalidTokenError, ValueError):
            return None
        header = signed["header"]
        exp = header.get("exp")
        fresh = isinstance(exp, int | float) and exp > self.clock()
        if header.get("kid") != self.kid or not fresh or not isinstance(payload, dict):
            return None
        return payload

    def report_url(self, chaos: _Chaos, request: Request) -> str:
        """The remediation link, built from the host name the client asked for.

        Like the real factory: always https, never a port, whatever reached us.
        """
        host = _host_name(request)
        key = self.config.api_key
        if chaos.link_style == "query":
            base = self.config.resolve_url or f"https://{host}/api/support/resolve"
            return f"{base}?{urlencode({'apiKey': key, 'fixCode': chaos.fix_code})}"
        scheme = "https//" if chaos.link_style == "mangled" else "https://"
        return f"{scheme}{host}/api/support/{quote(key, safe='')}/report/{chaos.fix_code}"


def _host_name(request: Request) -> str:
    host = request.headers.get("host") or request.url.hostname or "localhost"
    if host.startswith("["):  # an IPv6 literal keeps its brackets, loses its port
        return host[: host.index("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0]


def _simulator(request: Request) -> Simulator:
    return cast(Simulator, request.app.state.simulator)


SimDep = Annotated[Simulator, Depends(_simulator)]


def _require_vendor_key(request: Request, sim: SimDep) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not sim.key_ok(token.strip()):
        raise HTTPException(401, "invalid authentication")


def _count_order_call(sim: SimDep) -> None:
    sim.calls += 1


VendorKey = Depends(_require_vendor_key)
router = APIRouter()


@router.get("/.well-known/jwks.json")
async def jwks(sim: SimDep) -> JSONUTF8Response:
    """The key set that verifies pizzas."""
    return JSONUTF8Response(sim.jwks())


# Counted before the key check: stats show every order call that reached us.
@router.post("/api/order", dependencies=[Depends(_count_order_call), VendorKey])
async def make_pizza(request: Request, sim: SimDep) -> Response:
    """Make a pizza: an RS256 JWT of the diner and the order."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    diner = body.get("diner") if isinstance(body, dict) else None
    order = body.get("order") if isinstance(body, dict) else None
    if not diner or not isinstance(order, dict):
        return _message(400, "Missing required parameters")
    items = order.get("items")
    if not isinstance(items, list) or not 0 < len(items) <= MAX_ITEMS:
        await asyncio.sleep(sim.config.oven_full_delay_s)
        return _message(503, "Unable to satisfy pizza order. The oven is full.")

    chaos = sim.running_chaos()
    if chaos is None:
        return JSONUTF8Response({"jwt": sim.make_pizza(diner, order)})
    report_url = sim.report_url(chaos, request)
    match chaos.type:
        case "fail":
            return _message(500, "chaos monkey", reportUrl=report_url)
        case "throttle":
            await asyncio.sleep(chaos.throttle_delay_s)
            return JSONUTF8Response({"jwt": sim.make_pizza(diner, order), "reportUrl": report_url})
        case "badjwt":
            return JSONUTF8Response({"jwt": BAD_JWT, "reportUrl": report_url})
        case "notjson":
            return HTMLResponse("<html><body><h1>502 Bad Gateway</h1></body></html>")
        case "hang":
            await _hang(request)
            return _message(504, "the factory hung")


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
    try:
        body = await request.json()
    except ValueError:
        body = None
    token = body.get("jwt") if isinstance(body, dict) else None
    payload = sim.verify(token) if isinstance(token, str) else None
    if payload is None:
        return _message(403, "invalid")
    return JSONUTF8Response({"message": "valid", "payload": payload})


@router.get("/api/vendor", dependencies=[VendorKey])
async def vendor(sim: SimDep) -> JSONUTF8Response:
    """The vendor record, with the chaos scheduled or running (never its fix code)."""
    record: dict[str, object] = dict(VENDOR)
    if sim.chaos is not None:
        start = datetime.fromtimestamp(sim.chaos.starts_at, UTC)
        iso = start.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        record["chaos"] = {"type": sim.chaos.type, "startDate": iso}
    return JSONUTF8Response(record)


@router.put("/api/vendor/chaos/{chaos_type}", dependencies=[VendorKey])
async def set_chaos(
    chaos_type: str,
    sim: SimDep,
    start_delay_s: Annotated[float, Query(ge=0)] = 0.0,
    throttle_delay_s: Annotated[float | None, Query(ge=0)] = None,
    link_style: LinkStyle | None = None,
) -> JSONUTF8Response:
    """Start chaos (fail, throttle, badjwt; notjson and hang for tests) or end it (none)."""
    if chaos_type == "none":
        sim.chaos = None
    elif chaos_type in get_args(ChaosType):
        delay = sim.config.throttle_delay_s if throttle_delay_s is None else throttle_delay_s
        sim.chaos = _Chaos(
            type=cast(ChaosType, chaos_type),
            starts_at=sim.clock() + start_delay_s,
            fix_code=secrets.token_hex(8),  # new each time: an old link cannot end new chaos
            throttle_delay_s=delay,
            link_style=link_style or sim.config.link_style,
        )
    else:
        return _message(400, f"unknown chaos type: {chaos_type}")
    return _message(200, "Chaos initiated")


def _resolve(sim: Simulator, api_key: str, fix_code: str) -> JSONUTF8Response:
    if not sim.key_ok(api_key):
        return _message(401, "invalid authentication")
    if sim.chaos is None:
        return _message(200, "No chaos currently executing")
    if not hmac.compare_digest(fix_code.encode(), sim.chaos.fix_code.encode()):
        return _message(400, "Problem unresolved")
    sim.chaos = None
    return _message(200, "Problem resolved. Pizza is back on the menu!")


@router.get("/api/support/{api_key}/report/{fix_code}")
async def report(api_key: str, fix_code: str, sim: SimDep) -> JSONUTF8Response:
    """End the chaos with its fix code (the reportUrl's path shape)."""
    return _resolve(sim, api_key, fix_code)


@router.get("/api/support/resolve")
async def resolve(
    sim: SimDep,
    api_key: Annotated[str, Query(alias="apiKey")] = "",
    fix_code: Annotated[str, Query(alias="fixCode")] = "",
) -> JSONUTF8Response:
    """End the chaos with its fix code (the reportUrl's query shape)."""
    return _resolve(sim, api_key, fix_code)


@router.get("/api/sim/stats", dependencies=[VendorKey])
async def stats(sim: SimDep) -> JSONUTF8Response:
    """Test only: pizzas made per order id, and every POST /api/order received."""
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
    return JSONUTF8Response({"version": SIMULATOR_VERSION, "endpoints": endpoints})


def create_simulator_app(config: SimulatorConfig, *, clock: Clock = time.time) -> FastAPI:
    """A new simulated factory with its own key and chaos state.

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
    app.add_middleware(
        CORSMiddleware,
        allow_origins=config.cors_origins,
        allow_credentials=True,
        allow_methods=["GET", "POST", "PUT", "DELETE"],
        allow_headers=["content-type", "authorization"],
    )

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

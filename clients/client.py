"""The pizza factory client: one call, one classified answer (docs/resilience.md#outcomes).

Nothing the factory or the network does raises out of this client: every
answer, timeout and transport failure becomes a `FactoryResult` (or a
`VendorProbe`, a `RemediationAnswer`). Only cancellation propagates, so that a
caller that gives up really stops the call.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from clients.clock import SYSTEM_CLOCK, Clock
from clients.jwks import JwksCache
from clients.redaction import redact_factory_key
from clients.remediation import find_report_url
from clients.schemas import DinerInfo, FactoryResult, OrderInfo, Outcome

ORDER_PATH = "/api/order"
VENDOR_PATH = "/api/vendor"
REASON_MAX_CHARS = 200
# Chaos details the factory should already strip; never pass them on if it did not.
_SECRET_CHAOS_FIELDS = frozenset({"apiKey", "fixCode"})


@dataclass(frozen=True, slots=True)
class VendorProbe:
    """What `GET /api/vendor` said about our key (SUCCESS, UNAUTHORIZED, UNAVAILABLE, TIMEOUT)."""

    outcome: Outcome
    vendor_name: str | None
    chaos: dict[str, Any] | None
    reason: str


@dataclass(frozen=True, slots=True)
class RemediationAnswer:
    """The factory's answer to a followed remediation link.

    `resolved` is True when the chaos is over: fixed now, or none running.
    """

    status_code: int | None
    message: str
    resolved: bool


@dataclass(frozen=True, slots=True)
class _Answer:
    """An HTTP answer read as far as this client cares: status and decoded JSON."""

    status_code: int
    body: object  # the decoded JSON, or _NOT_JSON

    @property
    def message(self) -> str:
        if isinstance(self.body, dict) and isinstance(self.body.get("message"), str):
            return str(self.body["message"])
        return ""


_NOT_JSON = object()


@dataclass(frozen=True, slots=True)
class _NoAnswer:
    """No HTTP answer at all: TIMEOUT or UNAVAILABLE, with a redacted reason."""

    outcome: Outcome
    reason: str


class FactoryClient:
    """Calls the factory over the app's `httpx.AsyncClient` (base_url = FACTORY_URL)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_key: str,
        jwks: JwksCache,
        slow_call_s: float = 2.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._http = http
        self._api_key = api_key
        self._jwks = jwks
        self._slow_call_s = slow_call_s
        self._clock = clock

    async def create_pizza(
        self, diner: DinerInfo, order: OrderInfo, *, timeout_s: float
    ) -> FactoryResult:
        """One `POST /api/order`, classified as docs/resilience.md#outcomes says.

        Never raises for what the factory or the network does. The duration covers
        the whole call, verification included: it is what the caller waited.
        """
        started = self._clock.monotonic()
        body = {
            "diner": {"id": diner.id, "name": diner.name, "email": diner.email},
            "order": order.to_wire(),
        }
        answer = await self._request("POST", ORDER_PATH, timeout_s=timeout_s, json=body)
        report_url: str | None = None
        status: int | None = None
        token: str | None = None
        if isinstance(answer, _NoAnswer):
            outcome, reason = answer.outcome, answer.reason
        else:
            report_url, status = find_report_url(answer.body), answer.status_code
            outcome, reason, token = await self._classify(answer, report_url)
        duration = self._clock.monotonic() - started
        if outcome is Outcome.SUCCESS and duration > self._slow_call_s:
            outcome = Outcome.SLOW
            reason = f"pizza took {duration:.1f} s (slow above {self._slow_call_s:g} s)"
        return FactoryResult(
            outcome=outcome,
            duration_s=duration,
            reason=self._reason(reason),
            jwt=token,
            report_url=report_url,
            status_code=status,
        )

    async def _classify(
        self, answer: _Answer, report_url: str | None
    ) -> tuple[Outcome, str, str | None]:
        """(outcome, reason, verified JWT) for an answer; the first row that fits wins."""
        status = answer.status_code
        if status in (401, 403):
            return Outcome.UNAUTHORIZED, f"factory refused our API key: {_says(answer)}", None
        if status == 400 or (status == 503 and "oven is full" in answer.message.lower()):
            return Outcome.REJECTED, f"factory rejected the order: {_says(answer)}", None
        if not isinstance(answer.body, dict):
            return Outcome.UNAVAILABLE, f"HTTP {status} without a JSON object body", None
        if not 200 <= status < 300:
            # Beyond the table (5xx, but also a stray 404, 429 or 3xx): the factory
            # did not make the pizza for reasons of its own, so it is worth a retry.
            return Outcome.UNAVAILABLE, f"factory failed: {_says(answer)}", None
        token = answer.body.get("jwt")
        if not isinstance(token, str) or not token:
            return Outcome.BAD_JWT, f"HTTP {status} without a pizza JWT", None
        if await self._jwks.verify(token) is None:
            return Outcome.BAD_JWT, "pizza JWT does not verify against the factory keys", None
        if report_url is not None:
            return Outcome.CHAOS, "pizza made, but the answer carries a chaos link", token
        return Outcome.SUCCESS, "pizza made", token

    async def probe_vendor(self, *, timeout_s: float = 5.0) -> VendorProbe:
        """`GET /api/vendor`: is our key accepted, and is chaos scheduled?"""
        answer = await self._request("GET", VENDOR_PATH, timeout_s=timeout_s)
        if isinstance(answer, _NoAnswer):
            return VendorProbe(answer.outcome, None, None, answer.reason)
        if answer.status_code in (401, 403):
            reason = self._reason(f"factory refused our API key: {_says(answer)}")
            return VendorProbe(Outcome.UNAUTHORIZED, None, None, reason)
        if answer.status_code != 200 or not isinstance(answer.body, dict):
            reason = self._reason(f"vendor check failed: {_says(answer)}")
            return VendorProbe(Outcome.UNAVAILABLE, None, None, reason)
        name = answer.body.get("name")
        chaos = answer.body.get("chaos")
        return VendorProbe(
            outcome=Outcome.SUCCESS,
            vendor_name=name if isinstance(name, str) else None,
            chaos=self._public_chaos(chaos) if isinstance(chaos, dict) else None,
            reason="API key accepted",
        )

    async def follow_link(self, url: str, *, timeout_s: float = 10.0) -> RemediationAnswer:
        """`GET` a remediation URL already vetted by `remediation.followable_url`."""
        answer = await self._request("GET", url, timeout_s=timeout_s, auth=False)
        if isinstance(answer, _NoAnswer):
            return RemediationAnswer(None, answer.reason, resolved=False)
        message = answer.message.lower()
        resolved = answer.status_code == 200 and (
            "problem resolved" in message or "no chaos currently executing" in message
        )
        return RemediationAnswer(answer.status_code, self._reason(_says(answer)), resolved)

    async def _request(
        self,
        method: str,
        url: str,
        *,
        timeout_s: float,
        auth: bool = True,
        json: object = None,
    ) -> _Answer | _NoAnswer:
        """The answer with its body decoded, or why there was none."""
        # A remediation link carries the key in itself; our bearer header need not
        # travel to whatever host it names.
        headers = {"Authorization": f"Bearer {self._api_key}"} if auth else {}
        content = None
        if json is not None:
            headers["Content-Type"] = "application/json"
            content = orjson.dumps(json)
        try:
            # httpx's timeout bounds each phase (connect, each read...); the outer
            # one bounds the whole call, so a factory trickling bytes still ends.
            async with asyncio.timeout(timeout_s):
                response = await self._http.request(
                    method,
                    url,
                    headers=headers,
                    content=content,
                    timeout=timeout_s,
                    # Never follow a redirect: it could lead anywhere (SSRF).
                    follow_redirects=False,
                )
        except (httpx.TimeoutException, TimeoutError) as exc:
            reason = f"no answer within {timeout_s:g} s ({type(exc).__name__})"
            return _NoAnswer(Outcome.TIMEOUT, reason)
        except httpx.HTTPError as exc:
            reason = f"cannot reach the factory: {type(exc).__name__}: {exc}"
            return _NoAnswer(Outcome.UNAVAILABLE, self._reason(reason))
        try:
            body: object = response.json()
        except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
            body = _NOT_JSON
        return _Answer(response.status_code, body)

    def _reason(self, text: str) -> str:
        # Redact before cutting: a cut could leave half a key that no longer matches.
        return redact_factory_key(text, self._api_key)[:REASON_MAX_CHARS]

    def _public_chaos(self, chaos: dict[str, Any]) -> dict[str, Any]:
        return {
            key: redact_factory_key(value, self._api_key) if isinstance(value, str) else value
            for key, value in chaos.items()
            if key not in _SECRET_CHAOS_FIELDS
        }


def _says(answer: _Answer) -> str:
    """`HTTP 500: chaos monkey`: the status and the factory's own message, if any."""
    if answer.message:
        return f"HTTP {answer.status_code}: {answer.message}"
    return f"HTTP {answer.status_code}"

"""The service's error tree and the handlers that render every error as {"message": ...}."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.sql.failures import driver_error, unreachable
from app.sql.rows import StoreError, StoreUnavailable

log = logging.getLogger("app.errors")


class AppError(Exception):
    status_code = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class BadRequest(AppError):
    status_code = 400


class Unauthorized(AppError):
    status_code = 401


class Forbidden(AppError):
    status_code = 403


class NotFound(AppError):
    status_code = 404


class Conflict(AppError):
    status_code = 409


class TooManyRequests(AppError):
    status_code = 429


class ErrorBody(BaseModel):
    """Every error answer: the front end shows `message` as a banner."""

    message: str


_MEANINGS = {
    400: "A field is missing or malformed; the message names it",
    401: "No token, or a malformed, expired or revoked one",
    403: "Signed in, without the role this needs",
    404: "No such thing (or not yours to see)",
    409: "Conflicts with what exists",
    413: "Request body too large",
    429: "Too many sign-in attempts from this address; try again after Retry-After seconds",
    502: "The pizza factory refused the order; it was not made and not charged",
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "schema": {"type": "integer"},
    }
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the errors a route gives, all shaped `{"message"}`.

    Each code is listed, none by range ("4XX" would document any client error, so a
    schema-checking client could not tell a real answer from a bug). FastAPI's 422 is
    taken out of the document (app/openapi.py): bad input is a 400 here, as in the reference.
    """
    responses: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorBody, "description": _MEANINGS[code]} for code in codes
    }
    if 429 in responses:
        responses[429]["headers"] = RETRY_AFTER
    return responses


def _field_name(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def describe_validation(first: Mapping[str, Any]) -> str:
    """Name a wrong field (one of RequestValidationError.errors()), the way a person reads it."""
    if first.get("type") == "json_invalid":
        return "request body is not valid JSON"
    field = _field_name(tuple(first.get("loc", ())))
    message = str(first.get("msg", "is invalid")).removeprefix("Value error, ")
    return f"{field}: {message}"


# While the database is away (a restart, a failover): how long a client should wait.
DATABASE_RETRY_AFTER_S = 5
DATABASE_UNAVAILABLE = (
    "the database is unavailable for a moment; nothing was stored or changed: "
    "try again in a few seconds"
)


def _outage(exc: Exception) -> str:
    """Which outage, for the log line. An outage's message is about the connection or the
    file, never a value of the statement."""
    # The store's errors already read "<driver error>: <its text>".
    return str(exc) if isinstance(exc, StoreError) else driver_error(exc)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """One warning line, no traceback: the cause is outside the service (and /readyz says
    503 meanwhile, so a load balancer takes the replica out while it lasts)."""
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, _outage(exc))
    headers = {"Retry-After": str(DATABASE_RETRY_AFTER_S)}
    return JSONResponse({"message": DATABASE_UNAVAILABLE}, 503, headers=headers)


def internal_error(method: str, path: str, exc: BaseException) -> JSONResponse:
    """A bug: a 500 whose answer and log line (with the traceback) share an error id, so
    that a customer's report leads to the line. Nothing about the error is in the answer."""
    error_id = secrets.token_hex(8)
    log.error(
        "internal error %s on %s %s: %s",
        error_id,
        method,
        path,
        type(exc).__name__,
        exc_info=exc,
        extra={"error_id": error_id},
    )
    body = {"message": f"internal error (error id {error_id})", "errorId": error_id}
    return JSONResponse(body, 500)


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    """The order store's errors (app/sql): an outage is a 503, anything else a bug."""
    if isinstance(exc, StoreUnavailable):
        return await _database_unavailable(request, exc)
    return internal_error(request.method, request.url.path, exc)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """The ORM's errors: a lost, refused or invalidated connection is the database away;
    any other (a constraint, a value or statement refused) is our bug and a 500."""
    if getattr(exc, "connection_invalidated", False) or unreachable(exc):
        return await _database_unavailable(request, exc)
    return internal_error(request.method, request.url.path, exc)


def install_error_handlers(app: FastAPI) -> None:
    # A refused or timed-out connect that no driver wrapped, or no pooled connection free
    # within the pool's timeout.
    for unavailable in (ConnectionError, TimeoutError, PoolTimeout):
        app.add_exception_handler(unavailable, _database_unavailable)
    app.add_exception_handler(StoreError, _store_error)
    app.add_exception_handler(DBAPIError, _database_error)

    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        return JSONResponse({"message": exc.message}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        # A path whose id is not one (`1.0`, `01`, `abc`) names nothing: 404, whatever
        # else the request holds. Every other wrong value is a 400 naming its field.
        in_path = [e for e in exc.errors() if tuple(e.get("loc", ()))[:1] == ("path",)]
        if in_path:
            return JSONResponse({"message": describe_validation(in_path[0])}, 404)
        return JSONResponse({"message": describe_validation(exc.errors()[0])}, 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = "unknown endpoint" if exc.status_code == 404 else str(exc.detail)
        return JSONResponse({"message": message}, exc.status_code, headers=exc.headers)

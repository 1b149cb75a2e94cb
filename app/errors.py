"""The service's error tree and the handlers that render every error as {"message": ...}."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.sql.rows import StoreError

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
    429: "Too many failed sign-ins; try again after Retry-After seconds",
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


def describe_validation(error: RequestValidationError) -> str:
    """Name the first wrong field, the way a person would read it."""
    first = error.errors()[0]
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


def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """One warning line, no traceback: the cause is outside the service (and /readyz says
    503 meanwhile, so a load balancer takes the replica out while it lasts)."""
    log.warning(
        "database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__
    )
    headers = {"Retry-After": str(DATABASE_RETRY_AFTER_S)}
    return JSONResponse({"message": DATABASE_UNAVAILABLE}, 503, headers=headers)


def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """The ORM's errors: a lost or refused connection is the database away; any other
    (a constraint, a bad statement) is our bug and stays a logged 500."""
    if isinstance(exc, OperationalError | InterfaceError) or getattr(
        exc, "connection_invalidated", False
    ):
        return _database_unavailable(request, exc)
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"message": "internal error"}, 500)


def install_error_handlers(app: FastAPI) -> None:
    # The order store's errors, a refused or timed-out connect, the ORM's lost connections.
    for unavailable in (StoreError, ConnectionError, TimeoutError):
        app.add_exception_handler(unavailable, _database_unavailable)
    app.add_exception_handler(DBAPIError, _database_error)

    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        return JSONResponse({"message": exc.message}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"message": describe_validation(exc)}, 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = "unknown endpoint" if exc.status_code == 404 else str(exc.detail)
        return JSONResponse({"message": message}, exc.status_code, headers=exc.headers)

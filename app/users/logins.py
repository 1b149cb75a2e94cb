"""Failed-login throttling (api.md item 8), shared through the database by every replica."""

from __future__ import annotations

import ipaddress
import logging
import math
from datetime import datetime, timedelta

from fastapi import Request
from sqlalchemy import delete, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.errors import TooManyRequests
from app.models import LoginFailure

log = logging.getLogger("app.auth")


def client_address(request: Request, trusted_proxies: list[str]) -> str:
    """The socket's address, or X-Forwarded-For's nearest untrusted hop behind trusted proxies."""
    peer = request.client.host if request.client else "unknown"
    if not _trusted(peer, trusted_proxies):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted_proxies):
            return hop[:64]
    return peer


def _trusted(address: str, proxies: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for proxy in proxies:
        try:
            if ip in ipaddress.ip_network(proxy, strict=False):
                return True
        except ValueError:
            continue
    return False


async def check_allowed(
    session: AsyncSession, settings: Settings, email: str, client: str, now: datetime
) -> None:
    """429 with Retry-After once an email or a client address has failed too often."""
    since = now - timedelta(seconds=settings.login_window_s)
    for column, value, limit in (
        (LoginFailure.email, email, settings.login_max_failures_per_email),
        (LoginFailure.client, client, settings.login_max_failures_per_client),
    ):
        count, oldest = (
            await session.exec(
                select(func.count(), func.min(LoginFailure.at)).where(
                    column == value, col(LoginFailure.at) > since
                )
            )
        ).one()
        if count >= limit and oldest is not None:
            retry_after = _retry_after(oldest, settings.login_window_s, now)
            log.warning("login refused: too many failures", extra={"client": client})
            raise TooManyRequests(
                "too many failed sign-in attempts; try again later",
                headers={"Retry-After": str(retry_after)},
            )


def _retry_after(oldest: datetime, window_s: float, now: datetime) -> int:
    remaining = (oldest + timedelta(seconds=window_s) - now).total_seconds()
    return max(1, math.ceil(remaining))


async def record_failure(
    session: AsyncSession, settings: Settings, email: str, client: str, now: datetime
) -> None:
    log.warning("failed sign-in", extra={"client": client})
    cutoff = now - timedelta(seconds=settings.login_window_s)
    await session.exec(delete(LoginFailure).where(col(LoginFailure.at) < cutoff))
    session.add(LoginFailure(email=email, client=client, at=now))
    await session.commit()

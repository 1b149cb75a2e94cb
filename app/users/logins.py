"""Sign-in throttling (docs/http-api.md#sign-in-limits; OWASP's Authentication and
Credential Stuffing cheat sheets): limits per client address and per account from one
address, so that a stranger slows down and then stops only themselves, and never locks
an account.

Three counters, each a row of `login_attempt` named by a hash of what it counts:

- a client address: LOGIN_MAX_PER_CLIENT attempts (30) per LOGIN_WINDOW_S (300 s), one
  address guessing across accounts;
- an account from one address: LOGIN_MAX_PER_ACCOUNT (5) per window, guessing one
  account. An address guessing is slowed down to that pace on each account, and refused
  altogether once it reaches its own limit; the owner, elsewhere, signs in as always;
- the addresses that failed on one account: the LOGIN_ATTACK_SOURCES-th in a window is
  logged and counted (`pizza.auth.attacks`), an attack from many places that no
  per-address limit sees. The account itself is never locked.

An attempt counts from the moment it arrives, before its password is checked: one
statement raises the address's and the account-from-address's counters and returns them
(an upsert: atomic on SQLite and on PostgreSQL), and the attempt goes on only if both
are within their limits. So concurrent guesses cannot slip between a check and a count,
and a refused attempt counts as well. A right password gives its count back to the
address and clears the account-from-address counter.

The counters live in the database that every replica shares. Signing in reads the
account from it anyway, so the limits hold exactly while sign-in works at all; Redis is
optional and, while it is away, each replica goes on alone, where a throttle would
either stop counting or refuse everyone.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import NoReturn

from fastapi import Request
from sqlalchemy import BigInteger, bindparam, text
from sqlmodel.ext.asyncio.session import AsyncSession

from app.errors import TooManyRequests
from app.services import Services

log = logging.getLogger("app.auth")

# IPv6 hosts are commonly given a whole /64: counted per address, one would have 2**64.
IPV6_PREFIX = 64
REFUSED_MESSAGE = "too many sign-in attempts from this address; try again later"


class Limit(StrEnum):
    """Which limit refused an attempt (the `limit` of `pizza.auth.refused`)."""

    CLIENT = "client"
    ACCOUNT = "account"


# -- the client address ----------------------------------------------------------------


def client_address(request: Request, trusted_proxies: list[str]) -> str:
    """The socket's peer; behind trusted proxies, the nearest X-Forwarded-For hop that is
    not one of them (every X-Forwarded-For header, in order, as one list)."""
    peer = _address(request.client.host if request.client else "")
    if peer is None:
        return "unknown"
    networks = _networks(tuple(trusted_proxies))
    if not _within(peer, networks):
        return str(peer)
    hops = [h.strip() for v in request.headers.getlist("x-forwarded-for") for h in v.split(",")]
    nearest = peer
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            # A hop that is not an address: nothing left of it can be believed either.
            break
        if not _within(address, networks):
            return str(address)
        nearest = address
    return str(nearest)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    # Settings checked each entry at start (TRUSTED_PROXIES).
    return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in proxies)


def _address(text_: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text_)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's IPv4 peer, as TRUSTED_PROXIES lists it
    return address


def _within(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    networks: tuple[Network, ...],
) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def source_of(client: str) -> str:
    """What the per-address limits count: the address, or an IPv6 address's /64."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return client


# -- the counters ----------------------------------------------------------------------


def _subject(kind: str, *parts: str) -> str:
    """A counter's row name: a hash, so the table holds no email and no address."""
    return hashlib.sha256("\0".join((kind, *parts)).encode()).hexdigest()


def _count(subjects: int) -> str:
    """Raise ``subjects`` counters by one in one statement, each restarting its window
    when the last one is over, and return them."""
    values = ", ".join(f"(:s{n}, :now, 1)" for n in range(subjects))
    # Only placeholders are formatted in: the values are bound.
    return f"""
        INSERT INTO login_attempt (subject, since_ms, attempts) VALUES {values}
        ON CONFLICT (subject) DO UPDATE SET
            attempts = CASE WHEN login_attempt.since_ms <= :expired THEN 1
                            ELSE login_attempt.attempts + 1 END,
            since_ms = CASE WHEN login_attempt.since_ms <= :expired THEN :now
                            ELSE login_attempt.since_ms END
        RETURNING subject, since_ms, attempts
    """  # noqa: S608


_TIMES = (bindparam("now", type_=BigInteger), bindparam("expired", type_=BigInteger))
_COUNT_TWO = text(_count(2)).bindparams(*_TIMES)
_COUNT_ONE = text(_count(1)).bindparams(*_TIMES)
_GIVE_BACK = text(
    "UPDATE login_attempt SET attempts = attempts - 1"
    " WHERE subject = :subject AND since_ms = :since AND attempts > 0"
).bindparams(bindparam("since", type_=BigInteger))
_CLEAR = text("DELETE FROM login_attempt WHERE subject = :subject")
_EXPIRE = {
    dialect: text(statement).bindparams(bindparam("expired", type_=BigInteger))
    for dialect, statement in {
        # On PostgreSQL the rows another attempt is counting right now are left for the
        # next clean-up: waiting for them while that attempt waits for a row this one
        # took would be a deadlock. SQLite's writers take turns.
        "postgresql": "DELETE FROM login_attempt WHERE subject IN (SELECT subject"
        " FROM login_attempt WHERE since_ms <= :expired FOR UPDATE SKIP LOCKED)",
        "sqlite": "DELETE FROM login_attempt WHERE since_ms <= :expired",
    }.items()
}


@dataclass(frozen=True, slots=True)
class Attempt:
    """A sign-in attempt let through to its password check."""

    email: str
    client: str
    client_subject: str
    client_since_ms: int
    account_subject: str
    account_attempts: int  # this attempt's number, for this account from this address


def _times(services: Services) -> tuple[int, int]:
    """Now, and the start a window must be later than to be still open (Unix ms)."""
    now_ms = int(services.clock.now().timestamp() * 1000)
    return now_ms, now_ms - int(services.settings.login_window_s * 1000)


async def admit(session: AsyncSession, services: Services, email: str, client: str) -> Attempt:
    """Count this attempt (committed at once); 429 with Retry-After (seconds) when a limit
    refuses it. The request's own session: a request never holds two connections."""
    settings = services.settings
    source = source_of(client)
    by_client = _subject("client", source)
    by_account = _subject("account", email, source)
    now_ms, expired = _times(services)
    connection = await session.connection()
    rows = await connection.execute(
        _COUNT_TWO, {"s0": by_client, "s1": by_account, "now": now_ms, "expired": expired}
    )
    counted = {row[0]: (int(row[1]), int(row[2])) for row in rows}
    await session.commit()
    (client_since, client_n), (account_since, account_n) = counted[by_client], counted[by_account]
    for limit, since, attempts, most in (
        (Limit.CLIENT, client_since, client_n, settings.login_max_per_client),
        (Limit.ACCOUNT, account_since, account_n, settings.login_max_per_account),
    ):
        if attempts > most:
            until_ms = since + int(settings.login_window_s * 1000)
            retry_after = max(1, math.ceil((until_ms - now_ms) / 1000))
            _refuse(services, limit, client, retry_after, first=attempts == most + 1)
    return Attempt(email, client, by_client, client_since, by_account, account_n)


def _refuse(
    services: Services, limit: Limit, client: str, retry_after: int, *, first: bool
) -> NoReturn:
    services.metrics.auth_refused(limit.value)
    # Every refusal is counted; the first of a window is logged (an attack would
    # otherwise write a line per request).
    if first:
        log.warning(
            "sign-in refused: too many attempts",
            extra={"client": client, "limit": limit.value, "retry_after_s": retry_after},
        )
    raise TooManyRequests(REFUSED_MESSAGE, headers={"Retry-After": str(retry_after)})


async def succeeded(session: AsyncSession, attempt: Attempt) -> None:
    """The right password: the attempt is given back to its address, and the account's
    counter from that address starts again."""
    connection = await session.connection()
    await connection.execute(
        _GIVE_BACK, {"subject": attempt.client_subject, "since": attempt.client_since_ms}
    )
    await connection.execute(_CLEAR, {"subject": attempt.account_subject})
    await session.commit()


async def failed(
    session: AsyncSession, services: Services, attempt: Attempt, user_id: int | None
) -> None:
    """A wrong password (or no such account): logged; the attempt stays counted, and the
    address is counted among those trying the account (once a window)."""
    log.warning("failed sign-in", extra={"client": attempt.client})
    now_ms, expired = _times(services)
    # Counters whose window is over are dropped here: failures are what makes rows.
    connection = await session.connection()
    await connection.execute(_EXPIRE[connection.dialect.name], {"expired": expired})
    addresses = 0
    if attempt.account_attempts == 1:  # the first from this address for this account
        sources = _subject("sources", attempt.email)
        rows = await connection.execute(
            _COUNT_ONE, {"s0": sources, "now": now_ms, "expired": expired}
        )
        addresses = int(rows.one()[2])
    await session.commit()
    if addresses == services.settings.login_attack_sources:
        services.metrics.auth_attacked()
        log.warning(
            "sign-in attack: one account failed from many addresses",
            extra={
                "user_id": user_id,
                "addresses": addresses,
                "window_s": services.settings.login_window_s,
            },
        )

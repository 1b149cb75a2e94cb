"""Passwords (argon2id) and auth tokens (HS256 JWTs backed by a revocable session row)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.models import utcnow

TOKEN_ALGORITHM = "HS256"  # noqa: S105 (an algorithm name, not a password)
_hasher = PasswordHasher()
# Verifying against this when the email is unknown keeps both answers equally slow,
# so timing does not tell which emails have accounts.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


async def hash_password(password: str) -> str:
    # argon2 is deliberately slow: keep it off the event loop.
    return await anyio.to_thread.run_sync(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def _verify() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
        except (VerificationError, InvalidHashError):
            return False

    return await anyio.to_thread.run_sync(_verify)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: datetime


def issue_token(user_id: int, *, secret: str, ttl_s: int) -> IssuedToken:
    now = utcnow()
    expires_at = now + timedelta(seconds=ttl_s)
    jti = secrets.token_urlsafe(24)
    claims = {"sub": str(user_id), "jti": jti, "iat": now, "exp": expires_at}
    return IssuedToken(jwt.encode(claims, secret, algorithm=TOKEN_ALGORITHM), jti, expires_at)


def decode_token(token: str, *, secret: str) -> tuple[int, str] | None:
    """(user id, session id) of a well-signed, unexpired token; None otherwise."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[TOKEN_ALGORITHM], options={"require": ["exp", "sub", "jti"]}
        )
        return int(claims["sub"]), str(claims["jti"])
    except (jwt.PyJWTError, ValueError, TypeError):
        return None

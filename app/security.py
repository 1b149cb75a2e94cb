"""Auth tokens: HS256 JWTs backed by a revocable session row (app/users/sessions.py).

Passwords are hashed in app/users/passwords.py.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from app.fields import plain_id

TOKEN_ALGORITHM = "HS256"  # noqa: S105 (an algorithm name, not a password)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: datetime


def issue_token(user_id: int, *, secret: str, ttl_s: int, now: datetime) -> IssuedToken:
    expires_at = now + timedelta(seconds=ttl_s)
    jti = secrets.token_urlsafe(24)
    claims = {"sub": str(user_id), "jti": jti, "iat": now, "exp": expires_at}
    return IssuedToken(jwt.encode(claims, secret, algorithm=TOKEN_ALGORITHM), jti, expires_at)


# A compact JWS segment: base64url without padding, nothing else.
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
# A session id as `issue_token` makes it (url-safe base64), within its column's 64 characters.
_JTI = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def decode_token(token: str, *, secret: str, now: datetime) -> tuple[int, str] | None:
    """(user id, session id) of a well-signed, unexpired token; None otherwise.

    Our own tokens only (`issue_token`): HS256, claims `sub`, `jti`, `exp` required. Checked
    here rather than by `jwt.decode`, which walks each character of the token in Python:
    every signed-in request pays for this (pizza bench).
    """
    segments = token.split(".")
    if len(segments) != 3 or not all(_SEGMENT.fullmatch(s) for s in segments):
        return None
    signing_input = f"{segments[0]}.{segments[1]}".encode("ascii")
    expected = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(expected, _b64decode(segments[2])):
            return None
        header = json.loads(_b64decode(segments[0]))
        claims = json.loads(_b64decode(segments[1]))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(header, dict) or header.get("alg") != TOKEN_ALGORITHM:
        return None
    if not isinstance(claims, dict):
        return None
    exp, sub, jti = claims.get("exp"), claims.get("sub"), claims.get("jti")
    if isinstance(exp, bool) or not isinstance(exp, int | float) or exp <= now.timestamp():
        return None
    # Claims in the form and range we issue them, before they reach a statement: a
    # well-signed token with a 70-bit `sub` or a NUL in `jti` is a bad token, not a bug.
    user_id = plain_id(sub) if isinstance(sub, str) else None
    if user_id is None or not isinstance(jti, str) or not _JTI.fullmatch(jti):
        return None
    return user_id, jti

"""The factory's key set, cached, and local verification of pizza JWTs (docs/factory.md).

A pizza is an RS256 JWS whose claims (`iat`, `exp`, `iss`, `kid`) sit in the
protected header; the payload holds only vendor, diner and order. So expiry is
checked in the header: a verifier that looks in the payload finds no `exp`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
from typing import Any

import httpx
import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from jwt.algorithms import RSAAlgorithm

from clients.clock import SYSTEM_CLOCK, Clock

logger = logging.getLogger(__name__)

JWKS_FETCH_TIMEOUT_S = 5.0
ALGORITHM = "RS256"

# A compact JWS segment: base64url without padding, nothing else (no junk that a lenient
# decoder would skip).
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _split(token: str) -> tuple[dict[str, Any], bytes, bytes, bytes] | None:
    """A compact JWS as (header, payload, signing input, signature); None if malformed.

    PyJWT 2.15 decodes a token by checking each character of each segment in Python, and
    `get_unverified_header` then `decode_complete` did it twice: about a fifth of an
    order's CPU (py-spy, pizza bench). The signature itself is checked by `cryptography`
    (RSASSA-PKCS1-v1_5 with SHA-256, which is what RS256 is).
    """
    segments = token.split(".")
    if len(segments) != 3 or not all(_SEGMENT.fullmatch(s) for s in segments):
        return None
    try:
        header = json.loads(_b64decode(segments[0]))
        payload, signature = _b64decode(segments[1]), _b64decode(segments[2])
    except (ValueError, binascii.Error):
        return None
    if not isinstance(header, dict):
        return None
    return header, payload, f"{segments[0]}.{segments[1]}".encode("ascii"), signature


class JwksCache:
    """Verifies pizza JWTs against the factory's key set, fetched once and kept.

    The hot path makes no network call: keys are parsed once per fetch. An
    unknown `kid` (the factory rotated its key) triggers a refetch, at most once
    per `min_refetch_interval_s`, so a flood of forged tokens cannot turn this
    cache into a way to hammer the factory.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        jwks_path: str = "/.well-known/jwks.json",
        clock: Clock = SYSTEM_CLOCK,
        min_refetch_interval_s: float = 10.0,
    ) -> None:
        self._http = http
        self._jwks_path = jwks_path
        self._clock = clock
        self._min_refetch_interval_s = min_refetch_interval_s
        self._keys: dict[str, RSAPublicKey] = {}
        self._last_fetch_at: float | None = None
        # Concurrent verifies that all miss the same kid share one fetch.
        self._fetch_lock = asyncio.Lock()

    async def verify(self, token: str) -> dict[str, Any] | None:
        """The token's payload if its signature verifies and its header `exp` is ahead.

        None for anything else: a bad signature, an unknown key, an expired or
        malformed token, or a key set that cannot be fetched.
        """
        parts = _split(token)
        if parts is None:
            return None
        header, payload, signing_input, signature = parts
        kid = header.get("kid")
        if not isinstance(kid, str) or header.get("alg") != ALGORITHM:
            return None
        key = self._keys.get(kid)
        if key is None:
            key = await self._refetch_for(kid)
            if key is None:
                return None
        try:
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return None
        if not self._header_unexpired(header):
            return None
        try:
            claims = json.loads(payload)
        except ValueError:
            return None
        return claims if isinstance(claims, dict) else None

    def _header_unexpired(self, header: dict[str, Any]) -> bool:
        exp = header.get("exp")
        # bool is an int; `"exp": true` is not a time.
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            return False
        return exp > self._clock.now().timestamp()

    async def _refetch_for(self, kid: str) -> RSAPublicKey | None:
        async with self._fetch_lock:
            # Another verify may have fetched while this one waited for the lock.
            if kid in self._keys:
                return self._keys[kid]
            now = self._clock.monotonic()
            if (
                self._last_fetch_at is not None
                and now - self._last_fetch_at < self._min_refetch_interval_s
            ):
                return None
            self._last_fetch_at = now
            keys = await self._fetch()
            if keys is not None:
                self._keys = keys
            return self._keys.get(kid)

    async def _fetch(self) -> dict[str, RSAPublicKey] | None:
        """The parsed key set, or None when it cannot be had (old keys are then kept)."""
        try:
            response = await self._http.get(
                self._jwks_path, timeout=JWKS_FETCH_TIMEOUT_S, follow_redirects=False
            )
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning("factory key set fetch failed: %s", type(exc).__name__)
            return None
        raw_keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(raw_keys, list):
            logger.warning("factory key set has no 'keys' list")
            return None
        keys: dict[str, RSAPublicKey] = {}
        for jwk in raw_keys:
            parsed = _parse_jwk(jwk)
            if parsed is not None:
                keys[parsed[0]] = parsed[1]
        return keys


def _parse_jwk(jwk: object) -> tuple[str, RSAPublicKey] | None:
    """(kid, public key) for a usable RSA JWK; None for any other entry, skipped."""
    if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
        return None
    try:
        key = RSAAlgorithm.from_jwk(jwk)
    except (jwt.PyJWTError, ValueError, TypeError):
        # PyJWT raises InvalidKeyError for a wrong shape, and lets ValueError /
        # TypeError through from base64 and number decoding of odd values.
        return None
    # A key set that leaks a private key still only serves to verify.
    public = key.public_key() if isinstance(key, RSAPrivateKey) else key
    return jwk["kid"], public
